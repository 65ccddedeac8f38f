package io.biostack.block.bitmap;

import io.biostack.block.Bio;
import io.biostack.block.Sizes;
import io.biostack.block.Status;
import io.biostack.block.StatusContext;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;

/**
 * The dirty bitmaps of one device: what {@code dm message NAME bitmap ...} changes and
 * {@code dm status} lists, and the observer that marks them as writes go by (called by the
 * device's {@code CountedDevice} before a write is sent down).
 *
 * <h2>The I/O path</h2>
 * {@link #beforeWrite} marks every recording bitmap with atomic ORs (no lock, no allocation) and
 * says whether the bio may go down now. It may, unless a persistent bitmap's bits for the range
 * are not durable yet and its store {@linkplain BitmapStore#durableWords() wants them so}
 * (the first write to a clean chunk since the store last saved it): then the
 * bio is queued for this device's bitmap writer thread, which saves the store blocks holding
 * those bits (one metadata write per block, {@code O_DSYNC}) and only then sends the bio down, as
 * md's write-intent bitmap holds a write until its bit is on disk. Later writes to marked chunks
 * find their bits durable and go straight down. The writer batches: every bio queued while a
 * block write runs is served by the next one.
 *
 * <h2>Control</h2>
 * {@link #message} and {@link #status} are serialised on this object. A change to the set of
 * persistent bitmaps (add, remove, enable, disable, clear, merge) is saved in the store before it
 * takes effect on writes, so the store's in-use marks are durable before a recorded write goes
 * down.
 *
 * <p>Thread-safe. Ownership: bios passed to {@link #beforeWrite} that it keeps are handed to the
 * {@code down} consumer (or failed) by the writer thread, exactly once.
 */
public final class DeviceBitmaps implements AutoCloseable {
    /** A recording bitmap and, when it is persistent, the bits known to be on disk. */
    private record Tracked(DirtyBitmap bitmap, DirtyBitmap durable) {
    }

    private static final Tracked[] NONE = new Tracked[0];
    /** The last entry of {@link #tracked} while writes are held: its null bitmap says "hold". */
    private static final Tracked HOLD = new Tracked(null, null);

    private final String device;
    /** The device's bytes now: a bitmap added later covers the device as it is then. */
    private final java.util.function.LongSupplier size;
    private final BitmapStore store;
    private final Consumer<Bio> down;
    private final LinkedHashMap<String, DirtyBitmap> all = new LinkedHashMap<>();
    /**
     * Durable shadows of persistent bitmaps, kept across enable/disable; none when the store's
     * bitmaps rest on the in-use mark alone (qcow2: {@link BitmapStore#durableWords()} false).
     * A shadow's bits are always a subset of its bitmap's (they are copied from it, and a clear
     * clears the shadow first), which lets {@link #beforeWrite} skip the bitmap when the shadow
     * has the range.
     */
    private final java.util.IdentityHashMap<DirtyBitmap, DirtyBitmap> durable = new java.util.IdentityHashMap<>();
    private final List<String> loadProblems = new ArrayList<>();
    private volatile Tracked[] tracked = NONE;
    private final ConcurrentLinkedQueue<Bio> waiting = new ConcurrentLinkedQueue<>();
    private Thread writer;
    private volatile boolean closing;
    private volatile boolean holding;
    private final ConcurrentLinkedQueue<Bio> held = new ConcurrentLinkedQueue<>();
    private final java.util.concurrent.atomic.AtomicLong heldNow = new java.util.concurrent.atomic.AtomicLong();
    private long heldBios;

    /**
     * The bitmaps of a device; loads the persistent ones from {@code store}.
     *
     * @param device the device's name, for messages
     * @param size   the device's bytes
     * @param store  where persistent bitmaps live, or null when the device has none
     * @param down   sends a bio on to the device underneath (for bios held for a metadata write)
     * @throws IOException when the store can't be read (the message says why and what to do)
     */
    public DeviceBitmaps(String device, long size, BitmapStore store, Consumer<Bio> down) throws IOException {
        this(device, () -> size, store, down);
    }

