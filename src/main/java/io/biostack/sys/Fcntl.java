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

    /** asm-generic/fcntl.h: F_OFD_GETLK 36, the lock an open file description would conflict with. */
    public static final int F_OFD_GETLK = 36;
    /** asm-generic/fcntl.h: F_OFD_SETLK 37, take or drop a lock of this open file description, not waiting. */
    public static final int F_OFD_SETLK = 37;
    /** asm-generic/fcntl.h: F_RDLCK 0, a shared lock. */
    public static final short F_RDLCK = 0;
    /** asm-generic/fcntl.h: F_WRLCK 1, an exclusive lock. */
    public static final short F_WRLCK = 1;
    /** asm-generic/fcntl.h: F_UNLCK 2, no lock. */
    public static final short F_UNLCK = 2;
    /**
     * asm-generic/fcntl.h {@code struct flock} on 64-bit targets (x86_64, arm64): short l_type,
     * short l_whence, then off_t l_start and l_len at 8 and 16, pid_t l_pid at 24; 32 bytes.
     */
    public static final long FLOCK_SIZE = 32;
    /** Offset of {@code l_type} in {@code struct flock}. */
    public static final long FLOCK_TYPE = 0;
    /** Offset of {@code l_whence} (SEEK_SET 0) in {@code struct flock}. */
    public static final long FLOCK_WHENCE = 2;
    /** Offset of {@code l_start} in {@code struct flock}. */
    public static final long FLOCK_START = 8;
    /** Offset of {@code l_len} in {@code struct flock}. */
    public static final long FLOCK_LEN = 16;
    /** Offset of {@code l_pid} in {@code struct flock} (0 for open file description locks). */
    public static final long FLOCK_PID = 24;

    /** include/uapi/linux/fcntl.h: the "current directory" fd for the *at calls. */
    public static final int AT_FDCWD = -100;
    /** include/uapi/linux/fcntl.h: 0x100. */
    public static final int AT_SYMLINK_NOFOLLOW = 0x100;
    /** include/uapi/linux/fcntl.h: 0x1000, operate on the fd itself when the path is "". */
    public static final int AT_EMPTY_PATH = 0x1000;
    /** include/uapi/linux/fcntl.h: AT_STATX_SYNC_AS_STAT 0x0000. */
    public static final int AT_STATX_SYNC_AS_STAT = 0;
}
