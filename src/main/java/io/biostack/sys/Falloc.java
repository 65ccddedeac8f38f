package io.biostack.sys;

/** Modes of {@code fallocate(2)}, from include/uapi/linux/falloc.h. */
public final class Falloc {
    private Falloc() {
    }

    /** falloc.h: 0x00, allocate and extend the size (mode 0). */
    public static final int FALLOC_FL_ALLOCATE_RANGE = 0x00;
    /** falloc.h: 0x01, default is extend size. */
    public static final int FALLOC_FL_KEEP_SIZE = 0x01;
    /** falloc.h: 0x02, de-allocates range; must be used with KEEP_SIZE. */
    public static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    /** falloc.h: 0x08, remove a range of a file without leaving a hole. */
    public static final int FALLOC_FL_COLLAPSE_RANGE = 0x08;
    /** falloc.h: 0x10, convert range to zeros (allocated, reads back zero). */
    public static final int FALLOC_FL_ZERO_RANGE = 0x10;
    /** falloc.h: 0x20, insert space within the file size. */
    public static final int FALLOC_FL_INSERT_RANGE = 0x20;
    /** falloc.h: 0x40, unshare shared blocks within the file size. */
    public static final int FALLOC_FL_UNSHARE_RANGE = 0x40;
}
