package io.biostack.uring;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import java.lang.foreign.MemorySegment;

/**
 * Flyweight over {@code struct io_uring_sqe} (include/uapi/linux/io_uring.h), the 64-byte
 * submission queue entry. Static accessors take the SQE array segment and the byte offset of
 * one entry; nothing is allocated.
 *
 * <pre>
 *  byte  0       1       2       3       4       5       6       7
 *      +-------+-------+---------------+-------------------------------+
 *  0x00|opcode | flags |    ioprio     |              fd (s32)         |
 *      +-------+-------+---------------+-------------------------------+
 *  0x08|                 off / addr2  (u64)                            |
 *      +---------------------------------------------------------------+
 *  0x10|                 addr / splice_off_in  (u64)                   |
 *      +-------------------------------+-------------------------------+
 *  0x18|            len (u32)          | rw_flags / fsync_flags /      |
 *      |                               | poll32_events / ... (u32)     |
 *      +-------------------------------+-------------------------------+
 *  0x20|                 user_data  (u64)                              |
 *      +---------------+---------------+-------------------------------+
 *  0x28| buf_index/grp |  personality  | splice_fd_in / file_index     |
 *      +---------------+---------------+-------------------------------+
 *  0x30|                 addr3  (u64)                                  |
 *      +---------------------------------------------------------------+
 *  0x38|                 __pad2[0]  (u64)                              |
 *      +---------------------------------------------------------------+
 * </pre>
 */
public final class Sqe {
    private Sqe() {
    }

    /** sizeof(struct io_uring_sqe) without IORING_SETUP_SQE128. */
    public static final long SIZE = 64;

    public static final long OPCODE = 0x00;
    public static final long FLAGS = 0x01;
    public static final long IOPRIO = 0x02;
    public static final long FD = 0x04;
    public static final long OFF = 0x08;
    public static final long ADDR = 0x10;
    public static final long LEN = 0x18;
    /** The op-specific u32 union: rw_flags, fsync_flags, poll32_events, ... */
    public static final long OP_FLAGS = 0x1c;
    public static final long USER_DATA = 0x20;
    public static final long BUF_INDEX = 0x28;
    public static final long PERSONALITY = 0x2a;
    public static final long SPLICE_FD_IN = 0x2c;
    public static final long ADDR3 = 0x30;
    public static final long PAD2 = 0x38;

    /**
     * Writes every field of the SQE at {@code at}, so that nothing of an earlier use of the slot
     * survives. Fields an operation does not use must be zero (the kernel checks many of them).
     */
    public static void prep(MemorySegment sqes, long at, int opcode, int flags, int fd, long off,
            long addr, int len, int opFlags, long userData, int bufIndex, int spliceFdIn) {
        sqes.set(JAVA_BYTE, at + OPCODE, (byte) opcode);
        sqes.set(JAVA_BYTE, at + FLAGS, (byte) flags);
        sqes.set(JAVA_SHORT, at + IOPRIO, (short) 0);
        sqes.set(JAVA_INT, at + FD, fd);
        sqes.set(JAVA_LONG, at + OFF, off);
        sqes.set(JAVA_LONG, at + ADDR, addr);
        sqes.set(JAVA_INT, at + LEN, len);
        sqes.set(JAVA_INT, at + OP_FLAGS, opFlags);
        sqes.set(JAVA_LONG, at + USER_DATA, userData);
        sqes.set(JAVA_SHORT, at + BUF_INDEX, (short) bufIndex);
        sqes.set(JAVA_SHORT, at + PERSONALITY, (short) 0);
        sqes.set(JAVA_INT, at + SPLICE_FD_IN, spliceFdIn);
        sqes.set(JAVA_LONG, at + ADDR3, 0L);
        sqes.set(JAVA_LONG, at + PAD2, 0L);
    }

    public static int opcode(MemorySegment sqes, long at) {
        return Byte.toUnsignedInt(sqes.get(JAVA_BYTE, at + OPCODE));
    }

    public static int flags(MemorySegment sqes, long at) {
        return Byte.toUnsignedInt(sqes.get(JAVA_BYTE, at + FLAGS));
    }

    public static int fd(MemorySegment sqes, long at) {
        return sqes.get(JAVA_INT, at + FD);
    }

    public static long off(MemorySegment sqes, long at) {
        return sqes.get(JAVA_LONG, at + OFF);
    }

    public static long addr(MemorySegment sqes, long at) {
        return sqes.get(JAVA_LONG, at + ADDR);
    }

    public static int len(MemorySegment sqes, long at) {
        return sqes.get(JAVA_INT, at + LEN);
    }

    public static int opFlags(MemorySegment sqes, long at) {
        return sqes.get(JAVA_INT, at + OP_FLAGS);
    }

    public static long userData(MemorySegment sqes, long at) {
        return sqes.get(JAVA_LONG, at + USER_DATA);
    }

    public static int bufIndex(MemorySegment sqes, long at) {
        return Short.toUnsignedInt(sqes.get(JAVA_SHORT, at + BUF_INDEX));
    }

    /** Sets the flags byte of an already prepared SQE (e.g. to add IOSQE_IO_LINK). */
    public static void setFlags(MemorySegment sqes, long at, int flags) {
        sqes.set(JAVA_BYTE, at + FLAGS, (byte) flags);
    }

    /** Sets the I/O priority of an already prepared SQE. */
    public static void setIoprio(MemorySegment sqes, long at, int ioprio) {
        sqes.set(JAVA_SHORT, at + IOPRIO, (short) ioprio);
    }
}
