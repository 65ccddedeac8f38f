package io.biostack.layer.qcow2;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioFlags;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.ImageLocking;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Resizable;
import io.biostack.block.Status;
import io.biostack.block.StatusContext;
import io.biostack.layer.Target;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

import static io.biostack.layer.qcow2.Qcow2Header.OFFSET_MASK;
import static io.biostack.layer.qcow2.Qcow2Header.OFLAG_COMPRESSED;
import static io.biostack.layer.qcow2.Qcow2Header.OFLAG_COPIED;
import static io.biostack.layer.qcow2.Qcow2Header.OFLAG_ZERO;

/**
 * A qcow2 image as a block device (qemu's {@code block/qcow2.c}, {@code qcow2-cluster.c}):
 * the virtual disk of the image held in {@code container}, with an optional backing device.
 *
 * <p>Table: {@code qcow2 DEV [backing=NAME|none] [l2-cache-size=SIZE] [read-only]}.
 *
 * <h2>The I/O path</h2>
 * A bio is cut at cluster (or subcluster) boundaries, and runs of the same kind are sent on as
 * one piece: data goes to the container (or the external data file) as a remapped split bio,
 * holes go to the backing device (zeros past its end), zero clusters are filled in memory,
 * compressed clusters are read and inflated. When an L2 table is not cached, it is read with a
 * bio and the bio goes on in that read's callback: no thread waits.
 *
 * <h2>Writes</h2>
 * A write to a cluster that is allocated with its COPIED flag goes to its place. Anything else
 * (a hole, a zero cluster, a compressed cluster, a cluster shared with an internal snapshot)
 * allocates a new cluster at the end of the container, writes the whole cluster (the old
 * content merged with the new data, from the backing file where there was none: qemu's COW
 * merge; on extended-L2 images only the subclusters written), and changes the L2 entry when
 * that write has completed. Other writes to that cluster wait for it, so it is allocated once.
 * Metadata reaches the disk only through {@link Qcow2Writeback}, in qemu's order.
 *
 * <p>Ownership: the device does not own {@code container}, the data file or the backing device
 * given to it; it owns backing devices it opened itself from the header's name (closed with it).
 * State shared between threads sits behind one metadata monitor, held for in-memory work only.
 */
public final class Qcow2Device implements Target {
    private static final System.Logger LOG = System.getLogger(Qcow2Device.class.getName());
    /** qemu's default upper bound of the L2 cache (DEFAULT_L2_CACHE_MAX_SIZE). */
    public static final long DEFAULT_MAX_L2_CACHE = 32L << 20;

    /**
     * Where metadata loads asked for outside the I/O path (block status, img map) are submitted:
     * a thread that is never an NBD reactor, so the caller may wait for them.
     */
    private static final java.util.concurrent.Executor METADATA_LOADER = java.util.concurrent.Executors.newSingleThreadExecutor(
            Thread.ofPlatform().daemon().name("qcow2-metadata").factory());
    private static final long GROW_STEP = 8L << 20;

    private final String name;
    private final BlockDevice container;
    private final BlockDevice dataFile;
    private final BlockDevice backing;
    private final List<BlockDevice> owned;
    private final boolean readOnly;
    private final QueueLimits limits;
    private final Object meta = new Object();
    private final Arena arena = Arena.ofShared();
    /**
     * Cluster-sized buffers for the copy-on-write merge of an allocating write, reused: a fresh
     * native allocation (malloc, and the JDK zeroing 64 KiB) per allocating write cost more than
     * the write itself (JFR: 54% of the CPU of 4k random writes on an empty image). When all are
     * in use, one is allocated for that write alone.
     */
    private final io.biostack.block.MpmcRing<MemorySegment> cowBuffers = new io.biostack.block.MpmcRing<>(COW_BUFFERS);
    /** Copy-on-write buffers kept: enough for a queue depth of 64 allocating at once. */
    private static final int COW_BUFFERS = 64;
    private Qcow2Header header;
    private final int cs;
    private final int clusterBits;
    private final int l2Entries;
    private final boolean extL2;
    private final int subBits;
    /**
     * The L1 table. Written under the monitor with release ({@link #setL1}), read by lock-free
     * lookups with acquire: a reader sees an entry whole, never half of a new one.
     */
    private final long[] l1;
    private static final VarHandle L1 = MethodHandles.arrayElementVarHandle(long[].class);
    /** log2 of {@link #l2Entries}. */
    private final int l2Bits;
    private final boolean[] l1Dirty;
    private final Qcow2Cache cache;
    private final Map<Long, List<Bio>> inflight = new HashMap<>();
    private final List<Long> pendingFrees = new ArrayList<>();
    /**
     * Host clusters (by byte offset) whose refcount is 0 and that allocation takes before growing
     * the container, lowest first (qemu's alloc_clusters_noref scans from the start too). Monitor.
     */
    private final java.util.TreeSet<Long> freeClusters = new java.util.TreeSet<>();
    /** Clusters freed by the last writeback: reusable once the next one has completed. Monitor. */
    private List<Long> quarantine = new ArrayList<>();
    /** Bound of the open-time scan for clusters with refcount 0 below the end. */
    private static final int MAX_FREE_SCAN = 1 << 16;
    private long nextFree;
    private boolean flushing;
    private final ArrayDeque<Bio> flushWaiters = new ArrayDeque<>();
    private final String tableLine;

    private Qcow2Device(String name, BlockDevice container, BlockDevice dataFile, BlockDevice backing,
                        List<BlockDevice> owned, boolean readOnly, Qcow2Header h, long[] l1, long cacheBytes,
                        String tableLine) {
        this.name = name;
        this.container = container;
        this.dataFile = dataFile;
        this.backing = backing;
        this.owned = owned;
        this.readOnly = readOnly;
        this.header = h;
        this.cs = h.clusterSize();
        this.clusterBits = h.clusterBits();
        this.l2Entries = h.l2Entries();
        this.extL2 = h.extendedL2();
        this.subBits = clusterBits - 5;
        this.l1 = l1;
        this.l1Dirty = new boolean[l1.length];
        this.l2Bits = Integer.numberOfTrailingZeros(l2Entries);
        this.cache = new Qcow2Cache(container, cs, cacheBytes, l1.length);
        this.tableLine = tableLine;
        this.limits = QueueLimits.builder().logicalBlockSize(512).physicalBlockSize(512)
                .dmaAlignment(container.limits().dmaAlignment()).maxBytes(Math.max(1L << 20, cs))
                .maxSegments(Integer.MAX_VALUE).maxSegmentSize(Long.MAX_VALUE)
                .maxDiscardBytes(readOnly ? 0 : 1L << 30).maxWriteZeroesBytes(readOnly ? 0 : 1L << 30)
                .discardGranularity(cs).build();
    }

    // The refcounts need the arena and the container; built right after the constructor.
    private Qcow2Refcounts refcounts;

    /**
     * How a qcow2 device finds the backing files its header names (the stack opens files, the
     * layer does not): {@code open(path, format)} returns a read-only device.
     */
    @FunctionalInterface
    public interface BackingOpener {
        /**
         * Opens a backing file or data file named by the image.
         *
         * @param path   the backing file's path, resolved against the image's folder
         * @param format "raw" or "qcow2" (from the header's backing format, or probed)
         * @return the device, which the qcow2 device then owns
         * @throws IOException when it cannot be opened
         */
        BlockDevice open(java.nio.file.Path path, String format) throws IOException;
    }

    /**
     * Options of {@link #open}.
     *
     * @param readOnly       open read-only (a corrupt image is opened read-only anyway)
     * @param l2CacheBytes   the L2 cache's bound, or -1 for qemu's rule
     * @param backing        a backing device given by the table ({@code backing=NAME}), or null
     * @param noBacking      true for {@code backing=none}: holes read as zeros
     * @param imagePath      the image file's path, to resolve relative backing names; null when
     *                       the container is not a file (then the header's backing needs
     *                       {@code backing=})
     * @param opener         opens backing files and data files by path; null when none may be
     * @param tableLine      the table arguments to show in {@code dm table}
     */
    public record Options(boolean readOnly, long l2CacheBytes, BlockDevice backing, boolean noBacking,
                          java.nio.file.Path imagePath, BackingOpener opener, String tableLine) {
    }

    /**
     * Opens the image in {@code container}: checks the header, the L1 and refcount tables, opens
     * the backing chain and the data file, and on a read-write open clears unknown autoclear
     * bits (the bitmaps bit too, until a {@link Qcow2BitmapStore} attaches, marks the bitmaps in
     * use and sets it again) and rebuilds refcounts when the dirty bit is set. Blocking; not on the I/O path.
     *
     * @param name      the device's name
     * @param container the image's container (not owned)
     * @param o         options
     * @return the device
     * @throws IOException    when reading the container or opening a backing file fails
     * @throws Qcow2Exception when the image is bad, naming what is wrong
     * @throws IllegalStateException when another qcow2 device has {@code container} open (until it closes)
     */
    public static Qcow2Device open(String name, BlockDevice container, Options o) throws IOException {
        return open(name, container, o, new java.util.HashSet<>());
    }

    /**
     * The containers open as qcow2 images, each with the claim of the device that has it. A
     * qcow2 device keeps the image's metadata (L1 table, refcounts, free clusters) in memory: a
     * second one on the same container would allocate the clusters the first allocated after it
     * read them, and each would write its own tables back over the other's (a flushed write read
     * as zeros after a reload onto the live image). qemu's image locking refuses the same.
     * Identity: the same container object, whoever opens it (a stack's table, serve, a library user).
     */
    private static final Map<BlockDevice, Claim> IN_USE = java.util.Collections.synchronizedMap(new java.util.IdentityHashMap<>());

    /** One device's hold on its container in {@link #IN_USE}; identity, so only its holder removes it. */
    private static final class Claim {
        final String name;

        Claim(String name) {
            this.name = name;
        }
    }

    private Claim claim;
    /** qemu's locks on the container's file, given back at close before the container may close. */
    private ImageLocking.Held lock = ImageLocking.NONE;

    private static Qcow2Device open(String name, BlockDevice container, Options o, java.util.Set<java.nio.file.Path> chain)
            throws IOException {
        Claim c = new Claim(name);
        Claim user = IN_USE.putIfAbsent(container, c);
        if (user != null) {
            // a state of the stack, not of the image: refused the way a busy device is
            throw new IllegalStateException("the qcow2 image on " + container.name() + " is open already in "
                    + user.name + " (in a live or a loaded table); a second qcow2 device on it would allocate the"
                    + " clusters the first allocates meanwhile and overwrite its tables: load another table into "
                    + user.name + " and resume it, or clear its loaded table, first");
        }
        ImageLocking.Held lock = ImageLocking.NONE;
        try {
            // qemu's locks on the image's file, before anything is read: a qemu or another
            // biostack writing it is refused here, and they are refused while this device has it
            lock = ImageLocking.lock(container, !(o.readOnly() || container.isReadOnly()));
            Qcow2Device d = openClaimed(name, container, o, chain);
            d.claim = c;
            d.lock = lock;
            return d;
        } catch (IOException | RuntimeException e) {
            lock.close();
            IN_USE.remove(container, c);
            throw e;
        }
    }

