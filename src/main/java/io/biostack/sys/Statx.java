package io.biostack.sys;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import java.lang.foreign.MemorySegment;

/**
 * Flyweight over {@code struct statx} (include/uapi/linux/stat.h), 256 bytes; only the fields
 * biostack reads have accessors.
 *
 * <pre>
 *  0x00  u32 stx_mask          u32 stx_blksize
 *  0x08  u64 stx_attributes
 *  0x10  u32 stx_nlink         u32 stx_uid
 *  0x18  u32 stx_gid           u16 stx_mode   u16 __spare0
 *  0x20  u64 stx_ino
 *  0x28  u64 stx_size
 *  0x30  u64 stx_blocks        (512-byte units)
 *  0x38  u64 stx_attributes_mask
 *  0x40  statx_timestamp stx_atime, stx_btime, stx_ctime, stx_mtime (16 bytes each)
 *  0x80  u32 stx_rdev_major    u32 stx_rdev_minor
 *  0x88  u32 stx_dev_major     u32 stx_dev_minor
 *  0x90  u64 stx_mnt_id
 *  0x98  u32 stx_dio_mem_align u32 stx_dio_offset_align
 *  0xa0  u64 stx_subvol
 *  0xa8  u32 stx_atomic_write_unit_min  u32 stx_atomic_write_unit_max
 *  0xb0  u32 stx_atomic_write_segments_max  u32 stx_dio_read_offset_align
 *  0xb8  u64 __spare3[9]
 *  0x100 end
 * </pre>
 */
public final class Statx {
    private Statx() {
    }

    /** sizeof(struct statx). */
    public static final long SIZE = 0x100;

    public static final long STX_MASK = 0x00;
    public static final long STX_BLKSIZE = 0x04;
    public static final long STX_MODE = 0x1c;
    public static final long STX_SIZE = 0x28;
    public static final long STX_BLOCKS = 0x30;
    public static final long STX_RDEV_MAJOR = 0x80;
    public static final long STX_RDEV_MINOR = 0x84;
    public static final long STX_DIO_MEM_ALIGN = 0x98;
    public static final long STX_DIO_OFFSET_ALIGN = 0x9c;

    /** stat.h: STATX_TYPE 0x0001, want/got stx_mode &amp; S_IFMT. */
    public static final int STATX_TYPE = 0x0001;
    /** stat.h: STATX_MODE 0x0002. */
    public static final int STATX_MODE = 0x0002;
    /** stat.h: STATX_SIZE 0x0200. */
    public static final int STATX_SIZE = 0x0200;
    /** stat.h: STATX_BLOCKS 0x0400. */
    public static final int STATX_BLOCKS = 0x0400;
    /** stat.h: STATX_BASIC_STATS 0x07ff, the fields of struct stat. */
    public static final int STATX_BASIC_STATS = 0x07ff;
    /** stat.h: STATX_DIOALIGN 0x2000, want/got the direct I/O alignment (Linux 6.1+). */
    public static final int STATX_DIOALIGN = 0x2000;

    /** stat.h: S_IFMT 00170000, the file type bits of the mode. */
    public static final int S_IFMT = 0170000;
    /** stat.h: S_IFREG 0100000. */
    public static final int S_IFREG = 0100000;
    /** stat.h: S_IFBLK 0060000. */
    public static final int S_IFBLK = 0060000;
    /** stat.h: S_IFDIR 0040000. */
    public static final int S_IFDIR = 0040000;

    public static int mask(MemorySegment s) {
        return s.get(JAVA_INT, STX_MASK);
    }

    public static int blksize(MemorySegment s) {
        return s.get(JAVA_INT, STX_BLKSIZE);
    }

    /** The 16-bit mode, zero-extended. */
    public static int mode(MemorySegment s) {
        return Short.toUnsignedInt(s.get(JAVA_SHORT, STX_MODE));
    }

    public static long size(MemorySegment s) {
        return s.get(JAVA_LONG, STX_SIZE);
    }

    public static long blocks(MemorySegment s) {
        return s.get(JAVA_LONG, STX_BLOCKS);
    }

    public static int dioMemAlign(MemorySegment s) {
        return s.get(JAVA_INT, STX_DIO_MEM_ALIGN);
    }

    public static int dioOffsetAlign(MemorySegment s) {
        return s.get(JAVA_INT, STX_DIO_OFFSET_ALIGN);
    }
}
