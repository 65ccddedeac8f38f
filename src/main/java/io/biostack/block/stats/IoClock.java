package io.biostack.block.stats;

/**
 * The clock that I/O accounting reads, with one reading shared by everything that happens inside
 * a scope on the same thread: the kernel's cached plug time ({@code blk_time_get_ns()},
 * block/blk.h since Linux 6.9: "cache current nsec time in struct blk_plug"), where the time is
 * read once when a task starts a batch of I/O and reused until the task leaves it.
 *
 * <p>Why: {@link System#nanoTime} costs about 29 ns of CPU here (kvm-clock through the vDSO,
 * measured with bench/stats/run.sh's micro measure), more than the whole budget of counting an
 * I/O. A {@link CountedDevice} opens a scope around its submit; a counted device below it (a
 * two-level stack: a counted layer over a counted leaf) submits inside that scope and takes the
 * same reading, and so does the completion of any bio that completes inside it (a ramdisk, an
 * error found at submit). So a stack of counted devices over a device that completes inline
 * reads the clock once per I/O, not twice per device.
 *
 * <p>The error this allows is bounded by the scope: a reading is never older than the start of
 * the outermost submit on that thread that is still running, and submit never blocks (the house
 * rule), so a shared reading is off by at most the time the submit path takes, as in the kernel.
 * A completion outside any scope (an io_uring completion, a librbd callback) reads the clock.
 *
 * <p>Per-thread state: no lock, no allocation after a thread's first use, no atomic.
 */
public final class IoClock {
    /** One thread's scope: how deep, and the reading taken when the outermost one opened. */
    private static final class Scope {
        final Thread owner;
        int depth;
        long now;

        Scope(Thread owner) {
            this.owner = owner;
        }
    }

    private static final ThreadLocal<Scope> LOCAL = ThreadLocal.withInitial(() -> new Scope(Thread.currentThread()));
    /** A direct-mapped cache in front of {@link #LOCAL} (cheaper than the ThreadLocal lookup; see DeviceStats). */
    private static final int SLOTS = 256;
    private static final Scope[] BY_THREAD = new Scope[SLOTS];

    private IoClock() {
    }

    private static Scope scope() {
        Thread t = Thread.currentThread();
        int slot = (int) t.threadId() & (SLOTS - 1);
        Scope s = BY_THREAD[slot]; // racy read of a safely published object: ours or not
        if (s != null && s.owner == t) {
            return s;
        }
        s = LOCAL.get();
        BY_THREAD[slot] = s;
        return s;
    }

    /**
     * Opens a scope on this thread and returns its reading: the enclosing scope's when there is
     * one, else a new {@link System#nanoTime} reading. Every call is paired with {@link #exit()}
     * in a {@code finally}.
     *
     * @return now, in {@link System#nanoTime} units
     */
    public static long enter() {
        Scope s = scope();
        if (s.depth++ == 0) {
            s.now = System.nanoTime();
        }
        return s.now;
    }

    /** Closes the scope {@link #enter()} opened; the outermost one ends the shared reading. */
    public static void exit() {
        scope().depth--;
    }

    /**
     * Now: the shared reading inside a scope on this thread, else a new {@link System#nanoTime}
     * reading.
     *
     * @return now, in {@link System#nanoTime} units
     */
    public static long now() {
        Scope s = scope();
        return s.depth > 0 ? s.now : System.nanoTime();
    }
}
