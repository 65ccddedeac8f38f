package io.biostack.sys;

/**
 * Constants of include/uapi/linux/fs.h: lseek whence values, per-I/O RWF flags for
 * preadv2/pwritev2 and io_uring {@code rw_flags}, and the block device ioctls.
 */
public final class Fs {
    private Fs() {
    }

    /** linux/fs.h: SEEK_SET 0. */
    public static final int SEEK_SET = 0;
    /** linux/fs.h: SEEK_CUR 1. */
    public static final int SEEK_CUR = 1;
    /** linux/fs.h: SEEK_END 2. */
    public static final int SEEK_END = 2;
    /** linux/fs.h: SEEK_DATA 3, next data at or after the offset. */
    public static final int SEEK_DATA = 3;
    /** linux/fs.h: SEEK_HOLE 4, next hole at or after the offset. */
    public static final int SEEK_HOLE = 4;

    /**
     * What an {@code lseek(fd, from, SEEK_DATA)} result says, in one place for every caller: the
     * next data at or after {@code from}; {@link Long#MAX_VALUE} when there is none (-ENXIO); and
     * {@code from} itself when the file cannot tell (any other error: a block device answers
     * EINVAL), so that everything counts as data, as qemu takes it. Reading such an error as
     * "no data" once made a loop device over a block device map as holes, and a convert of it
     * copy nothing.
     *
     * @param result the lseek result, or -errno
     * @param from   the offset it was asked from
     * @return the next data offset, {@link Long#MAX_VALUE}, or {@code from}
     */
    public static long nextData(long result, long from) {
        if (result == -Errno.ENXIO) {
            return Long.MAX_VALUE;
        }
        return result < 0 ? from : result;
    }

    /** linux/fs.h: RWF_HIPRI 0x1, high priority (polled) request. */
    public static final int RWF_HIPRI = 0x1;
    /** linux/fs.h: RWF_DSYNC 0x2, per-I/O O_DSYNC (a FUA write where the device has it). */
    public static final int RWF_DSYNC = 0x2;
    /** linux/fs.h: RWF_SYNC 0x4, per-I/O O_SYNC. */
    public static final int RWF_SYNC = 0x4;
    /** linux/fs.h: RWF_NOWAIT 0x8, fail with EAGAIN rather than block. */
    public static final int RWF_NOWAIT = 0x8;
    /** linux/fs.h: RWF_APPEND 0x10. */
    public static final int RWF_APPEND = 0x10;

    /**
     * linux/fs.h: BLKGETSIZE64 _IOR(0x12, 114, size_t) = 0x80081272 (asm-generic/ioctl.h
     * encoding, shared by x86_64 and arm64): device size in bytes.
     */
    public static final long BLKGETSIZE64 = 0x80081272L;
    /** linux/fs.h: BLKSSZGET _IO(0x12, 104): logical block size (int). */
    public static final long BLKSSZGET = 0x1268L;
    /** linux/fs.h: BLKPBSZGET _IO(0x12, 123): physical block size (unsigned int). */
    public static final long BLKPBSZGET = 0x127bL;
}
