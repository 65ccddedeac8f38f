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

    /**
     * The whole array.
     *
     * @param array the caller's array; heap memory is bounced (copied through native memory), never
     *         handed to the kernel
     * @return an iterator over all of {@code array}
     */
    public static IoIter of(byte[] array) {
        return of(MemorySegment.ofArray(array));
    }

    /**
     * {@code length} bytes of {@code array} from {@code offset}.
     *
     * @param array the caller's array, bounced like the whole-array form
     * @param offset the first byte's index in {@code array}
     * @param length how many bytes, from {@code offset}
     * @return an iterator over that part of {@code array}
     */
    public static IoIter of(byte[] array, int offset, int length) {
        return of(MemorySegment.ofArray(array).asSlice(offset, length));
    }

    /**
     * The buffer's bytes from position to limit; the buffer's position is not changed.
     *
     * @param buffer a heap or direct buffer; a direct one may go to the kernel as it is, so it must
     *         stay reachable and unchanged until the I/O completes
     * @return an iterator over the buffer's remaining bytes
     */
    public static IoIter of(ByteBuffer buffer) {
        return of(MemorySegment.ofBuffer(buffer));
    }

    /**
     * The segments, in order.
     *
     * @param segments native or heap segments, in the order their bytes are to be read or written;
     *         they stay the caller's
     * @return an iterator over all of them
     */
    public static IoIter of(MemorySegment... segments) {
        long total = 0;
        for (MemorySegment s : segments) {
            total += s.byteSize();
        }
        return new IoIter(segments.clone(), 0, 0, total);
    }

    /**
     * The memory {@code bio}'s iterator covers now (an ITER_BVEC).
     *
     * @param bio a bio whose memory is to be walked (its segments stay its own)
     * @return an iterator over the bytes the bio's iterator still covers
     */
    public static IoIter ofBio(Bio bio) {
        MemorySegment[] s = new MemorySegment[bio.segmentCount()];
        for (int i = 0; i < s.length; i++) {
            s[i] = bio.segment(i);
        }
        long count = bio.op().hasData() ? bio.size() : 0;
        return new IoIter(s, bio.iter().index(), bio.iter().doneInSegment(), count);
    }

    /**
     * Bytes left ({@code iov_iter_count}).
     *
     * @return the bytes not yet advanced past
     */
    public long count() {
        return count;
    }

    /**
     * The OR of the addresses and lengths of every piece left ({@code iov_iter_alignment}): the
     * memory is aligned to {@code a} when {@code (alignment() & (a - 1)) == 0}. Heap memory has no
     * stable address; its offsets within the array are used, but see {@link #kernelSafe()}.
     *
     * @return the OR of every remaining address and length, 0 when nothing is left
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

    /**
     * True when every address and length left is a multiple of {@code align} (a power of two).
     *
     * @param align a power of two, in bytes (a device's {@link QueueLimits#dmaAlignment()})
     * @return true when direct I/O could take the memory without a bounce for alignment
     */
    public boolean isAligned(long align) {
        return (alignment() & (align - 1)) == 0;
    }

    /**
     * True when the kernel can be given this memory as it is: every piece is native (off-heap or
     * mapped) and its scope is alive. Heap memory can move under the GC and is never handed over.
     *
     * @return true when every piece left may go to the kernel without a copy
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

    /**
     * Moves past {@code n} bytes ({@code iov_iter_advance}).
     *
     * @param n bytes to skip, at most {@link #count()}
     */
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
     *
     * @param bio the bio to add segments to, before it is submitted
     * @param n bytes to add, at most {@link #count()}
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

    /**
     * Copies the next {@code n} bytes into {@code dst} at {@code dstOffset} without advancing.
     *
     * @param dst where to copy to
     * @param dstOffset the byte offset in {@code dst}
     * @param n bytes to copy, at most {@link #count()}
     */
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

    /**
     * Copies {@code n} bytes from {@code src} at {@code srcOffset} into the next bytes here.
     *
     * @param src where to copy from
     * @param srcOffset the byte offset in {@code src}
     * @param n bytes to copy, at most {@link #count()}
     */
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

    /**
     * An independent iterator at the same position over the same memory.
     *
     * @return a new iterator; advancing either leaves the other where it is
     */
    public IoIter copy() {
        return new IoIter(segs, idx, done, count);
    }
}