    /**
     * The bitmaps of a device whose size may change (a mapped device reloaded with a table of
     * another size once it has no bitmap); loads the persistent ones from {@code store}.
     *
     * @param device the device's name, for messages
     * @param size   the device's bytes now, asked when the store loads and when a bitmap is added
     * @param store  where persistent bitmaps live, or null when the device has none
     * @param down   sends a bio on to the device underneath (for bios held for a metadata write)
     * @throws IOException when the store can't be read (the message says why and what to do)
     */
    public DeviceBitmaps(String device, java.util.function.LongSupplier size, BitmapStore store, Consumer<Bio> down)
            throws IOException {
        this.device = device;
        this.size = size;
        this.store = store;
        this.down = down;
        if (store != null) {
            long bytes = size.getAsLong();
            for (DirtyBitmap b : store.load(bytes, loadProblems)) {
                all.put(b.bitmapName(), b);
                if (b.isConsistent() && store.durableWords()) {
                    DirtyBitmap d = new DirtyBitmap(b.bitmapName(), b.granularity(), bytes);
                    d.load(b.words());
                    durable.put(b, d);
                }
            }
            // Marks the recording ones in use before any write can change them.
            store.saveLayout(persistent());
            retrack();
        }
    }

    /**
     * Returns why bitmaps were loaded inconsistent, one line each (empty when none).
     *
     * @return why bitmaps were loaded inconsistent, one line each (empty when none)
     */
    public synchronized List<String> loadProblems() {
        return List.copyOf(loadProblems);
    }

    // ---- the I/O path --------------------------------------------------------------------------

    /**
     * Marks {@code bio}'s range in every recording bitmap. Call for writes, discards and
     * write-zeroes, before they go down.
     *
     * @param bio a bio that changes data
     * @return true when the caller sends the bio down now; false when this object took it and
     *         will send it down once the marks are durable
     */
    public boolean beforeWrite(Bio bio) {
        Tracked[] t = tracked;
        if (t.length == 0) {
            return true;
        }
        long off = bio.offset();
        long len = bio.size();
        boolean hold = false;
        for (Tracked x : t) {
            if (x == HOLD) {
                heldNow.incrementAndGet();
                held.add(bio);
                if (!holding) {
                    drainHeld(); // released while this one was being added
                }
                return false;
            }
            DirtyBitmap d = x.durable;
            if (d == null) {
                x.bitmap.mark(off, len);
            } else if (!d.isMarked(off, len)) {
                x.bitmap.mark(off, len);
                hold = true;
            }
            // else: the durable bits are a subset of the bitmap's (see durable), so the range is
            // marked and on disk already: one load is the whole cost of a write to a marked chunk
        }
        if (!hold) {
            return true;
        }
        waiting.add(bio);
        LockSupport.unpark(writer);
        return false;
    }

    /** A bio marked already: down now, or to the writer when its persistent marks aren't durable. */
    private void release(Bio bio) {
        Tracked[] t = tracked;
        for (Tracked x : t) {
            if (x != HOLD) {
                x.bitmap.mark(bio.offset(), bio.size()); // what records now (a backup's new bitmap)
            }
        }
        for (Tracked x : t) {
            if (x.durable != null && !x.durable.isMarked(bio.offset(), bio.size())) {
                waiting.add(bio);
                LockSupport.unpark(writer);
                return;
            }
        }
        down.accept(bio);
    }

    private void drainHeld() {
        Bio b;
        while ((b = held.poll()) != null) {
            heldNow.decrementAndGet();
            release(b);
        }
    }

    /**
     * Holds every write from now on (marked, not sent down) until {@link #releaseWrites}: how a
     * backup gets an instant with no write in flight without suspending the device's reads.
     */
    public synchronized void holdWrites() {
        holding = true;
        retrack();
    }

    /**
     * Returns writes held by {@link #holdWrites} now.
     *
     * @return writes held by {@link #holdWrites} now
     */
    public long heldWrites() {
        return heldNow.get();
    }

    /** Sends the held writes down (through the device's path as it is now) and stops holding. */
    public synchronized void releaseWrites() {
        holding = false;
        retrack();
        drainHeld();
    }

