package io.biostack.uring;

import io.biostack.sys.Errno;
import io.biostack.sys.ErrnoException;
import io.biostack.sys.EventFd;
import io.biostack.sys.Libc;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;

/**
 * A reactor: one platform thread ({@link RingThread}) that owns one io_uring, submits on it and
 * reaps it (DESIGN.md, "Threads and the ring", reactors). Several users share the ring: each
 * {@link #register registers} a {@link CqeHandler} and gets a small id that goes into the top
 * byte of its SQEs' user data ({@link #tag}); a completion is routed to its handler with the
 * lower 56 bits. The file engine's per-thread queue is one such user, an NBD transport another,
 * so a request's socket I/O and its file I/O complete on the same thread.
 *
 * <p>Before each wait the loop runs its {@link #addPoller pollers} (each prepares the SQEs it
 * has pending), then one {@code io_uring_enter} submits everything and waits. Other threads hand
 * work over with {@link #execute} (a lock-free queue plus an eventfd that the ring keeps a read
 * armed on). Pollers and handlers run on the loop thread only and must not block.
 *
 * <p>The loop wakes at least every {@link #TICK_NANOS} to run the {@link #addTicker tickers}
 * (timeouts); they may allocate (cold path).
 */
public final class RingLoop implements CqeHandler {
    private static final System.Logger LOG = System.getLogger("biostack.uring");
    /** Handler id 0 is the loop's own eventfd read. */
    private static final int SELF = 0;
    private static final int ID_SHIFT = 56;
    private static final long DATA_MASK = (1L << ID_SHIFT) - 1;
    /** Longest wait without a tick: timeouts are checked this often. */
    public static final long TICK_NANOS = 100_000_000L;

    /** A user of the loop that prepares SQEs before each wait. */
    @FunctionalInterface
    public interface Poller {
        /** Prepares pending SQEs (on the loop thread); must not block. */
        void poll();
    }

    private final String name;
    private final int entries;
    private final List<CqeHandler> handlers = new ArrayList<>();
    private CqeHandler[] table = new CqeHandler[1];
    private Poller[] pollers = new Poller[0];
    private Runnable[] tickers = new Runnable[0];
    private final ConcurrentLinkedQueue<Runnable> tasks = new ConcurrentLinkedQueue<>();
    private final RingThread thread;
    private final CountDownLatch started = new CountDownLatch(1);
    private final CountDownLatch stopped = new CountDownLatch(1);
    private volatile Throwable startError;
    private volatile boolean sleeping;
    private volatile boolean stopping;
    private final int eventFd;
    private final MemorySegment one;
    private IoUring ring;
    private MemorySegment eventBuf;
    private Arena arena;
    private long lastTick;
    private String description = "io_uring";
    /** The file engine's queue on this ring, when it attached one (see io.biostack.file). */
    private Object fileQueue;
    /** Set by a poller or handler that has more to do before the loop may wait. */
    private boolean busy;
    private Runnable onExit;

    private RingLoop(String name, int entries) throws ErrnoException {
        this.name = name;
        this.entries = entries;
        int efd = Libc.eventfd(0, EventFd.EFD_CLOEXEC);
        if (efd < 0) {
            throw new ErrnoException("eventfd", -efd);
        }
        this.eventFd = efd;
        this.one = Arena.global().allocate(ValueLayout.JAVA_LONG);
        this.one.set(ValueLayout.JAVA_LONG, 0, 1L);
        handlers.add(this);
        table[SELF] = this;
        this.thread = new RingThread(this, name);
    }

    /**
     * Starts a loop thread with a ring of {@code entries} SQEs (four times as many CQEs); the
     * ring is set up on that thread (SINGLE_ISSUER, DEFER_TASKRUN where the kernel has them).
     *
     * @param setup runs on the loop thread once the ring exists, before anything else (register
     *              handlers, attach the file queue); its exception fails the start
     */
    public static RingLoop start(String name, int entries, java.util.function.Consumer<RingLoop> setup)
            throws ErrnoException {
        RingLoop l = new RingLoop(name, entries);
        l.setup = setup;
        l.thread.start();
        try {
            l.started.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while starting " + name, e);
        }
        if (l.startError != null) {
            Libc.close(l.eventFd);
            if (l.startError instanceof ErrnoException ee) {
                throw ee;
            }
            throw new IllegalStateException(name + " failed to start", l.startError);
        }
        return l;
    }

