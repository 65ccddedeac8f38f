package io.biostack.block;

/**
 * Hears of the completion of a bio that a counted device took in
 * ({@link Bio#startAccounting}): the kernel's {@code blk_account_io_done} hook. Called once, from
 * {@link Bio#endIo()} when the bio's remaining count reaches zero, on the completing thread,
 * before the bio's callback and while its status is final. Must not block.
 */
@FunctionalInterface
public interface IoAccounting {
    /**
     * Counts {@code bio} as done: its status is final, its callback has not run yet.
     *
     * @param bio the bio that completed; read its status and the accounting start, do not keep it
     */
    void ioDone(Bio bio);
}
