package io.biostack.sys;

/**
 * Linux errno values, as the kernel returns them negated ({@code -EINVAL}) from syscalls and in
 * io_uring CQE {@code res}.
 *
 * <p>Values 1 to 34 from include/uapi/asm-generic/errno-base.h, the rest from
 * include/uapi/asm-generic/errno.h; x86_64 and arm64 both use these files unchanged. The texts of
 * {@link #describe(int)} are glibc's {@code strerror} texts, kept in a table so that describing
 * an error never calls into native code.
 */
public final class Errno {
    private Errno() {
    }
    /** errno-base.h: Operation not permitted. */
    public static final int EPERM = 1;
    /** errno-base.h: No such file or directory. */
    public static final int ENOENT = 2;
    /** errno-base.h: No such process. */
    public static final int ESRCH = 3;
    /** errno-base.h: Interrupted system call. */
    public static final int EINTR = 4;
    /** errno-base.h: Input/output error. */
    public static final int EIO = 5;
    /** errno-base.h: No such device or address. */
    public static final int ENXIO = 6;
    /** errno-base.h: Argument list too long. */
    public static final int E2BIG = 7;
    /** errno-base.h: Bad file descriptor. */
    public static final int EBADF = 9;
    /** errno-base.h: Resource temporarily unavailable. */
    public static final int EAGAIN = 11;
    /** errno-base.h: Cannot allocate memory. */
    public static final int ENOMEM = 12;
    /** errno-base.h: Permission denied. */
    public static final int EACCES = 13;
    /** errno-base.h: Bad address. */
    public static final int EFAULT = 14;
    /** errno-base.h: Block device required. */
    public static final int ENOTBLK = 15;
    /** errno-base.h: Device or resource busy. */
    public static final int EBUSY = 16;
    /** errno-base.h: File exists. */
    public static final int EEXIST = 17;
    /** errno-base.h: Invalid cross-device link. */
    public static final int EXDEV = 18;
    /** errno-base.h: No such device. */
    public static final int ENODEV = 19;
    /** errno-base.h: Not a directory. */
    public static final int ENOTDIR = 20;
    /** errno-base.h: Is a directory. */
    public static final int EISDIR = 21;
    /** errno-base.h: Invalid argument. */
    public static final int EINVAL = 22;
    /** errno-base.h: Too many open files in system. */
    public static final int ENFILE = 23;
    /** errno-base.h: Too many open files. */
    public static final int EMFILE = 24;
    /** errno-base.h: Inappropriate ioctl for device. */
    public static final int ENOTTY = 25;
    /** errno-base.h: Text file busy. */
    public static final int ETXTBSY = 26;
    /** errno-base.h: File too large. */
    public static final int EFBIG = 27;
    /** errno-base.h: No space left on device. */
    public static final int ENOSPC = 28;
    /** errno-base.h: Illegal seek. */
    public static final int ESPIPE = 29;
    /** errno-base.h: Read-only file system. */
    public static final int EROFS = 30;
    /** errno-base.h: Too many links. */
    public static final int EMLINK = 31;
    /** errno-base.h: Broken pipe. */
    public static final int EPIPE = 32;
    /** errno-base.h: Numerical result out of range. */
    public static final int ERANGE = 34;
    /** errno.h: Resource deadlock avoided. */
    public static final int EDEADLK = 35;
    /** errno.h: File name too long. */
    public static final int ENAMETOOLONG = 36;
    /** errno.h: No locks available. */
    public static final int ENOLCK = 37;
    /** errno.h: Function not implemented. */
    public static final int ENOSYS = 38;
    /** errno.h: Directory not empty. */
    public static final int ENOTEMPTY = 39;
    /** errno.h: Too many levels of symbolic links. */
    public static final int ELOOP = 40;
    /** errno.h: No data available. */
    public static final int ENODATA = 61;
    /** errno.h: Timer expired. */
    public static final int ETIME = 62;
    /** errno.h: Protocol error. */
    public static final int EPROTO = 71;
    /** errno.h: Bad message. */
    public static final int EBADMSG = 74;
    /** errno.h: Value too large for defined data type. */
    public static final int EOVERFLOW = 75;
    /** errno.h: File descriptor in bad state. */
    public static final int EBADFD = 77;
    /** errno.h: Invalid or incomplete multibyte or wide character. */
    public static final int EILSEQ = 84;
    /** errno.h: Socket operation on non-socket. */
    public static final int ENOTSOCK = 88;
    /** errno.h: Message too long. */
    public static final int EMSGSIZE = 90;
    /** errno.h: Operation not supported. */
    public static final int EOPNOTSUPP = 95;
    /** errno.h: Address family not supported by protocol. */
    public static final int EAFNOSUPPORT = 97;
    /** errno.h: Address already in use. */
    public static final int EADDRINUSE = 98;
    /** errno.h: Cannot assign requested address. */
    public static final int EADDRNOTAVAIL = 99;
    /** errno.h: Network is down. */
    public static final int ENETDOWN = 100;
    /** errno.h: Network is unreachable. */
    public static final int ENETUNREACH = 101;
    /** errno.h: Software caused connection abort. */
    public static final int ECONNABORTED = 103;
    /** errno.h: Connection reset by peer. */
    public static final int ECONNRESET = 104;
    /** errno.h: No buffer space available. */
    public static final int ENOBUFS = 105;
    /** errno.h: Transport endpoint is already connected. */
    public static final int EISCONN = 106;
    /** errno.h: Transport endpoint is not connected. */
    public static final int ENOTCONN = 107;
    /** errno.h: Cannot send after transport endpoint shutdown. */
    public static final int ESHUTDOWN = 108;
    /** errno.h: Connection timed out. */
    public static final int ETIMEDOUT = 110;
    /** errno.h: Connection refused. */
    public static final int ECONNREFUSED = 111;
    /** errno.h: No route to host. */
    public static final int EHOSTUNREACH = 113;
    /** errno.h: Operation already in progress. */
    public static final int EALREADY = 114;
    /** errno.h: Operation now in progress. */
    public static final int EINPROGRESS = 115;
    /** errno.h: Stale file handle. */
    public static final int ESTALE = 116;
    /** errno.h: Structure needs cleaning. */
    public static final int EUCLEAN = 117;
    /** errno.h: Remote I/O error. */
    public static final int EREMOTEIO = 121;
    /** errno.h: Disk quota exceeded. */
    public static final int EDQUOT = 122;
    /** errno.h: No medium found. */
    public static final int ENOMEDIUM = 123;
    /** errno.h: Wrong medium type. */
    public static final int EMEDIUMTYPE = 124;
    /** errno.h: Operation canceled. */
    public static final int ECANCELED = 125;
    /** errno.h: Memory page has hardware error. */
    public static final int EHWPOISON = 133;
    /** errno.h: EWOULDBLOCK is EAGAIN. */
    public static final int EWOULDBLOCK = EAGAIN;