    private static Qcow2Device openClaimed(String name, BlockDevice container, Options o, java.util.Set<java.nio.file.Path> chain)
            throws IOException {
        int lbs = container.limits().logicalBlockSize();
        if (lbs > 512) {
            // Metadata is read and written in 512-byte sectors (an L1 table of one entry, the
            // header): such a container refuses them, so the open or the first flush would fail.
            throw new Qcow2Exception(name + ": a qcow2 container must take 512-byte I/O; "
                    + container.name() + " has " + lbs + "-byte logical blocks (give it 512-byte sectors)");
        }
        long whole = container.size();
        showWholeLastSector(name, container);
        long csize = container.size();
        // the header from whole sectors: a file cut inside it is called truncated, not read as zeros
        byte[] first = readBytes(container, 0, (int) Math.min(whole, 1L << Qcow2Header.MAX_CLUSTER_BITS));
        Qcow2Header h = Qcow2Header.parse(first, csize);
        checkTablesAtOpen(container, h, csize);
        boolean ro = o.readOnly() || container.isReadOnly();
        if (h.isCorrupt() && !ro) {
            LOG.log(System.Logger.Level.WARNING, name + ": the image is marked corrupt; opening it read-only"
                    + " (repair it with qemu-img check -r all)");
            ro = true;
        }
        long[] l1 = new long[h.l1Size()];
        if (h.l1Size() > 0) {
            byte[] b = readBytes(container, h.l1TableOffset(), h.l1Size() * 8);
            ByteBuffer bb = ByteBuffer.wrap(b);
            for (int i = 0; i < l1.length; i++) {
                l1[i] = bb.getLong(i * 8);
            }
        }
        long[] reft = new long[(int) ((long) h.refcountTableClusters() * h.clusterSize() / 8)];
        ByteBuffer rb = ByteBuffer.wrap(readBytes(container, h.refcountTableOffset(), reft.length * 8));
        for (int i = 0; i < reft.length; i++) {
            reft[i] = rb.getLong(i * 8);
        }
        List<BlockDevice> owned = new ArrayList<>();
        BlockDevice backing = null;
        BlockDevice data = null;
        try {
            if (o.backing() != null) {
                backing = o.backing();
            } else if (!o.noBacking() && h.backingFile() != null) {
                backing = openBacking(name, h, o, chain);
                owned.add(backing);
            }
            if (h.hasDataFile()) {
                if (o.opener() == null || o.imagePath() == null) {
                    throw new Qcow2Exception(name + ": the image keeps its data in '" + h.dataFileName()
                            + "', which can be opened only when the image is a file");
                }
                java.nio.file.Path p = resolve(o.imagePath(), h.dataFileName());
                data = o.opener().open(p, ro ? "raw-ro" : "raw");
                owned.add(data);
            }
            long cacheBytes = o.l2CacheBytes() > 0 ? o.l2CacheBytes() : defaultCacheBytes(h);
            Qcow2Device d = new Qcow2Device(name, container, data, backing, owned, ro, h, l1, cacheBytes,
                    o.tableLine() == null ? container.name() : o.tableLine());
            d.refcounts = new Qcow2Refcounts(container, h, reft, d.arena);
            d.refcounts.loadAll(csize);
            d.checkL1(csize);
            d.nextFree = Math.max(d.refcounts.lastUsedCluster() + 1, 1) << h.clusterBits();
            d.nextFree = Math.max(d.nextFree, (csize + h.clusterSize() - 1) & -(long) h.clusterSize());
            if (backing != null && !(backing instanceof Qcow2Device) && o.backing() == null) {
                // a raw backing file opened here: its last part sector, as qemu reads it
                showWholeLastSector(name, backing);
            }
            if (!ro) {
                d.openReadWrite();
                if (h.isDirty()) {
                    try {
                        d.rebuildRefcounts();
                    } catch (IOException | RuntimeException e) {
                        // nothing in flight: the device's own memory goes with the failed open
                        d.cache.close();
                        d.arena.close();
                        throw e;
                    }
                }
                // after a rebuild: stale refcounts must never offer a cluster in use
                d.scanFreeClusters();
            }
            return d;
        } catch (IOException | RuntimeException e) {
            for (BlockDevice b : owned) {
                b.close();
            }
            throw e;
        }
    }

    /** qemu's rule: enough L2 cache to map the whole image, at most 32 MiB, at least 2 tables. */
    static long defaultCacheBytes(Qcow2Header h) {
        long tables = (h.size() + ((long) h.clusterSize() * h.l2Entries()) - 1) / ((long) h.clusterSize() * h.l2Entries());
        return Math.max(2L * h.clusterSize(), Math.min(DEFAULT_MAX_L2_CACHE, tables * h.clusterSize()));
    }

    private static java.nio.file.Path resolve(java.nio.file.Path image, String name) {
        java.nio.file.Path p = java.nio.file.Path.of(name);
        if (p.isAbsolute()) {
            return p;
        }
        java.nio.file.Path dir = image.toAbsolutePath().getParent();
        return dir == null ? p : dir.resolve(p);
    }

    private static BlockDevice openBacking(String name, Qcow2Header h, Options o, java.util.Set<java.nio.file.Path> chain)
            throws IOException {
        if (o.opener() == null || o.imagePath() == null) {
            throw new Qcow2Exception(name + ": the image names backing file '" + h.backingFile()
                    + "'; give backing=NAME or backing=none (the container is not a file)");
        }
        java.nio.file.Path self = o.imagePath().toAbsolutePath().normalize();
        chain.add(self);
        java.nio.file.Path p = resolve(o.imagePath(), h.backingFile()).toAbsolutePath().normalize();
        if (chain.contains(p)) {
            throw new Qcow2Exception(name + ": loop in the backing chain: " + p + " is already in it");
        }
        if (chain.size() > 64) {
            throw new Qcow2Exception(name + ": backing chain deeper than 64 images");
        }
        String fmt = h.backingFormat();
        BlockDevice raw = o.opener().open(p, "raw-ro");
        if (fmt == null) {
            byte[] m = readBytes(raw, 0, (int) Math.min(512, raw.size()));
            fmt = Qcow2Header.hasMagic(m) ? "qcow2" : "raw";
        }
        switch (fmt) {
            case "raw":
                return raw;
            case "qcow2":
                try {
                    Qcow2Device q = open(name + "-backing", raw, new Options(true, o.l2CacheBytes(), null, false, p,
                            o.opener(), p.toString()), chain);
                    q.owned.add(raw);
                    return q;
                } catch (Qcow2Exception e) {
                    raw.close();
                    if (e.getMessage() != null && e.getMessage().startsWith(name + "-backing: ")) {
                        throw e; // a file deeper in the chain, named already
                    }
                    // the header of this backing file: say which file, or the top image seems bad
                    throw new Qcow2Exception(name + ": backing file " + p + ": " + e.getMessage(), e);
                } catch (IOException | RuntimeException e) {
                    raw.close();
                    throw e;
                }
            default:
                raw.close();
                throw new Qcow2Exception(name + ": backing format '" + fmt + "' is not supported (raw, qcow2)");
        }
    }

    /** Reads bytes at open (blocking); what lies past the container's end reads as zeros. */
    private static byte[] readBytes(BlockDevice dev, long off, int len) throws IOException {
        byte[] out = new byte[len];
        long start = off & ~511L;
        long end = Math.min((off + len + 511) & ~511L, dev.size() & ~511L);
        if (end <= off) {
            return out;
        }
        try (Arena a = Arena.ofShared()) {
            MemorySegment m = dev.allocateIoMemory(end - start, a);
            dev.read(start, m).join();
            MemorySegment.copy(m, ValueLayout.JAVA_BYTE, off - start, out, 0, (int) Math.min(len, end - off));
            return out;
        } catch (java.util.concurrent.CompletionException e) {
            throw new IOException("cannot read " + dev.name() + " at " + off + ": " + e.getCause().getMessage(), e);
        }
    }

    /**
     * What qemu's {@code qcow2_do_open} refuses beyond the header itself: an L1 table that starts
     * past the end of the image, a snapshot table or a bitmap directory that is bad (the same
     * parsers as {@code img info}'s, so the device and the tools refuse the same images). The
     * bound is the container's size, its last part sector shown ({@link #showWholeLastSector}),
     * as qemu's is the file's length in whole sectors, rounded up.
     */
    private static void checkTablesAtOpen(BlockDevice container, Qcow2Header h, long csize) throws IOException {
        long bound = csize;
        if (h.l1Size() > 0 && h.l1TableOffset() > csize) {
            throw new Qcow2Exception("L1 table at 0x" + Long.toHexString(h.l1TableOffset())
                    + " starts past the end of the image (" + csize + " bytes)");
        }
        Qcow2Image.Source src = (off, len) -> readBytes(container, off, len);
        Qcow2Image.readSnapshotTable(src, bound, h);
        Qcow2Image.readBitmapDirectory(src, bound, h);
    }

