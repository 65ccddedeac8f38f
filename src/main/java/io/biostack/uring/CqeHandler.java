package io.biostack.uring;

/**
 * Receives completions from {@link IoUring#reap(CqeHandler)}, on the ring's thread. Keep it in
 * a final field and reuse it: a capturing lambda per reap would allocate.
 */
@FunctionalInterface
public interface CqeHandler {
    /**
     * One completion.
     *
     * @param userData the SQE's user_data
     * @param res      the result: bytes transferred, 0, or -errno
     * @param flags    IORING_CQE_F_* flags
     */
    void complete(long userData, int res, int flags);
}
