package io.biostack.uring;

import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.MemorySegment;

/**
 * Flyweight over {@code struct io_uring_params} (include/uapi/linux/io_uring.h), 120 bytes,
 * passed to io_uring_setup and filled in by the kernel, with its two nested offset structs.
 *
 * <pre>
 *  0x00  u32 sq_entries      u32 cq_entries
 *  0x08  u32 flags           u32 sq_thread_cpu
 *  0x10  u32 sq_thread_idle  u32 features
 *  0x18  u32 wq_fd           u32 resv[3]
 *  0x28  struct io_sqring_offsets sq_off (40 bytes):
 *          +0 head  +4 tail  +8 ring_mask  +12 ring_entries  +16 flags  +20 dropped
 *          +24 array  +28 resv1  +32 u64 user_addr
 *  0x50  struct io_cqring_offsets cq_off (40 bytes):
 *          +0 head  +4 tail  +8 ring_mask  +12 ring_entries  +16 overflow  +20 cqes
 *          +24 flags  +28 resv1  +32 u64 user_addr
 *  0x78  end
 * </pre>
 *
 * The sq_off and cq_off values are byte offsets into the SQ and CQ ring mappings.
 */
public final class UringParams {
    private UringParams() {
    }

    /** sizeof(struct io_uring_params). */
    public static final long SIZE = 120;

    public static final long SQ_ENTRIES = 0x00;
    public static final long CQ_ENTRIES = 0x04;
    public static final long FLAGS = 0x08;
    public static final long SQ_THREAD_CPU = 0x0c;
    public static final long SQ_THREAD_IDLE = 0x10;
    public static final long FEATURES = 0x14;
    public static final long WQ_FD = 0x18;
    public static final long SQ_OFF = 0x28;
    public static final long CQ_OFF = 0x50;

    // io_sqring_offsets, relative to SQ_OFF
    public static final long SQ_OFF_HEAD = 0;
    public static final long SQ_OFF_TAIL = 4;
    public static final long SQ_OFF_RING_MASK = 8;
    public static final long SQ_OFF_RING_ENTRIES = 12;
    public static final long SQ_OFF_FLAGS = 16;
    public static final long SQ_OFF_DROPPED = 20;
    public static final long SQ_OFF_ARRAY = 24;

    // io_cqring_offsets, relative to CQ_OFF
    public static final long CQ_OFF_HEAD = 0;
    public static final long CQ_OFF_TAIL = 4;
    public static final long CQ_OFF_RING_MASK = 8;
    public static final long CQ_OFF_RING_ENTRIES = 12;
    public static final long CQ_OFF_OVERFLOW = 16;
    public static final long CQ_OFF_CQES = 20;
    public static final long CQ_OFF_FLAGS = 24;

    public static int sqEntries(MemorySegment p) {
        return p.get(JAVA_INT, SQ_ENTRIES);
    }

    public static int cqEntries(MemorySegment p) {
        return p.get(JAVA_INT, CQ_ENTRIES);
    }

    public static int flags(MemorySegment p) {
        return p.get(JAVA_INT, FLAGS);
    }

    public static int features(MemorySegment p) {
        return p.get(JAVA_INT, FEATURES);
    }

    /** An io_sqring_offsets field, e.g. {@code sqOff(p, SQ_OFF_TAIL)}. */
    public static int sqOff(MemorySegment p, long field) {
        return p.get(JAVA_INT, SQ_OFF + field);
    }

    /** An io_cqring_offsets field, e.g. {@code cqOff(p, CQ_OFF_CQES)}. */
    public static int cqOff(MemorySegment p, long field) {
        return p.get(JAVA_INT, CQ_OFF + field);
    }

    public static void setSqEntries(MemorySegment p, int v) {
        p.set(JAVA_INT, SQ_ENTRIES, v);
    }

    public static void setCqEntries(MemorySegment p, int v) {
        p.set(JAVA_INT, CQ_ENTRIES, v);
    }

    public static void setFlags(MemorySegment p, int v) {
        p.set(JAVA_INT, FLAGS, v);
    }
}
