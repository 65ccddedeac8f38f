package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.sys.Errno;
import io.biostack.uring.CqeHandler;
import io.biostack.uring.RingLoop;

import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Per-thread file rings (blk-mq's per-CPU queues): a reactor {@link #attach attaches} the file
 * engine to its own {@link RingLoop}, and from then on a file bio submitted on that reactor's
 * thread is prepared on that thread's ring and completes there, with no hop to the io_uring
 * worker. Bios from every other thread still go to the worker through its queue.
 */
public final class FileRings {
    private static final System.Logger LOG = System.getLogger("biostack.file");

    /** File bios in flight per reactor ring; more wait in the reactor's backlog. */
    static final int SLOTS = 512;
    /**
     * Slots of each reactor ring's sparse fixed-buffer table: room for a reactor's idle pool and
     * its buffers in flight. The kernel allows 16384 (IORING_MAX_REG_BUFFERS, io_uring/rsrc.c);
     * the table costs the kernel a pointer per slot, and this ring's lookup arrays 28 bytes.
     */
    public static final int BUFFER_SLOTS = 4096;
    /** Largest registered buffer (io_buffer_validate in io_uring/rsrc.c: SZ_1G). */
    private static final long MAX_FIXED_BYTES = 1L << 30;
    /** Said once per process: a refused table, a refused registration. */
    private static volatile boolean tableRefusalLogged;
    private static volatile boolean registerRefusalLogged;

    private FileRings() {
    }

    /**
     * Attaches a file queue to {@code loop}; call on the loop thread (e.g. in its setup), once.
     * Takes effect only while the io_uring file engine is the one in use; the thread engine
     * ignores it.
     */
    public static void attach(RingLoop loop) {
        Local l = new Local(loop);
        loop.attachFileQueue(l);
    }

    /**
     * The file engines running now, as "io_uring (...)" or "threads (...)", or "" when no file is
     * open: for a server's one log line about what its I/O runs on.
     */
    public static String runningEngines() {
        return Engines.running();
    }

    /** True when {@code loop} has a file queue attached. */
    public static boolean attached(RingLoop loop) {
        return loop != null && loop.fileQueue() instanceof Local;
    }

    /** Bios of this loop's file queue not yet completed (loop thread only). */
    public static int inflight(RingLoop loop) {
        return loop.fileQueue() instanceof Local l ? l.files.inflight() + (l.files.hasBacklog() ? 1 : 0) : 0;
    }

    /**
     * True when {@code loop}'s ring has a fixed-buffer table, so that {@link #registerBuffer} can
     * register memory with it. Any thread, once the loop has started.
     */
    public static boolean fixedBuffers(RingLoop loop) {
        return loop != null && loop.fileQueue() instanceof Local l && l.fixedBuffers;
    }

    /**
     * Registers {@code seg} (native memory, alive and unmoved until {@link #unregisterBuffer})
     * with {@code loop}'s ring as a fixed buffer: from then on a file bio on this ring whose one
     * piece of memory lies inside it goes down as READ_FIXED/WRITE_FIXED, and the kernel no
     * longer pins and unpins its pages per I/O. Loop thread only; cold path (one
     * {@code io_uring_register}, which allocates).
     *
     * <p>Cost: the kernel pins the pages for as long as they are registered (they can't be
     * swapped, moved or compacted), and counts them against RLIMIT_MEMLOCK of the user (all of its
     * rings together) unless the process has CAP_IPC_LOCK. For buffers that are used for I/O all
     * the time that costs no RSS beyond what they take anyway.
     *
     * @return the table slot, or -1 when it is not registered (no table, the table full, over
     *         1 GiB, or the kernel refused, e.g. over RLIMIT_MEMLOCK): the memory still works for
     *         I/O, unregistered
     */
    public static int registerBuffer(RingLoop loop, MemorySegment seg) {
        if (!(loop.fileQueue() instanceof Local l)) {
            return -1;
        }
        if (!loop.inLoop()) {
            throw new IllegalStateException("registerBuffer off the loop thread of " + loop);
        }
        return l.register(seg);
    }

    /**
     * Empties table slot {@code slot} (from {@link #registerBuffer}) of {@code loop}'s ring. I/O
     * already in flight on the buffer keeps it until it completes (the kernel holds a reference),
     * but the memory must not be freed before that I/O completed. Loop thread only; cold path.
     */
    public static void unregisterBuffer(RingLoop loop, int slot) {
        if (slot < 0 || !(loop.fileQueue() instanceof Local l)) {
            return;
        }
        if (!loop.inLoop()) {
            throw new IllegalStateException("unregisterBuffer off the loop thread of " + loop);
        }
        l.unregister(slot);
    }

    /** Buffers registered now with {@code loop}'s ring. Loop thread (or a quiet loop: tests). */
    public static int registeredBuffers(RingLoop loop) {
        return loop.fileQueue() instanceof Local l ? l.files.fixedCount() : 0;
    }

    /**
     * File I/Os that went down as READ_FIXED/WRITE_FIXED on {@code loop}'s ring so far. Written by
     * the loop thread: from another thread, read it after a completion you waited for.
     */
    public static long fixedIos(RingLoop loop) {
        return loop.fileQueue() instanceof Local l ? l.files.fixedIos : 0;
    }

    /** The file queue of one reactor: a {@link FileRing} on the loop's ring. Loop thread only. */
    static final class Local implements CqeHandler, RingLoop.Poller {
        private final RingLoop loop;
        private final FileRing files;
        /** The ring has a sparse fixed-buffer table of {@link #BUFFER_SLOTS}. */
        final boolean fixedBuffers;

        Local(RingLoop loop) {
            this.loop = loop;
            int id = loop.register(this);
            this.fixedBuffers = createTable(loop);
            int bufferSlots = fixedBuffers ? BUFFER_SLOTS : 0;
            // The iovec tables live as long as the loop's process; a reactor is not re-created per I/O.
            this.files = new FileRing(loop.ring(), Arena.ofAuto(), SLOTS, RingLoop.tag(id, 0),
                    UringEngine.SUBMIT_BATCH, bufferSlots);
            loop.addPoller(this);
        }

        /**
         * Probes for a sparse table (IORING_REGISTER_BUFFERS2, 5.19) on the loop thread, which
         * SINGLE_ISSUER requires. {@code biostack.uring.fixedBuffers=false} turns it off, as for
         * the io_uring worker.
         */
        private static boolean createTable(RingLoop loop) {
            if (!Boolean.parseBoolean(System.getProperty("biostack.uring.fixedBuffers", "true"))) {
                return false;
            }
            int r = loop.ring().registerBuffersSparse(BUFFER_SLOTS);
            if (r < 0 && !tableRefusalLogged) {
                tableRefusalLogged = true;
                LOG.log(Level.INFO, "io_uring reactors: no fixed buffers (the kernel refused a sparse buffer table: {0});"
                        + " file I/O uses unregistered memory", Errno.name(-r));
            }
            return r == 0;
        }

        int register(MemorySegment seg) {
            long len = seg.byteSize();
            if (!fixedBuffers || len <= 0 || len > MAX_FIXED_BYTES || loop.ring().isClosed()) {
                return -1;
            }
            int slot = files.registerFixed(seg.address(), len);
            if (slot < 0 && slot != -Errno.ENOSPC && !registerRefusalLogged) { // a full table is expected: it stays unregistered
                registerRefusalLogged = true;
                LOG.log(Level.DEBUG, "io_uring reactors: registering a buffer of {0} bytes failed ({1});"
                        + " it and others like it stay unregistered", len, Errno.name(-slot));
            }
            return Math.max(slot, -1);
        }

        void unregister(int slot) {
            files.unregisterFixed(slot); // not registered (given back twice): nothing to do
        }

        /**
         * A bio submitted on the loop thread: its SQE is prepared at once (the loop hands it to the
         * kernel with its next enter, or at once when more follow: FileRing's no-plug rule).
         */
        void submit(Bio bio) {
            files.add(bio);
            files.start();
            if (files.hasBacklog()) {
                loop.markBusy(); // out of slots or SQ room: the poller goes on with it
            }
        }

        @Override
        public void poll() {
            if (files.hasBacklog()) {
                files.start();
            }
        }

        @Override
        public void complete(long data, int res, int flags) {
            files.complete((int) data, res);
        }
    }
}
