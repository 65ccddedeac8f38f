package io.biostack.sys;

/**
 * Constants of {@code mmap(2)} and {@code madvise(2)} from
 * include/uapi/asm-generic/mman-common.h (x86_64 and arm64 use these values unchanged).
 */
public final class Mman {
    private Mman() {
    }

    /** mman-common.h: PROT_NONE 0x0. */
    public static final int PROT_NONE = 0x0;
    /** mman-common.h: PROT_READ 0x1. */
    public static final int PROT_READ = 0x1;
    /** mman-common.h: PROT_WRITE 0x2. */
    public static final int PROT_WRITE = 0x2;

    /** include/uapi/linux/mman.h: MAP_SHARED 0x01. */
    public static final int MAP_SHARED = 0x01;
    /** include/uapi/linux/mman.h: MAP_PRIVATE 0x02. */
    public static final int MAP_PRIVATE = 0x02;
    /** mman-common.h: MAP_ANONYMOUS 0x20. */
    public static final int MAP_ANONYMOUS = 0x20;
    /**
     * include/uapi/asm-generic/mman.h (x86_64 and arm64): MAP_NORESERVE 0x4000, no swap space
     * reserved; pages are taken as they are first touched.
     */
    public static final int MAP_NORESERVE = 0x4000;
    /** mman-common.h: MAP_POPULATE 0x008000, prefault the page tables. */
    public static final int MAP_POPULATE = 0x008000;

    /** mman-common.h: MADV_DONTNEED 4. */
    public static final int MADV_DONTNEED = 4;
    /** mman-common.h: MADV_DONTFORK 10, do not inherit across fork (registered buffers). */
    public static final int MADV_DONTFORK = 10;
    /** mman-common.h: MADV_HUGEPAGE 14. */
    public static final int MADV_HUGEPAGE = 14;
}
