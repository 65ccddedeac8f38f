package io.biostack.block;

/**
 * The outcome of a bio, in the spirit of the kernel's {@code blk_status_t}
 * (include/linux/blk_types.h, block/blk-core.c {@code blk_errors[]}).
 *
 * <p>Errno values are converted to a status in exactly one place, {@link #fromErrno(int)}, which
 * only the file layer calls (the boundary where the kernel's answers enter the stack); every
 * layer above speaks in statuses. {@link #errno()} goes the other way for exports (NBD replies).
 */
public enum Status {
    /**
     * Success.
     */
    OK(0, "ok"),
    /** The device or file system can't do this operation (EOPNOTSUPP). */
    NOTSUPP(95, "operation not supported"),
    /**
     * The device or a remote leaf did not answer in time (ETIMEDOUT).
     */
    TIMEOUT(110, "timeout"),
    /** No space left, or a write past the end of the device (ENOSPC). */
    NOSPC(28, "no space left / beyond end of device"),
    /** Bad request: out of range, misaligned, malformed (EINVAL). */
    INVAL(22, "invalid request"),
    /** The device is read-only (EPERM as NBD spells it; EROFS from a file). */
    READONLY(1, "device is read-only"),
    /** The medium returned an error for this range (ENODATA, EILSEQ). */
    MEDIUM(61, "medium error"),
    /** Out of memory or another resource (ENOMEM). */
    RESOURCE(12, "out of resources"),
    /** Try again: NOWAIT could not be honoured (EAGAIN). */
    AGAIN(11, "try again"),
    /** The request was cancelled, e.g. at shutdown (ECANCELED). */
    CANCELLED(125, "cancelled"),
    /** Any other I/O error (EIO). */
    IOERR(5, "I/O error");

    private final int errno;
    private final String text;

    Status(int errno, String text) {
        this.errno = errno;
        this.text = text;
    }

    /**
     * The errno an export reports for this status (positive).
     *
     * @return the positive errno, 0 for {@link #OK}
     */
    public int errno() {
        return errno;
    }

    /**
     * Human text, e.g. "I/O error".
     *
     * @return a short lower-case phrase for messages
     */
    public String text() {
        return text;
    }

    /**
     * True for {@link #OK}.
     *
     * @return true when this is {@link #OK}, false for every error
     */
    public boolean isOk() {
        return this == OK;
    }

    /**
     * Converts a positive errno (or a negative kernel-style result) to a status. The single
     * conversion point of the stack, after block/blk-core.c's {@code errno_to_blk_status}.
     *
     * @param errno an errno, positive or negated (as io_uring's CQE res gives it); 0 is OK
     * @return the status for it; an errno without its own status is {@link #IOERR}
     */
    public static Status fromErrno(int errno) {
        switch (Math.abs(errno)) {
            case 0: return OK;
            case 95: return NOTSUPP;          // EOPNOTSUPP
            case 38: return NOTSUPP;          // ENOSYS
            case 110: return TIMEOUT;         // ETIMEDOUT
            case 62: return TIMEOUT;          // ETIME
            case 28: return NOSPC;            // ENOSPC
            case 27: return NOSPC;            // EFBIG
            case 22: return INVAL;            // EINVAL
            case 30: return READONLY;         // EROFS
            case 1: return READONLY;          // EPERM
            case 61: return MEDIUM;           // ENODATA
            case 84: return MEDIUM;           // EILSEQ
            case 12: return RESOURCE;         // ENOMEM
            case 11: return AGAIN;            // EAGAIN
            case 125: return CANCELLED;       // ECANCELED
            default: return IOERR;
        }
    }
}
