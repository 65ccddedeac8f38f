package io.biostack.layer.snapshot;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.BlockDevice;
import io.biostack.block.Op;
import io.biostack.block.Status;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.function.Consumer;

/**
 * Where a snapshot keeps its exceptions (old chunk on the origin → new chunk on the COW device).
 *
 * <h2>Persistent: device-mapper's on-disk format (drivers/md/dm-snap-persistent.c)</h2>
 * All integers little-endian; chunk numbers count {@code chunk} bytes of the COW device.
 * <pre>
 * chunk 0          header: 0 magic 0x70416e53 ("SnAp")  4 valid (1, or 0 once overflowed)
 *                          8 version 1                 12 chunk size in 512-byte sectors
 * chunk 1          metadata area 0: chunk/16 exceptions of {old_chunk u64, new_chunk u64};
 *                  the first entry with new_chunk 0 ends the table
 * chunks 2..E+1    data chunks of area 0 (E = chunk / 16 exceptions per area)
 * chunk E+2        metadata area 1, then its data chunks, and so on
 * </pre>
 * An exception is committed (its area chunk rewritten, with PREFLUSH and FUA so the copied data
 * is durable first) before the bio that needed it goes on; commits that arrive while an area
 * write is in flight are batched into the next one. When an area fills, the next area is zeroed
 * on disk first (dm's {@code persistent_commit_exception} wipes it before it writes the full
 * one), so that a reader finds the end of the table even after a crash between the two writes,
 * whatever the COW device held there before. A COW device whose first bytes are zero is
 * formatted; one with any other header is refused.
 *
 * <p>A merged exception is removed from the table on disk ({@link #remove}, dm's
 * {@code persistent_commit_merge}) before the chunk takes new writes, so that a merge stopped
 * half way, by a crash or a restart, resumes from what is left and never copies an old chunk
 * back over newer data. The table's last entry moves into the freed slot; the areas are
 * rewritten in ascending order, so that a crash between the writes leaves at worst that entry
 * twice (the loader keeps one), never one lost.
 *
 * <h2>Transient</h2>
 * Exceptions live in memory only, data chunks from chunk 0.
 *
 * <p>Thread-safe: {@link #allocate} is called under the snapshot's lock; commits synchronize
 * on this store and never hold its monitor while I/O is submitted.
 */
final class ExceptionStore {
    static final int MAGIC = 0x70416e53;
    static final int VERSION = 1;
    private static final int EXCEPTION_SIZE = 16;

    private final BlockDevice cow;
    private final boolean persistent;
    private final long chunk;
    private final int perArea;
    private final long cowChunks;
    private long nextFree;
    private boolean valid = true;

    // the table in its on-disk order, and the commit state; guarded by this
    private long[] oldChunks = new long[64];
    private long[] newChunks = new long[64];
    private int count;
    /** Old chunk → its position in the table. */
    private final LongMap<Integer> position = new LongMap<>();
    private boolean writing;
    private final ArrayDeque<Pending> queued = new ArrayDeque<>();

    /** An exception to add, or (remove) to drop after its merge. */
    private record Pending(boolean remove, long oldChunk, long newChunk, Consumer<Status> done) {
    }

    private ExceptionStore(BlockDevice cow, boolean persistent, long chunk) {
        this.cow = cow;
        this.persistent = persistent;
        this.chunk = chunk;
        this.perArea = (int) (chunk / EXCEPTION_SIZE);
        this.cowChunks = cow.size() / chunk;
        this.nextFree = persistent ? 2 : 0;
    }

    /**
     * Opens the store on {@code cow}: loads the exceptions of a persistent store into
     * {@code into} (formatting a zeroed device first), or starts an empty transient one.
     * Synchronous: for setting up, not the I/O path. A persistent store's chunk size on disk wins
     * over {@code chunkBytes}, as in dm.
     */
    static ExceptionStore open(BlockDevice cow, boolean persistent, long chunkBytes, LongMap<Long> into) {
        if (!persistent) {
            return new ExceptionStore(cow, false, chunkBytes);
        }
        int lbs = cow.limits().logicalBlockSize();
        byte[] head = read(cow, 0, Math.max(lbs, 512));
        ByteBuffer h = ByteBuffer.wrap(head).order(ByteOrder.LITTLE_ENDIAN);
        int magic = h.getInt(0);
        if (magic == 0) {
            if (h.getLong(0) != 0 || h.getLong(8) != 0) {
                throw new IllegalArgumentException("COW device " + cow.name() + " has no snapshot header"
                        + " and is not zeroed");
            }
            ExceptionStore s = new ExceptionStore(cow, true, chunkBytes);
            s.checkSize();
            write(cow, s.chunk, new byte[(int) s.chunk]); // area 0: empty table
            write(cow, 0, s.header(true));
            return s;
        }
        if (magic != MAGIC) {
            throw new IllegalArgumentException("COW device " + cow.name() + " holds something else than a snapshot"
                    + " (magic 0x" + Integer.toHexString(magic) + ")");
        }
        if (h.getInt(8) != VERSION) {
            throw new IllegalArgumentException("COW device " + cow.name() + " has snapshot version " + h.getInt(8));
        }
        long diskChunk = (h.getInt(12) & 0xffffffffL) * 512;
        if (diskChunk < 512 || Long.bitCount(diskChunk) != 1) {
            throw new IllegalArgumentException("COW device " + cow.name() + " has a bad chunk size " + diskChunk);
        }
        ExceptionStore s = new ExceptionStore(cow, true, diskChunk);
        s.checkSize();
        s.valid = h.getInt(4) != 0;
        s.load(into);
        return s;
    }

