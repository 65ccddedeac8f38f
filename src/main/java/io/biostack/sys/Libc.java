package io.biostack.sys;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout.PathElement;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * Raw Linux syscalls through the C library, by FFM downcalls (no JNI, no native build).
 *
 * <p><b>Convention:</b> every wrapper returns the call's result, or {@code -errno} when it
 * failed (the kernel's own convention), and never throws on an errno, so that hot paths neither
 * allocate nor unwind. {@link Errno#name(int)} turns a negative result into a name.
 *
 * <p><b>errno capture:</b> each handle is linked with {@code captureCallState("errno")}. The
 * capture segment is per thread (a {@link ThreadLocal} filled once per thread from an automatic
 * arena) and reused for every call on that thread: one thread-local lookup per call, no
 * allocation. Pointer arguments are passed as raw {@code long} addresses (identical to a pointer
 * in the LP64 ABI of x86_64 and aarch64), so hot calls build no {@link MemorySegment} either.
 * Measured: zero bytes per call once C2 has compiled the caller; about 40 bytes per downcall
 * while it still runs in the interpreter or C1 (the first few tens of thousands of calls).
 *
 * <p>Calls that may block (read, pread, fsync, io_uring_enter, ...) are linked as ordinary
 * (non-critical) downcalls, so a blocked thread does not stall the JVM's safepoints.
 */
@SuppressWarnings("restricted")
public final class Libc {
    private Libc() {
    }

    /*
     * io_uring syscall numbers. include/uapi/asm-generic/unistd.h (__NR_io_uring_setup 425,
     * __NR_io_uring_enter 426, __NR_io_uring_register 427), used by arm64; x86_64 gives the same
     * numbers in arch/x86/entry/syscalls/syscall_64.tbl (425..427 "common"), since Linux 5.1
     * unified the numbers of new syscalls across architectures.
     */
    /** asm-generic/unistd.h and syscall_64.tbl: 425. */
    public static final long SYS_IO_URING_SETUP = 425;
    /** asm-generic/unistd.h and syscall_64.tbl: 426. */
    public static final long SYS_IO_URING_ENTER = 426;
    /** asm-generic/unistd.h and syscall_64.tbl: 427. */
    public static final long SYS_IO_URING_REGISTER = 427;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO =
            CAPTURE_LAYOUT.varHandle(PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE_ERRNO = Linker.Option.captureCallState("errno");
    private static final ThreadLocal<MemorySegment> CAPTURE =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CAPTURE_LAYOUT));

    /*
     * One holder class per downcall: a handle is linked on its first call, not all twenty in
     * Libc's static initialiser. Linking makes about ten generated classes each, which the AOT
     * cache cannot hold; a short command (img info, luks dump) that needs three of them paid for
     * all twenty (bench/startup: img info CPU 700 -> 580 ms). The JIT still sees a constant.
     */
    private static final class HOpen {
        static final MethodHandle H = variadic("open", 2,
                    FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    }
    private static final class HClose {
        static final MethodHandle H = fixed("close",
                    FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    }
    private static final class HRead {
        static final MethodHandle H = fixed("read",
                    FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG));
    }
    private static final class HWrite {
        static final MethodHandle H = fixed("write",
                    FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG));
    }
    private static final class HPread {
        static final MethodHandle H = fixed("pread",
                    FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
    }
    private static final class HPwrite {
        static final MethodHandle H = fixed("pwrite",
                    FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
    }
    private static final class HPreadv2 {
        static final MethodHandle H = optional("preadv2",
                    FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT));
    }
    private static final class HPwritev2 {
        static final MethodHandle H = optional("pwritev2",
                    FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT));
    }
    private static final class HFsync {
        static final MethodHandle H = fixed("fsync",
                    FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    }
    private static final class HFdatasync {
        static final MethodHandle H = fixed("fdatasync",
                    FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    }
    private static final class HFallocate {
        static final MethodHandle H = fixed("fallocate",
                    FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG));
    }
    private static final class HFtruncate {
        static final MethodHandle H = fixed("ftruncate",
                    FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG));
    }
    private static final class HLseek {
        static final MethodHandle H = fixed("lseek",
                    FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT));
    }
    private static final class HEventfd {
        static final MethodHandle H = fixed("eventfd",
                    FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    }
    private static final class HMmap {
        static final MethodHandle H = fixed("mmap", FunctionDescriptor.of(
                    JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG));
    }
    private static final class HMunmap {
        static final MethodHandle H = fixed("munmap",
                    FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
    }
    private static final class HMadvise {
        static final MethodHandle H = fixed("madvise",
                    FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT));
    }
    private static final class HIoctl {
        static final MethodHandle H = variadic("ioctl", 2,
                    FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG));
    }
    private static final class HFcntl {
        static final MethodHandle H = variadic("fcntl", 2,
                    FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG));
    }
    private static final class HStatx {
        static final MethodHandle H = optional("statx", FunctionDescriptor.of(
                    JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG));
    }
    /*
     * long syscall(long number, ...): variadic after the number. All six arguments are passed
     * as longs so that every register the kernel reads is fully defined; the kernel's
     * SYSCALL_DEFINE wrappers narrow them to the declared (int, u32) types.
     */
    private static final class HSyscall {
        static final MethodHandle H = variadic("syscall", 1, FunctionDescriptor.of(
                    JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
    }

    private static MethodHandle fixed(String name, FunctionDescriptor fd) {
        return LINKER.downcallHandle(find(name), fd, CAPTURE_ERRNO);
    }

    private static MethodHandle variadic(String name, int firstVariadic, FunctionDescriptor fd) {
        return LINKER.downcallHandle(find(name), fd, CAPTURE_ERRNO,
                Linker.Option.firstVariadicArg(firstVariadic));
    }

    /** A handle for a symbol that older C libraries may lack; null when absent. */
    private static MethodHandle optional(String name, FunctionDescriptor fd) {
        return LINKER.defaultLookup().find(name)
                .map(s -> LINKER.downcallHandle(s, fd, CAPTURE_ERRNO))
                .orElse(null);
    }

    private static MemorySegment find(String name) {
        return LINKER.defaultLookup().find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc symbol not found: " + name));
    }

    private static int errno(MemorySegment capture) {
        return (int) ERRNO.get(capture, 0L);
    }

    private static int ret(int r, MemorySegment capture) {
        return r == -1 ? -errno(capture) : r;
    }

    private static long ret(long r, MemorySegment capture) {
        return r == -1 ? -errno(capture) : r;
    }

    private static RuntimeException fail(Throwable t) {
        if (t instanceof RuntimeException re) {
            return re;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new IllegalStateException("downcall failed", t);
    }

    /**
     * {@code open(2)}. Not a hot path: the path string is converted in a short-lived arena.
     *
     * @return the new fd, or -errno
     */
    public static int open(String path, int flags, int mode) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cpath = arena.allocateFrom(path);
            MemorySegment cs = CAPTURE.get();
            return ret((int) HOpen.H.invokeExact(cs, cpath, flags, mode), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code close(2)}: 0 or -errno. */
    public static int close(int fd) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HClose.H.invokeExact(cs, fd), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code read(2)} into native memory at {@code addr}: bytes read, or -errno. */
    public static long read(int fd, long addr, long len) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((long) HRead.H.invokeExact(cs, fd, addr, len), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code write(2)} from native memory at {@code addr}: bytes written, or -errno. */
    public static long write(int fd, long addr, long len) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((long) HWrite.H.invokeExact(cs, fd, addr, len), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code pread(2)}: bytes read (0 at end of file), or -errno. */
    public static long pread(int fd, long addr, long len, long off) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((long) HPread.H.invokeExact(cs, fd, addr, len, off), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code pwrite(2)}: bytes written, or -errno. */
    public static long pwrite(int fd, long addr, long len, long off) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((long) HPwrite.H.invokeExact(cs, fd, addr, len, off), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /**
     * {@code preadv2(2)} over an {@link Iovec} array at {@code iovAddr}; {@code rwflags} are
     * {@code Fs.RWF_*}. Bytes read, or -errno (-ENOSYS when the C library lacks preadv2).
     */
    public static long preadv2(int fd, long iovAddr, int iovcnt, long off, int rwflags) {
        if (HPreadv2.H == null) {
            return -Errno.ENOSYS;
        }
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((long) HPreadv2.H.invokeExact(cs, fd, iovAddr, iovcnt, off, rwflags), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code pwritev2(2)}: bytes written, or -errno (-ENOSYS without libc support). */
    public static long pwritev2(int fd, long iovAddr, int iovcnt, long off, int rwflags) {
        if (HPwritev2.H == null) {
            return -Errno.ENOSYS;
        }
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((long) HPwritev2.H.invokeExact(cs, fd, iovAddr, iovcnt, off, rwflags), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code fsync(2)}: 0 or -errno. */
    public static int fsync(int fd) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HFsync.H.invokeExact(cs, fd), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code fdatasync(2)}: 0 or -errno. */
    public static int fdatasync(int fd) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HFdatasync.H.invokeExact(cs, fd), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code fallocate(2)} with {@code Falloc.FALLOC_FL_*} mode: 0 or -errno. */
    public static int fallocate(int fd, int mode, long off, long len) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HFallocate.H.invokeExact(cs, fd, mode, off, len), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code ftruncate(2)}: 0 or -errno. */
    public static int ftruncate(int fd, long len) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HFtruncate.H.invokeExact(cs, fd, len), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /**
     * {@code lseek(2)} with {@code Fs.SEEK_*}: the resulting offset, or -errno (SEEK_DATA and
     * SEEK_HOLE give -ENXIO past the last data).
     */
    public static long lseek(int fd, long off, int whence) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((long) HLseek.H.invokeExact(cs, fd, off, whence), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code eventfd(2)} with {@code EventFd.EFD_*} flags: the fd, or -errno. */
    public static int eventfd(int initval, int flags) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HEventfd.H.invokeExact(cs, initval, flags), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /**
     * {@code mmap(2)}: the mapped address, or -errno (MAP_FAILED is turned into -errno; user
     * space addresses are never negative).
     */
    public static long mmap(long addr, long len, int prot, int flags, int fd, long off) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((long) HMmap.H.invokeExact(cs, addr, len, prot, flags, fd, off), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code munmap(2)}: 0 or -errno. */
    public static int munmap(long addr, long len) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HMunmap.H.invokeExact(cs, addr, len), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code madvise(2)} with {@code Mman.MADV_*}: 0 or -errno. */
    public static int madvise(long addr, long len, int advice) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HMadvise.H.invokeExact(cs, addr, len, advice), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code ioctl(2)} with a pointer (or integer) argument: the result, or -errno. */
    public static int ioctl(int fd, long request, long arg) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HIoctl.H.invokeExact(cs, fd, request, arg), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code fcntl(2)} with a pointer (or integer) argument ({@code struct flock *} for locks): the result, or -errno. */
    public static int fcntl(int fd, int cmd, long arg) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HFcntl.H.invokeExact(cs, fd, cmd, arg), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /**
     * The size in bytes of the block device open on {@code fd} (ioctl BLKGETSIZE64), or
     * -errno (-ENOTTY for a regular file). Cold path: allocates a small arena.
     */
    public static long blockDeviceSize(int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_LONG);
            int r = ioctl(fd, Fs.BLKGETSIZE64, out.address());
            return r < 0 ? r : out.get(JAVA_LONG, 0);
        }
    }

    /**
     * {@code statx(2)}: fills the {@link Statx} buffer at {@code bufAddr}; {@code pathAddr}
     * points to a NUL-terminated path. 0 or -errno (-ENOSYS without libc support).
     */
    public static int statx(int dirfd, long pathAddr, int flags, int mask, long bufAddr) {
        if (HStatx.H == null) {
            return -Errno.ENOSYS;
        }
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((int) HStatx.H.invokeExact(cs, dirfd, pathAddr, flags, mask, bufAddr), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /**
     * statx of a path (AT_FDCWD, symlinks followed), as {@link #fstatx}. One libc call where
     * open, fstatx and close would link three: short commands pay ~20 ms per handle linked.
     * Cold path: allocates.
     *
     * @param path the file
     * @return its stats
     * @throws ErrnoException when statx fails (e.g. ENOENT)
     */
    public static Stat statx(String path) throws ErrnoException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(Statx.SIZE, 8);
            MemorySegment name = arena.allocateFrom(path);
            int r = statx(Fcntl.AT_FDCWD, name.address(), 0,
                    Statx.STATX_BASIC_STATS | Statx.STATX_DIOALIGN, buf.address());
            if (r < 0) {
                throw new ErrnoException("statx(" + path + ")", r);
            }
            return stat(buf);
        }
    }

    /**
     * statx of an open file (AT_EMPTY_PATH), asking for the basic stats and STATX_DIOALIGN.
     * Cold path: allocates; throws rather than returning -errno because it returns a record.
     *
     * @throws ErrnoException when statx fails (e.g. EBADF)
     */
    public static Stat fstatx(int fd) throws ErrnoException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(Statx.SIZE, 8);
            MemorySegment empty = arena.allocateFrom("");
            int r = statx(fd, empty.address(), Fcntl.AT_EMPTY_PATH,
                    Statx.STATX_BASIC_STATS | Statx.STATX_DIOALIGN, buf.address());
            if (r < 0) {
                throw new ErrnoException("statx(fd " + fd + ")", r);
            }
            return stat(buf);
        }
    }

    private static Stat stat(MemorySegment buf) {
        boolean dio = (Statx.mask(buf) & Statx.STATX_DIOALIGN) != 0;
        return new Stat(Statx.size(buf), Statx.blksize(buf), Statx.blocks(buf),
                Statx.mode(buf), dio ? Statx.dioMemAlign(buf) : 0,
                dio ? Statx.dioOffsetAlign(buf) : 0);
    }

    /**
     * {@code syscall(2)} with six arguments (unused ones ignored by the kernel): the result,
     * or -errno.
     */
    public static long syscall(long nr, long a0, long a1, long a2, long a3, long a4, long a5) {
        MemorySegment cs = CAPTURE.get();
        try {
            return ret((long) HSyscall.H.invokeExact(cs, nr, a0, a1, a2, a3, a4, a5), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /**
     * {@code io_uring_setup(2)}: the ring fd, or -errno. {@code paramsAddr} points to a
     * zero-initialised {@code struct io_uring_params} (120 bytes) that the kernel fills in.
     */
    public static int ioUringSetup(int entries, long paramsAddr) {
        return (int) syscall(SYS_IO_URING_SETUP, entries, paramsAddr, 0, 0, 0, 0);
    }

    /**
     * {@code io_uring_enter(2)}: the number of SQEs consumed, or -errno. {@code arg} and
     * {@code argSize} are a sigset (or, with IORING_ENTER_EXT_ARG, a
     * {@code struct io_uring_getevents_arg}); 0 and 0 for none.
     */
    public static int ioUringEnter(int fd, int toSubmit, int minComplete, int flags,
            long arg, long argSize) {
        return (int) syscall(SYS_IO_URING_ENTER, fd, Integer.toUnsignedLong(toSubmit),
                Integer.toUnsignedLong(minComplete), Integer.toUnsignedLong(flags), arg, argSize);
    }

    /** {@code io_uring_register(2)}: the result (often 0), or -errno. */
    public static int ioUringRegister(int fd, int opcode, long arg, int nrArgs) {
        return (int) syscall(SYS_IO_URING_REGISTER, fd, Integer.toUnsignedLong(opcode), arg,
                Integer.toUnsignedLong(nrArgs), 0, 0);
    }
}
