package io.biostack.block;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/**
 * One iterator over any memory a caller may hand over ({@code struct iov_iter}): a
 * {@code byte[]}, a heap or direct {@link ByteBuffer}, {@link MemorySegment}s (native, mapped,
 * heap) or the segments of another bio. It answers what direct I/O asks: how many bytes, how
 * aligned (the OR of every address and length, as {@code iov_iter_alignment}), and whether the
 * kernel may be given the memory as it is.
 *
 * <p>The iterator does not own the memory: the caller keeps it alive and unchanged until every
 * bio built from it has completed. Native memory for asynchronous I/O must come from a shared,
 * automatic or global arena (the I/O happens on other threads). Not thread-safe.
 */
public final class IoIter {
    private final MemorySegment[] segs;
    private int idx;
    private long done;
    private long count;

    private IoIter(MemorySegment[] segs, int idx, long done, long count) {
        this.segs = segs;
        this.idx = idx;
        this.done = done;
        this.count = count;
    }

    /** The whole array. */
    public static IoIter of(byte[] array) {
        return of(MemorySegment.ofArray(array));
    }

    /** {@code length} bytes of {@code array} from {@code offset}. */
    public static IoIter of(byte[] array, int offset, int length) {
        return of(MemorySegment.ofArray(array).asSlice(offset, length));
    }

    /** The buffer's bytes from position to limit; the buffer's position is not changed. */
    public static IoIter of(ByteBuffer buffer) {
        return of(MemorySegment.ofBuffer(buffer));
    }

    /** The segments, in order. */
    public static IoIter of(MemorySegment... segments) {
        long total = 0;
        for (MemorySegment s : segments) {
            total += s.byteSize();
        }
        return new IoIter(segments.clone(), 0, 0, total);
    }

    /** The memory {@code bio}'s iterator covers now (an ITER_BVEC). */
    public static IoIter ofBio(Bio bio) {
        MemorySegment[] s = new MemorySegment[bio.segmentCount()];
        for (int i = 0; i < s.length; i++) {
            s[i] = bio.segment(i);
        }
        long count = bio.op().hasData() ? bio.size() : 0;
        return new IoIter(s, bio.iter().index(), bio.iter().doneInSegment(), count);
    }

    /** Bytes left ({@code iov_iter_count}). */
    public long count() {
        return count;
    }

    /**
     * The OR of the addresses and lengths of every piece left ({@code iov_iter_alignment}): the
     * memory is aligned to {@code a} when {@code (alignment() & (a - 1)) == 0}. Heap memory has no
     * stable address; its offsets within the array are used, but see {@link #kernelSafe()}.
     */
    public long alignment() {
        long res = 0;
        long left = count;
        int i = idx;
        long skip = done;
        while (left > 0) {
            MemorySegment s = segs[i++];
            long len = Math.min(s.byteSize() - skip, left);
            res |= (s.address() + skip) | len;
            left -= len;
            skip = 0;
        }
        return res;
    }

    /** True when every address and length left is a multiple of {@code align} (a power of two). */
    public boolean isAligned(long align) {
        return (alignment() & (align - 1)) == 0;
    }

    /**
     * True when the kernel can be given this memory as it is: every piece is native (off-heap or
     * mapped) and its scope is alive. Heap memory can move under the GC and is never handed over.
     */
    public boolean kernelSafe() {
        long left = count;
        int i = idx;
        while (left > 0) {
            MemorySegment s = segs[i];
            if (!s.isNative() || !s.scope().isAlive()) {
                return false;
            }
            left -= (i == idx ? s.byteSize() - done : s.byteSize());
            i++;
        }
        return true;
    }

    /** Moves past {@code n} bytes ({@code iov_iter_advance}). */
    public void advance(long n) {
        if (n > count) {
            throw new IllegalArgumentException("advance " + n + " past " + count);
        }
        count -= n;
        long left = n + done;
        // Step over every segment that is used up, empty ones too (else addTo would spin on them).
        while (idx < segs.length && left >= segs[idx].byteSize() && (left > 0 || segs[idx].byteSize() == 0)) {
            left -= segs[idx].byteSize();
            idx++;
        }
        done = left;
    }

    /**
     * Adds the next {@code n} bytes to {@code bio} as segments (slices of this memory) and
     * advances past them. The bio then references the caller's memory.
     */
    public void addTo(Bio bio, long n) {
        if (n > count) {
            throw new IllegalArgumentException("need " + n + " bytes, have " + count);
        }
        long left = n;
        while (left > 0) {
            MemorySegment s = segs[idx];
            long len = Math.min(s.byteSize() - done, left);
            bio.addSegment(done == 0 && len == s.byteSize() ? s : s.asSlice(done, len));
            left -= len;
            advance(len);
        }
    }

    /** Copies the next {@code n} bytes into {@code dst} at {@code dstOffset} without advancing. */
    public void copyTo(MemorySegment dst, long dstOffset, long n) {
        long left = n;
        int i = idx;
        long skip = done;
        long pos = dstOffset;
        while (left > 0) {
            MemorySegment s = segs[i++];
            long len = Math.min(s.byteSize() - skip, left);
            MemorySegment.copy(s, skip, dst, pos, len);
            pos += len;
            left -= len;
            skip = 0;
        }
    }

    /** Copies {@code n} bytes from {@code src} at {@code srcOffset} into the next bytes here. */
    public void copyFrom(MemorySegment src, long srcOffset, long n) {
        long left = n;
        int i = idx;
        long skip = done;
        long pos = srcOffset;
        while (left > 0) {
            MemorySegment s = segs[i++];
            long len = Math.min(s.byteSize() - skip, left);
            MemorySegment.copy(src, pos, s, skip, len);
            pos += len;
            left -= len;
            skip = 0;
        }
    }

    /** An independent iterator at the same position over the same memory. */
    public IoIter copy() {
        return new IoIter(segs, idx, done, count);
    }
}