    private void writerLoop() {
        List<Bio> batch = new ArrayList<>();
        Set<Long> blocks = new HashSet<>();
        while (true) {
            Bio b;
            while ((b = waiting.poll()) != null) {
                batch.add(b);
            }
            if (batch.isEmpty()) {
                if (closing) {
                    return;
                }
                LockSupport.parkNanos(100_000_000L);
                continue;
            }
            String error = null;
            synchronized (this) {
                try {
                    saveMarks(batch, blocks);
                } catch (IOException | RuntimeException e) {
                    error = "bitmap store " + store.describe() + " of " + device + ": " + e.getMessage();
                }
                heldBios += batch.size();
            }
            for (Bio bio : batch) {
                if (error == null) {
                    try {
                        down.accept(bio);
                    } catch (RuntimeException e) {
                        // A submit that throws must not kill this thread: every write held for a
                        // later metadata save would wait for it forever. The bio fails alone.
                        bio.fail(Status.IOERR, "bitmaps of " + device + ": submit failed: " + e);
                    }
                } else {
                    bio.fail(Status.IOERR, error);
                }
            }
            batch.clear();
            blocks.clear();
        }
    }

    /** Saves the store blocks holding the batch's bits that are not durable yet, each once. */
    private void saveMarks(List<Bio> batch, Set<Long> blocks) throws IOException {
        Tracked[] t = tracked;
        int per = store.wordsPerBlock();
        for (int i = 0; i < t.length; i++) {
            Tracked x = t[i];
            if (x == HOLD || x.durable == null) {
                continue;
            }
            int shift = Long.numberOfTrailingZeros(x.bitmap.granularity());
            for (Bio bio : batch) {
                long off = bio.offset();
                long len = bio.size();
                long size = x.bitmap.deviceSize();
                if (len <= 0 || off >= size || x.durable.isMarked(off, len)) {
                    continue;
                }
                int firstWord = (int) ((off >>> shift) >>> 6);
                int lastWord = (int) (((Math.min(off + len, size) - 1) >>> shift) >>> 6);
                for (int blk = firstWord / per; blk <= lastWord / per; blk++) {
                    if (!blocks.add(((long) i << 40) | blk)) {
                        continue;
                    }
                    int first = blk * per;
                    int last = Math.min(x.bitmap.wordCount() - 1, first + per - 1);
                    long[] snap = new long[last - first + 1];
                    for (int w = first; w <= last; w++) {
                        snap[w - first] = x.bitmap.word(w);
                    }
                    store.saveWords(x.bitmap, first, last);
                    x.durable.orWords(first, snap);
                }
            }
        }
    }

    // ---- what others read ------------------------------------------------------------------

    /**
     * The consistent bitmaps as NBD contexts ({@code qemu:dirty-bitmap:NAME}); inconsistent ones
     * are never offered.
     *
     * @return the contexts, a copy
     */
    public synchronized List<StatusContext> contexts() {
        List<StatusContext> out = new ArrayList<>();
        for (DirtyBitmap b : all.values()) {
            if (b.isConsistent()) {
                out.add(b);
            }
        }
        return out;
    }

    /**
     * The bitmap called {@code name}.
     *
     * @param name a bitmap name
     * @return the bitmap
     * @throws IllegalArgumentException naming the bitmaps there are when there is none
     */
    public synchronized DirtyBitmap get(String name) {
        DirtyBitmap b = all.get(name);
        if (b == null) {
            throw new IllegalArgumentException(device + " has no bitmap '" + name + "'"
                    + (all.isEmpty() ? " (it has none)" : " (bitmaps: " + String.join(", ", all.keySet()) + ")"));
        }
        return b;
    }

    /**
     * Returns the names of the bitmaps, in the order they were added.
     *
     * @return the names of the bitmaps, in the order they were added
     */
    public synchronized List<String> names() {
        return List.copyOf(all.keySet());
    }

    /**
     * Returns store blocks written so far to make marks durable (0 without a store).
     *
     * @return store blocks written so far to make marks durable (0 without a store)
     */
    public long metadataWrites() {
        return store == null ? 0 : store.metadataWrites();
    }

    /**
     * Returns writes held for a metadata write so far.
     *
     * @return writes held for a metadata write so far
     */
    public synchronized long writesHeldForMetadata() {
        return heldBios;
    }

    // ---- control ---------------------------------------------------------------------------

