package io.biostack.sys;

/**
 * What {@link Libc#fstatx(int)} learned about an open file.
 *
 * @param size           size in bytes (for a block device, statx reports 0; use
 *                       {@link Libc#blockDeviceSize(int)})
 * @param blksize        preferred I/O size
 * @param blocks         allocated space in 512-byte units
 * @param mode           {@code st_mode}: type and permission bits
 * @param dioMemAlign    required memory alignment for O_DIRECT, 0 when the kernel or file
 *                       system does not report it (STATX_DIOALIGN absent) or O_DIRECT is
 *                       unsupported on this file
 * @param dioOffsetAlign required file offset and length alignment for O_DIRECT, 0 as above
 */
public record Stat(long size, int blksize, long blocks, int mode, int dioMemAlign,
        int dioOffsetAlign) {

    /** A regular file (S_IFREG). */
    public boolean isRegularFile() {
        return (mode & Statx.S_IFMT) == Statx.S_IFREG;
    }

    /** A block device (S_IFBLK). */
    public boolean isBlockDevice() {
        return (mode & Statx.S_IFMT) == Statx.S_IFBLK;
    }

    /** True when the kernel reported O_DIRECT alignment for this file. */
    public boolean hasDioAlignment() {
        return dioOffsetAlign != 0;
    }
}
