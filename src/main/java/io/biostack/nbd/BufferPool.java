package io.biostack.nbd;

import io.biostack.block.MpmcRing;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/**
 * Native, 4096-aligned buffers for request payloads, in power-of-two size classes from 4 KiB to
 * the largest payload, kept for reuse so the steady-state request path allocates nothing. Aligned
 * native memory lets a loop device below do zero-copy O_DIRECT with the very buffer a WRITE
 * payload was received into, and lets the writer send a READ's data straight from the buffer the
 * device filled.
 *
 * <p>Each buffer has its own automatic arena: a buffer the pool has no room to keep is left to the
 * garbage collector, which frees it once no bio or ByteBuffer refers to it (no shared arena is
 * ever closed on the I/O path). Thread-safe: buffers are taken by a connection's reader and given
 * back by its writer or by a completion thread.
 */
final class BufferPool {
    static final int MIN_SHIFT = 12;
    static final int ALIGN = 4096;

    private final MpmcRing<Buf>[] classes;
    private final int maxShift;

    /**
     * A pool for buffers up to {@code maxBytes}, keeping up to {@code keepBytes} of idle buffers
     * in each size class (at least 4 buffers of the class).
     */
    @SuppressWarnings({"unchecked", "rawtypes"})
    BufferPool(int maxBytes, long keepBytes) {
        int shift = MIN_SHIFT;
        while ((1L << shift) < maxBytes) {
            shift++;
        }
        this.maxShift = shift;
        this.classes = new MpmcRing[shift - MIN_SHIFT + 1];
        for (int i = 0; i < classes.length; i++) {
            long size = 1L << (i + MIN_SHIFT);
            int keep = (int) Math.max(4, Math.min(1024, keepBytes / size));
            classes[i] = new MpmcRing<>(keep);
        }
    }

    /** A buffer of at least {@code bytes} (1 to the pool's maximum); the caller owns it until {@link #put}. */
    Buf get(int bytes) {
        int c = classOf(bytes);
        Buf b = classes[c].poll();
        if (b == null) {
            b = new Buf(1 << (c + MIN_SHIFT), c);
        }
        return b;
    }

    /** Gives a buffer back; the caller must no longer use it, nor any slice of it. */
    void put(Buf b) {
        classes[b.sizeClass].offer(b); // full: the GC frees it
    }

    private int classOf(int bytes) {
        int shift = bytes <= (1 << MIN_SHIFT) ? MIN_SHIFT : 32 - Integer.numberOfLeadingZeros(bytes - 1);
        if (shift > maxShift) {
            throw new IllegalArgumentException("buffer of " + bytes + " bytes is larger than the pool's maximum");
        }
        return shift - MIN_SHIFT;
    }

    /** One pooled buffer: native memory, 4096-aligned, with a cached ByteBuffer view. */
    static final class Buf {
        final MemorySegment segment;
        /** A view of the whole buffer; its position and limit belong to the buffer's current owner. */
        final ByteBuffer bytes;
        final int sizeClass;

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
