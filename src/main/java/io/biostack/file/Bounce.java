package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.block.BioPool;
import io.biostack.block.EndIo;
import io.biostack.block.MpmcRing;
import io.biostack.block.Op;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Bounce buffers for memory the kernel can't take as it is: heap memory (the GC may move it) and
 * memory not aligned for O_DIRECT. Phase one of direct I/O for such memory: a write is copied
 * into an aligned native buffer before it goes down; a read lands in the buffer and is copied
 * back into the caller's memory on completion.
 *
 * <p>Buffers come from one slab, asked of the engine (so that io_uring can register it as a fixed
 * buffer) by the first bio that needs bouncing, and freed when the pool is closed. Not when the
 * file opens: most files never bounce (a copy whose buffers came from
 * {@link BackingFile#allocateIoBuffers}, a server reading into registered memory), and making
 * the 16 MiB slab at every open was most of a file's first open (0.4 to 1.2 s of
 * {@code img convert} here: zeroed by the JDK a 4 KiB fault at a time, then pinned by the
 * registration). When all buffers are taken, an extra one is allocated from an automatic arena
 * (counted in {@link #overflows()}) so a bio never waits. Thread-safe: after the first bounce,
 * taking a buffer is a read of a volatile field and a lock-free queue's poll.
 */
final class Bounce {
    /** Size of one bounce buffer; bounced bios are split to it. */
    static final int BUFFER_SIZE = 256 * 1024;

    /** A buffer and the bio it currently stands in for; reused, so bouncing allocates nothing. */
    private static final class Slot {
        final MemorySegment buffer;
        final boolean pooled;
        Bio orig;

        Slot(MemorySegment buffer, boolean pooled) {
            this.buffer = buffer;
            this.pooled = pooled;
        }
    }

    private final Arena arena = Arena.ofShared();
    private final MpmcRing<Slot> free;
    private final BioPool bios;
    private final AtomicLong overflows = new AtomicLong();
    private final int align;
    private final int count;
    private final FileEngine engine;
    private final EndIo done = this::bounceDone;
    /** Set once, by the first bounce ({@link #slab()}); until then there is no slab. */
    private volatile boolean slabMade;
    /** Set by {@link #close()}: a slab made after it would never be freed. */
    private boolean closed;

    Bounce(int count, int align, BioPool bios, FileEngine engine) {
        this.align = Math.max(align, 4096);
        this.count = count;
        this.engine = engine;
        this.free = new MpmcRing<>(count);
        this.bios = bios;
    }

    /**
     * Makes the slab and fills the free queue, once (cold: the first bounce of this file, maybe
     * on an engine thread, where the engine answers its own registration at once). False when
     * the pool is closed: the caller takes an overflow buffer.
     */
    private synchronized boolean slab() {
        if (slabMade) {
            return true;
        }
        if (closed) {
            return false;
        }
        MemorySegment slab;
        try {
            slab = engine.allocateIoMemory((long) count * BUFFER_SIZE, align, arena);
        } catch (RuntimeException | OutOfMemoryError e) {
            // No slab: every bounce takes an overflow buffer (slower, still correct), and the
            // I/O path never comes back here.
            slabMade = true;
            return true;
        }
        for (int i = 0; i < count; i++) {
            free.offer(new Slot(slab.asSlice((long) i * BUFFER_SIZE, BUFFER_SIZE), true));
        }
        slabMade = true;
        return true;
    }

    /** Whether the slab was made (a bio was bounced). Tests. */
    boolean hasSlab() {
        return slabMade;
    }

    /**
     * Returns a bio over a bounce buffer that stands for {@code orig} (at most
     * {@link #BUFFER_SIZE} bytes), to be submitted in its place; when it completes, {@code orig}
     * completes with its status (reads copied back first). Writes are copied in now. The caller
     * owns the returned bio until it submits it.
     */
    Bio bounce(Bio orig) {
        Slot slot = slabMade || slab() ? free.poll() : null;
        if (slot == null) {
            overflows.incrementAndGet();
            slot = new Slot(Arena.ofAuto().allocate(BUFFER_SIZE, align), false);
        }
        slot.orig = orig;
        if (orig.op() == Op.WRITE) {
            orig.copyTo(slot.buffer);
        }
        Bio b = bios.get().init(orig.op(), orig.flags(), orig.offset(), done);
        b.addSegment(slot.buffer).trim(orig.size());
        b.setPrivateData(slot);
        b.setDriverData(orig.driverData());
        return b;
    }

    private void bounceDone(Bio b) {
        Slot slot = (Slot) b.privateData();
        Bio orig = slot.orig;
        slot.orig = null;
        if (!b.status().isOk()) {
            orig.setStatus(b.status(), b.detail());
        } else if (orig.op() == Op.READ) {
            orig.copyFrom(slot.buffer);
        }
        b.put();
        if (slot.pooled) {
            free.offer(slot);
        }
        orig.endIo();
    }

    /** How many times the pool ran dry and a buffer was allocated instead. */
    long overflows() {
        return overflows.get();
    }

    /** Frees the slab (and drops its registration); no bounced bio may be in flight. */
    void close() {
        synchronized (this) {
            closed = true;
        }
        arena.close();
    }
}