    private void checkSize() {
        if (cowChunks < 3) {
            throw new IllegalArgumentException("COW device " + cow.name() + " (" + cow.size() + " bytes) is too small"
                    + " for a persistent store with " + chunk + "-byte chunks");
        }
    }

    private void load(LongMap<Long> into) {
        long maxNew = 1;
        for (int a = 0; ; a++) {
            long where = areaChunk(a);
            if (where >= cowChunks) {
                break;
            }
            byte[] img = read(cow, where * chunk, (int) chunk);
            ByteBuffer b = ByteBuffer.wrap(img).order(ByteOrder.LITTLE_ENDIAN);
            int i = 0;
            for (; i < perArea; i++) {
                long oldChunk = b.getLong(i * EXCEPTION_SIZE);
                long newChunk = b.getLong(i * EXCEPTION_SIZE + 8);
                if (newChunk == 0) {
                    break;
                }
                maxNew = Math.max(maxNew, newChunk);
                if (position.containsKey(oldChunk)) {
                    continue; // a crash in the middle of a removal left the moved entry twice
                }
                into.put(oldChunk, newChunk);
                append(oldChunk, newChunk);
            }
            if (i < perArea) {
                break;
            }
        }
        nextFree = maxNew + 1;
        skipMetadata();
    }

    /** Under the monitor (or while opening): adds an entry at the end of the table. */
    private void append(long oldChunk, long newChunk) {
        if (count == oldChunks.length) {
            oldChunks = Arrays.copyOf(oldChunks, count * 2);
            newChunks = Arrays.copyOf(newChunks, count * 2);
        }
        oldChunks[count] = oldChunk;
        newChunks[count] = newChunk;
        position.put(oldChunk, count);
        count++;
    }

    long chunkBytes() {
        return chunk;
    }

    boolean persistent() {
        return persistent;
    }

    boolean valid() {
        return valid;
    }

    /** Data chunks in use and chunks the store can hold, for status. */
    long allocatedChunks() {
        return nextFree;
    }

    long totalChunks() {
        return cowChunks;
    }

    long metadataChunks() {
        synchronized (this) {
            return persistent ? 1 + count / perArea + 1 : 0;
        }
    }

    private long areaChunk(int a) {
        return 1 + (long) a * (perArea + 1);
    }

    /** dm's skip_metadata: the chunk after a data run is the next area's table. */
    private void skipMetadata() {
        if (persistent && nextFree % (perArea + 1) == 1) {
            nextFree++;
        }
    }

    /** A free COW chunk, or -1 when the store is full. Caller holds the snapshot's lock. */
    long allocate() {
        if (!valid || nextFree >= cowChunks) {
            return -1;
        }
        long c = nextFree++;
        skipMetadata();
        return c;
    }

    /**
     * Records {@code oldChunk → newChunk}; {@code done} runs once it is durable (persistent) or at
     * once (transient), with the status of the metadata write.
     */
    void commit(long oldChunk, long newChunk, Consumer<Status> done) {
        if (!persistent) {
            done.accept(Status.OK);
            return;
        }
        enqueue(new Pending(false, oldChunk, newChunk, done));
    }

    /**
     * Drops the exception of {@code oldChunk} after its merge; {@code done} runs once the table
     * without it is durable (persistent) or at once (transient). The caller has made the merged
     * data durable on the origin first.
     */
    void remove(long oldChunk, Consumer<Status> done) {
        if (!persistent) {
            done.accept(Status.OK);
            return;
        }
        enqueue(new Pending(true, oldChunk, 0, done));
    }

    private void enqueue(Pending p) {
        Runnable w;
        synchronized (this) {
            queued.add(p);
            if (writing) {
                return;
            }
            writing = true;
            w = prepareWrite();
        }
        w.run();
    }

