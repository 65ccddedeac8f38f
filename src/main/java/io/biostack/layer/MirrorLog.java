package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.BlockDevice;
import io.biostack.block.Status;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;
import java.util.function.IntPredicate;
import java.util.function.BooleanSupplier;
import java.util.zip.CRC32C;

/**
 * A mirror's dirty-region log on a device of its own: dm-raid1's {@code disk} log, kept the way
 * md keeps its write-intent bitmap. A region's bit is set, and durable on the log device (a FUA
 * write of the log block that holds it), before the first write to the region goes to the legs;
 * it is cleared lazily, once every leg is in sync, no write is in flight in the region and every
 * leg has flushed (a leg with a volatile write cache may still lose a write it completed). After a
 * crash, the set bits are the only regions whose legs may differ: a restart copies those and
 * nothing else.
 *
 * <h2>Layout</h2>
 * <pre>
 * block 0 (4096 bytes), little-endian:
 *   0  8  magic "BSMIRLOG"
 *   8  4  version (1)
 *  12  4  CRC32C of bytes 0..4095 with this field zero
 *  16  8  region size in bytes
 *  24  8  region count
 *  32  8  legs out of sync: bit i set while leg i lacks writes the others have (it failed and
 *         has not been copied back since); a restart copies to such a leg, never from it
 *         (zero in a log written before this field: the first leg is the source, as before)
 * block 1..: one bit per region, 64-bit words little-endian (bit r = word r/64, bit r%64)
 * </pre>
 * A log device whose first block is all zeros is formatted; one made for another region size or
 * count is refused.
 *
 * <h2>Which leg a restart copies from</h2>
 * The bits say where the legs may differ, not which leg holds the data. A leg that fails is
 * recorded in the header (FUA) before any write that missed it completes ({@link
 * #completeWhenRecorded}): otherwise a restart with the first leg just back would copy its old
 * data over the acknowledged writes that only the other legs hold.
 *
 * <h2>Threads</h2>
 * {@link #needsMark} is the I/O path's check (a volatile read per word, no lock, no allocation).
 * A write whose regions are not durable yet is handed to {@link #hold}, and the log's own thread
 * writes the blocks (batching every write queued meanwhile) and sends it on. The same thread
 * clears bits lazily, every {@linkplain #clearDelay clear delay} ({@link #DEFAULT_CLEAR_DELAY_MS}
 * unless the table says {@code clear_delay=}) while it is idle, and only those of regions not
 * written since the pass before (md's bitmap daemon ages a bit over two passes the same way): a
 * region under steady writes keeps its bit and costs no log write.
 *
 * <p>Why 5 s and not less: a bit cleared too soon is set again, with a FUA write of the log block
 * and the write held meanwhile, by the next write to its region. Under 4k random writes over a
 * large device most regions see a write every second or so; a 500 ms pass cleared and re-marked
 * them all the time and cost the mirror about a fifth of its IOPS (bench/cbt, section 2). md pays
 * the same trade: a longer delay means a few more regions to copy after a crash.
 */
