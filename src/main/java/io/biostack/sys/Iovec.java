package io.biostack.sys;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Flyweight over an array of {@code struct iovec} (include/uapi/linux/uio.h), as taken by
 * preadv2/pwritev2, IORING_OP_READV/WRITEV and IORING_REGISTER_BUFFERS (LP64 layout).
 *
 * <pre>
 *  0x00  void  *iov_base
 *  0x08  size_t iov_len
 *  0x10  next element
 * </pre>
 */
public final class Iovec {
    private Iovec() {
    }

    /** sizeof(struct iovec) on LP64. */
    public static final long SIZE = 16;
    public static final long IOV_BASE = 0;
    public static final long IOV_LEN = 8;

    /** Allocates an array of {@code count} iovecs, 8-byte aligned, zeroed, from {@code arena}. */
    public static MemorySegment allocate(Arena arena, int count) {
        return arena.allocate(SIZE * count, 8);
    }

    /** Sets element {@code index} to (addr, len). No allocation. */
    public static void set(MemorySegment array, int index, long addr, long len) {
        long at = index * SIZE;
        array.set(JAVA_LONG, at + IOV_BASE, addr);
        array.set(JAVA_LONG, at + IOV_LEN, len);
    }

    /** Sets element {@code index} to cover all of {@code segment}, which must be native. */
    public static void set(MemorySegment array, int index, MemorySegment segment) {
        set(array, index, segment.address(), segment.byteSize());
    }

    public static long base(MemorySegment array, int index) {
        return array.get(JAVA_LONG, index * SIZE + IOV_BASE);
    }

    public static long len(MemorySegment array, int index) {
        return array.get(JAVA_LONG, index * SIZE + IOV_LEN);
    }
}