    /**
     * Under the monitor: applies the queued changes of one kind to the table and returns the I/O
     * that writes the areas they touched: from the last area back for additions (an area is
     * written only once the one after it is, so a reader never runs past the end of the table),
     * from the first on for removals (an entry moved down is written before its old slot is
     * cleared).
     */
    private Runnable prepareWrite() {
        List<Pending> batch = new ArrayList<>();
        TreeSet<Integer> dirty = new TreeSet<>();
        boolean removing = queued.peek().remove();
        while (!queued.isEmpty() && queued.peek().remove() == removing) {
            Pending p = queued.poll();
            batch.add(p);
            if (!removing) {
                dirty.add(count / perArea);
                append(p.oldChunk(), p.newChunk());
                continue;
            }
            Integer at = position.get(p.oldChunk());
            if (at == null) {
                continue;
            }
            position.remove(p.oldChunk());
            int last = count - 1;
            if (at != last) {
                oldChunks[at] = oldChunks[last];
                newChunks[at] = newChunks[last];
                position.put(oldChunks[at], at);
                dirty.add(at / perArea);
            }
            count--;
            dirty.add(last / perArea);
        }
        if (!removing && count % perArea == 0 && areaChunk(count / perArea) < cowChunks) {
            dirty.add(count / perArea); // the area after a full one: zeroed before the full one is written
        }
        List<Long> where = new ArrayList<>();
        List<byte[]> images = new ArrayList<>();
        for (int a : removing ? dirty : dirty.descendingSet()) {
            where.add(areaChunk(a) * chunk);
            images.add(areaImage(a));
        }
        return () -> writeAreas(where, images, 0, BioFlags.PREFLUSH | BioFlags.FUA, s -> committed(batch, s));
    }

    /** Under the monitor: area {@code a} as it should be on disk, its unused slots zero. */
    private byte[] areaImage(int a) {
        byte[] img = new byte[(int) chunk];
        ByteBuffer b = ByteBuffer.wrap(img).order(ByteOrder.LITTLE_ENDIAN);
        int from = a * perArea;
        for (int i = from; i < Math.min(count, from + perArea); i++) {
            b.putLong((i - from) * EXCEPTION_SIZE, oldChunks[i]);
            b.putLong((i - from) * EXCEPTION_SIZE + 8, newChunks[i]);
        }
        return img;
    }

    /** Writes the areas one after the other, the first with {@code flags}, the rest with FUA. */
    private void writeAreas(List<Long> where, List<byte[]> images, int i, int flags, Consumer<Status> done) {
        if (i == where.size()) {
            done.accept(Status.OK);
            return;
        }
        writeAsync(where.get(i), images.get(i), flags, s -> {
            if (!s.isOk()) {
                done.accept(s);
                return;
            }
            writeAreas(where, images, i + 1, BioFlags.FUA, done);
        });
    }

    private void committed(List<Pending> batch, Status s) {
        for (Pending p : batch) {
            p.done().accept(s);
        }
        Runnable w;
        synchronized (this) {
            if (queued.isEmpty()) {
                writing = false;
                return;
            }
            w = prepareWrite();
        }
        w.run();
    }

    /** Marks the store invalid (overflow, copy error); persistent stores say so in the header. */
    void invalidate() {
        if (!valid) {
            return;
        }
        valid = false;
        if (persistent) {
            writeAsync(0, header(false), BioFlags.FUA, s -> { });
        }
    }

    /** Empties the store after a merge: the table is cleared on disk. Synchronous. */
    void clear() {
        synchronized (this) {
            count = 0;
            for (long k : position.keys()) {
                position.remove(k);
            }
            nextFree = persistent ? 2 : 0;
        }
        if (persistent) {
            write(cow, chunk, new byte[(int) chunk]);
            write(cow, 0, header(valid));
            cow.flush().join();
        }
    }

    private byte[] header(boolean isValid) {
        int lbs = cow.limits().logicalBlockSize();
        byte[] h = new byte[Math.max(512, lbs)];
        ByteBuffer b = ByteBuffer.wrap(h).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(0, MAGIC);
        b.putInt(4, isValid ? 1 : 0);
        b.putInt(8, VERSION);
        b.putInt(12, (int) (chunk / 512));
        return h;
    }

    private void writeAsync(long offset, byte[] data, int flags, Consumer<Status> done) {
        MemorySegment mem = Arena.ofAuto().allocate(data.length, 4096);
        MemorySegment.copy(MemorySegment.ofArray(data), 0, mem, 0, data.length);
        Bio bio = new Bio().init(Op.WRITE, flags, offset, b -> done.accept(b.status()));
        bio.addSegment(mem);
        cow.submit(bio);
    }

    private static byte[] read(BlockDevice dev, long offset, int len) {
        byte[] b = new byte[len];
        try {
            dev.read(offset, MemorySegment.ofArray(b)).get();
        } catch (ExecutionException e) {
            throw new IllegalStateException("reading the snapshot store on " + dev.name() + " failed: "
                    + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
        return b;
    }

    private static void write(BlockDevice dev, long offset, byte[] data) {
        try {
            dev.write(offset, MemorySegment.ofArray(data)).get();
        } catch (ExecutionException e) {
            throw new IllegalStateException("writing the snapshot store on " + dev.name() + " failed: "
                    + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }
}