public final class MirrorLog implements AutoCloseable {
    /**
     * How often an idle log looks for bits to clear, by default: md's bitmap daemon sleep
     * ({@code mddev->bitmap_info.daemon_sleep = 5 * HZ} in drivers/md/md.c).
     */
    public static final long DEFAULT_CLEAR_DELAY_MS = 5000;
    static final int BLOCK = 4096;
    private static final int WORDS_PER_BLOCK = BLOCK / 8;
    private static final byte[] MAGIC = "BSMIRLOG".getBytes(StandardCharsets.US_ASCII);
    private static final VarHandle BITS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final BlockDevice dev;
    private final long region;
    private final int regions;
    private final boolean fresh;
    /** The bits as on disk (or being written): set under the log thread only. */
    private final long[] marked;
    /** Bits known durable: the I/O path's fast check. */
    private final long[] durable;
    /**
     * The bits a clean pass has taken out of {@link #durable} and not yet cleared on the log
     * device (null between passes): still marked as far as {@link #markedRegions} is concerned.
     */
    private volatile long[] clearingBits;
    /** Regions written since the last clean pass (set by the I/O path, aged by the log thread). */
    private final long[] touched;
    private final MemorySegment block = Arena.ofAuto().allocate(BLOCK, 4096);
    private final ConcurrentLinkedQueue<Bio> waiting = new ConcurrentLinkedQueue<>();
    /** Control paths waiting for every region to be marked (by the log thread: it alone writes bits). */
    private final ConcurrentLinkedQueue<java.util.concurrent.CompletableFuture<Void>> markingAll = new ConcurrentLinkedQueue<>();
    /** Control paths waiting for a copy of the marked bits (taken by the log thread: see {@link #markedBits}). */
    private final ConcurrentLinkedQueue<java.util.concurrent.CompletableFuture<long[]>> snapshots = new ConcurrentLinkedQueue<>();
    /** Writes that missed a leg, completed once the header records that leg out of sync. */
    private final ConcurrentLinkedQueue<Bio> recording = new ConcurrentLinkedQueue<>();
    /** Legs out of sync as the mirror says now; written to the header by the log thread. */
    private volatile long outOfSync;
    /** Legs out of sync as the header on the log device says. */
    private volatile long outOfSyncRecorded;
    private Thread thread;
    private volatile boolean closing;
    private volatile long logWrites;
    private volatile char health = 'A';
    private volatile long clearDelayNanos = TimeUnit.MILLISECONDS.toNanos(DEFAULT_CLEAR_DELAY_MS);
    private Consumer<Bio> down;
    private IntPredicate regionIdle;
    private BooleanSupplier allInSync;
    private BooleanSupplier flushLegs;

    private MirrorLog(BlockDevice dev, long region, int regions, boolean fresh, long[] bits, long outOfSync) {
        this.dev = dev;
        this.outOfSync = outOfSync;
        this.outOfSyncRecorded = outOfSync;
        this.region = region;
        this.regions = regions;
        this.fresh = fresh;
        this.marked = bits;
        this.durable = bits.clone();
        this.touched = new long[bits.length];
    }

    /**
     * Opens the log on {@code dev}, formatting it when its first block is zeros. Synchronous: for
     * setting up a mirror, not for the I/O path.
     *
     * @param dev     the log device (not owned: the stack closes it)
     * @param region  region size in bytes
     * @param regions region count
     * @return the log with the bits it holds
     * @throws IllegalArgumentException when the device is too small, or holds another log or
     *                                  something else
     */
    public static MirrorLog open(BlockDevice dev, long region, int regions) {
        long words = (regions + 63L) / 64;
        long need = BLOCK + (words * 8 + BLOCK - 1) / BLOCK * BLOCK;
        if (dev.size() < need) {
            throw new IllegalArgumentException("log device " + dev.name() + " has " + dev.size() + " bytes; a log of "
                    + regions + " regions needs " + need);
        }
        MemorySegment h = Arena.ofAuto().allocate(BLOCK, 4096);
        io(dev, h, 0, false);
        boolean zero = true;
        for (long i = 0; i < BLOCK && zero; i += 8) {
            zero = h.get(ValueLayout.JAVA_LONG, i) == 0;
        }
        long[] bits = new long[(int) words];
        if (zero) {
            MirrorLog log = new MirrorLog(dev, region, regions, true, bits, 0);
            log.writeHeader();
            return log;
        }
        byte[] magic = h.asSlice(0, 8).toArray(ValueLayout.JAVA_BYTE);
        if (!java.util.Arrays.equals(magic, MAGIC)) {
            throw new IllegalArgumentException("log device " + dev.name() + " holds something else (no mirror log magic); "
                    + "zero its first 4 KiB to make a new log");
        }
        int crc = h.get(LE_INT, 12);
        h.set(LE_INT, 12, 0);
        if (crc32c(h) != crc) {
            throw new IllegalArgumentException("log device " + dev.name() + ": header checksum mismatch");
        }
        long r = h.get(LE_LONG, 16);
        long n = h.get(LE_LONG, 24);
        if (r != region || n != regions) {
            throw new IllegalArgumentException("log device " + dev.name() + " was made for " + n + " regions of " + r
                    + " bytes; this mirror has " + regions + " of " + region);
        }
        MemorySegment data = Arena.ofAuto().allocate(need - BLOCK, 4096);
        io(dev, data, BLOCK, false);
        for (int i = 0; i < bits.length; i++) {
            bits[i] = data.get(LE_LONG, i * 8L);
        }
        if (regions % 64 != 0 && bits.length > 0) {
            bits[bits.length - 1] &= (1L << (regions % 64)) - 1;
        }
        return new MirrorLog(dev, region, regions, false, bits, h.get(LE_LONG, 32));
    }

