package io.biostack.sys;

/**
 * Flags of {@code open(2)} and the {@code *at(2)} calls.
 *
 * <p>Values from include/uapi/asm-generic/fcntl.h, which x86_64 uses as is; arm64 overrides
 * O_DIRECTORY, O_NOFOLLOW, O_DIRECT and O_LARGEFILE in arch/arm64/include/uapi/asm/fcntl.h, so
 * {@link #O_DIRECT} is chosen by {@link Arch#CURRENT}. Octal literals as in the headers.
 */
public final class Fcntl {
    private Fcntl() {
    }

    /** asm-generic/fcntl.h: 00000000. */
    public static final int O_RDONLY = 0;
    /** asm-generic/fcntl.h: 00000001. */
    public static final int O_WRONLY = 01;
    /** asm-generic/fcntl.h: 00000002. */
    public static final int O_RDWR = 02;
    /** asm-generic/fcntl.h: 00000100. */
    public static final int O_CREAT = 0100;
    /** asm-generic/fcntl.h: 00000200. */
    public static final int O_EXCL = 0200;
    /** asm-generic/fcntl.h: 00001000. */
    public static final int O_TRUNC = 01000;
    /** asm-generic/fcntl.h: 00002000. */
    public static final int O_APPEND = 02000;
    /** asm-generic/fcntl.h: 00004000. */
    public static final int O_NONBLOCK = 04000;
    /** asm-generic/fcntl.h: 00010000 (writes complete as if by fdatasync). */
    public static final int O_DSYNC = 010000;
    /** asm-generic/fcntl.h: 040000; arch/arm64/include/uapi/asm/fcntl.h: 0200000. */
    public static final int O_DIRECT = Arch.CURRENT == Arch.AARCH64 ? 0200000 : 040000;
    /** asm-generic/fcntl.h: 01000000. */
    public static final int O_NOATIME = 01000000;
    /** asm-generic/fcntl.h: 02000000. */
    public static final int O_CLOEXEC = 02000000;
    /** asm-generic/fcntl.h: __O_SYNC 04000000 | O_DSYNC. */
    public static final int O_SYNC = 04000000 | O_DSYNC;

    /** include/uapi/linux/fcntl.h: the "current directory" fd for the *at calls. */
    public static final int AT_FDCWD = -100;
    /** include/uapi/linux/fcntl.h: 0x100. */
    public static final int AT_SYMLINK_NOFOLLOW = 0x100;
    /** include/uapi/linux/fcntl.h: 0x1000, operate on the fd itself when the path is "". */
    public static final int AT_EMPTY_PATH = 0x1000;
    /** include/uapi/linux/fcntl.h: AT_STATX_SYNC_AS_STAT 0x0000. */
    public static final int AT_STATX_SYNC_AS_STAT = 0;
}