    private static final int TABLE_SIZE = 134;
    private static final String[] NAMES = new String[TABLE_SIZE];
    private static final String[] TEXTS = new String[TABLE_SIZE];

    static {
        put(EPERM, "EPERM", "Operation not permitted");
        put(ENOENT, "ENOENT", "No such file or directory");
        put(ESRCH, "ESRCH", "No such process");
        put(EINTR, "EINTR", "Interrupted system call");
        put(EIO, "EIO", "Input/output error");
        put(ENXIO, "ENXIO", "No such device or address");
        put(E2BIG, "E2BIG", "Argument list too long");
        put(EBADF, "EBADF", "Bad file descriptor");
        put(EAGAIN, "EAGAIN", "Resource temporarily unavailable");
        put(ENOMEM, "ENOMEM", "Cannot allocate memory");
        put(EACCES, "EACCES", "Permission denied");
        put(EFAULT, "EFAULT", "Bad address");
        put(ENOTBLK, "ENOTBLK", "Block device required");
        put(EBUSY, "EBUSY", "Device or resource busy");
        put(EEXIST, "EEXIST", "File exists");
        put(EXDEV, "EXDEV", "Invalid cross-device link");
        put(ENODEV, "ENODEV", "No such device");
        put(ENOTDIR, "ENOTDIR", "Not a directory");
        put(EISDIR, "EISDIR", "Is a directory");
        put(EINVAL, "EINVAL", "Invalid argument");
        put(ENFILE, "ENFILE", "Too many open files in system");
        put(EMFILE, "EMFILE", "Too many open files");
        put(ENOTTY, "ENOTTY", "Inappropriate ioctl for device");
        put(ETXTBSY, "ETXTBSY", "Text file busy");
        put(EFBIG, "EFBIG", "File too large");
        put(ENOSPC, "ENOSPC", "No space left on device");
        put(ESPIPE, "ESPIPE", "Illegal seek");
        put(EROFS, "EROFS", "Read-only file system");
        put(EMLINK, "EMLINK", "Too many links");
        put(EPIPE, "EPIPE", "Broken pipe");
        put(ERANGE, "ERANGE", "Numerical result out of range");
        put(EDEADLK, "EDEADLK", "Resource deadlock avoided");
        put(ENAMETOOLONG, "ENAMETOOLONG", "File name too long");
        put(ENOLCK, "ENOLCK", "No locks available");
        put(ENOSYS, "ENOSYS", "Function not implemented");
        put(ENOTEMPTY, "ENOTEMPTY", "Directory not empty");
        put(ELOOP, "ELOOP", "Too many levels of symbolic links");
        put(ENODATA, "ENODATA", "No data available");
        put(ETIME, "ETIME", "Timer expired");
        put(EPROTO, "EPROTO", "Protocol error");
        put(EBADMSG, "EBADMSG", "Bad message");
        put(EOVERFLOW, "EOVERFLOW", "Value too large for defined data type");
        put(EBADFD, "EBADFD", "File descriptor in bad state");
        put(EILSEQ, "EILSEQ", "Invalid or incomplete multibyte or wide character");
        put(ENOTSOCK, "ENOTSOCK", "Socket operation on non-socket");
        put(EMSGSIZE, "EMSGSIZE", "Message too long");
        put(EOPNOTSUPP, "EOPNOTSUPP", "Operation not supported");
        put(EAFNOSUPPORT, "EAFNOSUPPORT", "Address family not supported by protocol");
        put(EADDRINUSE, "EADDRINUSE", "Address already in use");
        put(EADDRNOTAVAIL, "EADDRNOTAVAIL", "Cannot assign requested address");
        put(ENETDOWN, "ENETDOWN", "Network is down");
        put(ENETUNREACH, "ENETUNREACH", "Network is unreachable");
        put(ECONNABORTED, "ECONNABORTED", "Software caused connection abort");
        put(ECONNRESET, "ECONNRESET", "Connection reset by peer");
        put(ENOBUFS, "ENOBUFS", "No buffer space available");
        put(EISCONN, "EISCONN", "Transport endpoint is already connected");
        put(ENOTCONN, "ENOTCONN", "Transport endpoint is not connected");
        put(ESHUTDOWN, "ESHUTDOWN", "Cannot send after transport endpoint shutdown");
        put(ETIMEDOUT, "ETIMEDOUT", "Connection timed out");
        put(ECONNREFUSED, "ECONNREFUSED", "Connection refused");
        put(EHOSTUNREACH, "EHOSTUNREACH", "No route to host");
        put(EALREADY, "EALREADY", "Operation already in progress");
        put(EINPROGRESS, "EINPROGRESS", "Operation now in progress");
        put(ESTALE, "ESTALE", "Stale file handle");
        put(EUCLEAN, "EUCLEAN", "Structure needs cleaning");
        put(EREMOTEIO, "EREMOTEIO", "Remote I/O error");
        put(EDQUOT, "EDQUOT", "Disk quota exceeded");
        put(ENOMEDIUM, "ENOMEDIUM", "No medium found");
        put(EMEDIUMTYPE, "EMEDIUMTYPE", "Wrong medium type");
        put(ECANCELED, "ECANCELED", "Operation canceled");
        put(EHWPOISON, "EHWPOISON", "Memory page has hardware error");
    }

    private static void put(int errno, String name, String text) {
        NAMES[errno] = name;
        TEXTS[errno] = text;
    }

    /**
     * The symbolic name of an errno, such as {@code "EINVAL"} for 22. Accepts the value either
     * positive or kernel-style negative ({@code -22}); unknown values give {@code "errno N"}.
     */
    public static String name(int errno) {
        int e = Math.abs(errno);
        String n = e >= 0 && e < TABLE_SIZE ? NAMES[e] : null;
        return n != null ? n : "errno " + e;
    }

    /**
     * A strerror-like description, such as {@code "Invalid argument"} for 22; positive or
     * negative input, {@code "Unknown error N"} for values not in the table.
     */
    public static String describe(int errno) {
        int e = Math.abs(errno);
        String t = e >= 0 && e < TABLE_SIZE ? TEXTS[e] : null;
        return t != null ? t : "Unknown error " + e;
    }

    /** {@code "EINVAL (Invalid argument)"}: name and description, for messages and logs. */
    public static String format(int errno) {
        return name(errno) + " (" + describe(errno) + ")";
    }
}
