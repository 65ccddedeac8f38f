package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.block.BioList;
import io.biostack.block.BioQueue;
import io.biostack.block.Op;
import io.biostack.block.Status;
import io.biostack.sys.ErrnoException;
import io.biostack.sys.EventFd;
import io.biostack.sys.Iovec;
import io.biostack.sys.Libc;
import io.biostack.uring.CqeHandler;
import io.biostack.uring.IoUring;
import io.biostack.uring.IoUringConstants;
import io.biostack.uring.SetupFlagNames;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
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

    private static final int PHASE_PREFLUSH = 1;
    private static final int PHASE_DATA = 2;

    private final BioQueue inbox = new BioQueue();
    private final BioList backlog = new BioList();
    private final Thread thread;
    private final CountDownLatch started = new CountDownLatch(1);
    private volatile Throwable startError;
    private volatile boolean sleeping;
    private volatile boolean stopping;

    // Worker-thread state.
    private IoUring ring;
    private Arena arena;
    private MemorySegment iovecs;
    private MemorySegment eventBuf;
    private final int eventFd;
    private final Bio[] slotBio = new Bio[SLOTS];
    private final int[] slotPhase = new int[SLOTS];
    private final int[] freeSlots = new int[SLOTS];
    private int freeTop;
    private int inflight;
    /** SQEs prepared since the last io_uring_enter that submitted. */
    private int unsubmitted;
    private String description = "io_uring";

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
        for (int i = 0; i < SLOTS; i++) {
            freeSlots[i] = SLOTS - 1 - i;
        }
        freeTop = SLOTS;
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
        if (Thread.currentThread() == thread) {
            backlog.add(bio);
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
            iovecs = arena.allocate((long) SLOTS * MAX_SEGMENTS * Iovec.SIZE, 4096);
            eventBuf = arena.allocate(8, 8);
            description = "io_uring (" + SetupFlagNames.describe(ring.setupFlags())
                    + (regRing ? ", registered ring fd" : "") + ")";
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
                backlog.addAll(taken);
            }
            startBacklog();
            if (stopping && inflight == 0 && backlog.isEmpty() && inbox.isEmpty()) {
                return;
            }
            if (unsubmitted > 0 && ring.cqReady() == 0) {
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
        unsubmitted++;
    }

    /** Submits what is prepared and waits for {@code waitNr} completions (GETEVENTS). */
    private int enter(int waitNr) {
        unsubmitted = 0;
        return ring.submitAndWait(waitNr);
    }

    private void startBacklog() {
        while (freeTop > 0 && ring.sqSpace() > 0) {
            Bio bio = backlog.poll();
            if (bio == null) {
                return;
            }
            if (unsubmitted >= SUBMIT_BATCH) {
                // There is another: let the device start on what is prepared (no plug).
                unsubmitted = 0;
                ring.submit();
            }
            int slot = freeSlots[--freeTop];
            slotBio[slot] = bio;
            inflight++;
            slotPhase[slot] = bio.hasFlag(io.biostack.block.BioFlags.PREFLUSH) && bio.op() != Op.FLUSH
                    ? PHASE_PREFLUSH : PHASE_DATA;
            prep(slot, bio);
        }
    }

    /** Prepares the SQE for the slot's current phase. The SQ always has room for it here. */
    private void prep(int slot, Bio bio) {
        BackingFile f = (BackingFile) bio.driverData();
        int fd = f.fd();
        boolean ok;
        if (slotPhase[slot] == PHASE_PREFLUSH) {
            ok = ring.prepFsync(fd, IoUringConstants.IORING_FSYNC_DATASYNC, slot);
        } else {
            switch (bio.op()) {
                case READ, WRITE -> ok = prepData(slot, bio, fd);
                case FLUSH -> ok = ring.prepFsync(fd, IoUringConstants.IORING_FSYNC_DATASYNC, slot);
                case DISCARD, WRITE_ZEROES -> ok = ring.prepFallocate(fd, FileOps.fallocateMode(bio),
                        bio.offset(), bio.size(), slot);
                default -> throw new AssertionError(bio.op());
            }
        }
        if (!ok) {
            throw new IllegalStateException("SQ full with a free slot: ring accounting broken");
        }
        unsubmitted++;
    }

    private boolean prepData(int slot, Bio bio, int fd) {
        boolean read = bio.op() == Op.READ;
        int rw = FileOps.rwFlags(bio);
        int i = bio.iter().index();
        MemorySegment first = bio.segment(i);
        long skip = bio.iter().doneInSegment();
        long size = bio.size();
        if (first.byteSize() - skip >= size) {
            long addr = first.address() + skip;
            return ring.prepRw(read ? IoUringConstants.IORING_OP_READ : IoUringConstants.IORING_OP_WRITE,
                    fd, addr, (int) size, bio.offset(), rw, slot, 0, 0);
        }
        long base = (long) slot * MAX_SEGMENTS * Iovec.SIZE;
        long left = size;
        int n = 0;
        while (left > 0) {
            MemorySegment v = bio.segment(i++);
            long len = Math.min(v.byteSize() - skip, left);
            Iovec.set(iovecs, (int) (base / Iovec.SIZE) + n, v.address() + skip, len);
            n++;
            left -= len;
            skip = 0;
        }
        long iov = iovecs.address() + base;
        return read ? ring.prepReadv(fd, iov, n, bio.offset(), rw, slot)
                : ring.prepWritev(fd, iov, n, bio.offset(), rw, slot);
    }

    @Override
    public void complete(long userData, int res, int flags) {
        if (userData == EVENTFD_TAG) {
            if (!stopping || inflight > 0) {
                armEventFd();
            }
            return;
        }
        int slot = (int) userData;
        Bio bio = slotBio[slot];
        if (res < 0 && FileOps.retryable(bio, res)) {
            prep(slot, bio);
            return;
        }
        if (slotPhase[slot] == PHASE_PREFLUSH) {
            if (res < 0) {
                finish(slot, bio, res);
                return;
            }
            slotPhase[slot] = PHASE_DATA;
            prep(slot, bio);
            return;
        }
        if (res >= 0 && bio.op().hasData() && res < bio.size()) {
            if (res == 0) {
                if (bio.op() == Op.READ) {
                    bio.zeroFill(); // past the end of the file: reads as zeros, as loop.c does
                    finish(slot, bio, 0);
                } else {
                    bio.setStatus(Status.IOERR, "short write: 0 of " + bio.size() + " bytes at offset "
                            + bio.offset() + " of " + ((BackingFile) bio.driverData()).path());
                    finish(slot, bio, 0);
                }
                return;
            }
            bio.advance(res); // short transfer: do the rest, never report missing bytes as success
            prep(slot, bio);
            return;
        }
        finish(slot, bio, res);
    }

    private void finish(int slot, Bio bio, long res) {
        slotBio[slot] = null;
        freeSlots[freeTop++] = slot;
        inflight--;
        BackingFile f = (BackingFile) bio.driverData();
        if (res < 0) {
            FileOps.fail(bio, f, res);
        }
        try {
            f.completed(bio);
        } catch (RuntimeException e) {
            // A broken callback must not take the worker, and every other bio, down with it.
            LOG.log(System.Logger.Level.ERROR, "end-io callback threw for " + bio, e);
        }
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

    /** True when called on the worker thread (end-io callbacks run there). */
    boolean onWorker() {
        return Thread.currentThread() == thread;
    }

    long threadId() {
        return thread.threadId();
    }
}
