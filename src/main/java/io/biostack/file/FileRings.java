package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.uring.CqeHandler;
import io.biostack.uring.RingLoop;

import java.lang.foreign.Arena;

/**
 * Per-thread file rings (blk-mq's per-CPU queues): a reactor {@link #attach attaches} the file
 * engine to its own {@link RingLoop}, and from then on a file bio submitted on that reactor's
 * thread is prepared on that thread's ring and completes there, with no hop to the io_uring
 * worker. Bios from every other thread still go to the worker through its queue.
 */
public final class FileRings {
    /** File bios in flight per reactor ring; more wait in the reactor's backlog. */
    static final int SLOTS = 512;

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

    /** True when {@code loop} has a file queue attached. */
    public static boolean attached(RingLoop loop) {
        return loop != null && loop.fileQueue() instanceof Local;
    }

    /** Bios of this loop's file queue not yet completed (loop thread only). */
    public static int inflight(RingLoop loop) {
        return loop.fileQueue() instanceof Local l ? l.files.inflight() + (l.files.hasBacklog() ? 1 : 0) : 0;
    }

    /** The file queue of one reactor: a {@link FileRing} on the loop's ring. Loop thread only. */
    static final class Local implements CqeHandler, RingLoop.Poller {
        private final RingLoop loop;
        private final FileRing files;

        Local(RingLoop loop) {
            this.loop = loop;
            int id = loop.register(this);
            // The iovec tables live as long as the loop's process; a reactor is not re-created per I/O.
            this.files = new FileRing(loop.ring(), Arena.ofAuto(), SLOTS, RingLoop.tag(id, 0),
                    UringEngine.SUBMIT_BATCH, 0);
            loop.addPoller(this);
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
