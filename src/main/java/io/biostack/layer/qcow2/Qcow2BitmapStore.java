package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.block.bitmap.BitmapStore;
import io.biostack.block.bitmap.DirtyBitmap;
import io.biostack.layer.qcow2.Qcow2Bitmaps.Entry;
import io.biostack.layer.qcow2.Qcow2Bitmaps.Ext;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * A qcow2 device's persistent dirty bitmaps, kept in the image's bitmaps extension in qemu's
 * format ({@link Qcow2Bitmaps}), so that {@code qemu-img info} lists them, {@code qemu-img bitmap}
 * changes them and {@code qemu-nbd -B} exports them; biostack reads the bitmaps that qemu made
 * the same way.
 *
 * <h2>qemu's model of a crash, and why no bit is saved before its write</h2>
 * As qemu does ({@code block/qcow2-bitmap.c}), every bitmap of an image opened read-write is
 * marked {@code in_use} on disk before a write is recorded ({@link #saveLayout}): the directory is
 * rewritten with the flag set and the header's autoclear bit 0 set again. Only a clean close
 * ({@link #closeClean}) writes the bits and clears the flag. A bitmap found in use at the next
 * load was open at a crash: it loads inconsistent, is never exported, can only be removed, and
 * the next backup must be a full one. So the bits themselves never need to be durable before
 * their write: {@link #durableWords()} is false, {@link #saveWords} is never called, and no
 * write waits for a metadata write. (A bitmap that must survive a crash bit for bit, as a
 * mirror's resync log, belongs in a side file.)
 *
 * <h2>Ordering on disk</h2>
 * New bitmap tables and data clusters, and a directory of a new shape, are written to newly
 * allocated clusters (through the image's refcounts); the header is switched to the new
 * directory only after they and their refcounts are durable, and the old ones are freed only
 * after the header is ({@link Qcow2Device#commitHeader}). A crash at any moment leaves the old
 * directory or the new one, and at worst leaked clusters. A change of flags only (the in-use
 * marks at open) rewrites the directory in place with the autoclear bit clear, as qemu does.
 *
 * <h2>What is not loaded</h2>
 * A bitmap whose granularity is finer than biostack's 4 KiB, or whose name biostack can't
 * export, is kept in the image as it is, marked in use while the image is open read-write (its
 * bits are not kept up to date) unless it is disabled (no write changes it), and reported by
 * {@link #load}. When the image's autoclear bit
 * 0 was clear at open (a program without bitmap support wrote it), its bitmaps are stale: they
 * are reported and dropped, and their clusters leak, as qemu leaves them.
 *
 * <p>Not thread-safe: {@link io.biostack.block.bitmap.DeviceBitmaps} serialises calls. Every call
 * blocks on I/O; none is made on the I/O path.
 */
public final class Qcow2BitmapStore implements BitmapStore {
    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    /** Data cluster writes in flight at once while a bitmap is saved (a bound on memory). */
    private static final int WRITES_IN_FLIGHT = 64;

    private final Qcow2Device dev;
    private final BlockDevice container;
    private final int cs;
    private final boolean readOnly;
    private long virtualSize;
    /** The extension on disk that this store wrote or trusted, or null. */
    private Ext ext;
    /** The directory on disk, as entries. */
    private List<Entry> written = List.of();
    /** The entries of bitmaps handed to {@link io.biostack.block.bitmap.DeviceBitmaps}, by name. */
    private Map<String, Entry> ours = new LinkedHashMap<>();
    /** Entries kept as they are (not loadable here), always written in use. */
    private final List<Entry> foreign = new ArrayList<>();
    /** Whether the header on disk says what {@link #written} says (autoclear bit 0 included). */
    private boolean headerCurrent = true;
    /** Directory writes, read by status lines from other threads. */
    private volatile long writes;

    /**
     * The store of the bitmaps in {@code dev}'s image.
     *
     * @param dev the qcow2 device; it must outlive the store and stay open until after
     *            {@link #closeClean}
     */
    public Qcow2BitmapStore(Qcow2Device dev) {
        this.dev = dev;
        this.container = dev.container();
        this.cs = dev.header().clusterSize();
        this.readOnly = dev.isReadOnly();
    }

    // ---- load ---------------------------------------------------------------------------------

    @Override
    public List<DirtyBitmap> load(long deviceSize, List<String> problems) throws IOException {
        virtualSize = deviceSize;
        List<DirtyBitmap> out = new ArrayList<>();
        byte[] raw = dev.header().bitmapsExtension();
        if (raw == null) {
            return out;
        }
        if (!dev.bitmapsTrustedAtOpen()) {
            problems.add("the image's bitmaps are stale (autoclear bit 0 was clear: a program without bitmap support"
                    + " changed the image): they are dropped; make the next backup a full one");
            headerCurrent = false; // the next directory written replaces the stale extension
            return out;
        }
        try {
            long csize = container.size(); // the file's end, its last part sector shown
            Ext e = Ext.parse(raw, cs, csize);
            List<Entry> entries = Qcow2Bitmaps.parseDirectory(read(e.dirOffset(), (int) e.dirSize()), e, cs,
                    deviceSize, csize);
            Set<String> names = new HashSet<>();
            List<DirtyBitmap> loaded = new ArrayList<>();
            Map<String, Entry> mine = new LinkedHashMap<>();
            List<Entry> kept = new ArrayList<>();
            for (Entry x : entries) {
                if (!names.add(x.name())) {
                    throw new Qcow2Exception("two bitmaps are named '" + x.name() + "'");
                }
                DirtyBitmap b = bitmapFor(x, deviceSize, problems);
                if (b == null) {
                    kept.add(x);
                    continue;
                }
                if (x.inUse()) {
                    b.markInconsistent();
                    problems.add("bitmap " + x.name() + " was in use when the image was last closed (biostack or qemu"
                            + " stopped without saving it): loaded inconsistent; remove it, and make the next backup"
                            + " a full one");
                } else {
                    b.load(readBits(x, b, csize));
                }
                loaded.add(b);
                mine.put(x.name(), x);
            }
            ext = e;
            written = entries;
            ours = mine;
            foreign.addAll(kept);
            out.addAll(loaded);
            // Opened read-write, the autoclear bit was cleared: the first save sets it again.
            headerCurrent = readOnly;
            return out;
        } catch (Qcow2Exception e) {
            String why = dev.name() + ": the image's bitmaps can't be read: " + e.getMessage() + "; none of them is"
                    + " trusted";
            if (readOnly) {
                // Nothing is written read-only: the data stays readable, the bitmaps are not offered.
                problems.add(why);
                return new ArrayList<>();
            }
            throw new IOException(why + " (qemu refuses this image too: remove the bitmap with qemu-img bitmap"
                    + " --remove, or open the image read-only)", e);
        }
    }

    /** The bitmap for an entry, or null (with a line in {@code problems}) when it stays foreign. */
    private DirtyBitmap bitmapFor(Entry x, long deviceSize, List<String> problems) {
        String why;
        long g = 1L << x.granularityBits();
        if (g < DirtyBitmap.MIN_GRANULARITY) {
            why = "its granularity of " + g + " bytes is finer than biostack's " + DirtyBitmap.MIN_GRANULARITY;
        } else {
            try {
                DirtyBitmap b = new DirtyBitmap(x.name(), g, deviceSize);
                b.setPersistent(true);
                b.setRecording((x.flags() & Qcow2Bitmaps.FLAG_AUTO) != 0);
                return b;
            } catch (IllegalArgumentException e) {
                why = e.getMessage();
            }
        }
        problems.add("bitmap " + x.name() + " is not loaded (" + why + "): it stays in the image"
                + (readOnly || (x.flags() & Qcow2Bitmaps.FLAG_AUTO) == 0 ? ""
                : ", marked in use while biostack writes, so qemu knows it is stale"));
        return null;
    }

    /** Reads a consistent bitmap's bits through its table; every entry is checked first. */
    private long[] readBits(Entry x, DirtyBitmap b, long csize) throws IOException {
        // csize: the image's end, its last part sector shown
        long[] table = readTable(x);
        long[] offs = new long[table.length];
        for (int i = 0; i < table.length; i++) {
            offs[i] = Qcow2Bitmaps.checkTableEntry(table[i], cs, csize, "bitmap '" + x.name() + "' table entry " + i);
        }
        long[] words = new long[b.wordCount()];
        int perCluster = cs / 8;
        for (int i = 0; i < table.length; i++) {
            int w0 = i * perCluster;
            int n = Math.min(perCluster, words.length - w0);
            if (n <= 0) {
                break;
            }
            if (offs[i] == 0) {
                if ((table[i] & Qcow2Bitmaps.TABLE_ALL_ONES) != 0) {
                    java.util.Arrays.fill(words, w0, w0 + n, -1L);
                }
                continue;
            }
            byte[] d = read(offs[i], n * 8);
            java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(d).order(ByteOrder.LITTLE_ENDIAN);
            for (int j = 0; j < n; j++) {
                words[w0 + j] = bb.getLong(j * 8);
            }
        }
        int tail = (int) (b.bitCount() & 63);
        if (tail != 0 && words.length > 0) {
            words[words.length - 1] &= (1L << tail) - 1; // bits past the disk's end are not ours
        }
        return words;
    }

    private long[] readTable(Entry x) throws IOException {
        byte[] t = read(x.tableOffset(), x.tableSize() * 8);
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(t);
        long[] out = new long[x.tableSize()];
        for (int i = 0; i < out.length; i++) {
            out[i] = bb.getLong(i * 8);
        }
        return out;
    }

    // ---- save ---------------------------------------------------------------------------------

    @Override
    public void saveLayout(List<DirtyBitmap> bitmaps) throws IOException {
        if (readOnly) {
            refuseChangeWhenReadOnly(bitmaps);
            return;
        }
        List<Entry> next = keptForeign();
        Map<String, Entry> mine = new LinkedHashMap<>();
        for (DirtyBitmap b : bitmaps) {
            Entry old = ours.get(b.bitmapName());
            int flags = Qcow2Bitmaps.FLAG_IN_USE | (b.isRecording() ? Qcow2Bitmaps.FLAG_AUTO : 0);
            if (old != null && !b.isConsistent()) {
                flags = old.flags() | Qcow2Bitmaps.FLAG_IN_USE; // kept as qemu keeps it: only in use
            }
            // An existing bitmap keeps its table: while in use its bits don't count.
            Entry e = old != null ? old.withFlags(flags) : emptyTable(b, flags);
            next.add(e);
            mine.put(b.bitmapName(), e);
        }
        commit(next, mine, freesOfRemoved(mine));
    }

    @Override
    public void closeClean(List<DirtyBitmap> bitmaps) throws IOException {
        if (readOnly) {
            return;
        }
        // Nothing written since the open: the foreign bitmaps' bits are still right, so they go
        // back as they were loaded, rather than in use (which makes qemu drop them for good).
        List<Entry> next = dev.changedSinceOpen() ? keptForeign() : new ArrayList<>(foreign);
        Map<String, Entry> mine = new LinkedHashMap<>();
        List<Long> frees = freesOfRemoved(bitmaps.stream().map(DirtyBitmap::bitmapName)
                .collect(java.util.stream.Collectors.toSet()));
        for (DirtyBitmap b : bitmaps) {
            Entry old = ours.get(b.bitmapName());
            Entry e;
            if (!b.isConsistent()) {
                // qemu keeps an inconsistent bitmap's entry as it is, still in use.
                e = old != null ? old.withFlags(old.flags() | Qcow2Bitmaps.FLAG_IN_USE)
                        : emptyTable(b, Qcow2Bitmaps.FLAG_IN_USE);
            } else {
                e = writeBitmap(b, b.isRecording() ? Qcow2Bitmaps.FLAG_AUTO : 0);
                if (old != null) {
                    frees.addAll(clustersOf(old));
                }
            }
            next.add(e);
            mine.put(b.bitmapName(), e);
        }
        commit(next, mine, frees);
    }

    /**
     * The foreign entries as they go on disk: a recording one in use (biostack's writes don't
     * reach its bits); a disabled one as it was loaded, since no write changes a disabled
     * bitmap (qcow2.rst, "auto"): marking it in use would make qemu drop bits that are right.
     */
    private List<Entry> keptForeign() {
        List<Entry> next = new ArrayList<>();
        for (Entry f : foreign) {
            next.add((f.flags() & Qcow2Bitmaps.FLAG_AUTO) != 0 ? f.withFlags(f.flags() | Qcow2Bitmaps.FLAG_IN_USE) : f);
        }
        return next;
    }

    private List<Long> freesOfRemoved(Iterable<String> keep) {
        Set<String> k = new HashSet<>();
        keep.forEach(k::add);
        List<Long> frees = new ArrayList<>();
        for (Entry old : ours.values()) {
            if (!k.contains(old.name())) {
                frees.addAll(clustersOf(old));
            }
        }
        return frees;
    }

    private List<Long> freesOfRemoved(Map<String, Entry> keep) {
        return freesOfRemoved(keep.keySet());
    }

    private void refuseChangeWhenReadOnly(List<DirtyBitmap> bitmaps) throws IOException {
        Set<String> now = new HashSet<>();
        for (DirtyBitmap b : bitmaps) {
            now.add(b.bitmapName());
        }
        if (!now.equals(ours.keySet())) {
            throw new IOException(dev.name() + " is read-only: its persistent bitmaps can't be added or removed");
        }
    }

    /**
     * Writes the directory {@code next} to new clusters, then switches the header to it and
     * frees the old directory and {@code frees} (see {@link Qcow2Device#commitHeader}).
     */
    private void commit(List<Entry> next, Map<String, Entry> mine, List<Long> frees) throws IOException {
        if (next.equals(written) && frees.isEmpty() && headerCurrent) {
            ours = mine;
            return;
        }
        if (frees.isEmpty() && sameButFlags(next, written)) {
            commitInPlace(next, mine);
            return;
        }
        if (next.size() > Qcow2Bitmaps.MAX_BITMAPS) {
            throw new IOException("an image holds at most " + Qcow2Bitmaps.MAX_BITMAPS + " bitmaps");
        }
        Ext nextExt = null;
        List<Long> free = new ArrayList<>(frees);
        if (!next.isEmpty()) {
            byte[] dir = Qcow2Bitmaps.encodeDirectory(next);
            if (dir.length > Qcow2Bitmaps.MAX_DIRECTORY_SIZE) {
                throw new IOException("the bitmap directory would be " + dir.length + " bytes (at most "
                        + Qcow2Bitmaps.MAX_DIRECTORY_SIZE + ")");
            }
            int clusters = (dir.length + cs - 1) / cs;
            long at = dev.allocateClusters(clusters);
            try (Arena a = Arena.ofShared()) {
                MemorySegment m = Qcow2Cache.ioMemory((long) clusters * cs, a);
                m.fill((byte) 0);
                MemorySegment.copy(dir, 0, m, ValueLayout.JAVA_BYTE, 0, dir.length);
                join(container.write(at, m), "write the bitmap directory");
            }
            nextExt = new Ext(next.size(), dir.length, at);
        }
        if (ext != null) {
            for (long o = ext.dirOffset(); o < ext.dirOffset() + ext.dirSize(); o += cs) {
                free.add(o);
            }
        }
        Ext e = nextExt;
        join(dev.commitHeader(h -> withBitmaps(h, e), free), "switch the header to the new bitmap directory");
        ext = nextExt;
        written = List.copyOf(next);
        ours = mine;
        headerCurrent = true;
        writes++;
    }

    /** Whether {@code a} is {@code b} but for flags: a directory of the same bytes' size. */
    private boolean sameButFlags(List<Entry> a, List<Entry> b) {
        if (ext == null || a.isEmpty() || a.size() != b.size()) {
            return false;
        }
        for (int i = 0; i < a.size(); i++) {
            if (!a.get(i).withFlags(0).equals(b.get(i).withFlags(0))) {
                return false;
            }
        }
        return true;
    }

    /**
     * Only flags change (marking in use at open, enable, disable): the directory is rewritten
     * where it is, as qemu's {@code update_ext_header_and_dir_in_place} does, so that no cluster
     * is allocated. The autoclear bit is clear on disk while it is rewritten (qemu then ignores
     * the bitmaps: a crash in between loses them, never trusts a torn directory); the header sets
     * the bit again once the directory is durable.
     */
    private void commitInPlace(List<Entry> next, Map<String, Entry> mine) throws IOException {
        if (headerCurrent) {
            join(dev.commitHeader(h -> h.withFeatures(h.incompatibleFeatures(), h.compatibleFeatures(),
                    h.autoclearFeatures() & ~Qcow2Header.AUTOCLEAR_BITMAPS), List.of()), "clear the bitmaps bit");
            headerCurrent = false;
        }
        byte[] dir = Qcow2Bitmaps.encodeDirectory(next);
        int clusters = (dir.length + cs - 1) / cs; // the directory's clusters are its own (qemu allocates them so)
        try (Arena a = Arena.ofShared()) {
            MemorySegment m = Qcow2Cache.ioMemory((long) clusters * cs, a);
            m.fill((byte) 0);
            MemorySegment.copy(dir, 0, m, ValueLayout.JAVA_BYTE, 0, dir.length);
            long end = ext.dirOffset() + (long) clusters * cs;
            if (end > container.size()) {
                // qemu-img leaves the file's last cluster (often the directory) short: the
                // cluster is ours, so the container grows to hold all of it
                io.biostack.block.Resizable.grow(container, end);
            }
            join(container.write(ext.dirOffset(), m), "rewrite the bitmap directory");
        }
        Ext e = ext;
        join(dev.commitHeader(h -> withBitmaps(h, e), List.of()), "set the bitmaps bit again");
        written = List.copyOf(next);
        ours = mine;
        headerCurrent = true;
        writes++;
    }

    /** {@code h} with this bitmaps extension (or none) and autoclear bit 0 to match. */
    private static Qcow2Header withBitmaps(Qcow2Header h, Ext e) {
        List<Qcow2Header.Extension> exts = new ArrayList<>();
        for (Qcow2Header.Extension x : h.extensions()) {
            if (x.type() != Qcow2Header.EXT_BITMAPS) {
                exts.add(x);
            }
        }
        long auto = h.autoclearFeatures() & ~Qcow2Header.AUTOCLEAR_BITMAPS;
        if (e != null) {
            exts.add(new Qcow2Header.Extension(Qcow2Header.EXT_BITMAPS, e.encode()));
            auto |= Qcow2Header.AUTOCLEAR_BITMAPS;
        }
        return h.withExtensions(exts).withFeatures(h.incompatibleFeatures(), h.compatibleFeatures(), auto);
    }

    /** A table of zero entries (an empty bitmap) for a bitmap new to the image. */
    private Entry emptyTable(DirtyBitmap b, int flags) throws IOException {
        int gbits = Long.numberOfTrailingZeros(b.granularity());
        int size = (int) Qcow2Bitmaps.tableSize(virtualSize, gbits, cs);
        int clusters = (int) (((long) size * 8 + cs - 1) / cs);
        long at = dev.allocateClusters(clusters);
        try (Arena a = Arena.ofShared()) {
            MemorySegment m = Qcow2Cache.ioMemory((long) clusters * cs, a);
            m.fill((byte) 0);
            join(container.write(at, m), "write bitmap " + b.bitmapName() + "'s table");
        }
        return new Entry(b.bitmapName(), at, size, flags, gbits);
    }

    /** Writes {@code b}'s bits to new data clusters (none for all-zero ones) and a new table. */
    private Entry writeBitmap(DirtyBitmap b, int flags) throws IOException {
        int gbits = Long.numberOfTrailingZeros(b.granularity());
        int size = (int) Qcow2Bitmaps.tableSize(virtualSize, gbits, cs);
        long[] words = b.words();
        long[] table = new long[size];
        int perCluster = cs / 8;
        List<CompletableFuture<Void>> inFlight = new ArrayList<>();
        try (Arena a = Arena.ofShared()) {
            try {
                for (int i = 0; i < size; i++) {
                    int w0 = i * perCluster;
                    int n = Math.max(0, Math.min(perCluster, words.length - w0));
                    boolean zero = true;
                    for (int j = 0; j < n && zero; j++) {
                        zero = words[w0 + j] == 0;
                    }
                    if (zero) {
                        continue; // entry 0: all zeros, no cluster (qcow2.rst, "Bitmap table")
                    }
                    long at = dev.allocateClusters(1);
                    MemorySegment m = Qcow2Cache.ioMemory(cs, a);
                    m.fill((byte) 0);
                    for (int j = 0; j < n; j++) {
                        m.set(LE64, j * 8L, words[w0 + j]);
                    }
                    inFlight.add(container.write(at, m));
                    table[i] = at;
                    if (inFlight.size() >= WRITES_IN_FLIGHT) {
                        joinAll(inFlight, "write bitmap " + b.bitmapName() + "'s data");
                    }
                }
                int clusters = (int) (((long) size * 8 + cs - 1) / cs);
                long tableAt = dev.allocateClusters(clusters);
                MemorySegment t = Qcow2Cache.ioMemory((long) clusters * cs, a);
                t.fill((byte) 0);
                for (int i = 0; i < size; i++) {
                    t.set(BE64, i * 8L, table[i]);
                }
                inFlight.add(container.write(tableAt, t));
                joinAll(inFlight, "write bitmap " + b.bitmapName() + "'s data and table");
                return new Entry(b.bitmapName(), tableAt, size, flags, gbits);
            } finally {
                // Never close the arena under a write in flight.
                CompletableFuture.allOf(inFlight.toArray(CompletableFuture[]::new)).exceptionally(t -> null).join();
            }
        }
    }

    /** The clusters an entry holds: its table's and its data's (what its table names, checked). */
    private List<Long> clustersOf(Entry x) {
        List<Long> out = new ArrayList<>();
        long csize = container.size(); // the file's end, its last part sector shown
        try {
            long[] table = readTable(x);
            for (int i = 0; i < table.length; i++) {
                long off;
                try {
                    off = Qcow2Bitmaps.checkTableEntry(table[i], cs, csize, "entry " + i);
                } catch (Qcow2Exception e) {
                    continue; // not ours to free: a leak at worst
                }
                if (off != 0) {
                    out.add(off);
                }
            }
        } catch (IOException e) {
            // The table can't be read: its data clusters leak (qemu-img check -r leaks reclaims them).
        }
        for (long o = x.tableOffset(); o < x.tableOffset() + (long) x.tableSize() * 8; o += cs) {
            out.add(o);
        }
        return out;
    }

    // ---- the rest of the contract -------------------------------------------------------------

    /**
     * Always false: a qcow2 bitmap open read-write is marked in use, and a crash makes it
     * inconsistent, so its bits need not be durable before their writes (qemu's model).
     *
     * @return false
     */
    @Override
    public boolean durableWords() {
        return false;
    }

    /**
     * Never called ({@link #durableWords()} is false): refuses, rather than pretend the words
     * are durable.
     *
     * @param b     a bitmap
     * @param first first word
     * @param last  last word
     * @throws IOException always
     */
    @Override
    public void saveWords(DirtyBitmap b, int first, int last) throws IOException {
        throw new IOException("qcow2 bitmaps are not saved word by word: the in_use flag covers a crash");
    }

    @Override
    public void checkPersistent(String name, long granularity, long deviceSize) {
        if (readOnly) {
            throw new IllegalArgumentException(dev.name() + " is read-only: a persistent bitmap can't be added to"
                    + " its image");
        }
        if (name.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > Qcow2Bitmaps.MAX_NAME_SIZE) {
            throw new IllegalArgumentException("a qcow2 bitmap's name has at most " + Qcow2Bitmaps.MAX_NAME_SIZE
                    + " bytes");
        }
        // qemu's check_constraints_on_bitmap: the bits must fit its table and memory limits.
        long bits = (deviceSize + granularity - 1) / granularity;
        long bytes = (bits + 7) / 8;
        if (bytes > Qcow2Bitmaps.MAX_PHYS_SIZE || bytes > (long) Qcow2Bitmaps.MAX_TABLE_SIZE * cs) {
            throw new IllegalArgumentException("a bitmap of granularity " + granularity + " takes too much space in"
                    + " the image; use a larger granularity");
        }
    }

    /**
     * Returns the cluster size: the unit in which bits are written.
     *
     * @return 64-bit words per cluster
     */
    @Override
    public int wordsPerBlock() {
        return cs / 8;
    }

    /**
     * Returns how many times the bitmap directory was written (a mark in use, a change to the
     * set of bitmaps, a clean close).
     *
     * @return directory writes so far
     */
    @Override
    public long metadataWrites() {
        return writes;
    }

    @Override
    public String describe() {
        return "qcow2=" + dev.name();
    }

    /** Nothing to release: the image belongs to its device. */
    @Override
    public void close() {
    }

    // ---- I/O helpers (blocking; never on the I/O path) ---------------------------------------

    /**
     * Reads {@code len} bytes at {@code off}. The container shows the file's last part sector
     * (the device asked it to at open), where qemu leaves its directory after
     * {@code qemu-img bitmap}. Past that, a read-write store grows the container to the cluster's
     * end; a read-only one refuses the read rather than read zeros (zeros would be clean bits).
     */
    private byte[] read(long off, int len) throws IOException {
        if (off + len > container.size()) {
            if (readOnly) {
                throw new Qcow2Exception("bytes " + off + " to " + (off + len) + " lie past the end of the image ("
                        + container.size() + " bytes)");
            }
            io.biostack.block.Resizable.grow(container, (off + len + cs - 1) & -(long) cs);
        }
        return readContainer(off, len);
    }

    /** Reads {@code len} bytes at {@code off}; bytes past the container's end are left zero. */
    private byte[] readContainer(long off, int len) throws IOException {
        byte[] out = new byte[len];
        long start = off & ~511L;
        long end = Math.min((off + len + 511) & ~511L, container.size() & ~511L);
        if (end <= off) {
            return out;
        }
        try (Arena a = Arena.ofShared()) {
            MemorySegment m = Qcow2Cache.ioMemory(end - start, a);
            join(container.read(start, m), "read the image at " + off);
            MemorySegment.copy(m, ValueLayout.JAVA_BYTE, off - start, out, 0, (int) Math.min(len, end - off));
            return out;
        }
    }

    private void join(CompletableFuture<Void> f, String what) throws IOException {
        try {
            f.join();
        } catch (CompletionException e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            throw new IOException(dev.name() + ": can't " + what + ": " + c.getMessage(), c);
        }
    }

    private void joinAll(List<CompletableFuture<Void>> fs, String what) throws IOException {
        try {
            join(CompletableFuture.allOf(fs.toArray(CompletableFuture[]::new)), what);
        } finally {
            // allOf completes only when every one has: none is in flight now.
            CompletableFuture.allOf(fs.toArray(CompletableFuture[]::new)).exceptionally(t -> null).join();
            fs.clear();
        }
    }
}
