package io.biostack.uring;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.MemorySegment;

/**
 * Flyweight over {@code struct io_uring_cqe} (include/uapi/linux/io_uring.h), the 16-byte
 * completion queue entry (without IORING_SETUP_CQE32).
 *
 * <pre>
 *  byte  0                               4                               8
 *      +---------------------------------------------------------------+
 *  0x00|                 user_data  (u64, copied from the SQE)         |
 *      +-------------------------------+-------------------------------+
 *  0x08|  res (s32: result or -errno)  |  flags (u32: IORING_CQE_F_*)  |
 *      +-------------------------------+-------------------------------+
 * </pre>
 */
public final class Cqe {
    private Cqe() {
    }

    /** sizeof(struct io_uring_cqe). */
    public static final long SIZE = 16;

    public static final long USER_DATA = 0x00;
    public static final long RES = 0x08;
    public static final long FLAGS = 0x0c;

    public static long userData(MemorySegment ring, long at) {
        return ring.get(JAVA_LONG, at + USER_DATA);
    }

    public static int res(MemorySegment ring, long at) {
        return ring.get(JAVA_INT, at + RES);
    }

    public static int flags(MemorySegment ring, long at) {
        return ring.get(JAVA_INT, at + FLAGS);
    }
}
