package io.biostack.layer.crypt;

import io.biostack.block.Bio;
import io.biostack.block.MpmcRing;

import java.lang.invoke.VarHandle;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * The cipher threads of one crypt device, as dm-crypt's {@code kcryptd} workqueue
 * (drivers/md/dm-crypt.c, {@code WQ_CPU_INTENSIVE | WQ_UNBOUND}): a few platform threads that
 * take {@link CipherJob}s from one lock-free {@link MpmcRing} and run their chunks, so the
 * AES-XTS work of a bio is spread over the cores instead of running on the thread that completed
 * (READ) or submitted (WRITE) it.
 *
 * <h2>Hand-off</h2>
 * {@link #post} puts up to n references to a job in the ring and wakes as many parked workers.
 * It never blocks: a full ring, a device being closed, the threads not started yet, or memory the
 * workers may not touch (a confined arena's) simply post
 * fewer (the poster then runs the chunks itself, see {@link CipherJob#start}). Threads start on
 * the first post, not at construction, so a device that only ever sees small bios has none.
 *
 * <h2>Idle</h2>
 * A worker with nothing to do polls for a short while ({@link #spinNanos}, so a steady stream of
 * bios does not pay a futex wake-up per bio; one worker at a time, and after a poll that caught
 * nothing not for the next {@link #SKIP_AFTER_MISS} idle periods) and then parks; it burns no core when the device is
 * idle. The park/wake hand-shake is Dekker's: the worker publishes PARKED and then re-polls; the
 * poster publishes the entry, fences, and then reads the state. One of them sees the other.
 *
 * <p>Thread-safe.
 */
final class CryptWorkers {
    private static final System.Logger LOG = System.getLogger("biostack.crypt");
    private static final int RUNNING = 0;
    private static final int PARKED = 1;
    /** Start state of the threads: not yet, being started by one poster, running. */
    private static final int NEW = 0;
    private static final int STARTING = 1;
    private static final int STARTED = 2;
    /**
     * Idle periods parked without polling after a poll that caught nothing: polling then costs
     * at most 1/(1 + this) of the time it did before, and a stream that speeds up is noticed
     * within this many jobs.
     */
    private static final int SKIP_AFTER_MISS = 8;
    /** The JVM could not make the threads: every job stays on its poster from then on. */
    private static final int FAILED = 3;

    private final String name;
    private final MpmcRing<CipherJob> queue;
    private final Worker[] workers;
    private final long spinNanos;
    private final AtomicInteger startState = new AtomicInteger(NEW);
    /** 1 while a worker polls before parking: one spinner is enough to catch the next job. */
    private final AtomicInteger spinning = new AtomicInteger();
    /**
     * Idle periods to park at once, without polling: set after a poll that caught nothing, so
     * jobs that come further apart than {@link #spinNanos} (a disk's pace) burn no CPU in polls.
     * Only the thread holding {@link #spinning} touches it.
     */
    private int skipSpins;
    /** Job references posted and not yet taken by a worker. */
    private final AtomicInteger backlog = new AtomicInteger();
    private volatile boolean closed;
    /** Test hook: when set, the id of every thread that runs a chunk is added. */
    volatile Set<Long> cipherThreads;

    /**
     * @param threads   worker threads (0: none, every job runs on its poster)
     * @param capacity  job references the ring holds
     * @param spinNanos how long an idle worker polls before it parks
     */
    CryptWorkers(String name, int threads, int capacity, long spinNanos) {
        this.name = name;
        this.queue = new MpmcRing<>(capacity);
        this.workers = new Worker[threads];
        this.spinNanos = spinNanos;
    }

    int threads() {
        return workers.length;
    }

    /**
     * Offers up to {@code n} references to {@code job} to the workers (fewer when every worker
     * already has a reference waiting, but one with {@code atLeastOne}), taking one job reference
     * for each (released by the worker that polls it, see {@link CipherJob#release}). Returns how
     * many were posted: fewer when the ring is full, none when there are no workers, when they are
     * shutting down, or when they may not touch the bio's memory. Never blocks.
     */
    int post(CipherJob job, int n, boolean atLeastOne) {
        if (workers.length == 0) {
            return 0;
        }
        // A backlog of a reference per worker means every worker has something to take: more
        // would only wait in the ring while the poster, which runs chunks too, does the work. A
        // poster that will not run chunks posts one reference whatever the backlog.
        n = Math.min(n, workers.length - backlog.get());
        if (atLeastOne) {
            n = Math.max(n, 1);
        }
        if (n <= 0 || closed || !started() || !shared(job.piece)) {
            return 0;
        }
        backlog.getAndAdd(n);
        job.retain(n);
        int posted = 0;
        while (posted < n && queue.offer(job)) {
            posted++;
        }
        if (posted < n) {
            backlog.getAndAdd(posted - n);
            job.dropRefs(n - posted);
        }
        // Dekker with Worker.idle() and spin(): our entries are visible before we read the workers'
        // states. A spinning worker takes one entry without a wake-up (if it has just stopped
        // spinning, it re-polls after publishing PARKED and finds the entry).
        VarHandle.fullFence();
        int woken = spinning.get();
        for (int i = 0; i < workers.length && woken < posted; i++) {
            Worker w = workers[i];
            if (w.state.get() == PARKED && w.state.compareAndSet(PARKED, RUNNING)) {
                LockSupport.unpark(w.thread);
                woken++;
            }
        }
        if (closed) {
            // close() may have drained the ring before our entries landed: the caller must then not
            // rely on the workers (CipherJob.start runs the rest itself).
            return 0;
        }
        return posted;
    }

    /**
     * Whether the workers may touch the piece's memory: a segment of a confined arena may only be
     * used by its owner thread, so such a bio stays where it is.
     */
    private boolean shared(Bio piece) {
        Thread other = workers[0].thread;
        for (int i = piece.iter().index(), n = piece.segmentCount(); i < n; i++) {
            if (!piece.segment(i).isAccessibleBy(other)) {
                return false;
            }
        }
        return true;
    }

    /** Starts the threads on first use; false while another poster is starting them. */
    private boolean started() {
        int s = startState.get();
        if (s == STARTED) {
            return true;
        }
        if (s == STARTING || !startState.compareAndSet(NEW, STARTING)) {
            return startState.get() == STARTED;
        }
        try {
            for (int i = 0; i < workers.length; i++) {
                Worker w = new Worker();
                w.thread = Thread.ofPlatform().daemon().name("crypt-" + name + "-" + i).unstarted(w);
                workers[i] = w;
            }
            for (Worker w : workers) {
                w.thread.start();
            }
        } catch (OutOfMemoryError | RuntimeException e) {
            // "unable to create native thread": we are on an I/O path, so the bio must still
            // complete; the threads that did start park until close()
            LOG.log(System.Logger.Level.WARNING, "crypt " + name + ": no cipher threads (" + e
                    + "); the I/O threads do the cipher work");
            startState.set(FAILED);
            return false;
        }
        startState.set(STARTED);
        return true;
    }

    /** Records the current thread as one that ran cipher work, when a test asks. */
    void recordThread() {
        Set<Long> s = cipherThreads;
        if (s != null) {
            s.add(Thread.currentThread().threadId());
        }
    }

    /**
     * Stops the workers: they finish what the ring holds and exit. Entries posted after that are
     * run here, so every bio completes. Waits up to a few seconds for the threads; never called on
     * the I/O path.
     */
    void close() {
        closed = true;
        VarHandle.fullFence();
        // Threads a poster is still starting see `closed` and end by themselves.
        for (Worker w : workers) {
            if (w != null && w.thread.isAlive()) {
                LockSupport.unpark(w.thread);
            }
        }
        for (Worker w : workers) {
            if (w == null) {
                continue;
            }
            try {
                w.thread.join(TimeUnit.SECONDS.toMillis(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        drain();
    }

    /** Takes a job reference from the ring; null when empty. */
    private CipherJob poll() {
        CipherJob j = queue.poll();
        if (j != null) {
            backlog.getAndDecrement();
        }
        return j;
    }

    /** Runs every job reference left in the ring on the calling thread. */
    private void drain() {
        CipherJob j;
        while ((j = poll()) != null) {
            j.work();
            j.release();
        }
    }

    /** Threads that are alive (for tests: none after close). */
    int liveThreads() {
        int n = 0;
        for (Worker w : workers) {
            if (w != null && w.thread.isAlive()) {
                n++;
            }
        }
        return n;
    }

    private final class Worker implements Runnable {
        final AtomicInteger state = new AtomicInteger(RUNNING);
        Thread thread;

        @Override
        public void run() {
            while (true) {
                CipherJob j = poll();
                if (j == null) {
                    j = spin();
                }
                if (j == null) {
                    if (closed) {
                        drain();
                        return;
                    }
                    j = idle();
                    if (j == null) {
                        continue;
                    }
                }
                runGuarded(j);
            }
        }

        /**
         * Runs a job's chunks. A callback that throws is the caller's bug, but it must not kill the
         * worker (the jobs behind it would wait for nobody): it is logged and the worker goes on.
         */
        private void runGuarded(CipherJob j) {
            try {
                j.work();
            } catch (RuntimeException | Error e) {
                LOG.log(System.Logger.Level.ERROR, "crypt worker of " + name + ": a completion threw", e);
            } finally {
                j.release();
            }
        }

        /**
         * Polls for up to {@link #spinNanos} when no other worker is polling already; null when
         * nothing came. One spinner takes the next job without a wake-up; more would only burn
         * cores that the I/O threads need.
         */
        private CipherJob spin() {
            if (spinNanos <= 0 || !spinning.compareAndSet(0, 1)) {
                return null;
            }
            try {
                if (skipSpins > 0) {
                    skipSpins--;
                    return null;
                }
                long end = System.nanoTime() + spinNanos;
                do {
                    Thread.onSpinWait();
                    CipherJob j = poll();
                    if (j != null) {
                        return j;
                    }
                } while (!closed && System.nanoTime() < end);
                skipSpins = SKIP_AFTER_MISS;
                return null;
            } finally {
                spinning.set(0);
            }
        }

        /** Parks until a poster wakes us; returns a job found on the way, or null. */
        private CipherJob idle() {
            state.set(PARKED); // volatile: ordered before the re-poll (Dekker with post)
            CipherJob j = poll();
            if (j != null || closed) {
                state.set(RUNNING);
                return j;
            }
            LockSupport.park(this);
            state.set(RUNNING);
            return null;
        }
    }

    @Override
    public String toString() {
        return "CryptWorkers[" + name + " threads=" + workers.length + "]";
    }
}