    /**
     * qemu ends a file mid-sector (a compressed last cluster, a bitmap directory written without
     * padding, an odd-sized raw backing file) and sizes it in whole sectors, rounded up (block.c
     * {@code bdrv_refresh_total_sectors}), while a loop device shows whole sectors only. So the
     * container, and a raw backing file opened here, are asked at open to show that last part
     * sector: a loop device does so without changing the file, reading it as the file's bytes,
     * then zeros ({@link Resizable#showPartBlock}). At open, not from a read's completion, which
     * must not block the ring thread that completes it.
     */
    private static void showWholeLastSector(String name, BlockDevice dev) {
        try {
            Resizable.showPart(dev);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, name + ": cannot show the last part sector of " + dev.name()
                    + ": " + e.getMessage());
        }
    }

    private void checkL1(long csize) {
        for (int i = 0; i < l1.length; i++) {
            long e = l1[i];
            long off = e & OFFSET_MASK;
            if (off != 0 && ((off & (cs - 1)) != 0 || off + cs > csize)) {
                // Not fatal at open: the reads of that range fail with EIO, as qemu does.
                LOG.log(System.Logger.Level.WARNING, name + ": L1 entry " + i + " points past the end or unaligned: "
                        + off);
            }
        }
    }

    /** Read-write open: autoclear bits, the dirty bit (refcount rebuild). */
    private void openReadWrite() throws IOException {
        Qcow2Header h = header;
        // Whether qemu's bitmaps were consistent with the data when we opened (qcow2.rst,
        // "autoclear_features" bit 0); the bitmap store reads them only then.
        bitmapsTrusted = h.version() == 3 && (h.autoclearFeatures() & Qcow2Header.AUTOCLEAR_BITMAPS) != 0;
        if (h.version() == 3 && h.autoclearFeatures() != 0) {
            // Unknown autoclear bits are cleared (qcow2.rst, autoclear). The bitmaps bit too, for
            // now: until a Qcow2BitmapStore attaches and marks the bitmaps in use (and sets the bit
            // again), biostack changes data that no one records, so qemu must see them as stale.
            // A device that no store attaches to (statistics off, a mapped segment) stays so.
            header = h.withFeatures(h.incompatibleFeatures(), h.compatibleFeatures(),
                    h.autoclearFeatures() & Qcow2Header.AUTOCLEAR_DATA_FILE_RAW);
            writeHeader();
        }
    }

    /** Set by {@link #openReadWrite}: the bitmaps bit was set at open. */
    private boolean bitmapsTrusted;

    // ---- the dirty bit: rebuilding the refcounts ------------------------------------------------

    /** qemu's QCOW_MAX_SNAPSHOTS (block/qcow2.h). */
    private static final int MAX_SNAPSHOTS = 65536;
    /** qemu's QCOW_MAX_SNAPSHOTS_SIZE (block/qcow2.h): the snapshot table's largest size. */
    private static final long MAX_SNAPSHOTS_BYTES = 64L << 20;
    /** Fixed part of a snapshot table entry (qcow2.rst, "Snapshot table entry"). */
    private static final int SNAPSHOT_ENTRY_FIXED = 40;
    /** Fixed part of a bitmap directory entry (qcow2.rst, "Bitmap directory"). */
    private static final int BITMAP_ENTRY_FIXED = 24;

    /**
     * The dirty bit is set (lazy refcounts: qemu wrote L2 entries without their refcounts, then
     * stopped): the refcounts on disk may be anything. As qemu's open does ({@code qcow2_do_open}
     * runs {@code qcow2_check} with {@code BDRV_FIX_ERRORS | BDRV_FIX_LEAKS}, then
     * {@code qcow2_mark_clean}): count every reference to every host cluster from the header, the
     * active L1/L2 tables, every snapshot's tables, the snapshot table, the refcount structure and
     * the bitmaps; set every refcount to its count (a refcount block is added where a referenced
     * cluster has none); write the refcount structure through {@link Qcow2Writeback}; and only
     * when that is durable, clear the bit. A crash before that leaves the bit set, and the next
     * open rebuilds again. Blocking; at open only.
     */
    private void rebuildRefcounts() throws IOException {
        long csize = container.size();
        long n = (csize + cs - 1) >>> clusterBits;
        if (n > Integer.MAX_VALUE - 8) {
            throw new Qcow2Exception(name + ": too many clusters to rebuild the refcounts in memory");
        }
        int[] counted = new int[(int) n];
        long[] maxRef = {-1};
        java.util.function.BiConsumer<Long, Long> inc = (off, len) -> {
            if (len <= 0) {
                return;
            }
            for (long c = off >>> clusterBits; c <= (off + len - 1) >>> clusterBits; c++) {
                if (c < n) {
                    counted[(int) c]++;
                }
                maxRef[0] = Math.max(maxRef[0], c);
            }
        };
        inc.accept(0L, (long) cs);
        countL1(header.l1TableOffset(), l1, csize, inc);
        countSnapshots(csize, inc);
        inc.accept(header.refcountTableOffset(), (long) header.refcountTableClusters() * cs);
        for (long e : refcounts.table) {
            if (e != 0) {
                inc.accept(e, (long) cs);
            }
        }
        countBitmaps(csize, inc);
        long max = refcounts.max();
        for (int c : counted) {
            if (max != -1 && Integer.toUnsignedLong(c) > max) {
                throw new Qcow2Exception(name + ": a cluster has " + c + " references, more than refcount_bits="
                        + header.refcountBits() + " holds; repair it with qemu-img check -r all");
            }
        }
        synchronized (meta) {
            nextFree = Math.max(nextFree, Math.max(n, maxRef[0] + 1) << clusterBits);
            refcounts.resetFromCounts(counted);
            for (long c = 0; c < n; c++) {
                if (counted[(int) c] != 0 && !refcounts.hasBlock(c)) {
                    ensureRefBlock(c);
                }
                if (counted[(int) c] != 0) {
                    refcounts.set(c, counted[(int) c]);
                }
            }
            if (nextFree > container.size()) {
                Resizable.grow(container, nextFree);
            }
            List<List<Qcow2Writeback.Write>> stages = List.of(snapshotRefBlocks(), snapshotRefTable(), snapshotHeader());
            try {
                Qcow2Writeback.run(container, stages, List.of(true, true, true)).join();
            } catch (java.util.concurrent.CompletionException e) {
                throw new IOException(name + ": writing the rebuilt refcounts failed: " + e.getCause().getMessage(), e);
            }
            List<Long> frees = new ArrayList<>(pendingFrees);
            pendingFrees.clear();
            for (long c : frees) {
                // a refcount table moved while blocks were added: its old clusters are free now
                refcounts.decrement(c >>> clusterBits);
            }
            List<Qcow2Writeback.Write> after = snapshotRefBlocks();
            if (!after.isEmpty()) {
                Qcow2Writeback.run(container, List.of(after), List.of(true)).join();
            }
        }
        header = header.withFeatures(header.incompatibleFeatures() & ~Qcow2Header.INCOMPAT_DIRTY,
                header.compatibleFeatures(), header.autoclearFeatures());
        writeHeader();
        LOG.log(System.Logger.Level.INFO, name + ": the dirty bit was set (lazy refcounts): refcounts rebuilt from "
                + "the tables, the bit cleared");
    }

    /** Counts an L1 table, its L2 tables and the data they map (qemu's check_refcounts_l1/l2). */
    private void countL1(long l1Off, long[] table, long csize, java.util.function.BiConsumer<Long, Long> inc)
            throws IOException {
        inc.accept(l1Off, (long) table.length * 8);
        for (long l1e : table) {
            long l2off = l1e & OFFSET_MASK;
            if (l2off == 0) {
                continue;
            }
            inc.accept(l2off, (long) cs);
            if ((l2off & (cs - 1)) != 0 || l2off + cs > csize) {
                continue; // counted, not read: reads through it fail with EIO, as in qemu
            }
            ByteBuffer l2 = ByteBuffer.wrap(readBytes(container, l2off, cs));
            int step = extL2 ? 2 : 1;
            for (int j = 0; j < l2Entries; j++) {
                long e = l2.getLong(j * step * 8);
                if ((e & OFLAG_COMPRESSED) != 0) {
                    int x = 62 - (clusterBits - 8);
                    long coff = e & ((1L << x) - 1);
                    long nsec = ((e >>> x) & ((1L << (clusterBits - 8)) - 1)) + 1;
                    inc.accept(coff, nsec * 512 - (coff & 511));
                } else if ((e & OFFSET_MASK) != 0 && dataFile == null) {
                    inc.accept(e & OFFSET_MASK, (long) cs);
                }
            }
        }
    }

    /** Counts the snapshot table and every snapshot's tables (qcow2.rst, "Snapshots"). */
    private void countSnapshots(long csize, java.util.function.BiConsumer<Long, Long> inc) throws IOException {
        int nb = header.nbSnapshots();
        if (nb == 0) {
            return;
        }
        long off = header.snapshotsOffset();
        if (nb > MAX_SNAPSHOTS || (off & (cs - 1)) != 0 || off <= 0 || off >= csize) {
            throw new Qcow2Exception(name + ": the snapshot table (" + nb + " at " + off + ") is invalid");
        }
        long pos = off;
        for (int i = 0; i < nb; i++) {
            if (pos - off + SNAPSHOT_ENTRY_FIXED > MAX_SNAPSHOTS_BYTES || pos + SNAPSHOT_ENTRY_FIXED > csize) {
                throw new Qcow2Exception(name + ": snapshot " + i + " lies past the end of the image");
            }
            ByteBuffer e = ByteBuffer.wrap(readBytes(container, pos, SNAPSHOT_ENTRY_FIXED));
            long l1Off = e.getLong(0);
            long l1Size = Integer.toUnsignedLong(e.getInt(8));
            int idLen = Short.toUnsignedInt(e.getShort(12));
            int nameLen = Short.toUnsignedInt(e.getShort(14));
            long extra = Integer.toUnsignedLong(e.getInt(36));
            if (l1Size * 8 > Qcow2Header.MAX_L1_BYTES || (l1Off & (cs - 1)) != 0 || l1Off + l1Size * 8 > csize) {
                throw new Qcow2Exception(name + ": snapshot " + i + " has an invalid L1 table (" + l1Size + " at "
                        + l1Off + ")");
            }
            ByteBuffer t = ByteBuffer.wrap(readBytes(container, l1Off, (int) (l1Size * 8)));
            long[] sl1 = new long[(int) l1Size];
            for (int k = 0; k < sl1.length; k++) {
                sl1[k] = t.getLong(k * 8);
            }
            countL1(l1Off, sl1, csize, inc);
            pos += (SNAPSHOT_ENTRY_FIXED + extra + idLen + nameLen + 7) & ~7L;
        }
        inc.accept(off, pos - off);
    }

    /** Counts the bitmap directory and the bitmap tables and their data (qcow2.rst, "Bitmaps"). */
    private void countBitmaps(long csize, java.util.function.BiConsumer<Long, Long> inc) throws IOException {
        byte[] ext = header.bitmapsExtension();
        if (ext == null || ext.length < 24) {
            return;
        }
        ByteBuffer x = ByteBuffer.wrap(ext);
        long nb = Integer.toUnsignedLong(x.getInt(0));
        long dirSize = x.getLong(8);
        long dirOff = x.getLong(16);
        if (nb == 0 || dirSize <= 0 || dirSize > MAX_SNAPSHOTS_BYTES || dirOff <= 0 || dirOff + dirSize > csize) {
            return;
        }
        inc.accept(dirOff, dirSize);
        ByteBuffer d = ByteBuffer.wrap(readBytes(container, dirOff, (int) dirSize));
        int pos = 0;
        for (long i = 0; i < nb && pos + BITMAP_ENTRY_FIXED <= dirSize; i++) {
            long tOff = d.getLong(pos);
            long tSize = Integer.toUnsignedLong(d.getInt(pos + 8));
            int nameLen = Short.toUnsignedInt(d.getShort(pos + 18));
            long extra = Integer.toUnsignedLong(d.getInt(pos + 20));
            if ((tOff & (cs - 1)) == 0 && tOff > 0 && tOff + tSize * 8 <= csize && tSize * 8 <= Qcow2Header.MAX_L1_BYTES) {
                inc.accept(tOff, tSize * 8);
                ByteBuffer t = ByteBuffer.wrap(readBytes(container, tOff, (int) (tSize * 8)));
                for (int k = 0; k < tSize; k++) {
                    long e = t.getLong(k * 8) & OFFSET_MASK;
                    if (e != 0) {
                        inc.accept(e, (long) cs);
                    }
                }
            }
            pos += (int) ((BITMAP_ENTRY_FIXED + extra + nameLen + 7) & ~7L);
        }
    }

    private void writeHeader() {
        byte[] enc = header.encode();
        int len = (enc.length + 511) & ~511;
        MemorySegment m = Qcow2Cache.ioMemory(len, arena);
        m.fill((byte) 0);
        MemorySegment.copy(enc, 0, m, ValueLayout.JAVA_BYTE, 0, enc.length);
        container.write(0, m).join();
        container.flush().join();
    }

    // ---- BlockDevice ----------------------------------------------------------------------------

    @Override
    public String name() {
        return name;
    }

    @Override
    public long size() {
        return header.size();
    }

    @Override
    public QueueLimits limits() {
        return limits;
    }

    /**
     * Memory of the device the data goes to (the data file, or the container): a loop device over
     * io_uring hands out buffers registered with its ring, and the fast path passes the caller's
     * bio to it as it is, so a read into such memory needs no page pinning per I/O. With plain
     * memory, direct I/O to a qcow2 image cost ~1 us of CPU per 4 KiB read more than to its raw
     * file (bench/qcow2/interleave.sh, issue 15).
     *
     * @param bytes how much memory, in bytes
     * @param owner the arena the memory is allocated in and freed with
     * @return native memory, aligned for zero-copy I/O to this device
     */
    @Override
    public MemorySegment allocateIoMemory(long bytes, Arena owner) {
        MemorySegment m = (dataFile != null ? dataFile : container).allocateIoMemory(bytes, owner);
        long align = Math.max(4096, limits.dmaAlignment());
        return (m.address() & (align - 1)) == 0 ? m : owner.allocate(bytes, align);
    }

    @Override
    public boolean isReadOnly() {
        return readOnly;
    }

    @Override
    public String targetType() {
        return "qcow2";
    }

    @Override
    public String table() {
        return tableLine;
    }

    /**
     * {@code cluster_size virtual_size l2_cache=CACHED/CAPACITY tables hits=N misses=N hit_rate=P},
     * then the bytes of metadata held in memory: the L2 cache's tables and free list
     * ({@code l2_cache_mem}), the refcount blocks and table ({@code refcount_mem}), the L1 table.
     *
     * @return the status line
     */
    @Override
    public String status() {
        synchronized (meta) {
            long h = cache.hits();
            long m = cache.misses();
            return "cluster_size=" + cs + " size=" + header.size() + " l2_cache=" + cache.size() + "/"
                    + cache.capacityTables() + " l2_cache_bytes=" + (long) cache.capacityTables() * cs + " hits=" + h
                    + " misses=" + m + String.format(java.util.Locale.ROOT, " hit_rate=%.3f",
                    h + m == 0 ? 1.0 : (double) h / (h + m)) + " dirty=" + cache.dirtyCount()
                    + " l2_cache_mem=" + cache.memoryBytes() + " refcount_mem=" + refcountMemory()
                    + " l1_mem=" + (long) l1.length * 8;
        }
    }

    /**
     * Bytes the refcounts hold in memory (monitor held): every refcount block (all of them stay
     * loaded while the image is open) and the refcount table.
     */
    private long refcountMemory() {
        return (long) refcounts.blocks.size() * cs + (long) refcounts.table.length * 8;
    }

    /**
     * The header as it is now (feature bits as changed at open).
     *
     * @return the header
     */
    public Qcow2Header header() {
        return header;
    }

    /**
     * The backing device, if any.
     *
     * @return the backing device or null
     */
    public BlockDevice backing() {
        return backing;
    }

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, header.size(), limits, readOnly)) {
            return;
        }
        if (bio.op() != Op.READ && bio.op() != Op.FLUSH && !changed) {
            changed = true; // once: read-mostly afterwards, so no line bounces between cores
        }
        switch (bio.op()) {
            case READ -> {
                if (!fastPath(bio, false)) {
                    readMore(bio);
                }
            }
            case WRITE -> {
                if (bio.hasFlag(BioFlags.FUA)) {
                    fuaWrite(bio);
                } else if (!fastPath(bio, true)) {
                    writeMore(bio);
                }
            }
            case FLUSH -> flush(bio);
            case DISCARD, WRITE_ZEROES -> zeroMore(bio);
        }
    }

    /** A write, discard or write-zeroes came since the open: the guest's data may have changed. */
    private volatile boolean changed;

    /** Whether a write, discard or write-zeroes came since the open (the bitmap store's clean close). */
    boolean changedSinceOpen() {
        return changed;
    }

    /** Changes L1 entry {@code i} (monitor held), published for lock-free readers. */
    private void setL1(int i, long v) {
        L1.setRelease(l1, i, v);
    }

    // ---- the lock-free fast path ---------------------------------------------------------------

    /** L2 entry bits that send a bio to the monitor's path: compressed, zero, reserved. */
    private static final long SLOW_BITS = OFLAG_COMPRESSED | OFLAG_ZERO | Qcow2Header.L2_RESERVED_MASK;

    /**
     * The common case without the monitor and without allocating: a read, or a write in place,
     * of clusters that are allocated, contiguous on the host and mapped by one cached L2 table
     * (standard L2 entries; extended L2 takes the monitor's path). Returns false, having done
     * nothing, for anything else: the monitor's path decides and reports errors.
     *
     * <p>A write goes in place only when the cluster has its COPIED flag (refcount 1), exactly as
     * {@link #writeMore} decides. A cluster being allocated is never in place (its entry changes
     * only when the allocating write has completed), so the {@code inflight} wait is not needed
     * here. The mapping is read inside the table's seqlock: an entry evicted, reused or changed
     * under the reader is a miss, never a stale mapping.
     */
    private boolean fastPath(Bio bio, boolean write) {
        if (extL2) {
            return false;
        }
        long off = bio.offset();
        long len = bio.size();
        long gc = off >>> clusterBits;
        long last = (off + len - 1) >>> clusterBits;
        long l1l = gc >>> l2Bits;
        if (l1l >= l1.length || (last >>> l2Bits) != l1l || len <= 0) {
            return false;
        }
        int l1i = (int) l1l;
        long l1e = (long) L1.getAcquire(l1, l1i);
        long l2off = l1e & OFFSET_MASK;
        if (l2off == 0 || (l1e & Qcow2Header.L1_RESERVED_MASK) != 0) {
            return false;
        }
        Qcow2Cache.Entry t = cache.published(l1i);
        if (t == null || t.offset != l2off) {
            return false;
        }
        long s = t.readBegin();
        if (s < 0) {
            return false;
        }
        int idx = (int) (gc & (l2Entries - 1));
        long e = t.word(idx);
        long ho = e & OFFSET_MASK;
        if ((e & SLOW_BITS) != 0 || ho == 0 || (ho & (cs - 1)) != 0 || write && (e & OFLAG_COPIED) == 0) {
            return false;
        }
        // Bounded by the bio: at most maxBytes / cluster size entries.
        for (long c = gc + 1; c <= last; c++) {
            long n = t.word(++idx);
            if ((n & SLOW_BITS) != 0 || (n & OFFSET_MASK) != ho + ((c - gc) << clusterBits)
                    || write && (n & OFLAG_COPIED) == 0) {
                return false;
            }
        }
        if (!t.readValid(s)) {
            return false;
        }
        long host = ho + (off & (cs - 1));
        if (dataFile == null && host + len > container.size()) {
            return false; // the monitor's path names the bad entry
        }
        cache.countFastHit(t);
        bio.setOffset(host);
        (dataFile != null ? dataFile : container).submit(bio);
        return true;
    }

    // ---- map lookups (monitor held) ------------------------------------------------------------

    private static final int K_UNALLOC = 0, K_ZERO = 1, K_DATA = 2, K_COMPRESSED = 3, K_ERROR = 4, K_WAIT = 5;

    /** Result of a lookup: kind, run length, host offset (or the compressed descriptor). */
    private long pieceLen;
    private long pieceHost;
    private String pieceError;

    /**
     * Maps [off, off+max) to its first run. Returns the kind; sets pieceLen/pieceHost. K_WAIT:
     * the L2 table is being read and {@code resume} runs when it is there.
     */
    private int lookup(long off, long max, Bio bio, Runnable resume) {
        // resume null: readMore(bio), made only on a miss (no lambda per I/O)
        long gc = off >>> clusterBits;
        int l1i = (int) (gc / l2Entries);
        long l2End = ((long) (l1i + 1) * l2Entries) << clusterBits;
        max = Math.min(max, l2End - off);
        if (l1i >= l1.length) {
            pieceLen = max;
            return K_UNALLOC;
        }
        long l1e = l1[l1i];
        long l2off = l1e & OFFSET_MASK;
        if (l2off == 0) {
            pieceLen = max;
            return K_UNALLOC;
        }
        if ((l1e & Qcow2Header.L1_RESERVED_MASK) != 0 || (l2off & (cs - 1)) != 0 || l2off + cs > container.size()) {
            pieceError = "L1 entry " + l1i + " is invalid (0x" + Long.toHexString(l1e) + ")";
            return K_ERROR;
        }
        Qcow2Cache.Entry t = cache.lookup(l2off);
        if (t == null) {
            cache.load(l2off, meta, err -> {
                if (err != null) {
                    bio.fail(Status.IOERR, name + ": cannot read L2 table at " + l2off + ": " + err.getMessage());
                } else if (resume != null) {
                    resume.run();
                } else {
                    readMore(bio);
                }
            });
            return K_WAIT;
        }
        cache.publish(l1i, t);
        return classify(t, off, max);
    }

    private int classify(Qcow2Cache.Entry t, long off, long max) {
        long gc = off >>> clusterBits;
        int idx = (int) (gc % l2Entries);
        int kind = -1;
        long len = 0;
        long host = 0;
        long pos = off;
        scan:
        while (len < max && idx < l2Entries) {
            long e = t.word(extL2 ? idx * 2 : idx);
            long inCluster = pos & (cs - 1);
            long runLen;
            int k;
            long h;
            if ((e & OFLAG_COMPRESSED) != 0) {
                k = K_COMPRESSED;
                h = e;
                runLen = cs - inCluster;
            } else {
                if ((e & Qcow2Header.L2_RESERVED_MASK & ~(extL2 ? 0 : 0)) != 0 && !extL2 || (extL2
                        && (e & (Qcow2Header.L2_RESERVED_MASK | 1L)) != 0)) {
                    pieceError = "L2 entry of cluster " + (pos >>> clusterBits) + " has reserved bits set";
                    if (kind == -1) {
                        return K_ERROR;
                    }
                    break scan; // the run so far is good: it ends here, pieceLen with it
                }
                long ho = e & OFFSET_MASK;
                if (extL2) {
                    long bm = t.word(idx * 2 + 1);
                    int sc = (int) (inCluster >>> subBits);
                    boolean alloc = (bm & (1L << sc)) != 0;
                    boolean zero = (bm & (1L << (32 + sc))) != 0;
                    if (alloc && zero) {
                        pieceError = "subcluster " + sc + " of cluster " + (pos >>> clusterBits) + " is both allocated and zero";
                        if (kind == -1) {
                        return K_ERROR;
                    }
                    break scan; // the run so far is good: it ends here, pieceLen with it
                    }
                    k = zero ? K_ZERO : alloc ? K_DATA : K_UNALLOC;
                    int end = sc + 1;
                    while (end < 32 && ((bm >>> end) & 1) == (alloc ? 1 : 0) && ((bm >>> (32 + end)) & 1) == (zero ? 1 : 0)) {
                        end++;
                    }
                    runLen = ((long) end << subBits) - inCluster;
                    h = ho + inCluster;
                    if (k == K_DATA && !mapped(e)) {
                        pieceError = "subcluster allocated in cluster without host offset";
                        if (kind == -1) {
                        return K_ERROR;
                    }
                    break scan; // the run so far is good: it ends here, pieceLen with it
                    }
                } else {
                    if ((e & OFLAG_ZERO) != 0 && header.version() < 3) {
                        // qcow2.rst: bit 0 is the zero flag from version 3 on; qemu fails the
                        // read ("Zero cluster entry found in pre-v3 image", qcow2_get_host_offset).
                        pieceError = "L2 entry of cluster " + (pos >>> clusterBits)
                                + " has the zero flag, which a version 2 image cannot have";
                        if (kind == -1) {
                            return K_ERROR;
                        }
                        break scan; // the run so far is good: it ends here, pieceLen with it
                    }
                    if ((e & OFLAG_ZERO) != 0) {
                        k = K_ZERO;
                    } else if (mapped(e)) {
                        k = K_DATA;
                    } else {
                        k = K_UNALLOC;
                    }
                    h = ho + inCluster;
                    runLen = cs - inCluster;
                }
                // Only what this piece reads must lie inside the container: qemu-img leaves an
                // extended-L2 image's last cluster short of its end (only the subclusters written).
                if (k == K_DATA && dataFile == null && ((ho & (cs - 1)) != 0
                        || h + Math.min(runLen, max - len) > container.size())) {
                    pieceError = "L2 entry of cluster " + (pos >>> clusterBits) + " points past the end of the image ("
                            + ho + ")";
                    if (kind == -1) {
                        return K_ERROR;
                    }
                    break scan; // the run so far is good: it ends here, pieceLen with it
                }
            }
            runLen = Math.min(runLen, max - len);
            if (kind == -1) {
                kind = k;
                host = h;
            } else if (k != kind || k == K_COMPRESSED || (k == K_DATA && h != host + len)) {
                break;
            }
            len += runLen;
            pos += runLen;
            if ((pos & (cs - 1)) == 0) {
                idx++;
            }
            if (k == K_COMPRESSED) {
                break;
            }
        }
        pieceLen = len;
        pieceHost = host;
        return kind;
    }

    /**
     * Whether an L2 entry (not compressed) points at a host cluster. Offset 0 is a hole in the
     * container (the header lives there), but a valid place in an external data file, where
     * guest cluster 0 lands: there COPIED tells them apart, since every data file cluster has
     * refcount 1 (qemu's {@code qcow2_get_cluster_type}).
     */
    private boolean mapped(long e) {
        return (e & OFFSET_MASK) != 0 || dataFile != null && (e & OFLAG_COPIED) != 0;
    }

    // ---- reads ---------------------------------------------------------------------------------

    private void readMore(Bio bio) {
        while (true) {
            long off = bio.offset();
            long left = bio.size();
            int kind;
            long len;
            long host;
            String err;
            synchronized (meta) {
                kind = lookup(off, left, bio, null);
                len = pieceLen;
                host = pieceHost;
                err = pieceError;
            }
            if (kind == K_WAIT) {
                return;
            }
            if (kind == K_ERROR) {
                bio.fail(Status.IOERR, name + ": " + err);
                return;
            }
            Bio piece = len >= left ? bio : splitChained(bio, len);
            readPiece(piece, kind, host);
            if (piece == bio) {
                return;
            }
        }
    }

    private static Bio splitChained(Bio bio, long len) {
        Bio front = bio.split(len, null);
        front.chain(bio);
        return front;
    }

    private void readPiece(Bio piece, int kind, long host) {
        switch (kind) {
            case K_DATA -> {
                piece.setOffset(host);
                (dataFile != null ? dataFile : container).submit(piece);
            }
            case K_ZERO -> {
                piece.zeroFill();
                piece.endIo();
            }
            case K_UNALLOC -> readBacking(piece);
            case K_COMPRESSED -> readCompressed(piece, host);
            default -> piece.fail(Status.IOERR, name + ": bad cluster kind");
        }
    }

    /** From the backing device; past its end (its last part sector is in, {@link #showWholeLastSector}), zeros. */
    private void readBacking(Bio piece) {
        long bsz = backing == null ? 0 : backing.size();
        long off = piece.offset();
        if (off >= bsz) {
            piece.zeroFill();
            piece.endIo();
            return;
        }
        if (off + piece.size() > bsz) {
            Bio front = splitChained(piece, bsz - off);
            piece.zeroFill();
            piece.endIo();
            backing.submit(front);
            return;
        }
        backing.submit(piece);
    }

    private void readCompressed(Bio piece, long entry) {
        int x = 62 - (clusterBits - 8);
        long coff = entry & ((1L << x) - 1);
        long nsec = ((entry >>> x) & ((1L << (clusterBits - 8)) - 1)) + 1;
        long clen = nsec * 512 - (coff & 511);
        long start = coff & ~511L;
        long want = (coff + clen + 511) & ~511L;
        // The sector count may overstate the run: qemu reads what the image holds of it.
        long end = Math.min(want, container.size() & ~511L);
        if (coff == 0 || end <= coff) {
            piece.fail(Status.IOERR, name + ": compressed cluster at " + coff + " lies past the end of the image");
            return;
        }
        long inCluster = piece.offset() & (cs - 1);
        MemorySegment raw = Qcow2Cache.ioMemory(end - start, Arena.ofAuto());
        container.read(start, raw).whenComplete((v, t) -> {
            if (t != null) {
                piece.fail(Status.IOERR, name + ": cannot read compressed cluster: " + t.getMessage());
                return;
            }
            byte[] in = new byte[(int) (end - coff)];
            MemorySegment.copy(raw, ValueLayout.JAVA_BYTE, coff - start, in, 0, in.length);
            inflate(piece, coff, in, inCluster);
        });
    }

    /** Inflates a compressed cluster's run and completes {@code piece} with its part of it. */
    private void inflate(Bio piece, long coff, byte[] in, long inCluster) {
        try {
            byte[] out = Qcow2Compression.decompress(header.compressionType(), in, cs);
            piece.copyFrom(MemorySegment.ofArray(out).asSlice(inCluster));
        } catch (RuntimeException e) {
            // Qcow2Exception for bad data; anything else is a decoder bug, and still must
            // complete the bio (an exception escaping this callback would lose it).
            piece.fail(Status.IOERR, name + ": compressed cluster at " + coff + ": " + e.getMessage());
            return;
        }
        piece.endIo();
    }

    /** Reads guest bytes [off, off+len) as the image shows them now into {@code dst}. */
    private CompletableFuture<Void> readGuest(long off, MemorySegment dst) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        Bio b = new Bio().init(Op.READ, 0, off, x -> {
            if (x.status() == Status.OK) {
                f.complete(null);
            } else {
                f.completeExceptionally(new IOException(x.status() + ": " + x.detail()));
            }
        });
        b.addSegment(dst);
        readMore(b);
        return f;
    }

    // ---- writes --------------------------------------------------------------------------------

    private void fuaWrite(Bio bio) {
        Bio c = bio.cloneShallow(null);
        c.setFlags(bio.flags() & ~BioFlags.FUA);
        c.setEndIo(x -> {
            if (x.status() != Status.OK) {
                bio.fail(x.status(), x.detail());
                return;
            }
            Bio fl = new Bio().init(Op.FLUSH, 0, 0, y -> {
                if (y.status() != Status.OK) {
                    bio.setStatus(y.status(), y.detail());
                }
                bio.endIo();
            });
            flush(fl);
        });
        writeMore(c);
    }

    private void writeMore(Bio bio) {
        while (true) {
            long off = bio.offset();
            long left = bio.size();
            long gc = off >>> clusterBits;
            long inCluster = off & (cs - 1);
            long len = Math.min(left, cs - inCluster);
            int action;
            long host = 0;
            String err = null;
            Qcow2Cache.Entry table = null;
            synchronized (meta) {
                List<Bio> waiting = inflight.get(gc);
                if (waiting != null) {
                    waiting.add(bio);
                    return;
                }
                Qcow2Cache.Entry t = l2ForWrite(off, bio, () -> writeMore(bio));
                if (t == null) {
                    return;
                }
                if (t == ERROR_ENTRY) {
                    action = K_ERROR;
                    err = pieceError;
                } else {
                    int idx = (int) (gc % l2Entries);
                    long e = t.word(extL2 ? idx * 2 : idx);
                    long ho = e & OFFSET_MASK;
                    boolean inPlace = (e & OFLAG_COMPRESSED) == 0 && (e & OFLAG_COPIED) != 0 && mapped(e);
                    // as the read path: qemu fails it too (qcow2_get_host_offset)
                    boolean v2Zero = (e & OFLAG_COMPRESSED) == 0 && (e & OFLAG_ZERO) != 0 && header.version() < 3;
                    if (extL2 && inPlace) {
                        long bm = t.word(idx * 2 + 1);
                        int s0 = (int) (inCluster >>> subBits);
                        int s1 = (int) ((inCluster + len - 1) >>> subBits);
                        for (int s = s0; s <= s1; s++) {
                            inPlace &= (bm & (1L << s)) != 0;
                        }
                    } else if (inPlace && (e & OFLAG_ZERO) != 0) {
                        inPlace = false;
                    }
                    if (v2Zero) {
                        action = K_ERROR;
                        err = "L2 entry of cluster " + gc + " has the zero flag, which a version 2 image cannot have";
                    } else if (inPlace) {
                        action = K_DATA;
                        host = ho + inCluster;
                    } else {
                        action = K_COMPRESSED; // meaning: allocate
                        inflight.put(gc, new ArrayList<>());
                        // Kept in the cache until the allocation ends (finishAlloc): its entry
                        // changes only when the data has landed, and a clean table would
                        // otherwise be evicted meanwhile by the loads of other bios.
                        t.pins++;
                        table = t;
                    }
                }
            }
            if (action == K_ERROR) {
                bio.fail(Status.IOERR, name + ": " + err);
                return;
            }
            Bio piece = len >= left ? bio : splitChained(bio, len);
            if (action == K_DATA) {
                piece.setOffset(host);
                (dataFile != null ? dataFile : container).submit(piece);
            } else {
                allocWrite(piece, gc, table);
            }
            if (piece == bio) {
                return;
            }
        }
    }

    private static final Qcow2Cache.Entry ERROR_ENTRY = new Qcow2Cache.Entry(-1, MemorySegment.NULL);

    /**
     * The L2 table for guest offset {@code off}, writable (allocated, not shared with a snapshot).
     * Null when it is being read ({@code resume} runs later); ERROR_ENTRY with pieceError set.
     */
    private Qcow2Cache.Entry l2ForWrite(long off, Bio bio, Runnable resume) {
        long gc = off >>> clusterBits;
        int l1i = (int) (gc / l2Entries);
        if (l1i >= l1.length) {
            pieceError = "guest offset " + off + " is beyond the L1 table";
            return ERROR_ENTRY;
        }
        long l1e = l1[l1i];
        long l2off = l1e & OFFSET_MASK;
        if (l2off == 0) {
            long n;
            try {
                n = allocCluster();
            } catch (IOException e) {
                pieceError = e.getMessage();
                return ERROR_ENTRY;
            }
            Qcow2Cache.Entry t = cache.create(n);
            setL1(l1i, n | OFLAG_COPIED);
            l1Dirty[l1i] = true;
            cache.publish(l1i, t);
            return t;
        }
        if ((l2off & (cs - 1)) != 0 || l2off + cs > container.size()) {
            pieceError = "L1 entry " + l1i + " is invalid";
            return ERROR_ENTRY;
        }
        Qcow2Cache.Entry t = cache.lookup(l2off);
        if (t == null) {
            cache.load(l2off, meta, err -> {
                if (err != null) {
                    bio.fail(Status.IOERR, name + ": cannot read L2 table at " + l2off + ": " + err.getMessage());
                } else {
                    resume.run();
                }
            });
            return null;
        }
        if ((l1e & OFLAG_COPIED) == 0) {
            // Shared with an internal snapshot: copy the table (qemu's l2_allocate with an old table).
            long n;
            try {
                n = allocCluster();
            } catch (IOException e) {
                pieceError = e.getMessage();
                return ERROR_ENTRY;
            }
            Qcow2Cache.Entry c = cache.create(n);
            MemorySegment.copy(t.mem, 0, c.mem, 0, cs);
            setL1(l1i, n | OFLAG_COPIED);
            l1Dirty[l1i] = true;
            pendingFrees.add(l2off);
            cache.publish(l1i, c);
            return c;
        }
        cache.publish(l1i, t);
        return t;
    }

    /**
     * Clusters below the last one in use whose refcount is 0 (holes left by frees before this
     * open), up to {@link #MAX_FREE_SCAN}: allocation reuses them before it grows the container.
     */
    private void scanFreeClusters() {
        long last = refcounts.lastUsedCluster();
        for (long c = 1; c < last && freeClusters.size() < MAX_FREE_SCAN; c++) {
            if (refcounts.hasBlock(c) && refcounts.get(c) == 0 && ((c + 1) << clusterBits) <= container.size()) {
                freeClusters.add(c << clusterBits);
            }
        }
    }

    /**
     * A host cluster for new data or a new table, its refcount 1: a freed one when there is one
     * (so discard and write loops do not grow the file without bound), else the next at the end
     * (with a refcount block for it if needed). Monitor held.
     */
    private long allocCluster() throws IOException {
        while (!freeClusters.isEmpty()) {
            long f = freeClusters.pollFirst();
            if (refcounts.hasBlock(f >>> clusterBits) && refcounts.get(f >>> clusterBits) == 0) {
                refcounts.set(f >>> clusterBits, 1);
                return f;
            }
        }
        long c = nextFree;
        nextFree += cs;
        ensureRefBlock(c >>> clusterBits);
        refcounts.set(c >>> clusterBits, 1);
        if (nextFree > container.size()) {
            try {
                Resizable.grow(container, Math.max(nextFree, Math.min(container.size() + GROW_STEP,
                        nextFree + GROW_STEP)));
            } catch (IOException e) {
                throw new IOException("cannot allocate a cluster: " + e.getMessage(), e);
            }
        }
        return c;
    }

    private void ensureRefBlock(long cluster) throws IOException {
        if (refcounts.hasBlock(cluster)) {
            return;
        }
        long bi = refcounts.blockIndex(cluster);
        if (bi >= refcounts.table.length) {
            growRefTable(bi);
            if (refcounts.hasBlock(cluster)) {
                // Counting the new table's own clusters may have made this very block already:
                // a second one would replace it and lose those counts (found by qemu-img check
                // on 512-byte clusters, where one table cluster covers only 4096 clusters).
                return;
            }
        }
        long b = nextFree;
        nextFree += cs;
        refcounts.addBlock(bi, b);
        ensureRefBlock(b >>> clusterBits);
        refcounts.set(b >>> clusterBits, 1);
    }

    /**
     * Moves the refcount table to a larger place at the end of the container (qemu's
     * {@code grow_refcount_table}): the new table is written whole by the next writeback, the
     * header points at it once that is durable, and the old table's clusters are freed after.
     */
    private void growRefTable(long needIndex) throws IOException {
        long entriesPerCluster = cs / 8;
        int oldClusters = (int) ((refcounts.table.length + entriesPerCluster - 1) / entriesPerCluster);
        long want = Math.max(needIndex + 1, (long) refcounts.table.length * 2);
        int clusters = (int) ((want + entriesPerCluster - 1) / entriesPerCluster);
        if ((long) clusters * cs > Qcow2Header.MAX_REFTABLE_BYTES) {
            throw new IOException("the refcount table would exceed qemu's 8 MiB limit");
        }
        long oldOff = pendingHeader != null ? pendingHeader.refcountTableOffset() : header.refcountTableOffset();
        long at = nextFree;
        nextFree += (long) clusters * cs;
        refcounts.growTable((int) (clusters * entriesPerCluster));
        for (int i = 0; i < clusters; i++) {
            long c = (at >>> clusterBits) + i;
            ensureRefBlock(c);
            refcounts.set(c, 1);
        }
        pendingHeader = (pendingHeader != null ? pendingHeader : header).withRefcountTable(at, clusters);
        for (int i = 0; i < oldClusters; i++) {
            pendingFrees.add(oldOff + (long) i * cs);
        }
    }

    /** A header change (a moved refcount table) waiting for the next writeback; monitor held. */
    private Qcow2Header pendingHeader;

    /**
     * Allocating write of {@code piece} (within one cluster): COW merge, then the L2 update in
     * {@code t}, the cluster's L2 table, which {@link #writeMore} pinned in the cache for it.
     */
    private void allocWrite(Bio piece, long gc, Qcow2Cache.Entry t) {
        long clusterOff = gc << clusterBits;
        long inCluster = piece.offset() - clusterOff;
        long len = piece.size();
        long newHost;
        long oldEntry;
        long oldBitmap = 0;
        synchronized (meta) {
            int idx = (int) (gc % l2Entries);
            oldEntry = t.word(extL2 ? idx * 2 : idx);
            oldBitmap = !extL2 ? 0 : t.word(idx * 2 + 1);
            long oh = oldEntry & OFFSET_MASK;
            if (dataFile != null) {
                newHost = clusterOff;
            } else if (extL2 && oh != 0 && (oldEntry & OFLAG_COPIED) != 0 && (oldEntry & OFLAG_COMPRESSED) == 0) {
                newHost = oh; // the cluster is ours; only subclusters are new
            } else {
                try {
                    newHost = allocCluster();
                } catch (IOException e) {
                    finishAlloc(gc, t);
                    piece.fail(Status.NOSPC, name + ": " + e.getMessage());
                    return;
                }
            }
        }
        // The range to write: the whole cluster, or on extended L2 the subclusters touched. A new
        // cluster that replaces one holding data (compressed, or subclusters allocated in a
        // cluster shared with a snapshot) takes all of it: the subclusters not written would
        // otherwise lose that data to the backing file.
        long from = 0;
        long to = cs;
        long oh0 = oldEntry & OFFSET_MASK;
        boolean replacesData = extL2 && dataFile == null && newHost != oh0
                && ((oldEntry & OFLAG_COMPRESSED) != 0 || (oldBitmap & 0xffffffffL) != 0);
        if (extL2 && !replacesData) {
            long sub = 1L << subBits;
            from = inCluster / sub * sub;
            to = (inCluster + len + sub - 1) / sub * sub;
        }
        BlockDevice target = dataFile != null ? dataFile : container;
        long f0 = from;
        long t0 = to;
        long oldE = oldEntry;
        long oldB = oldBitmap;
        if (inCluster == from && inCluster + len == to) {
            Bio w = piece.cloneShallow(null);
            w.setOffset(newHost + from);
            w.setEndIo(x -> allocDone(piece, x.status(), x.detail(), gc, t, newHost, f0, t0, oldE, oldB));
            target.submit(w);
            return;
        }
        MemorySegment whole = cowBuffers.poll();
        if (whole == null) {
            whole = Qcow2Cache.ioMemory(cs, Arena.ofAuto());
        }
        MemorySegment pooled = whole;
        MemorySegment buf = whole.asSlice(0, to - from);
        readGuest(clusterOff + from, buf).whenComplete((v, e) -> {
            if (e != null) {
                // not returned to the pool: a read of another piece may still be landing in it
                allocDone(piece, Status.IOERR, "COW read failed: " + e.getMessage(), gc, t, newHost, f0, t0, oldE, oldB);
                return;
            }
            try {
                piece.copyTo(buf.asSlice(inCluster - f0, len));
            } catch (RuntimeException x) {
                // an exception escaping this callback would be swallowed by the future: the bio
                // would never complete
                allocDone(piece, Status.IOERR, "COW merge failed: " + x, gc, t, newHost, f0, t0, oldE, oldB);
                return;
            }
            target.write(newHost + f0, buf).whenComplete((v2, t2) -> {
                cowBuffers.offer(pooled); // the write is complete: the kernel is done with it
                allocDone(piece, t2 == null ? Status.OK : Status.IOERR, t2 == null ? null : t2.getMessage(),
                        gc, t, newHost, f0, t0, oldE, oldB);
            });
        });
    }

    private void allocDone(Bio piece, Status st, String why, long gc, Qcow2Cache.Entry t, long newHost, long from,
                           long to, long oldEntry, long oldBitmap) {
        if (st == Status.OK) {
            synchronized (meta) {
                int idx = (int) (gc % l2Entries);
                long oh = oldEntry & OFFSET_MASK;
                if (extL2) {
                    int s0 = (int) (from >>> subBits);
                    int s1 = (int) (to >>> subBits);
                    long mask = (s1 == 32 ? 0xffffffffL : (1L << s1) - 1) & ~((1L << s0) - 1);
                    long bm = oh == newHost ? oldBitmap : 0;
                    if (oh != newHost) {
                        // A fresh cluster: what was not written reads as before, so keep zero
                        // bits of a zero cluster; unallocated stays unallocated (backing).
                        // A compressed cluster's bitmap is 0 (qcow2.rst): its zero bits are none.
                        bm = (oldEntry & OFLAG_COMPRESSED) != 0 ? 0 : oldBitmap & 0xffffffff00000000L;
                    }
                    bm = (bm | mask) & ~(mask << 32);
                    t.setWords(idx * 2, newHost | OFLAG_COPIED, bm);
                } else {
                    t.setWord(idx, newHost | OFLAG_COPIED);
                }
                t.dirty = true;
                if (oh != newHost && dataFile == null) {
                    freeOld(oldEntry);
                }
            }
        }
        List<Bio> waiters = finishAlloc(gc, t);
        if (st != Status.OK) {
            piece.fail(st, name + ": " + why);
        } else {
            piece.endIo();
        }
        for (Bio w : waiters) {
            submitAgain(w);
        }
    }

    private void submitAgain(Bio w) {
        switch (w.op()) {
            case WRITE -> writeMore(w);
            default -> zeroMore(w);
        }
    }

    /** Ends the allocation of guest cluster {@code gc}: unpins its L2 table; returns its waiters. */
    private List<Bio> finishAlloc(long gc, Qcow2Cache.Entry t) {
        synchronized (meta) {
            List<Bio> w = inflight.remove(gc);
            t.pins--;
            cache.evict();
            return w == null ? List.of() : w;
        }
    }

    /** Queues the refcount drop of what {@code oldEntry} pointed at (monitor held). */
    private void freeOld(long oldEntry) {
        if (dataFile != null) {
            // The data file has no refcounts: its offsets are not the container's clusters
            // (qemu's qcow2_free_any_cluster returns early with a data file too).
            return;
        }
        if ((oldEntry & OFLAG_COMPRESSED) != 0) {
            int x = 62 - (clusterBits - 8);
            long coff = oldEntry & ((1L << x) - 1);
            long nsec = ((oldEntry >>> x) & ((1L << (clusterBits - 8)) - 1)) + 1;
            long last = (coff + nsec * 512 - (coff & 511) - 1) & -(long) cs;
            for (long c = coff & -(long) cs; c <= last; c += cs) {
                pendingFrees.add(c);
            }
            return;
        }
        long oh = oldEntry & OFFSET_MASK;
        if (oh != 0) {
            pendingFrees.add(oh);
        }
    }

    // ---- discard and write zeroes --------------------------------------------------------------

    private void zeroMore(Bio bio) {
        boolean discard = bio.op() == Op.DISCARD;
        while (true) {
            long off = bio.offset();
            long left = bio.size();
            long gc = off >>> clusterBits;
            long inCluster = off & (cs - 1);
            long len = Math.min(left, cs - inCluster);
            if (extL2 && len < cs) {
                // Subclusters are the unit: a part of one goes the data way (zeros written,
                // or nothing for a discard), whole ones get their flags.
                long sub = 1L << subBits;
                long mis = inCluster & (sub - 1);
                if (mis != 0) {
                    len = Math.min(len, sub - mis);
                } else if (len >= sub) {
                    len = len / sub * sub;
                }
            }
            boolean whole = inCluster == 0 && len == cs;
            boolean subAligned = extL2 && ((inCluster | len) & ((1L << subBits) - 1)) == 0;
            // A raw external data file (data_file_raw) must read as the guest's disk on its own
            // (qcow2.rst, autoclear bit 1): a zero flag alone would leave old data in it.
            boolean rawData = dataFile != null && (header.autoclearFeatures() & Qcow2Header.AUTOCLEAR_DATA_FILE_RAW) != 0;
            boolean canFlag = header.version() == 3 && (whole || subAligned) && !rawData;
            if (!canFlag) {
                // A part of a cluster, a version 2 image, a raw data file: discard may do
                // nothing; write zeroes writes zeros.
                Bio piece = len >= left ? bio : splitChained(bio, len);
                if (discard) {
                    piece.endIo();
                } else if (bio.hasFlag(BioFlags.NOFALLBACK)) {
                    piece.fail(Status.NOTSUPP, noFallback());
                } else {
                    writeZeroData(piece);
                }
                if (piece == bio) {
                    return;
                }
                continue;
            }
            String err = null;
            boolean asData = false;
            synchronized (meta) {
                List<Bio> waiting = inflight.get(gc);
                if (waiting != null) {
                    waiting.add(bio);
                    return;
                }
                Qcow2Cache.Entry t = l2ForWrite(off, bio, () -> zeroMore(bio));
                if (t == null) {
                    return;
                }
                int idx = (int) (gc % l2Entries);
                if (t == ERROR_ENTRY) {
                    err = pieceError;
                } else if (extL2 && !whole && (t.word(idx * 2) & OFLAG_COMPRESSED) != 0) {
                    // Subclusters of a compressed cluster have no flags of their own (its bitmap is
                    // 0, qcow2.rst): zeros are written, which rewrites the cluster uncompressed.
                    asData = true;
                } else {
                    long e = t.word(extL2 ? idx * 2 : idx);
                    boolean keep = !discard && bio.hasFlag(BioFlags.NOUNMAP) && (e & OFLAG_COPIED) != 0
                            && (e & OFLAG_COMPRESSED) == 0 && (e & OFFSET_MASK) != 0;
                    if (extL2) {
                        long bm = t.word(idx * 2 + 1);
                        int s0 = (int) (inCluster >>> subBits);
                        int s1 = (int) ((inCluster + len) >>> subBits);
                        long mask = (s1 == 32 ? 0xffffffffL : (1L << s1) - 1) & ~((1L << s0) - 1);
                        if ((e & OFLAG_COMPRESSED) != 0) {
                            if (whole) {
                                freeOld(e);
                                t.setWords(idx * 2, 0, 0xffffffffL << 32);
                            }
                        } else {
                            bm = (bm & ~mask) | (mask << 32);
                            if (whole && !keep) {
                                freeOld(e);
                                t.setWords(idx * 2, 0, 0xffffffffL << 32);
                            } else {
                                t.setWord(idx * 2 + 1, bm);
                            }
                        }
                    } else if (keep) {
                        t.setWord(idx, (e & OFFSET_MASK) | OFLAG_COPIED | OFLAG_ZERO);
                    } else {
                        freeOld(e);
                        // qemu: discard without a backing file leaves a hole; else zero flag.
                        t.setWord(idx, discard && backing == null ? 0 : OFLAG_ZERO);
                    }
                    t.dirty = true;
                }
            }
            Bio piece = len >= left ? bio : splitChained(bio, len);
            if (err != null) {
                piece.fail(Status.IOERR, name + ": " + err);
            } else if (asData && !discard && bio.hasFlag(BioFlags.NOFALLBACK)) {
                piece.fail(Status.NOTSUPP, noFallback());
            } else if (asData && !discard) {
                writeZeroData(piece);
            } else {
                piece.endIo();
            }
            if (piece == bio) {
                return;
            }
        }
    }

    /**
     * Why a WRITE_ZEROES with {@link BioFlags#NOFALLBACK} (NBD's FAST_ZERO) is refused: the
     * range would be zeroed by writing data (qemu's qcow2_co_pwrite_zeroes answers -ENOTSUP
     * the same way for what it can't flag).
     */
    private String noFallback() {
        return name + ": zeroing this range writes data (" + (header.version() < 3 ? "a version 2 image has no zero flag"
                : "a part of a cluster, a compressed cluster, or a raw data file") + ")";
    }

    private void writeZeroData(Bio piece) {
        MemorySegment z = Qcow2Cache.ioMemory(piece.size(), Arena.ofAuto());
        z.fill((byte) 0);
        Bio w = new Bio().init(Op.WRITE, 0, piece.offset(), x -> {
            if (x.status() != Status.OK) {
                piece.fail(x.status(), x.detail());
            } else {
                piece.endIo();
            }
        });
        w.addSegment(z);
        writeMore(w);
    }

    // ---- flush ---------------------------------------------------------------------------------

    private void flush(Bio bio) {
        if (readOnly) {
            (backing == null ? container : container).submit(bio);
            return;
        }
        synchronized (meta) {
            flushWaiters.add(bio);
            if (flushing) {
                return;
            }
            flushing = true;
        }
        startWriteback();
    }

    private void startWriteback() {
        List<Bio> served;
        List<List<Qcow2Writeback.Write>> stages = new ArrayList<>();
        List<Long> frees;
        List<Qcow2Cache.Entry> tables = new ArrayList<>();
        // What this writeback takes out of the dirty sets: dirty again if it fails (retried).
        List<Long> blocks = new ArrayList<>();
        List<Integer> tableEntries;
        List<Integer> l1Entries = new ArrayList<>();
        boolean headerMoved;
        synchronized (meta) {
            served = new ArrayList<>(flushWaiters);
            flushWaiters.clear();
            blocks.addAll(refcounts.dirtyBlocks);
            tableEntries = new ArrayList<>(refcounts.dirtyTableEntries);
            headerMoved = pendingHeader != null;
            for (int i = 0; i < l1.length; i++) {
                if (l1Dirty[i]) {
                    l1Entries.add(i);
                }
            }
            stages.add(snapshotRefBlocks());
            stages.add(snapshotRefTable());
            stages.add(snapshotHeader());
            List<Qcow2Writeback.Write> l2 = new ArrayList<>();
            for (Qcow2Cache.Entry e : cache.dirty()) {
                l2.add(new Qcow2Writeback.Write(e.offset, copy(e.mem)));
                e.dirty = false;
                // Clean, yet not on disk until stage 3: evicted now, it would be read back
                // from the container without its new entries (and those allocations lost).
                e.pins++;
                tables.add(e);
            }
            stages.add(l2);
            stages.add(snapshotL1());
            frees = new ArrayList<>(pendingFrees);
            pendingFrees.clear();
        }
        List<Long> freed = new ArrayList<>();
        boolean[] decremented = {false};
        Qcow2Writeback.run(container, stages, List.of(true, true, true, true, true))
                .thenCompose(v -> {
                    List<Qcow2Writeback.Write> after;
                    synchronized (meta) {
                        decremented[0] = true;
                        for (long c : frees) {
                            refcounts.decrement(c >>> clusterBits);
                            if (refcounts.get(c >>> clusterBits) == 0) {
                                freed.add(c);
                            }
                        }
                        blocks.addAll(refcounts.dirtyBlocks);
                        after = frees.isEmpty() ? List.of() : snapshotRefBlocks();
                    }
                    return after.isEmpty() ? CompletableFuture.completedFuture(null)
                            : Qcow2Writeback.run(container, List.of(after), List.of(true));
                })
                .whenComplete((v, t) -> {
                    synchronized (meta) {
                        if (t != null) {
                            redirty(t, blocks, tableEntries, headerMoved, tables, l1Entries,
                                    decremented[0] ? List.of() : frees);
                        }
                        for (Qcow2Cache.Entry e : tables) {
                            e.pins--;
                        }
                        cache.evict();
                        // Reuse waits one writeback more: the clusters the previous writeback freed
                        // (their L2 entries cleared durably before that) become allocatable now, so
                        // an in-place write still in flight to a cluster it freed has had a whole
                        // writeback (several container flushes) to land first.
                        if (t == null) {
                            freeClusters.addAll(quarantine);
                            quarantine = freed;
                        }
                    }
                    for (Bio b : served) {
                        if (t != null) {
                            b.fail(Status.IOERR, name + ": metadata writeback failed: " + t.getMessage());
                        } else {
                            b.endIo();
                        }
                    }
                    boolean again;
                    synchronized (meta) {
                        again = !flushWaiters.isEmpty();
                        flushing = again;
                    }
                    if (again) {
                        startWriteback();
                    }
                });
    }

    /**
     * A failed writeback (monitor held): any of its writes may be missing on disk, so everything
     * it took is dirty again and the next FLUSH writes it, in the same order, as qemu's cache
     * keeps an entry dirty when its write fails. Without this, the FLUSH after a transient error
     * succeeded with the new L2 entries never written: acknowledged and flushed data lost.
     * {@code frees} not yet applied wait for the next writeback's clearing of their entries.
     */
    private void redirty(Throwable why, List<Long> blocks, List<Integer> tableEntries, boolean headerMoved,
                         List<Qcow2Cache.Entry> tables, List<Integer> l1Entries, List<Long> frees) {
        refcounts.dirtyBlocks.addAll(blocks);
        refcounts.dirtyTableEntries.addAll(tableEntries);
        if (headerMoved && pendingHeader == null) {
            pendingHeader = header;
        }
        for (Qcow2Cache.Entry e : tables) {
            e.dirty = true;
        }
        for (int i : l1Entries) {
            l1Dirty[i] = true;
        }
        pendingFrees.addAll(frees);
        LOG.log(System.Logger.Level.WARNING, name + ": metadata writeback failed (" + why.getMessage()
                + "); the next flush writes it again");
    }

    private MemorySegment copy(MemorySegment m) {
        MemorySegment c = Qcow2Cache.ioMemory(m.byteSize(), Arena.ofAuto());
        c.copyFrom(m);
        return c;
    }

    private List<Qcow2Writeback.Write> snapshotRefBlocks() {
        List<Qcow2Writeback.Write> w = new ArrayList<>();
        for (long bi : refcounts.dirtyBlocks) {
            w.add(new Qcow2Writeback.Write(refcounts.table[(int) bi], copy(refcounts.blocks.get(bi))));
        }
        refcounts.dirtyBlocks.clear();
        return w;
    }

    private List<Qcow2Writeback.Write> snapshotRefTable() {
        List<Qcow2Writeback.Write> w = new ArrayList<>();
        java.util.TreeSet<Long> sectors = new java.util.TreeSet<>();
        for (int i : refcounts.dirtyTableEntries) {
            sectors.add((long) i * 8 / 512);
        }
        refcounts.dirtyTableEntries.clear();
        for (long s : sectors) {
            MemorySegment m = Qcow2Cache.ioMemory(512, Arena.ofAuto());
            for (int j = 0; j < 64; j++) {
                int i = (int) (s * 64 + j);
                m.set(Qcow2Cache.BE64, j * 8L, i < refcounts.table.length ? refcounts.table[i] : 0);
            }
            w.add(new Qcow2Writeback.Write(tableHeader().refcountTableOffset() + s * 512, m));
        }
        return w;
    }

    private Qcow2Header tableHeader() {
        return pendingHeader != null ? pendingHeader : header;
    }

    /** The header write that makes a moved refcount table current, or nothing. */
    private List<Qcow2Writeback.Write> snapshotHeader() {
        if (pendingHeader == null) {
            return List.of();
        }
        header = pendingHeader;
        pendingHeader = null;
        byte[] enc = header.encode();
        MemorySegment m = Qcow2Cache.ioMemory((enc.length + 511) & ~511, Arena.ofAuto());
        m.fill((byte) 0);
        MemorySegment.copy(enc, 0, m, ValueLayout.JAVA_BYTE, 0, enc.length);
        return List.of(new Qcow2Writeback.Write(0, m));
    }

    private List<Qcow2Writeback.Write> snapshotL1() {
        List<Qcow2Writeback.Write> w = new ArrayList<>();
        for (int s = 0; s * 64 < l1.length; s++) {
            boolean d = false;
            for (int j = 0; j < 64 && s * 64 + j < l1.length; j++) {
                d |= l1Dirty[s * 64 + j];
            }
            if (!d) {
                continue;
            }
            // The L1 table's last sector may be shared with what follows it only if qemu put
            // something there; qemu aligns the L1 table to a cluster, so the rest is padding.
            MemorySegment m = Qcow2Cache.ioMemory(512, Arena.ofAuto());
            for (int j = 0; j < 64; j++) {
                int i = s * 64 + j;
                m.set(Qcow2Cache.BE64, j * 8L, i < l1.length ? l1[i] : 0);
                if (i < l1.length) {
                    l1Dirty[i] = false;
                }
            }
            w.add(new Qcow2Writeback.Write(header.l1TableOffset() + s * 512L, m));
        }
        return w;
    }

    // ---- block status --------------------------------------------------------------------------

    /**
     * {@code base:allocation} as qemu-nbd answers it: data where this image or a backing file
     * holds it; a hole that reads as zero for zero clusters, past a short backing file, and
     * where the whole chain has nothing (qemu's qcow2_co_block_status sets BDRV_BLOCK_ZERO
     * without BDRV_BLOCK_DATA for zero clusters, and nbd/server.c makes that HOLE | ZERO).
     */
    @Override
    public Extent extentAt(long offset, long maxLength) {
        long[] r = depthAt(offset, maxLength);
        int kind = (int) r[1];
        if (kind == K_ZERO) {
            return Extent.hole(r[0]);
        }
        if (kind == K_DATA || kind == K_COMPRESSED) {
            return Extent.data(r[0]);
        }
        // Unallocated here: ask the backing device, within this run.
        if (backing == null || offset >= backing.size()) {
            return Extent.hole(r[0]);
        }
        Extent b = backing.extentAt(offset, Math.min(r[0], backing.size() - offset));
        return b;
    }

    /** Returns {run length, kind} for this image alone, blocking on L2 reads (not the I/O path). */
    private long[] depthAt(long offset, long maxLength) {
        while (true) {
            CompletableFuture<Void> wait = new CompletableFuture<>();
            int kind;
            long len;
            // The lookup may submit an L2 load, and this thread then waits for it. Block status
            // is asked on an NBD reactor thread, whose own ring would carry that load: waiting
            // there for it would never end. So the lookup (and the load it submits) runs on
            // another thread, and only the wait happens here. Not the I/O path: one hop per call.
            long[] got = CompletableFuture.supplyAsync(() -> {
                synchronized (meta) {
                    int k = lookup(offset, Math.min(maxLength, header.size() - offset), new Bio().init(Op.READ, 0, 0,
                            x -> wait.completeExceptionally(new IOException(x.detail()))), () -> wait.complete(null));
                    return new long[] {k, pieceLen};
                }
            }, METADATA_LOADER).join();
            kind = (int) got[0];
            len = got[1];
            if (kind == K_WAIT) {
                wait.join();
                continue;
            }
            if (kind == K_ERROR) {
                return new long[] {Math.min(maxLength, 512), K_DATA};
            }
            return new long[] {Math.max(len, 1), kind};
        }
    }

    /**
     * The allocation depth of a chain (qemu-nbd -A): 0 unallocated, 1 this image, N deeper. Past
     * the end of a backing file shorter than this image, the zeros it reads are that backing
     * file's (qemu's bdrv_co_common_block_status_above: "any zeroes that we synthesize beyond
     * EOF behave as if they were allocated at this layer"): depth 2.
     */
    private Extent depthExtent(long offset, long maxLength) {
        long[] r = depthAt(offset, maxLength);
        int kind = (int) r[1];
        if (kind != K_UNALLOC) {
            return new Extent(r[0], 1);
        }
        if (backing == null) {
            return new Extent(r[0], 0);
        }
        if (offset >= backing.size()) {
            return new Extent(r[0], 2);
        }
        long n = Math.min(r[0], backing.size() - offset);
        // Asked by name, not by class: a stack's backing=NAME device is wrapped (counted, mapped).
        for (StatusContext c : backing.statusContexts()) {
            if (c.name().equals(ALLOCATION_DEPTH)) {
                Extent e = c.extentAt(offset, n);
                return new Extent(e.length(), e.flags() == 0 ? 0 : e.flags() + 1);
            }
        }
        return new Extent(n, 2);
    }

    /** The context qemu-nbd -A offers (qemu's docs/interop/nbd.txt). */
    private static final String ALLOCATION_DEPTH = "qemu:allocation-depth";

    @Override
    public List<StatusContext> statusContexts() {
        return List.of(new StatusContext() {
            @Override
            public String name() {
                return ALLOCATION_DEPTH;
            }

            @Override
            public Extent extentAt(long offset, long maxLength) {
                return depthExtent(offset, maxLength);
            }
        });
    }

    // ---- read-only access for img check/map -----------------------------------------------------

    /**
     * The active L1 table as it is in memory.
     *
     * @return a copy of the L1 entries
     */
    public long[] l1Table() {
        synchronized (meta) {
            return l1.clone();
        }
    }

    /**
     * Reads an L2 table (blocking; not the I/O path), through the cache.
     *
     * @param offset the table's offset in the container (from an L1 entry)
     * @return its 64-bit words (two per entry with extended L2)
     */
    public long[] l2Table(long offset) {
        while (true) {
            CompletableFuture<Void> wait = new CompletableFuture<>();
            synchronized (meta) {
                Qcow2Cache.Entry t = cache.lookup(offset);
                if (t != null) {
                    long[] out = new long[cs / 8];
                    for (int i = 0; i < out.length; i++) {
                        out[i] = t.word(i);
                    }
                    return out;
                }
            }
            // Submitted from another thread, for the reason depthAt gives.
            CompletableFuture.runAsync(() -> {
                synchronized (meta) {
                    cache.load(offset, meta, e -> {
                        if (e != null) {
                            wait.completeExceptionally(e);
                        } else {
                            wait.complete(null);
                        }
                    });
                }
            }, METADATA_LOADER).join();
            wait.join();
        }
    }

    /**
     * The refcount of a host cluster as it is in memory.
     *
     * @param hostOffset a byte offset in the container
     * @return its cluster's refcount
     */
    public long refcount(long hostOffset) {
        synchronized (meta) {
            return refcounts.get(hostOffset >>> clusterBits);
        }
    }

    /**
     * The refcount table as it is in memory.
     *
     * @return a copy of its entries
     */
    public long[] refcountTable() {
        synchronized (meta) {
            return refcounts.table.clone();
        }
    }

    Qcow2Refcounts refcountsForRebuild() {
        return refcounts;
    }

    BlockDevice container() {
        return container;
    }

    /** Writes back dirty metadata, then closes what the device owns. */
    /**
     * Hands the container over to this device: {@link #close()} then closes it too, after the
     * metadata is written (an image served by itself, where nothing else owns the container).
     *
     * @return this device
     */
    public Qcow2Device closingContainer() {
        owned.add(container);
        return this;
    }

    @Override
    public void close() {
        if (!readOnly) {
            boolean clean = false;
            try {
                flush().join();
                clean = true;
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, name + ": metadata writeback at close failed: " + e.getMessage());
            }
            if (clean) {
                trimContainer();
            }
        }
        try {
            lock.close();
            for (BlockDevice b : owned) {
                b.close();
            }
            synchronized (meta) {
                cache.close();
            }
            arena.close();
        } finally {
            // a close that failed on the way still gives the image back: reopening is the way on
            IN_USE.remove(container, claim);
        }
    }

    /**
     * At a clean close, gives back the container's tail that {@link #allocCluster} grew ahead in
     * {@link #GROW_STEP}s and never used: the file ends where qemu-img check's "Image end offset"
     * says, after the highest cluster with a refcount (qemu's {@code check_refcounts}), as
     * qemu's own files end. Never below the metadata this device holds (L1 and refcount tables,
     * the L2 tables and refcount blocks they name), which a consistent image counts anyway.
     * Only a container that can shrink (a file under a loop device) does; a failure is logged,
     * not thrown: the image is whole either way, only larger.
     */
    private void trimContainer() {
        long end;
        synchronized (meta) {
            end = usedEnd();
        }
        try {
            long before = container.size();
            if (before > end && Resizable.shrink(container, end)) {
                LOG.log(System.Logger.Level.DEBUG, () -> name + ": container trimmed from " + before + " to "
                        + container.size() + " bytes at close");
            }
        } catch (IOException | RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, name + ": cannot trim the container at close: " + e.getMessage());
        }
    }

    /** End of the highest cluster in use (monitor held): refcounted, or named by the tables held. */
    private long usedEnd() {
        long end = (refcounts.lastUsedCluster() + 1) << clusterBits;
        end = Math.max(end, roundUp(header.l1TableOffset() + (long) header.l1Size() * 8));
        end = Math.max(end, header.refcountTableOffset() + ((long) header.refcountTableClusters() << clusterBits));
        for (long e : l1) {
            long off = e & OFFSET_MASK;
            if (off != 0) {
                end = Math.max(end, off + cs);
            }
        }
        for (long e : refcounts.table) {
            if (e != 0) {
                end = Math.max(end, e + cs);
            }
        }
        return end;
    }

    private long roundUp(long v) {
        return (v + cs - 1) & -(long) cs;
    }

    @Override
    public String toString() {
        return name + " (qcow2 " + header + ")";
    }

    // ---- persistent bitmaps: the hooks Qcow2BitmapStore allocates and commits through ----------

    /**
     * Whether the image's bitmaps were consistent with its data when it was opened: the
     * autoclear bitmaps bit was set (read-write: before {@link #openReadWrite} cleared it).
     *
     * @return true when the bitmaps extension may be trusted
     */
    boolean bitmapsTrustedAtOpen() {
        return readOnly ? header.version() == 3 && (header.autoclearFeatures() & Qcow2Header.AUTOCLEAR_BITMAPS) != 0
                : bitmapsTrusted;
    }

    /**
     * Allocates {@code n} contiguous clusters at the end of the image, each with refcount 1 (in
     * memory: the next writeback makes the counts durable, before any header that points at
     * them). Blocking only when the container must grow; never on the I/O path.
     *
     * @param n clusters wanted, at least 1
     * @return the first cluster's offset in the container
     * @throws IOException when the container cannot grow or the refcount table is full
     */
    long allocateClusters(int n) throws IOException {
        synchronized (meta) {
            long at = nextFree;
            nextFree += (long) n * cs;
            for (int i = 0; i < n; i++) {
                long c = (at >>> clusterBits) + i;
                ensureRefBlock(c);
                refcounts.set(c, 1);
            }
            if (nextFree > container.size()) {
                try {
                    Resizable.grow(container, Math.max(nextFree, Math.min(container.size() + GROW_STEP,
                            nextFree + GROW_STEP)));
                } catch (IOException e) {
                    throw new IOException("cannot allocate " + n + " clusters: " + e.getMessage(), e);
                }
            }
            return at;
        }
    }

    /**
     * Makes a header change current with qcow2's ordering: everything written to the container
     * before this call, and the refcounts of clusters allocated before it, are durable before the
     * new header is written (the writeback's first FLUSH); the clusters in {@code freeAfter} are
     * released only once the new header is durable. The change is applied to the newest header
     * (a moved refcount table waiting for its writeback is kept).
     *
     * @param change    the new header from the current one
     * @param freeAfter cluster offsets to free after the header is durable
     * @return completes when the header and the frees are durable
     */
    CompletableFuture<Void> commitHeader(java.util.function.UnaryOperator<Qcow2Header> change, List<Long> freeAfter) {
        synchronized (meta) {
            pendingHeader = change.apply(tableHeader());
            pendingFrees.addAll(freeAfter);
        }
        return flush();
    }
}
