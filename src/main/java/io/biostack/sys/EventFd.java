package io.biostack.sys;

/** Flags of {@code eventfd(2)}, from include/uapi/linux/eventfd.h (defined via O_* values). */
public final class EventFd {
    private EventFd() {
    }

    /** linux/eventfd.h: EFD_SEMAPHORE (1 << 0). */
    public static final int EFD_SEMAPHORE = 1;
    /** linux/eventfd.h: EFD_CLOEXEC = O_CLOEXEC. */
    public static final int EFD_CLOEXEC = Fcntl.O_CLOEXEC;
    /** linux/eventfd.h: EFD_NONBLOCK = O_NONBLOCK. */
    public static final int EFD_NONBLOCK = Fcntl.O_NONBLOCK;
}
