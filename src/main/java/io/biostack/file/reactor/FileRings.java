package io.biostack.file.reactor;

import io.biostack.file.BackingFile;
import io.biostack.uring.RingLoop;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.util.function.Function;

/**
 * Per-thread file rings (blk-mq's per-CPU queues): a reactor {@link #attach attaches} the file
 * engine to its own {@link RingLoop}, and from then on a file bio submitted on that reactor's
 * thread is prepared on that thread's ring and completes there, with no hop to the io_uring
 * worker. Bios from every other thread still go to the worker through its queue.
 *
 * <p>Not exported: its methods take a {@link RingLoop}, which only biostack's own reactors (the
 * NBD server, bench) have. The queue itself lives in {@code io.biostack.file}, beside the file
 * ring it drives (package-private there); that package hands this bridge a factory once, when it
 * loads ({@link #provide}), as the JDK's own packages reach each other's internals
 * ({@code jdk.internal.access.SharedSecrets}).
 */
public final class FileRings {
    /**
     * Slots of each reactor ring's sparse fixed-buffer table: room for a reactor's idle pool and
     * its buffers in flight. The kernel allows 16384 (IORING_MAX_REG_BUFFERS, io_uring/rsrc.c);
     * the table costs the kernel a pointer per slot, and the ring's lookup arrays 28 bytes.
     */
    public static final int BUFFER_SLOTS = 4096;

    /** A reactor's file queue, as {@code io.biostack.file} implements it. Loop thread unless said. */
    public interface Queue {
        /**
         * Bios of this queue not yet completed, a backlog counting as one.
         *
         * @return the count; 0 when the queue is idle
         */
        int inflight();

        /**
         * Whether the ring has a fixed-buffer table. Any thread, once the loop has started.
         *
         * @return true when {@link #register} can register memory
         */
        boolean fixedBuffers();

        /**
         * As {@link FileRings#registerBuffer}.
         *
         * @param seg native memory, alive and unmoved until unregistered
         * @return the table slot, or -1
         */
        int register(MemorySegment seg);

        /**
         * As {@link FileRings#unregisterBuffer}.
         *
         * @param slot a slot from {@link #register}
         */
        void unregister(int slot);

        /**
         * Buffers registered now.
         *
         * @return the count
         */
        int registeredBuffers();

        /**
         * File I/Os that went down as READ_FIXED/WRITE_FIXED so far.
         *
         * @return the count
         */
        long fixedIos();

        /**
         * WRITE SQEs held back so far to go down with the other writes of their pass, in one
         * {@code io_uring_enter} (the write plug).
         *
         * @return the count
         */
        long heldWrites();
    }

    private static volatile Function<RingLoop, Queue> factory;

    private FileRings() {
    }

    /**
     * Called once by {@code io.biostack.file} when it loads: how to make a loop's queue.
     *
     * @param f makes the queue of a loop, on the loop thread
     */
    public static void provide(Function<RingLoop, Queue> f) {
        factory = f;
    }

    private static Function<RingLoop, Queue> factory() {
        Function<RingLoop, Queue> f = factory;
        if (f == null) {
            try {
                // BackingFile's class initialiser provides the factory
                MethodHandles.lookup().ensureInitialized(BackingFile.class);
            } catch (IllegalAccessException e) {
                throw new IllegalStateException(e);
            }
            f = factory;
            if (f == null) {
                throw new IllegalStateException("io.biostack.file provided no reactor file queue");
            }
        }
        return f;
    }

    /**
     * Attaches a file queue to {@code loop}; call on the loop thread (e.g. in its setup), once.
     * Takes effect only while the io_uring file engine is the one in use; the thread engine
     * ignores it.
     *
     * @param loop the reactor's loop
     */
    public static void attach(RingLoop loop) {
        loop.attachFileQueue(factory().apply(loop));
    }

    /**
     * Whether {@code loop} has a file queue attached.
     *
     * @param loop a loop, or null
     * @return true when {@link #attach} ran on it
     */
    public static boolean attached(RingLoop loop) {
        return loop != null && loop.fileQueue() instanceof Queue;
    }

    /**
     * Bios of this loop's file queue not yet completed (loop thread only).
     *
     * @param loop the reactor's loop
     * @return the count, 0 without a queue
     */
    public static int inflight(RingLoop loop) {
        return loop.fileQueue() instanceof Queue q ? q.inflight() : 0;
    }

    /**
     * Whether {@code loop}'s ring has a fixed-buffer table, so that {@link #registerBuffer} can
     * register memory with it. Any thread, once the loop has started.
     *
     * @param loop a loop, or null
     * @return true when it has a table
     */
    public static boolean fixedBuffers(RingLoop loop) {
        return loop != null && loop.fileQueue() instanceof Queue q && q.fixedBuffers();
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
     * @param loop the reactor's loop; the caller is its thread
     * @param seg  the memory; the caller keeps owning it
     * @return the table slot, or -1 when it is not registered (no table, the table full, over
     *         1 GiB, or the kernel refused, e.g. over RLIMIT_MEMLOCK): the memory still works for
     *         I/O, unregistered
     */
    public static int registerBuffer(RingLoop loop, MemorySegment seg) {
        if (!(loop.fileQueue() instanceof Queue q)) {
            return -1;
        }
        if (!loop.inLoop()) {
            throw new IllegalStateException("registerBuffer off the loop thread of " + loop);
        }
        return q.register(seg);
    }

    /**
     * Empties table slot {@code slot} (from {@link #registerBuffer}) of {@code loop}'s ring. I/O
     * already in flight on the buffer keeps it until it completes (the kernel holds a reference),
     * but the memory must not be freed before that I/O completed. Loop thread only; cold path.
     *
     * @param loop the reactor's loop; the caller is its thread
     * @param slot the slot; a negative one is ignored
     */
    public static void unregisterBuffer(RingLoop loop, int slot) {
        if (slot < 0 || !(loop.fileQueue() instanceof Queue q)) {
            return;
        }
        if (!loop.inLoop()) {
            throw new IllegalStateException("unregisterBuffer off the loop thread of " + loop);
        }
        q.unregister(slot);
    }

    /**
     * Buffers registered now with {@code loop}'s ring. Loop thread (or a quiet loop: tests).
     *
     * @param loop the reactor's loop
     * @return the count, 0 without a queue
     */
    public static int registeredBuffers(RingLoop loop) {
        return loop.fileQueue() instanceof Queue q ? q.registeredBuffers() : 0;
    }

    /**
     * File I/Os that went down as READ_FIXED/WRITE_FIXED on {@code loop}'s ring so far. Written by
     * the loop thread: from another thread, read it after a completion you waited for.
     *
     * @param loop the reactor's loop
     * @return the count, 0 without a queue
     */
    public static long fixedIos(RingLoop loop) {
        return loop.fileQueue() instanceof Queue q ? q.fixedIos() : 0;
    }

    /**
     * WRITE SQEs that {@code loop}'s file queue held back so far, to submit them with the other
     * writes of their pass in one {@code io_uring_enter} rather than one enter each. Written by the
     * loop thread: from another thread, read it after a completion you waited for.
     *
     * @param loop the reactor's loop
     * @return the count, 0 without a queue
     */
    public static long heldWrites(RingLoop loop) {
        return loop.fileQueue() instanceof Queue q ? q.heldWrites() : 0;
    }
}
