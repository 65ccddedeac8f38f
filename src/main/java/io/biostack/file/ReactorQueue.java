package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.file.reactor.FileRings;
import io.biostack.sys.Errno;
import io.biostack.uring.CqeHandler;
import io.biostack.uring.RingLoop;

import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The file queue of one reactor: a {@link FileRing} on the reactor loop's own ring, so that a
 * file bio submitted on that thread is prepared there and completes there (blk-mq's per-CPU
 * queues). Made by {@link FileRings#attach} (not exported), which reaches it through the factory
 * {@link BackingFile} hands it when this package loads. Loop thread only, except where said.
 */
final class ReactorQueue implements FileRings.Queue, CqeHandler, RingLoop.Poller {
    private static final System.Logger LOG = System.getLogger("biostack.file");

    /** File bios in flight per reactor ring; more wait in the reactor's backlog. */
    static final int SLOTS = 512;
    /**
     * WRITE SQEs of one reactor pass submitted together (system property
     * {@code biostack.uring.writePlug}, default 32, as the block layer's plug holds at most
     * BLK_MAX_REQUEST_COUNT = 32 requests, block/blk-core.c; 1 turns it off). An enter per SQE
     * suits reads on this virtio disk (UringEngine's class comment), but each write then costs its
     * own doorbell, a VM exit; writes of one pass submitted in one enter share one (issue 19).
     */
    static final int WRITE_PLUG = Math.max(1, Integer.getInteger("biostack.uring.writePlug", 32));
    /** Largest registered buffer (io_buffer_validate in io_uring/rsrc.c: SZ_1G). */
    private static final long MAX_FIXED_BYTES = 1L << 30;
    /** Said once per process: a refused table, a refused registration. */
    private static volatile boolean tableRefusalLogged;
    private static volatile boolean registerRefusalLogged;

    private final RingLoop loop;
    private final FileRing files;
    /** The ring has a sparse fixed-buffer table of {@link FileRings#BUFFER_SLOTS}. */
    private final boolean fixedBuffers;

    ReactorQueue(RingLoop loop) {
        this.loop = loop;
        int id = loop.register(this);
        this.fixedBuffers = createTable(loop);
        int bufferSlots = fixedBuffers ? FileRings.BUFFER_SLOTS : 0;
        // The iovec tables live as long as the loop's process; a reactor is not re-created per I/O.
        this.files = new FileRing(loop.ring(), Arena.ofAuto(), SLOTS, RingLoop.tag(id, 0),
                UringEngine.SUBMIT_BATCH, bufferSlots, WRITE_PLUG);
        loop.addPoller(this);
        loop.addDeviceWait(() -> files.inflight() == 1);
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
        int r = loop.ring().registerBuffersSparse(FileRings.BUFFER_SLOTS);
        if (r < 0 && !tableRefusalLogged) {
            tableRefusalLogged = true;
            LOG.log(Level.INFO, "io_uring reactors: no fixed buffers (the kernel refused a sparse buffer table: {0});"
                    + " file I/O uses unregistered memory", Errno.name(-r));
        }
        return r == 0;
    }

    @Override
    public int inflight() {
        return files.inflight() + (files.hasBacklog() ? 1 : 0);
    }

    @Override
    public boolean fixedBuffers() {
        return fixedBuffers;
    }

    @Override
    public int register(MemorySegment seg) {
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

    @Override
    public void unregister(int slot) {
        files.unregisterFixed(slot); // not registered (given back twice): nothing to do
    }

    @Override
    public int registeredBuffers() {
        return files.fixedCount();
    }

    @Override
    public long fixedIos() {
        return files.fixedIos;
    }

    @Override
    public long heldWrites() {
        return files.heldWrites;
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
