package io.biostack.nbd.client;

import io.biostack.block.Bio;

import java.lang.foreign.MemorySegment;

/**
 * Copies between a bio's memory (from where its iterator stands) and a wire buffer, piece by
 * piece, without slicing or allocating: the NBD leaf's only data copies (requests are built in
 * the send buffer; replies are read into the receive buffer).
 */
final class BioMemory {
    private BioMemory() {
    }

    /** Copies the bio's {@code size()} bytes to {@code dst} at {@code dstOff}. */
    static void copyOut(Bio b, MemorySegment dst, long dstOff) {
        long left = b.size();
        int i = b.iter().index();
        long skip = b.iter().doneInSegment();
        while (left > 0) {
            MemorySegment v = b.segment(i++);
            long n = Math.min(v.byteSize() - skip, left);
            MemorySegment.copy(v, skip, dst, dstOff, n);
            dstOff += n;
            left -= n;
            skip = 0;
        }
    }

    /**
     * Copies {@code len} bytes of {@code src} at {@code srcOff} into the bio's memory at byte
     * {@code pos} of the bio; with {@code src == null} writes zeros instead. The caller has
     * checked that {@code pos + len <= size()}.
     */
    static void copyIn(Bio b, long pos, MemorySegment src, long srcOff, long len) {
        int i = b.iter().index();
        long skip = b.iter().doneInSegment() + pos;
        while (len > 0) {
            MemorySegment v = b.segment(i);
            long sz = v.byteSize();
            if (skip >= sz) {
                skip -= sz;
                i++;
                continue;
            }
            long n = Math.min(sz - skip, len);
            if (src == null) {
                v.asSlice(skip, n).fill((byte) 0);
            } else {
                MemorySegment.copy(src, srcOff, v, skip, n);
                srcOff += n;
            }
            len -= n;
            skip = 0;
            i++;
        }
    }
}