    /**
     * Runs a {@code bitmap} message: {@code add BM [granularity=SIZE] [persistent] [disabled]},
     * {@code remove BM}, {@code clear BM}, {@code enable BM}, {@code disable BM},
     * {@code merge SRC... DST}.
     *
     * @param argv the words after {@code bitmap}
     * @return the text to show (empty when there is nothing to say)
     * @throws IllegalArgumentException saying what is wrong; nothing changed then
     * @throws IOException when the store can't save the change (nothing changed in memory either)
     */
    public synchronized String message(List<String> argv) throws IOException {
        if (argv.isEmpty()) {
            throw new IllegalArgumentException("bitmap needs a verb: add, remove, clear, enable, disable, merge");
        }
        String verb = argv.getFirst();
        List<String> a = argv.subList(1, argv.size());
        switch (verb) {
            case "add" -> add(a);
            case "remove" -> remove(one(verb, a));
            case "clear" -> {
                DirtyBitmap b = changeable(one(verb, a), "cleared");
                DirtyBitmap d = durable.get(b);
                if (d != null) {
                    d.clear(); // first, so it stays a subset of b; the store keeps the old bits until a save: a superset, safe
                }
                b.clear();
                saveIfPersistent(b);
            }
            case "enable", "disable" -> {
                DirtyBitmap b = changeable(one(verb, a), verb + "d");
                b.setRecording(verb.equals("enable"));
                if (verb.equals("enable")) {
                    b.setBackedUp(false); // it records again: in use as any recording bitmap
                }
                if (verb.equals("enable")) {
                    saveIfPersistent(b);
                    retrack();
                } else {
                    retrack();
                    saveIfPersistent(b);
                }
            }
            case "merge" -> merge(a);
            default -> throw new IllegalArgumentException("unknown bitmap verb '" + verb
                    + "' (add, remove, clear, enable, disable, merge)");
        }
        return "";
    }

    private static String one(String verb, List<String> a) {
        if (a.size() != 1) {
            throw new IllegalArgumentException("bitmap " + verb + " takes one bitmap name");
        }
        return a.getFirst();
    }

    private DirtyBitmap changeable(String name, String what) {
        DirtyBitmap b = get(name);
        if (!b.isConsistent()) {
            throw new IllegalArgumentException("bitmap " + name + " of " + device + " is inconsistent (biostack stopped "
                    + "without closing it); it can only be removed, and the next backup must be a full one");
        }
        if (b.busy() != null) {
            throw new IllegalArgumentException("bitmap " + name + " is in use by backup " + b.busy() + "; it can't be "
                    + what + " until backup-end " + b.busy());
        }
        return b;
    }

    private void add(List<String> a) throws IOException {
        if (a.isEmpty()) {
            throw new IllegalArgumentException("bitmap add BM [granularity=SIZE] [persistent] [disabled]");
        }
        String name = a.getFirst();
        long g = DirtyBitmap.DEFAULT_GRANULARITY;
        boolean persistent = false;
        boolean disabled = false;
        for (String o : a.subList(1, a.size())) {
            if (o.startsWith("granularity=")) {
                try {
                    g = Sizes.parse(o.substring("granularity=".length()));
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("granularity '" + o.substring(12) + "' is not a size (64k, 1M)");
                }
            } else if (o.equals("persistent")) {
                persistent = true;
            } else if (o.equals("disabled")) {
                disabled = true;
            } else {
                throw new IllegalArgumentException("unknown bitmap add option '" + o + "' (granularity=SIZE, persistent, disabled)");
            }
        }
        if (all.containsKey(name)) {
            throw new IllegalArgumentException(device + " has a bitmap '" + name + "' already");
        }
        long size = this.size.getAsLong();
        DirtyBitmap b = new DirtyBitmap(name, g, size);
        b.setRecording(!disabled);
        if (persistent) {
            if (store == null) {
                throw new IllegalArgumentException(device + " has nowhere to keep a persistent bitmap: give it "
                        + "bitmap-file=PATH on its table line");
            }
            store.checkPersistent(name, g, size);
            b.setPersistent(true);
            List<DirtyBitmap> p = persistent();
            p.add(b);
            store.saveLayout(p); // in use on disk before a write is recorded
            if (store.durableWords()) {
                durable.put(b, new DirtyBitmap(name, g, size));
            }
        }
        all.put(name, b);
        retrack();
    }

