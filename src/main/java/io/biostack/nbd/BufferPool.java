package io.biostack.nbd;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/**
 * One reactor's native, 4096-aligned buffers for request payloads, in power-of-two size classes
 * from 4 KiB to the largest payload, kept for reuse so the steady-state request path allocates
 * nothing. Aligned native memory lets a loop device below do zero-copy O_DIRECT with the very
 * buffer a WRITE payload was received into, and lets the writer send a READ's data straight from
 * the buffer the device filled.
 *
 * <p><b>Registered.</b> With a {@link Registrar} (the io_uring reactor's ring), every buffer is
 * registered when the pool makes it and unregistered when the pool drops it, so that file I/O on
 * it goes down as READ_FIXED/WRITE_FIXED. The pool drops only a buffer that was given back, that
 * is, once its request's I/O has completed and its reply has been sent: the kernel no longer uses
 * it.
 *
 * <p>Each buffer has its own automatic arena: a buffer the pool has no room to keep is left to the
 * garbage collector, which frees it once no bio or ByteBuffer refers to it (no shared arena is
 * ever closed on the I/O path).
 *
 * <p>Threads: one, the reactor's. Buffers are taken and given back on the thread of the reactor
 * that owns the pool (a connection's reads, replies and recycling all run there), so a class is a
 * plain stack: no lock, no CAS.
 */
final class BufferPool {
    static final int MIN_SHIFT = 12;
    static final int ALIGN = 4096;

    /**
     * Registers pool memory with a transport's ring (io_uring fixed buffers). Called on the pool's
     * thread, cold path: only when the pool makes or drops a buffer.
     */
    interface Registrar {
        /** Registers {@code seg}; a handle (>= 0) for {@link #unregister}, or -1 when it is not. */
        int register(MemorySegment seg);

        /** Drops the registration {@code handle}; the memory's I/O has completed. */
        void unregister(int handle);
    }

    private final Buf[][] idle;
    private final int[] top;
    private final int maxShift;
    /** Classes up to this one are registered; larger ones (oversized requests) are not. */
    private final int registeredShift;
    private final Registrar registrar;
    /** Buffers made and dropped so far (tests: a warm pool stops making them). */
    private long made;
    private long dropped;

    /**
     * A pool for buffers up to {@code maxBytes}, keeping up to {@code keepBytes} of idle buffers
     * in each size class (at least 4 buffers of the class, at most 1024).
     *
     * @param registrar registers each buffer the pool makes, or null (the java.nio reactor)
     */
    BufferPool(int maxBytes, long keepBytes, Registrar registrar) {
        this(maxBytes, maxBytes, keepBytes, registrar);
    }

    /**
     * A pool as above that also hands out buffers from {@code maxBytes} up to {@code bigBytes}
     * (requests of clients that did not negotiate block sizes): those are never registered (they
     * would pin much memory for a rare request) and at most one of each such class is kept idle.
     */
    BufferPool(int maxBytes, int bigBytes, long keepBytes, Registrar registrar) {
        this.registeredShift = shiftOf(maxBytes);
        int shift = shiftOf(Math.max(maxBytes, bigBytes));
        this.maxShift = shift;
        this.registrar = registrar;
        this.idle = new Buf[shift - MIN_SHIFT + 1][];
        this.top = new int[idle.length];
        for (int i = 0; i < idle.length; i++) {
            long size = 1L << (i + MIN_SHIFT);
            idle[i] = new Buf[i + MIN_SHIFT > registeredShift ? 1 : (int) Math.max(4, Math.min(1024, keepBytes / size))];
        }
    }

    private static int shiftOf(int bytes) {
        int shift = MIN_SHIFT;
        while ((1L << shift) < bytes) {
            shift++;
        }
        return shift;
    }

    /** A buffer of at least {@code bytes} (1 to the pool's maximum); the caller owns it until {@link #put}. */
    Buf get(int bytes) {
        int c = classOf(bytes);
        if (top[c] > 0) {
            Buf b = idle[c][--top[c]];
            idle[c][top[c]] = null;
            return b;
        }
        return make(c);
    }

    /**
     * Gives a buffer back; the caller must no longer use it, nor any slice of it, and no I/O on
     * it may be in flight (a dropped buffer is unregistered and freed).
     */
    void put(Buf b) {
        int c = b.sizeClass;
        if (top[c] < idle[c].length) {
            idle[c][top[c]++] = b;
            return;
        }
        dropped++;
        if (b.handle >= 0) {
            registrar.unregister(b.handle);
            b.handle = -1;
        }
        // The GC frees it.
    }

    private Buf make(int c) {
        Buf b = new Buf(1 << (c + MIN_SHIFT), c);
        made++;
        if (registrar != null && c + MIN_SHIFT <= registeredShift) {
            b.handle = registrar.register(b.segment);
        }
        return b;
    }

    private int classOf(int bytes) {
        int shift = bytes <= (1 << MIN_SHIFT) ? MIN_SHIFT : 32 - Integer.numberOfLeadingZeros(bytes - 1);
        if (shift > maxShift) {
            throw new IllegalArgumentException("buffer of " + bytes + " bytes is larger than the pool's maximum");
        }
        return shift - MIN_SHIFT;
    }

    /** Buffers this pool made so far. */
    long made() {
        return made;
    }

    /** Buffers idle in the pool now, over all size classes (tests: none is lost). */
    int idle() {
        int n = 0;
        for (int t : top) {
            n += t;
        }
        return n;
    }

    /** Buffers this pool dropped (no room to keep them) so far. */
    long dropped() {
        return dropped;
    }

    /** One pooled buffer: native memory, 4096-aligned, with a cached ByteBuffer view. */
    static final class Buf {
        final MemorySegment segment;
        /** A view of the whole buffer; its position and limit belong to the buffer's current owner. */
        final ByteBuffer bytes;
        final int sizeClass;
        /** The registrar's handle (a fixed-buffer slot), or -1 when not registered. */
        int handle = -1;

        Buf(int size, int sizeClass) {
            this.segment = Arena.ofAuto().allocate(size, ALIGN);
            this.bytes = segment.asByteBuffer();
            this.sizeClass = sizeClass;
        }

        /** The first {@code n} bytes as a segment (no allocation when {@code n} is the whole buffer). */
        MemorySegment slice(int n) {
            return n == segment.byteSize() ? segment : segment.asSlice(0, n);
        }
    }
}
