package io.biostack.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * open, lseek and close for short commands, all through the one {@code syscall(2)} downcall of
 * {@link Libc#syscall}. Each distinct downcall signature costs its first call about 10 ms of
 * generated classes that the AOT cache does not hold (the first of a process about 45 ms: the
 * linker's own start; JDK 25, measured with the release's options), so a command that maps a
 * file ({@code img convert}'s source, {@code img map}) links one signature here instead of
 * three. Hot paths keep {@link Libc}'s own handles, which pass ints as ints.
 * {@code fallocate} is here for the same command: on architectures whose numbers are not known
 * it reports -EOPNOTSUPP, which its callers take as "not preallocated".
 *
 * <p>The results follow {@link Libc}'s convention: the call's result, or {@code -errno}.
 */
public final class ColdCalls {
    private ColdCalls() {
    }

    /*
     * Syscall numbers: arch/x86/entry/syscalls/syscall_64.tbl (3 close, 8 lseek, 257 openat, 285
     * fallocate); include/uapi/asm-generic/unistd.h, which arm64 uses (47 fallocate, 56 openat,
     * 57 close, 62 lseek).
     */
    private static final long SYS_OPENAT = Arch.CURRENT == Arch.AARCH64 ? 56 : 257;
    private static final long SYS_CLOSE = Arch.CURRENT == Arch.AARCH64 ? 57 : 3;
    private static final long SYS_LSEEK = Arch.CURRENT == Arch.AARCH64 ? 62 : 8;
    private static final long SYS_FALLOCATE = Arch.CURRENT == Arch.AARCH64 ? 47 : 285;
    /** Elsewhere the numbers are unknown: the libc wrappers, one signature each. */
    private static final boolean VIA_SYSCALL = Arch.CURRENT.isSupported();

    /**
     * {@code open(2)} of a path, relative to the working directory.
     *
     * @param path  the file
     * @param flags {@code Fcntl.O_*}
     * @param mode  the mode of a file {@code O_CREAT} makes
     * @return the new descriptor, or -errno
     */
    public static int open(String path, int flags, int mode) {
        if (!VIA_SYSCALL) {
            return Libc.open(path, flags, mode);
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cpath = arena.allocateFrom(path);
            return (int) Libc.syscall(SYS_OPENAT, Fcntl.AT_FDCWD, cpath.address(), flags, mode, 0, 0);
        }
    }

    /**
     * {@code lseek(2)} with {@code Fs.SEEK_*}.
     *
     * @param fd     the descriptor
     * @param off    the offset
     * @param whence {@code Fs.SEEK_SET} to {@code Fs.SEEK_HOLE}
     * @return the resulting offset, or -errno (-ENXIO past the last data for SEEK_DATA)
     */
    public static long lseek(int fd, long off, int whence) {
        return VIA_SYSCALL ? Libc.syscall(SYS_LSEEK, fd, off, whence, 0, 0, 0) : Libc.lseek(fd, off, whence);
    }

    /**
     * {@code close(2)}.
     *
     * @param fd the descriptor
     * @return 0, or -errno
     */
    public static int close(int fd) {
        return VIA_SYSCALL ? (int) Libc.syscall(SYS_CLOSE, fd, 0, 0, 0, 0, 0) : Libc.close(fd);
    }

    /**
     * {@code fallocate(2)}.
     *
     * @param fd   the descriptor, open for writing
     * @param mode {@code Falloc.*} flags, 0 to allocate
     * @param off  the first byte
     * @param len  bytes
     * @return 0, or -errno (-EOPNOTSUPP where the file system, or this architecture here, has none)
     */
    public static int fallocate(int fd, int mode, long off, long len) {
        return VIA_SYSCALL ? (int) Libc.syscall(SYS_FALLOCATE, fd, mode, off, len, 0, 0) : -Errno.EOPNOTSUPP;
    }
}