    private void remove(String name) throws IOException {
        DirtyBitmap b = get(name);
        if (b.busy() != null) {
            throw new IllegalArgumentException("bitmap " + name + " is in use by backup " + b.busy() + "; backup-end it first");
        }
        all.remove(name);
        retrack();
        durable.remove(b);
        if (b.isPersistent()) {
            store.saveLayout(persistent());
        }
    }

    private void merge(List<String> a) throws IOException {
        if (a.size() < 2) {
            throw new IllegalArgumentException("bitmap merge SRC... DST: at least one source and the destination");
        }
        DirtyBitmap dst = changeable(a.getLast(), "merged into");
        List<DirtyBitmap> srcs = new ArrayList<>();
        for (String s : a.subList(0, a.size() - 1)) {
            DirtyBitmap src = get(s);
            if (!src.isConsistent()) {
                throw new IllegalArgumentException("bitmap " + s + " is inconsistent and can't be merged; the next backup must be a full one");
            }
            if (src.granularity() != dst.granularity()) {
                throw new IllegalArgumentException("can't merge " + s + " (granularity " + src.granularity() + ") into "
                        + dst.bitmapName() + " (granularity " + dst.granularity() + "): granularities must match");
            }
            srcs.add(src);
        }
        for (DirtyBitmap s : srcs) {
            dst.merge(s);
        }
        saveIfPersistent(dst);
    }

    private void saveIfPersistent(DirtyBitmap b) throws IOException {
        if (b.isPersistent() && store != null) {
            store.saveLayout(persistent());
            DirtyBitmap d = durable.get(b);
            if (d != null) {
                d.clear();
                d.load(b.words()); // what was just saved (marks made since are not: a subset, safe)
            }
        }
    }

    private List<DirtyBitmap> persistent() {
        List<DirtyBitmap> p = new ArrayList<>();
        for (DirtyBitmap b : all.values()) {
            if (b.isPersistent()) {
                p.add(b);
            }
        }
        return p;
    }

    /** Rebuilds the array the I/O path reads; starts the writer thread when a store needs it. */
    private void retrack() {
        List<Tracked> t = new ArrayList<>();
        for (DirtyBitmap b : all.values()) {
            if (b.isRecording() && b.isConsistent()) {
                t.add(new Tracked(b, b.isPersistent() ? durable.get(b) : null));
            }
        }
        if (writer == null && t.stream().anyMatch(x -> x.durable != null)) {
            writer = Thread.ofPlatform().daemon().name("biostack-bitmap-" + device).start(this::writerLoop);
        }
        if (holding) {
            t.add(HOLD);
        }
        tracked = t.toArray(NONE);
    }

    // ---- backups ---------------------------------------------------------------------------

    /**
     * Freezes {@code name} for a backup and starts {@code next} recording in its place, at one
     * instant with respect to writes: {@code next} records before {@code name} stops, so a write
     * in flight across the instant is in one or both, never in neither. {@code at} runs between
     * the two (the point in time the backup exports).
     *
     * @param name   the bitmap the backup exports (consistent, not busy)
     * @param next   a new bitmap to record from now on, or null
     * @param holder the backup's name, shown as the bitmap's holder
     * @param at     what makes the point in time (the view's snapshot)
     * @return the frozen bitmap
     * @throws IOException when the store can't save the change; then, as when {@code at} throws,
     *                     {@code name} records as before and {@code next} is gone
     */
    public synchronized DirtyBitmap freezeForBackup(String name, String next, String holder, Runnable at) throws IOException {
        DirtyBitmap b = all.get(name);
        if (b != null && !b.isConsistent()) {
            throw new IllegalArgumentException("bitmap " + name + " of " + device + " is inconsistent (biostack stopped "
                    + "without closing it): an incremental backup from it is refused; the next backup must be a full one");
        }
        b = changeable(name, "backed up again");
        if (next != null) {
            if (all.containsKey(next)) {
                throw new IllegalArgumentException(device + " has a bitmap '" + next + "' already");
            }
            List<String> add = new ArrayList<>(List.of(next, "granularity=" + b.granularity()));
            if (b.isPersistent()) {
                add.add("persistent");
            }
            add(add);
        }
        boolean wasRecording = b.isRecording();
        boolean wasBackedUp = b.isBackedUp();
        try {
            at.run();
            b.setRecording(false);
            b.setBusy(holder);
            b.setBackedUp(true); // in use on disk until removed (or enabled), not only until backup-end
            retrack();
            saveIfPersistent(b);
        } catch (IOException | RuntimeException e) {
            // No backup: the bitmap records on as before, or the writes from now on would be in no
            // bitmap at all. The caller holds writes around this call, so none went by unmarked.
            b.setBusy(null);
            b.setBackedUp(wasBackedUp);
            b.setRecording(wasRecording);
            retrack();
            if (next != null) {
                try {
                    remove(next); // so that the same request can be given again
                } catch (IOException | RuntimeException again) {
                    e.addSuppressed(again); // gone from memory; the store drops it at the next save
                }
            }
            throw e;
        }
        return b;
    }