    private java.util.function.Consumer<RingLoop> setup;

    /** The loop of the calling thread, or null when it is not a loop thread. */
    public static RingLoop current() {
        return Thread.currentThread() instanceof RingThread t ? t.loop() : null;
    }

    /** True on this loop's own thread. */
    public boolean inLoop() {
        return Thread.currentThread() == thread;
    }

    /** The ring; use it on the loop thread only. */
    public IoUring ring() {
        return ring;
    }

    /** "io_uring (SINGLE_ISSUER|...)". */
    public String describe() {
        return description;
    }

    public String name() {
        return name;
    }

    /** Adds a completion handler (loop thread only); returns its id for {@link #tag}. */
    public int register(CqeHandler h) {
        checkThread();
        if (handlers.size() == 255) {
            throw new IllegalStateException("too many handlers on " + name);
        }
        handlers.add(h);
        table = handlers.toArray(new CqeHandler[0]);
        return handlers.size() - 1;
    }

    /** The user data for an SQE of handler {@code id}; {@code data} must fit in 56 bits. */
    public static long tag(int id, long data) {
        return ((long) id << ID_SHIFT) | (data & DATA_MASK);
    }

    /** Adds a poller (loop thread only), run before every wait. */
    public void addPoller(Poller p) {
        checkThread();
        Poller[] n = java.util.Arrays.copyOf(pollers, pollers.length + 1);
        n[pollers.length] = p;
        pollers = n;
    }

    /** Adds a ticker (loop thread only), run about every {@link #TICK_NANOS}. */
    public void addTicker(Runnable r) {
        checkThread();
        Runnable[] n = java.util.Arrays.copyOf(tickers, tickers.length + 1);
        n[tickers.length] = r;
        tickers = n;
    }

    /**
     * Adds a check, run after the loop has said it is going to sleep, for work that other threads
     * queue without {@link #execute} (they call {@link #wake()} after queueing): true keeps the loop
     * from sleeping. Closes the race between a poller finding its queue empty and the wait.
     */
    public void addPendingCheck(java.util.function.BooleanSupplier pending) {
        checkThread();
        pendingChecks = plus(pendingChecks, pending);
    }

    private java.util.function.BooleanSupplier[] pendingChecks = new java.util.function.BooleanSupplier[0];

    private boolean pending() {
        return anyTrue(pendingChecks);
    }

    /** {@code checks} with {@code c} added: a new array, so the loop reads a whole one (cold path). */
    private static java.util.function.BooleanSupplier[] plus(java.util.function.BooleanSupplier[] checks,
            java.util.function.BooleanSupplier c) {
        java.util.function.BooleanSupplier[] n = java.util.Arrays.copyOf(checks, checks.length + 1);
        n[checks.length] = c;
        return n;
    }

    /** Whether one of {@code checks} says true; no allocation. */
    private static boolean anyTrue(java.util.function.BooleanSupplier[] checks) {
        for (java.util.function.BooleanSupplier c : checks) {
            if (c.getAsBoolean()) {
                return true;
            }
        }
        return false;
    }

    /** Says the loop must not wait before it polls again (loop thread only). */
    public void markBusy() {
        busy = true;
    }

    /** The file engine's per-thread queue, or null. */
    public Object fileQueue() {
        return fileQueue;
    }

    /** Attaches the file engine's per-thread queue (loop thread only; once). */
    public void attachFileQueue(Object q) {
        checkThread();
        if (fileQueue != null) {
            throw new IllegalStateException("file queue already attached to " + name);
        }
        fileQueue = q;
    }

    /** Runs {@code r} on the loop thread soon; from any thread. Allocates (cold path). */
    public void execute(Runnable r) {
        tasks.add(r);
        wake();
    }

    /** Wakes the loop when it sleeps in the kernel; from any thread. */
    public void wake() {
        // Dekker with the loop: it sets sleeping, then re-checks its queues before it waits.
        if (sleeping) {
            Libc.write(eventFd, one.address(), 8);
        }
    }

    /** Room for {@code n} more SQEs, submitting what is prepared when the SQ is full. */
    public void reserve(int n) {
        if (ring.sqSpace() < n) {
            int r = ring.submit();
            if (r < 0 && r != -Errno.EAGAIN && r != -Errno.EBUSY) {
                LOG.log(System.Logger.Level.WARNING, "{0}: io_uring_enter failed: {1}", name, Errno.name(-r));
            }
        }
    }

