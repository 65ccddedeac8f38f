package io.biostack.sys;

import java.io.IOException;

/**
 * A failed syscall on a cold path (setup, probing, stat), carrying its errno. Hot paths never
 * throw this: they return {@code -errno}.
 */
public final class ErrnoException extends IOException {
    private static final long serialVersionUID = 1L;

    private final int errno;

    /**
     * @param what  what was attempted, e.g. {@code "io_uring_setup"}
     * @param errno the errno, positive or kernel-style negative
     */
    public ErrnoException(String what, int errno) {
        super(what + ": " + Errno.format(errno));
        this.errno = Math.abs(errno);
    }

    /** The positive errno value, e.g. {@link Errno#EINVAL}. */
    public int errno() {
        return errno;
    }
}