    /**
     * Thaws a bitmap a backup froze.
     *
     * @param name   the bitmap
     * @param holder the backup that froze it
     */
    public synchronized void endBackup(String name, String holder) {
        DirtyBitmap b = all.get(name);
        if (b != null && holder.equals(b.busy())) {
            b.setBusy(null);
        }
    }

    // ---- status ----------------------------------------------------------------------------

    /**
     * One line per bitmap: {@code bitmap NAME granularity=G dirty=BYTES recording|disabled
     * persistent|transient consistent|inconsistent [busy=BACKUP]}.
     *
     * @return the lines, in the order the bitmaps were added
     */
    public synchronized List<String> status() {
        List<String> out = new ArrayList<>();
        for (DirtyBitmap b : all.values()) {
            out.add("bitmap " + b.bitmapName() + " granularity=" + b.granularity() + " dirty=" + b.dirtyBytes()
                    + " " + (b.isRecording() ? "recording" : "disabled")
                    + " " + (b.isPersistent() ? "persistent" : "transient")
                    + " " + (b.isConsistent() ? "consistent" : "inconsistent")
                    + (b.busy() != null ? " busy=" + b.busy() : ""));
        }
        if (store != null) {
            out.add("bitmap-store " + store.describe() + " metadata_writes=" + store.metadataWrites());
        }
        return out;
    }

    /**
     * The bitmaps as a JSON array of objects: {@code name}, {@code granularity},
     * {@code dirty_bytes}, {@code recording}, {@code persistent}, {@code consistent},
     * {@code busy} (null or the backup's name).
     *
     * @return the JSON text
     */
    public synchronized String statusJson() {
        StringBuilder sb = new StringBuilder("[");
        for (DirtyBitmap b : all.values()) {
            if (sb.length() > 1) {
                sb.append(',');
            }
            sb.append(String.format(Locale.ROOT,
                    "{\"name\":\"%s\",\"granularity\":%d,\"dirty_bytes\":%d,\"recording\":%b,\"persistent\":%b,"
                            + "\"consistent\":%b,\"busy\":%s}",
                    b.bitmapName(), b.granularity(), b.dirtyBytes(), b.isRecording(), b.isPersistent(), b.isConsistent(),
                    b.busy() == null ? "null" : "\"" + b.busy() + "\""));
        }
        return sb.append(']').toString();
    }

    /**
     * Sends down what is held, then saves every persistent bitmap cleanly (in-use marks cleared)
     * and closes the store. Bios must no longer be submitted.
     */
    @Override
    public void close() {
        Thread w;
        synchronized (this) {
            closing = true;
            w = writer;
        }
        if (w != null) {
            LockSupport.unpark(w);
            try {
                w.join(30_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        synchronized (this) {
            if (store != null) {
                try {
                    store.closeClean(persistent());
                } catch (IOException e) {
                    // Left in use on disk: the next open loads them inconsistent, which is the safe side.
                    System.err.println("biostack: bitmaps of " + device + " not saved cleanly: " + e.getMessage());
                } finally {
                    store.close();
                }
            }
        }
    }
}