    private void writeHeader() {
        writeHeaderBlock(outOfSyncRecorded);
        for (int b = 0; b < (marked.length + WORDS_PER_BLOCK - 1) / WORDS_PER_BLOCK; b++) {
            writeBlock(b);
        }
    }

    /** Writes block 0 with {@code legs} as the legs out of sync (FUA: durable when this returns). */
    private void writeHeaderBlock(long legs) {
        block.fill((byte) 0);
        MemorySegment.copy(MAGIC, 0, block, ValueLayout.JAVA_BYTE, 0, MAGIC.length);
        block.set(LE_INT, 8, 1);
        block.set(LE_LONG, 16, region);
        block.set(LE_LONG, 24, regions);
        block.set(LE_LONG, 32, legs);
        block.set(LE_INT, 12, crc32c(block));
        io(dev, block, 0, true);
    }

    private static int crc32c(MemorySegment m) {
        CRC32C c = new CRC32C();
        c.update(m.asByteBuffer());
        return (int) c.getValue();
    }

    /** A synchronous read or (FUA) write; throws what the device said. */
    private static void io(BlockDevice dev, MemorySegment m, long off, boolean write) {
        try {
            if (write) {
                dev.write(off, io.biostack.block.IoIter.of(m), BioFlags.FUA).get(60, TimeUnit.SECONDS);
            } else {
                dev.read(off, m).get(60, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted");
        } catch (Exception e) {
            throw new IllegalStateException("log device " + dev.name() + ": " + (write ? "write" : "read") + " at " + off
                    + " failed: " + (e.getCause() != null ? e.getCause().getMessage() : e.getMessage()), e);
        }
    }

    /**
     * Whether the log was formatted now (nothing was known about the legs).
     *
     * @return true when the log was formatted now (nothing was known about the legs)
     */
    public boolean isFresh() {
        return fresh;
    }

    /**
     * The bits loaded: regions whose legs may differ.
     *
     * @return a copy of the words
     */
    public long[] loadedBits() {
        return durable.clone();
    }

    /**
     * The legs the log said were out of sync when it was opened (a restart copies to them).
     *
     * @return a mask, bit i for leg i
     */
    public long loadedOutOfSync() {
        return outOfSyncRecorded;
    }

    /**
     * Says which legs are out of sync now; the log thread records it in the header. Never blocks.
     *
     * @param legs a mask, bit i for leg i
     */
    void outOfSync(long legs) {
        outOfSync = legs;
        LockSupport.unpark(thread);
    }

    /**
     * The legs the header on the log device records out of sync: a write that missed a leg not
     * in it must wait for {@link #completeWhenRecorded}.
     *
     * @return a mask, bit i for leg i
     */
    long outOfSyncRecorded() {
        return outOfSyncRecorded;
    }

    /**
     * Completes a write that missed a leg once the header records the legs out of sync now (or
     * fails it when the log device can't be written). Never blocks.
     *
     * @param bio a write that reached the legs in sync; the log owns it until it completes it
     */
    void completeWhenRecorded(Bio bio) {
        recording.add(bio);
        LockSupport.unpark(thread);
    }

    /**
     * Marks every region from a control path, through the log's thread; durable when this returns.
     * For a leg that is about to be copied whole (a new disk put in): a crash during the copy must
     * copy everything again, not just the regions written while the leg was away.
     *
     * @throws IllegalStateException when the log device can't be written
     */
    void markAllRegions() {
        java.util.concurrent.CompletableFuture<Void> f = new java.util.concurrent.CompletableFuture<>();
        markingAll.add(f);
        LockSupport.unpark(thread);
        try {
            f.get(60, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while marking every region on the log");
        } catch (Exception e) {
            throw new IllegalStateException("mirror log: can't mark every region: "
                    + (e.getCause() != null ? e.getCause().getMessage() : e.getMessage()), e);
        }
    }

    /**
     * A copy of the marked bits, from a control path, taken by the log's thread. A region whose
     * bit is clear has had no write since a flush that held on every leg (a clean pass clears bits
     * only then), so these are, with a leg's dirty bits, every region a leg that failed a flush
     * may have lost. Only the log's thread sees them whole: a clean pass takes bits out before
     * it flushes the legs and puts them back when a flush fails.
     *
     * @return the words, bit r for region r
     * @throws IllegalStateException when the log's thread does not answer
     */
    long[] markedBits() {
        Thread t = thread;
        if (t == null || !t.isAlive()) {
            throw new IllegalStateException("mirror log: its thread has stopped");
        }
        java.util.concurrent.CompletableFuture<long[]> f = new java.util.concurrent.CompletableFuture<>();
        snapshots.add(f);
        LockSupport.unpark(thread);
        try {
            return f.get(60, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while reading the log's marks");
        } catch (Exception e) {
            throw new IllegalStateException("mirror log: can't read its marks: " + e.getMessage(), e);
        }
    }

    /** Marks every region (a mirror that starts with a full copy); durable when this returns. */
    void markAll() {
        for (int r = 0; r < regions; r++) {
            marked[r >>> 6] |= 1L << (r & 63);
        }
        for (int b = 0; b < (marked.length + WORDS_PER_BLOCK - 1) / WORDS_PER_BLOCK; b++) {
            writeBlock(b);
        }
        for (int w = 0; w < marked.length; w++) {
            BITS.getAndBitwiseOr(durable, w, marked[w]);
        }
    }

    /**
     * Starts the log's thread.
     *
     * @param down       sends a held write on to the legs
     * @param regionIdle whether no write is in flight in a region
     * @param allInSync  whether every leg is in sync (bits may be cleared only then)
     * @param flushLegs  flushes every leg and says whether all of them did (synchronous)
     */
    void start(Consumer<Bio> down, IntPredicate regionIdle, BooleanSupplier allInSync, BooleanSupplier flushLegs) {
        this.down = down;
        this.regionIdle = regionIdle;
        this.allInSync = allInSync;
        this.flushLegs = flushLegs;
        thread = Thread.ofPlatform().daemon().name("biostack-mirror-log-" + dev.name()).start(this::loop);
    }

    // ---- the I/O path ---------------------------------------------------------------------------

    /**
     * Whether a write to {@code [offset, offset+size)} must wait for its regions' bits.
     *
     * @param offset byte offset in the mirror
     * @param size   bytes
     * @return true when some region's bit is not durable yet
     */
    boolean needsMark(long offset, long size) {
        int r0 = (int) (offset / region);
        int r1 = (int) ((offset + Math.max(size, 1) - 1) / region);
        boolean need = false;
        for (int r = r0; r <= r1; r++) {
            long bit = 1L << (r & 63);
            if (((long) BITS.getOpaque(touched, r >>> 6) & bit) == 0) {
                BITS.getAndBitwiseOr(touched, r >>> 6, bit);
            }
            if ((((long) BITS.getVolatile(durable, r >>> 6)) & bit) == 0) {
                need = true;
            }
        }
        return need;
    }

    /**
     * Sets how often the idle log clears the bits of regions that have been idle for a whole
     * pass: a bit goes one to two delays after the last write to its region.
     *
     * @param ms the delay in milliseconds, at least 1
     */
    public void clearDelay(long ms) {
        if (ms < 1) {
            throw new IllegalArgumentException("clear delay must be at least 1 ms, not " + ms);
        }
        clearDelayNanos = TimeUnit.MILLISECONDS.toNanos(ms);
    }

    /**
     * Returns the clear delay.
     *
     * @return the clear delay in milliseconds
     */
    public long clearDelayMs() {
        return TimeUnit.NANOSECONDS.toMillis(clearDelayNanos);
    }

    /**
     * Takes a write until its regions' bits are durable, then sends it on.
     *
     * @param bio a write counted in its regions; the log owns it until it passes it on
     */
    void hold(Bio bio) {
        waiting.add(bio);
        LockSupport.unpark(thread);
    }

    // ---- the log thread ---------------------------------------------------------------------------

    private void loop() {
        List<Bio> batch = new ArrayList<>();
        long lastClean = System.nanoTime();
        while (true) {
            // (first: a steady stream of writes to new regions must not keep a resync waiting)
            java.util.concurrent.CompletableFuture<long[]> snap;
            while ((snap = snapshots.poll()) != null) {
                snap.complete(marked.clone());
            }
            Bio b;
            while ((b = waiting.poll()) != null) {
                batch.add(b);
            }
            if (!batch.isEmpty()) {
                markAndRelease(batch);
                batch.clear();
                continue;
            }
            if (!markingAll.isEmpty()) {
                java.util.concurrent.CompletableFuture<Void> f;
                RuntimeException error = null;
                try {
                    markAll();
                } catch (RuntimeException e) {
                    error = e;
                    health = 'D';
                }
                while ((f = markingAll.poll()) != null) {
                    if (error == null) {
                        f.complete(null);
                    } else {
                        f.completeExceptionally(error);
                    }
                }
                continue;
            }
            if ((outOfSync != outOfSyncRecorded && health == 'A') || !recording.isEmpty()) {
                // (a log device that failed is tried again only for a write that waits for it)
                recordOutOfSync();
                continue;
            }
            if (closing) {
                return;
            }
            // (the delay read each time: one set after the start, as a table's clear_delay= is, counts
            // from the first pass on, not after a default one)
            if (System.nanoTime() - lastClean - clearDelayNanos >= 0) {
                clean();
                lastClean = System.nanoTime();
            }
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(20));
        }
    }

    private void markAndRelease(List<Bio> batch) {
        java.util.BitSet blocks = new java.util.BitSet();
        for (Bio bio : batch) {
            int r0 = (int) (bio.offset() / region);
            int r1 = (int) ((bio.offset() + Math.max(bio.size(), 1) - 1) / region);
            for (int r = r0; r <= r1; r++) {
                long bit = 1L << (r & 63);
                if ((marked[r >>> 6] & bit) == 0) {
                    marked[r >>> 6] |= bit;
                    blocks.set((r >>> 6) / WORDS_PER_BLOCK);
                } else if (((long) BITS.getVolatile(durable, r >>> 6) & bit) == 0) {
                    blocks.set((r >>> 6) / WORDS_PER_BLOCK); // marked, but a clean pass took it back
                }
            }
        }
        String error = null;
        try {
            for (int blk = blocks.nextSetBit(0); blk >= 0; blk = blocks.nextSetBit(blk + 1)) {
                writeBlock(blk);
            }
        } catch (RuntimeException e) {
            error = e.getMessage();
            health = 'D';
        }
        for (Bio bio : batch) {
            if (error != null) {
                down.accept(failed(bio, error));
                continue;
            }
            int r0 = (int) (bio.offset() / region);
            int r1 = (int) ((bio.offset() + Math.max(bio.size(), 1) - 1) / region);
            for (int r = r0; r <= r1; r++) {
                BITS.getAndBitwiseOr(durable, r >>> 6, 1L << (r & 63));
            }
            down.accept(bio);
        }
    }

    /** Writes the legs out of sync to the header, then completes the writes that waited for it. */
    private void recordOutOfSync() {
        List<Bio> done = new ArrayList<>();
        Bio b;
        while ((b = recording.poll()) != null) {
            done.add(b);
        }
        long legs = outOfSync; // read after the writes: it has every leg they missed
        String error = null;
        if (legs != outOfSyncRecorded) {
            try {
                writeHeaderBlock(legs);
                outOfSyncRecorded = legs;
            } catch (RuntimeException e) {
                error = e.getMessage();
                health = 'D';
            }
        }
        for (Bio bio : done) {
            if (error != null) {
                bio.setStatus(Status.IOERR, "mirror log: can't record a leg out of sync: " + error);
            }
            bio.endIo();
        }
    }

    /** Marks the bio failed; the mirror's path then completes it without sending it to the legs. */
    private static Bio failed(Bio bio, String error) {
        bio.setStatus(Status.IOERR, "mirror log: " + error);
        return bio;
    }

    /** Writes block {@code blk} of bits (FUA: durable when this returns). */
    private void writeBlock(int blk) {
        block.fill((byte) 0);
        for (int i = 0; i < WORDS_PER_BLOCK; i++) {
            int w = blk * WORDS_PER_BLOCK + i;
            if (w < marked.length) {
                block.set(LE_LONG, i * 8L, marked[w]);
            }
        }
        io(dev, block, BLOCK + (long) blk * BLOCK, true);
        logWrites++;
    }

    /**
     * Clears the bits of idle regions once every leg is in sync. A region's durable bit goes first,
     * so a write that arrives meanwhile takes the slow path and is marked again by this thread;
     * then the region is checked idle once more (the write counts itself in the region before it
     * reads the durable bit: one of the two sees the other).
     *
     * <p>A region's writes have completed, but a leg with a volatile write cache may not have them
     * on stable media yet: a log that said the region clean before they were would let a power cut
     * leave the legs different where no bit says so, and a restart would copy nothing. So every
     * leg is flushed first, as dm-log's {@code disk_flush} calls the mirror's {@code mirror_flush}
     * (a PREFLUSH to every leg) before it writes a log that clears bits; when a flush fails the
     * bits stay, as there (its {@code flush_failed} keeps every region dirty). One flush per pass
     * that clears something, off the write path.
     */
    private void clean() {
        if (!allInSync.getAsBoolean()) {
            return;
        }
        java.util.BitSet blocks = new java.util.BitSet();
        long[] cleared = new long[marked.length];
        clearingBits = cleared;
        try {
            cleanPass(blocks, cleared);
        } finally {
            clearingBits = null;
        }
    }

    private void cleanPass(java.util.BitSet blocks, long[] cleared) {
        for (int w = 0; w < marked.length; w++) {
            long bits = marked[w];
            while (bits != 0) {
                int r = w * 64 + Long.numberOfTrailingZeros(bits);
                long bit = Long.lowestOneBit(bits);
                bits &= bits - 1;
                if (((long) BITS.getAndBitwiseAnd(touched, w, ~bit) & bit) != 0 || !regionIdle.test(r)) {
                    continue; // written since the last pass: keep it one pass more
                }
                BITS.getAndBitwiseOr(cleared, w, bit); // (for the status: before it leaves durable)
                BITS.getAndBitwiseAnd(durable, w, ~bit);
                if (regionIdle.test(r) && allInSync.getAsBoolean()) {
                    marked[w] &= ~bit;
                    blocks.set(w / WORDS_PER_BLOCK);
                } else {
                    BITS.getAndBitwiseOr(durable, w, bit); // still on disk: it stays durable
                    BITS.getAndBitwiseAnd(cleared, w, ~bit);
                }
            }
        }
        if (blocks.isEmpty()) {
            return;
        }
        if (!flushLegs.getAsBoolean()) {
            for (int w = 0; w < cleared.length; w++) { // still on disk: they stay, and durable
                marked[w] |= cleared[w];
                BITS.getAndBitwiseOr(durable, w, cleared[w]);
            }
            return;
        }
        try {
            for (int blk = blocks.nextSetBit(0); blk >= 0; blk = blocks.nextSetBit(blk + 1)) {
                writeBlock(blk);
            }
        } catch (RuntimeException e) {
            health = 'D'; // the bits on disk are a superset: safe, only a restart copies more
        }
    }

    /**
     * Returns regions marked now (on disk, or being written), counting those a clean pass is
     * about to clear until it has cleared them on the log device.
     *
     * @return regions marked now (on disk, or being written)
     */
    public long markedRegions() {
        long[] c = clearingBits;
        long n = 0;
        for (int w = 0; w < durable.length; w++) {
            n += Long.bitCount((long) BITS.getVolatile(durable, w) | (c == null ? 0 : (long) BITS.getVolatile(c, w)));
        }
        return n;
    }

    /**
     * Returns log block writes so far.
     *
     * @return log block writes so far
     */
    public long logWrites() {
        return logWrites;
    }

    /**
     * Returns the log device.
     *
     * @return the log device
     */
    public BlockDevice device() {
        return dev;
    }

    /**
     * Returns 'A' while the log device answers, 'D' after a write to it failed.
     *
     * @return 'A' while the log device answers, 'D' after a write to it failed
     */
    public char health() {
        return health;
    }

    /**
     * Stops the thread; when every leg is in sync and nothing is in flight, clears the bits first
     * (a clean stop: the next start copies nothing).
     */
    @Override
    public void close() {
        closing = true;
        Thread t = thread;
        if (t != null) {
            LockSupport.unpark(t);
            try {
                t.join(30_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            clean(); // ages the regions written in the last pass
            clean(); // and clears them
        }
    }
}
