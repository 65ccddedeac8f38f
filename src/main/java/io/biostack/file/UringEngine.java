package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.block.BioQueue;
import io.biostack.block.Status;
import io.biostack.sys.Errno;
import io.biostack.sys.ErrnoException;
import io.biostack.sys.EventFd;
import io.biostack.sys.Libc;
import io.biostack.uring.CqeHandler;
import io.biostack.uring.IoUring;
import io.biostack.uring.IoUringConstants;
import io.biostack.uring.RingThread;
import io.biostack.uring.SetupFlagNames;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayDeque;
import java.util.concurrent.CountDownLatch;

/**
 * The io_uring file engine: one worker thread that owns one ring, submits and reaps
 * (DESIGN.md, "Threads and the ring").
 *
 * <p>Bios from the worker itself (end-io callbacks that submit more) go straight to its backlog;
 * bios from other threads go through a lock-free {@link BioQueue}, and the worker, when it sleeps
 * in {@code io_uring_enter}, is woken by an eventfd on which the ring keeps a read armed.
 * In-flight bios sit in a fixed slot table; each slot has its own iovec array, so the steady
 * state allocates nothing.
 *
 * <p><b>Submission: no plug.</b> A pass does not gather every bio it prepares into one
 * {@code io_uring_enter}. Each SQE goes to the kernel as soon as the next one is being prepared
 * ({@link #SUBMIT_BATCH} SQEs per enter, default 1, as fio's default
 * {@code iodepth_batch_submit=1}); only the last one rides on the enter that follows the pass
 * (the wait, or the GETEVENTS that fetches deferred completions). Measured on a 2-vCPU
 * virtio-blk VM, 4k randread QD32: one enter per pass made the queue run in convoys (the whole
 * depth submitted together, ~32 I/Os per interrupt, device latency ~430 µs at a device depth of
 * ~27, 60-65k IOPS), while an enter per SQE lets the device start on each request at once
 * (~12 I/Os per interrupt, ~170 µs at a depth of ~15, 85-95k IOPS) for ~4 µs more worker CPU
 * per I/O.
 *
 * <p><b>Registered buffers.</b> {@link #allocateIoMemory} hands out regions that the worker
 * registers in a sparse fixed-buffer table (IORING_REGISTER_BUFFERS2 + BUFFERS_UPDATE, 5.19);
 * a bio whose one piece of memory lies inside a region goes down as READ_FIXED/WRITE_FIXED,
 * so the kernel does not pin and unpin its pages per I/O. Register calls must come from the
 * ring's owner (SINGLE_ISSUER), so other threads queue a request, wake the worker through the
 * eventfd and wait for its answer; the worker never waits. The lookup is a binary search of
 * the sorted ranges, worker-only. When the kernel or RLIMIT_MEMLOCK says no, regions are plain
 * memory (said once at DEBUG). System property {@code biostack.uring.fixedBuffers=false} turns it off.
 */
final class UringEngine implements FileEngine, CqeHandler, Runnable {
    private static final System.Logger LOG = System.getLogger("biostack.file");

    /** SQ size; slots are one fewer, so a slot's next SQE (PREFLUSH → data) always has room. */
    static final int ENTRIES = 256;
    private static final int SLOTS = ENTRIES - 1;
    /** Iovecs per slot; {@link BackingFile} splits bios to this many segments. */
    static final int MAX_SEGMENTS = 64;
    private static final long EVENTFD_TAG = -1L;
    /**
     * SQEs handed to the kernel per {@code io_uring_enter} while a pass prepares them
     * (system property {@code biostack.uring.submitBatch}, default 1; see the class comment).
     * A large value gives back the one-enter-per-pass plug.
     */
    static final int SUBMIT_BATCH = Math.max(1, Integer.getInteger("biostack.uring.submitBatch", 1));

    /** Slots of the sparse fixed-buffer table; each registered region takes one. */
    static final int BUFFER_SLOTS = 256;
    /** Largest registered buffer (io_buffer_validate: SZ_1G). */
    private static final long MAX_FIXED_BYTES = 1L << 30;

    private final BioQueue inbox = new BioQueue();
    private final Thread thread;
    private final CountDownLatch started = new CountDownLatch(1);
    private volatile Throwable startError;
    private volatile boolean sleeping;
    private volatile boolean stopping;

    // Worker-thread state.
    private IoUring ring;
    private Arena arena;
    private MemorySegment eventBuf;
    private final int eventFd;
    /** The worker's slots and SQEs (worker-thread state). */
    private FileRing files;
    private String description = "io_uring";

    // Registered buffers (class comment). Worker-thread state but fixedBuffers, set before start.
    private final boolean fixedWanted;
    private volatile boolean fixedBuffers;
    private final Object regLock = new Object();
    private final ArrayDeque<RegRequest> regQueue = new ArrayDeque<>(); // guarded by regLock
    private boolean regClosed; // guarded by regLock
    private volatile boolean regPending;
    private volatile boolean regFailureLogged;

