package io.biostack.block.stats;

import io.biostack.block.Op;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The I/O statistics of one device: what the kernel keeps per block device and shows in
 * {@code /sys/block/DEV/stat} (Documentation/block/stat.rst), plus a latency histogram per
 * {@link StatGroup}.
 *
 * <h2>Recording: no lock, no allocation, no atomic read-modify-write</h2>
 * Each thread that starts or completes I/O on the device gets its own cells the first time
 * (a {@link ThreadLocal}, registered once under this object's lock; never again on that
 * thread), as the kernel keeps {@code part_stat} per CPU. A thread only ever writes its own
 * cells, so an update is a plain add published with a release store. Readers sum every
 * thread's cells ({@link #snapshot}); the cells of threads that have ended are folded into a
 * total and dropped then. A bio may start on one thread and complete on another: in-flight is
 * the sum of starts minus the sum of completions over all threads.
 *
 * <p>Busy time ({@code io_ticks}) follows the kernel's {@code update_io_ticks()}: one shared
 * stamp, moved forward by a compare-and-set at most once per tick (2^20 ns, about a
 * millisecond, standing in for a jiffy) per device; when it moves and I/O was in flight, the
 * ticks since the old stamp count as busy.
 *
 * <p>Thread-safe. {@link #start} and {@link #done} are for the I/O path (any thread, never
 * blocking); {@link #snapshot} is for readers and may take a lock shared only with threads
 * registering for the first time.
 */
public final class DeviceStats {
    // Per-group fields of a thread's cells.
    private static final int ISSUED = 0;
    private static final int IOS = 1;
    private static final int SECTORS = 2;
    private static final int NSECS = 3;
    private static final int FIELDS = 4;
    private static final int GROUPS = StatGroup.ALL.length;
    /** 64 bytes of padding on either side keeps one thread's counters off another's cache line. */
    private static final int PAD = 8;
    /** io_ticks granularity: 2^20 ns, a shift rather than a division on the I/O path. */
    private static final int TICK_SHIFT = 20;
    private static final int SECTOR_SHIFT = 9; // stat.rst: "sectors" are 512 bytes whatever the block size

    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle STAMP;

    static {
        try {
            STAMP = MethodHandles.lookup().findVarHandle(DeviceStats.class, "stamp", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /** One thread's counters; written only by {@link #owner}. */
    private static final class Cells {
        final Thread owner;
        final long[] c = new long[PAD + GROUPS * FIELDS + PAD];
        final long[] h = new long[GROUPS * LatencyBuckets.COUNT];

        Cells(Thread owner) {
            this.owner = owner;
        }
    }

    private final String name;
    private final long createdNs;
    private final long slowIoNs;
    private final ThreadLocal<Cells> local = ThreadLocal.withInitial(this::register);
    /**
     * A direct-mapped cache in front of {@link #local}: slot {@code threadId & MASK} holds the
     * cells of the last thread that looked there. Checking its owner is cheaper than a
     * ThreadLocal lookup; threads whose ids collide go on to the ThreadLocal.
     */
    private final Cells[] byThread = new Cells[SLOTS];
    private static final int SLOTS = 64;
    private static final int MASK = SLOTS - 1;
    private volatile Cells[] cells = new Cells[0];
    private final long[] retired = new long[GROUPS * FIELDS];                       // guarded by this
    private final long[] retiredHist = new long[GROUPS * LatencyBuckets.COUNT];     // guarded by this
    /**
     * Starts minus completions of the threads that have ended, for {@link #inFlight} on the I/O
     * path, which can't take the lock {@link #retired} needs: a thread that started I/O and ended
     * (an NBD connection's) leaves its completions in another thread's cells. Written under the
     * lock before {@link #cells} drops the ended cells.
     */
    private volatile long retiredInFlight;
    @SuppressWarnings("unused") // through STAMP
    private volatile long stamp;
    private final AtomicLong ioTicks = new AtomicLong();

    /**
     * Statistics for the device called {@code name}, with the JFR slow-I/O threshold of {@link StatsConfig}.
     *
     * @param name the name (of the device, snapshot or event subject)
     */
    public DeviceStats(String name) {
        this(name, StatsConfig.SLOW_IO_NS);
    }

    /**
     * As {@link #DeviceStats(String)}, reporting I/Os slower than {@code slowIoNs} to JFR.
     *
     * @param name the name (of the device, snapshot or event subject)
     * @param slowIoNs the slow-I/O threshold in ns
     */
    public DeviceStats(String name, long slowIoNs) {
        this.name = name;
        this.slowIoNs = slowIoNs;
        this.createdNs = System.nanoTime();
        this.stamp = createdNs >> TICK_SHIFT;
    }

    /**
     * The device's name.
     *
     * @return the device's name
     */
    public String name() {
        return name;
    }

    private synchronized Cells register() {
        foldEnded();
        Cells c = new Cells(Thread.currentThread());
        Cells[] old = cells;
        Cells[] n = Arrays.copyOf(old, old.length + 1);
        n[old.length] = c;
        cells = n;
        return c;
    }

    /** Folds the cells of threads that have ended into the retired totals. Caller holds the lock. */
    private void foldEnded() {
        Cells[] cs = cells;
        List<Cells> live = null;
        for (int i = 0; i < cs.length; i++) {
            if (!cs[i].owner.isAlive()) {
                if (live == null) {
                    live = new ArrayList<>(Arrays.asList(cs).subList(0, i));
                }
                long open = 0;
                for (int k = 0; k < retired.length; k++) {
                    long v = (long) LONGS.getAcquire(cs[i].c, PAD + k);
                    retired[k] += v;
                    open += k % FIELDS == ISSUED ? v : k % FIELDS == IOS ? -v : 0;
                }
                retiredInFlight += open;
                for (int k = 0; k < retiredHist.length; k++) {
                    retiredHist[k] += (long) LONGS.getAcquire(cs[i].h, k);
                }
            } else if (live != null) {
                live.add(cs[i]);
            }
        }
        if (live != null) {
            cells = live.toArray(new Cells[0]);
        }
    }

    /** The calling thread's cells. */
    private Cells cells() {
        Thread t = Thread.currentThread();
        int slot = (int) t.threadId() & MASK;
        Cells c = byThread[slot]; // racy read of a safely published object: either ours or not
        if (c != null && c.owner == t) {
            return c;
        }
        c = local.get();
        byThread[slot] = c;
        return c;
    }

    private static void add(long[] a, int i, long d) {
        LONGS.setRelease(a, i, a[i] + d); // single writer: a plain add, published
    }

    // ---- the I/O path ----------------------------------------------------------------------

    /**
     * An I/O of {@code op} starts at {@code nowNs} ({@link System#nanoTime}): counts it in flight. The caller keeps {@code nowNs} and passes it to {@link #done}.
     *
     * @param op the operation
     * @param nowNs now ({@link System#nanoTime})
     */
    public void start(Op op, long nowNs) {
        updateIoTicks(nowNs, false);
        Cells c = cells();
        add(c.c, PAD + StatGroup.of(op).ordinal() * FIELDS + ISSUED, 1);
    }

    /**
     * The I/O of {@code op} over {@code bytes} at {@code offset} that {@link #start}ed at {@code startNs} completed at {@code endNs}, with or without error (the kernel counts both). Emits a {@link SlowIoEvent} when it took longer than the slow-I/O threshold.
     *
     * @param op the operation
     * @param offset the byte offset
     * @param bytes a byte count
     * @param startNs when the I/O started (ns)
     * @param endNs when the I/O completed (ns)
     */
    public void done(Op op, long offset, long bytes, long startNs, long endNs) {
        int g = StatGroup.of(op).ordinal();
        long lat = endNs - startNs;
        Cells c = cells();
        int base = PAD + g * FIELDS;
        long[] a = c.c;
        add(a, base + IOS, 1);
        if (g != StatGroup.FLUSH.ordinal()) {
            add(a, base + SECTORS, bytes >>> SECTOR_SHIFT);
        }
        add(a, base + NSECS, lat);
        add(c.h, g * LatencyBuckets.COUNT + LatencyBuckets.index(lat), 1);
        updateIoTicks(endNs, true);
        if (lat > slowIoNs) {
            SlowIoEvent.emit(name, op, offset, bytes, lat);
        }
    }

    /** {@code update_io_ticks()} (block/blk-core.c), at tick granularity. */
    private void updateIoTicks(long nowNs, boolean end) {
        long now = nowNs >> TICK_SHIFT;
        long st = (long) STAMP.getOpaque(this);
        if (now > st && STAMP.compareAndSet(this, st, now) && (end || inFlight() > 0)) {
            ioTicks.getAndAdd(now - st);
        }
    }

    /**
     * I/Os started and not completed, summed over all threads (never negative).
     *
     * @return I/Os started and not completed, summed over all threads (never negative)
     */
    public long inFlight() {
        Cells[] cs = cells;
        long completed = 0;
        long issued = retiredInFlight; // after cells: what was folded out of that array is in it
        // Completions first: each completion's start happened before it, so issued >= completed.
        for (Cells c : cs) {
            for (int g = 0; g < GROUPS; g++) {
                completed += (long) LONGS.getAcquire(c.c, PAD + g * FIELDS + IOS);
            }
        }
        for (Cells c : cs) {
            for (int g = 0; g < GROUPS; g++) {
                issued += (long) LONGS.getAcquire(c.c, PAD + g * FIELDS + ISSUED);
            }
        }
        return Math.max(0, issued - completed);
    }

    /**
     * Writes, write-zeroes and discards started and not completed, summed over all threads: what
     * a backup waits for before it takes its point in time.
     *
     * @return changes in flight (never negative)
     */
    public synchronized long inFlightChanges() {
        Cells[] cs = cells;
        long completed = 0;
        long issued = 0;
        int[] groups = {StatGroup.WRITE.ordinal(), StatGroup.DISCARD.ordinal()};
        for (int g : groups) { // threads that have ended, folded under this lock
            completed += retired[g * FIELDS + IOS];
            issued += retired[g * FIELDS + ISSUED];
        }
        for (Cells c : cs) {
            for (int g : groups) {
                completed += (long) LONGS.getAcquire(c.c, PAD + g * FIELDS + IOS);
            }
        }
        for (Cells c : cs) {
            for (int g : groups) {
                issued += (long) LONGS.getAcquire(c.c, PAD + g * FIELDS + ISSUED);
            }
        }
        return Math.max(0, issued - completed);
    }

    // ---- readers ---------------------------------------------------------------------------

    /**
     * The counts so far, summed over every thread. Allocates; never blocks the I/O path.
     *
     * @return the counts so far, summed over every thread
     */
    public synchronized DeviceSnapshot snapshot() {
        foldEnded();
        long now = System.nanoTime();
        Cells[] cs = cells;
        long[] sum = retired.clone();
        long[] hist = retiredHist.clone();
        for (Cells c : cs) {
            for (int k = 0; k < GROUPS * FIELDS; k++) {
                if (k % FIELDS != ISSUED) {
                    sum[k] += (long) LONGS.getAcquire(c.c, PAD + k);
                }
            }
        }
        for (Cells c : cs) {
            for (int k = 0; k < hist.length; k++) {
                hist[k] += (long) LONGS.getAcquire(c.h, k);
            }
        }
        long issued = 0;
        for (int g = 0; g < GROUPS; g++) {
            issued += retired[g * FIELDS + ISSUED];
        }
        for (Cells c : cs) {
            for (int g = 0; g < GROUPS; g++) {
                issued += (long) LONGS.getAcquire(c.c, PAD + g * FIELDS + ISSUED);
            }
        }
        long[] ios = new long[GROUPS];
        long[] sectors = new long[GROUPS];
        long[] nsecs = new long[GROUPS];
        long[][] h = new long[GROUPS][];
        long completed = 0;
        for (int g = 0; g < GROUPS; g++) {
            ios[g] = sum[g * FIELDS + IOS];
            sectors[g] = sum[g * FIELDS + SECTORS];
            nsecs[g] = sum[g * FIELDS + NSECS];
            completed += ios[g];
            h[g] = Arrays.copyOfRange(hist, g * LatencyBuckets.COUNT, (g + 1) * LatencyBuckets.COUNT);
        }
        long busyNs = ioTicks.get() << TICK_SHIFT;
        return new DeviceSnapshot(name, now, now - createdNs, ios, sectors, nsecs,
                Math.max(0, issued - completed), busyNs, h);
    }

    @Override
    public String toString() {
        return "DeviceStats[" + name + "]";
    }
}