    /**
     * Stops the loop once {@code drained} says so (polled each pass after stop was asked), then
     * runs {@code onExit} on the loop thread and closes the ring. From any thread; returns at once.
     */
    public void stop(Runnable onExit) {
        execute(() -> {
            this.onExit = onExit;
            stopping = true;
        });
    }

    /** Waits until the loop thread has ended. */
    public boolean awaitStopped(long millis) throws InterruptedException {
        return stopped.await(millis, java.util.concurrent.TimeUnit.MILLISECONDS);
    }

    /** What must be done before a stopping loop may exit; true when idle. */
    private java.util.function.BooleanSupplier idle = () -> true;

    /** Sets the check a stopping loop polls before it exits (loop thread only). */
    public void setIdleCheck(java.util.function.BooleanSupplier s) {
        checkThread();
        idle = s;
    }

    private void checkThread() {
        if (Thread.currentThread() != thread) {
            throw new IllegalStateException("not on " + name);
        }
    }

    void run() {
        try {
            ring = IoUring.open(entries, entries * 4, IoUring.RECOMMENDED_SETUP_FLAGS);
            boolean regRing = ring.registerRingFd() == 0;
            arena = Arena.ofShared();
            eventBuf = arena.allocate(8, 8);
            description = "io_uring (" + SetupFlagNames.describe(ring.setupFlags())
                    + (regRing ? ", registered ring fd" : "") + ")";
            if (setup != null) {
                setup.accept(this);
            }
        } catch (Throwable t) {
            startError = t;
            if (ring != null) {
                ring.close();
            }
            started.countDown();
            stopped.countDown();
            return;
        }
        started.countDown();
        try {
            loop();
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, name + " died", t);
        } finally {
            try {
                if (onExit != null) {
                    onExit.run();
                }
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, name + ": exit hook failed", e);
            }
            ring.close();
            Libc.close(eventFd);
            arena.close();
            stopped.countDown();
        }
    }

    private void loop() {
        armEventFd();
        lastTick = System.nanoTime();
        while (true) {
            runTasks();
            busy = false;
            for (Poller p : pollers) {
                p.poll();
            }
            if (stopping && idle.getAsBoolean()) {
                return;
            }
            long now = System.nanoTime();
            if (now - lastTick >= TICK_NANOS) {
                lastTick = now;
                for (Runnable t : tickers) {
                    t.run();
                }
            }
            if (ring.reap(this) > 0 || busy) {
                if (ring.sqReady() > 0 && ring.cqReady() == 0) {
                    ring.submit(); // let the kernel start on what is prepared while we go on
                }
                continue;
            }
            long idleFrom = pollMaxNanos > 0 ? System.nanoTime() : 0;
            if (pollNanos > 0 && !waitsOnDevice() && poll(idleFrom + pollNanos)) {
                continue; // an event came while polling: the window stays as it is
            }
            sleeping = true;
            if (!tasks.isEmpty() || pending()) {
                sleeping = false;
                continue;
            }
            int r = ring.submitAndWait(1, TICK_NANOS);
            if (pollMaxNanos > 0) {
                adaptPoll(System.nanoTime() - idleFrom);
            }
            sleeping = false;
            if (r < 0 && r != -Errno.EAGAIN && r != -Errno.EBUSY && r != -Errno.ETIME && r != -Errno.EINTR) {
                LOG.log(System.Logger.Level.WARNING, "{0}: io_uring_enter failed: {1}", name, Errno.name(-r));
            }
        }
    }

    // ---- adaptive polling (after QEMU's AioContext poll-max-ns, util/aio-posix.c) ------------
    //
    // Going to sleep in io_uring_enter and being woken costs a wake-up of this thread; on a VM
    // whose vCPU went idle that is a wake-up of the vCPU by the host, tens of microseconds. When
    // events come closer together than that, the loop polls its CQ for a while before it sleeps.
    // It polls while idle periods end within the window, and stops after POLL_MISSES periods in a
    // row that polling could not have caught (QEMU shrinks its window the same way), so a quiet
    // or sparsely used loop never spins. The window is fixed rather than grown from a few
    // microseconds as QEMU's is: measured here, a growing window kept collapsing under a load
    // whose gaps vary, and the wake-ups it meant to save came back.

    /** The poll window when polling (0: never poll). */
    private long pollMaxNanos;
    /** The poll window now: pollMaxNanos or 0. */
    private volatile long pollNanos;
    /** Idle periods longer than the window, in a row. */
    private int pollMisses;
    /** Idle periods longer than the window, in a row, after which polling stops. */
    private static final int POLL_MISSES = 8;

    /**
     * Lets the loop poll for up to {@code nanos} before it sleeps while events come that close
     * together (0 turns it off). Polling trades CPU for latency: a busy loop may use its whole
     * core. Loop thread only.
     */
    public void setPollMaxNanos(long nanos) {
        checkThread();
        pollMaxNanos = Math.max(0, nanos);
        pollNanos = 0;
    }

    /**
     * Adds a test of whether the loop's next event is likely a whole device latency away (the
     * file engine: exactly one of its I/Os in flight; another connection on the loop may still be
     * waiting for its peer, and then waits a wake-up longer). While one says so, an idle loop
     * sleeps instead of polling: on this VM a spinning vCPU takes the host CPU that the virtual
     * disk's own I/O thread needs, and bench/nbd/qd1-trace.sh measured the disk step of a QD1 read
     * at 50 us with the reactor polling against 39 us sleeping (fio alone: 40 us), while the
     * wake-up that polling saves cost 3 us. With many I/Os in flight completions come a fraction
     * of a latency apart and polling catches them (QD32 measured 4-8% slower without it); a wait
     * for a peer's next request, with no device I/O in flight, still polls (it caught the client's
     * request 7 us sooner). Loop thread only; the test runs on the loop thread and must not
     * allocate.
     *
     * @param busyDevice true while waiting would only wait for one device I/O
     */
    public void addDeviceWait(java.util.function.BooleanSupplier busyDevice) {
        checkThread();
        deviceWaits = plus(deviceWaits, busyDevice);
    }

    private java.util.function.BooleanSupplier[] deviceWaits = new java.util.function.BooleanSupplier[0];

    /** Whether an idle period now would only wait for one device I/O (see {@link #addDeviceWait}). */
    private boolean waitsOnDevice() {
        return !POLL_ON_DEVICE && anyTrue(deviceWaits);
    }

    /** {@code -Dbiostack.uring.pollOnDevice=true} polls through a lone device I/O too (to compare). */
    private static final boolean POLL_ON_DEVICE = Boolean.getBoolean("biostack.uring.pollOnDevice");

    /** Idle periods that polling ended (an event came within the window). */
    private volatile long pollsCaught;

    /** Idle periods ended by polling so far; from any thread (a statistic, not per I/O exact). */
    public long pollsCaught() {
        return pollsCaught;
    }

    /** The poll window now, in nanoseconds (0: the loop sleeps at once); from any thread, racy. */
    public long pollWindowNanos() {
        return pollNanos;
    }

    /** Polls the CQ and the task queues until {@code deadline}; true when something came. */
    private boolean poll(long deadline) {
        ring.submit();
        do {
            if (ring.cqReady() > 0 || ring.cqNeedsFlush() || !tasks.isEmpty() || pending()) {
                pollsCaught++; // loop thread only: a volatile write per caught idle period, not per I/O
                return true;
            }
            Thread.onSpinWait(); // measured here: with or without the PAUSE, the same figures
        } while (System.nanoTime() < deadline);
        return false;
    }

    /** After a sleep: {@code idle} is the time from going idle to the event, polling included. */
    private void adaptPoll(long idle) {
        if (idle <= pollMaxNanos) {
            pollMisses = 0;
            pollNanos = pollMaxNanos;
        } else if (++pollMisses >= POLL_MISSES) {
            pollNanos = 0;
        }
    }

    private void runTasks() {
        Runnable r;
        while ((r = tasks.poll()) != null) {
            try {
                r.run();
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.ERROR, name + ": task failed", e);
            }
        }
    }

    private void armEventFd() {
        reserve(1);
        ring.prepRead(eventFd, eventBuf.address(), 8, 0, tag(SELF, 0));
    }

    /** Routes a completion to its handler; the loop's own eventfd read is re-armed. */
    @Override
    public void complete(long userData, int res, int flags) {
        int id = (int) (userData >>> ID_SHIFT);
        if (id == SELF) {
            armEventFd();
            return;
        }
        try {
            table[id].complete(userData & DATA_MASK, res, flags);
        } catch (RuntimeException e) {
            // One broken user must not take the loop, and every other connection, down with it.
            LOG.log(System.Logger.Level.ERROR, name + ": completion handler threw", e);
        }
    }

    @Override
    public String toString() {
        return name;
    }
}