    /** Register ({@code slot < 0}) or unregister ({@code slot}) a region; answered by the worker. */
    private static final class RegRequest {
        final long addr;
        final long len;
        final int slot;
        int result;
        final CountDownLatch done = new CountDownLatch(1);

        RegRequest(long addr, long len, int slot) {
            this.addr = addr;
            this.len = len;
            this.slot = slot;
        }
    }

    /** A value of 1 for eventfd writes; read-only, shared by every waking thread. */
    private final MemorySegment one;

    private UringEngine() throws ErrnoException {
        int efd = Libc.eventfd(0, EventFd.EFD_CLOEXEC);
        if (efd < 0) {
            throw new ErrnoException("eventfd", -efd);
        }
        this.eventFd = efd;
        this.one = Arena.global().allocate(ValueLayout.JAVA_LONG);
        this.one.set(ValueLayout.JAVA_LONG, 0, 1L);
        this.fixedWanted = Boolean.parseBoolean(System.getProperty("biostack.uring.fixedBuffers", "true"));
        this.thread = Thread.ofPlatform().name("biostack-uring").daemon(true).unstarted(this);
    }

    /** Starts the worker and its ring; throws when the ring can't be set up. */
    static UringEngine start() throws ErrnoException {
        UringEngine e = new UringEngine();
        e.thread.start();
        try {
            e.started.await();
        } catch (InterruptedException ie) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while starting io_uring worker", ie);
        }
        if (e.startError != null) {
            Libc.close(e.eventFd);
            if (e.startError instanceof ErrnoException ee) {
                throw ee;
            }
            throw new IllegalStateException("io_uring worker failed to start", e.startError);
        }
        return e;
    }

    @Override
    public String describe() {
        return description;
    }

    @Override
    public EngineKind kind() {
        return EngineKind.URING;
    }

    @Override
    public void submit(Bio bio) {
        Thread t = Thread.currentThread();
        if (t == thread) {
            files.add(bio);
            return;
        }
        if (t instanceof RingThread rt && rt.loop().fileQueue() instanceof ReactorQueue local) {
            local.submit(bio); // a reactor: its own ring, completion on this thread (blk-mq)
            return;
        }
        if (stopping) {
            bio.fail(Status.CANCELLED, "file engine is shut down");
            return;
        }
        inbox.push(bio);
        // Dekker with the worker: it sets sleeping, then re-checks the inbox before it waits.
        if (sleeping) {
            Libc.write(eventFd, one.address(), 8);
        }
    }

    @Override
    public void run() {
        try {
            // With SINGLE_ISSUER the ring belongs to the thread that sets it up: this one.
            ring = IoUring.open(ENTRIES, ENTRIES * 2, IoUring.RECOMMENDED_SETUP_FLAGS);
            // An enter per SQE (class comment): skip the ring fd lookup in each. Optional (5.18).
            boolean regRing = ring.registerRingFd() == 0;
            arena = Arena.ofShared();
            files = new FileRing(ring, arena, SLOTS, 0, SUBMIT_BATCH, BUFFER_SLOTS);
            eventBuf = arena.allocate(8, 8);
            if (fixedWanted) {
                int r = ring.registerBuffersSparse(BUFFER_SLOTS); // 5.19; optional
                fixedBuffers = r == 0;
                if (r < 0) {
                    LOG.log(System.Logger.Level.DEBUG, "io_uring: no fixed buffers (sparse buffer table: {0})",
                            Errno.name(-r));
                }
            }
            description = "io_uring (" + SetupFlagNames.describe(ring.setupFlags())
                    + (regRing ? ", registered ring fd" : "") + (fixedBuffers ? ", fixed buffers" : "") + ")";
        } catch (Throwable t) {
            startError = t;
            started.countDown();
            return;
        }
        started.countDown();
        try {
            loop();
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "io_uring worker died", t);
            throw t;
        } finally {
            for (Bio b = inbox.takeAll(); b != null; ) {
                Bio n = BioQueue.next(b);
                b.fail(Status.CANCELLED, "file engine is shut down");
                b = n;
            }
            RegRequest[] left;
            synchronized (regLock) {
                regClosed = true; // later requests are answered on their own thread
                left = regQueue.toArray(new RegRequest[0]);
                regQueue.clear();
                regPending = false;
            }
            for (RegRequest r : left) {
                serve(r);
            }
            ring.close();
            Libc.close(eventFd);
            arena.close();
        }
    }

    private void loop() {
        armEventFd();
        while (true) {
            Bio taken = inbox.takeAll();
            if (taken != null) {
                files.addAll(taken);
            }
            if (regPending) {
                serveRequests();
            }
            files.start();
            if (stopping && files.idle() && inbox.isEmpty()) {
                return;
            }
            if (files.unsubmitted > 0 && ring.cqReady() == 0) {
                // The pass's last SQEs, and the deferred completions, in one enter.
                enter(0);
            }
            if (ring.reap(this) > 0) {
                continue; // callbacks may have queued more: prepare them before entering
            }
            sleeping = true;
            if (!inbox.isEmpty() || stopping) {
                sleeping = false;
                enter(0);
                continue;
            }
            int r = enter(1);
            sleeping = false;
            if (r < 0 && r != -io.biostack.sys.Errno.EAGAIN && r != -io.biostack.sys.Errno.EBUSY
                    && r != -io.biostack.sys.Errno.ETIME) {
                LOG.log(System.Logger.Level.WARNING, "io_uring_enter failed: {0}", io.biostack.sys.Errno.name(-r));
            }
        }
    }

    private void armEventFd() {
        ring.prepRead(eventFd, eventBuf.address(), 8, 0, EVENTFD_TAG);
        files.unsubmitted++;
    }

    /** Submits what is prepared and waits for {@code waitNr} completions (GETEVENTS). */
    private int enter(int waitNr) {
        files.unsubmitted = 0;
        return ring.submitAndWait(waitNr);
    }

    // ---- registered I/O memory (cold path) -------------------------------------------------------

    /**
     * A region registered with the ring as a fixed buffer when it can be, else plain memory; see
     * {@link FileEngine#allocateIoMemory}. The region has its own arena, closed (after the worker
     * dropped the registration and forgot the range) by the cleanup of {@code owner}: so a freed
     * range is never taken for a registered one. Waits for the worker; never call it from there
     * with bios of this engine blocked on the answer (it is answered at once on the worker).
     */
    @Override
    public MemorySegment allocateIoMemory(long bytes, long align, Arena owner) {
        long size = (bytes + 4095) & -4096L;
        if (!fixedBuffers || bytes <= 0 || size > MAX_FIXED_BYTES) {
            return FileEngine.super.allocateIoMemory(bytes, align, owner);
        }
        Arena region = Arena.ofShared();
        MemorySegment mem;
        try {
            mem = FileEngine.plainIoMemory(size, align, region);
        } catch (RuntimeException | OutOfMemoryError e) {
            region.close();
            throw e;
        }
        int slot = call(new RegRequest(mem.address(), size, -1));
        if (slot < 0) {
            region.close();
            if (!regFailureLogged) {
                regFailureLogged = true;
                LOG.log(System.Logger.Level.DEBUG, "io_uring: registering " + size + " bytes of I/O memory failed ("
                        + Errno.name(-slot) + "); using unregistered memory");
            }
            return FileEngine.super.allocateIoMemory(bytes, align, owner);
        }
        return mem.reinterpret(bytes, owner, s -> release(slot, region));
    }

    /** The owner's arena closed: drop the registration, then free the region. */
    private void release(int slot, Arena region) {
        try {
            call(new RegRequest(0, 0, slot));
        } finally {
            region.close();
        }
    }

    /** Has the worker answer {@code r}: at once on the worker, else through the queue. */
    private int call(RegRequest r) {
        if (Thread.currentThread() == thread) {
            serve(r);
            return r.result;
        }
        synchronized (regLock) {
            if (regClosed) {
                // The ring is gone, and with it every registration.
                return r.slot >= 0 ? 0 : -Errno.ENXIO;
            }
            regQueue.add(r);
            regPending = true;
        }
        Libc.write(eventFd, one.address(), 8); // the armed eventfd read ends any wait
        boolean interrupted = false;
        while (true) {
            try {
                r.done.await();
                break;
            } catch (InterruptedException e) {
                interrupted = true; // the worker answers soon; the region must not leak
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        return r.result;
    }

    private void serveRequests() {
        while (true) {
            RegRequest r;
            synchronized (regLock) {
                r = regQueue.poll();
                if (r == null) {
                    regPending = false;
                    return;
                }
            }
            serve(r);
        }
    }

    /** Worker: registers or unregisters one region, then answers. */
    private void serve(RegRequest r) {
        try {
            r.result = r.slot >= 0 ? unregister(r.slot) : register(r.addr, r.len);
        } catch (RuntimeException e) {
            r.result = -Errno.EIO;
            LOG.log(System.Logger.Level.WARNING, "io_uring buffer registration failed", e);
        } finally {
            r.done.countDown();
        }
    }

    private int register(long addr, long len) {
        if (!fixedBuffers || ring.isClosed()) {
            return -Errno.ENXIO;
        }
        return files.registerFixed(addr, len);
    }

    private int unregister(int slot) {
        return files.unregisterFixed(slot);
    }

    /** I/Os prepared as READ_FIXED/WRITE_FIXED so far; read after a completion you waited for. */
    long fixedIos() {
        return files.fixedIos;
    }

    /** True when the ring has a fixed-buffer table. */
    boolean hasFixedBuffers() {
        return fixedBuffers;
    }

    @Override
    public void complete(long userData, int res, int flags) {
        if (userData == EVENTFD_TAG) {
            if (!stopping || files.inflight() > 0) {
                armEventFd();
            }
            return;
        }
        files.complete((int) userData, res);
    }

    @Override
    public void shutdown() {
        stopping = true;
        Libc.write(eventFd, one.address(), 8);
        try {
            if (!thread.join(java.time.Duration.ofSeconds(30))) {
                LOG.log(System.Logger.Level.WARNING, "io_uring worker did not stop within 30 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
