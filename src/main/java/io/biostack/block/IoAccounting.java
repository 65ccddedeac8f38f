package io.biostack.block;

/**
 * Hears of the completion of a bio that a counted device took in
 * ({@link Bio#startAccounting}): the kernel's {@code blk_account_io_done} hook. Called once, from
 * {@link Bio#endIo()} when the bio's remaining count reaches zero, on the completing thread,
 * before the bio's callback and while its status is final. Must not block.
 */
@FunctionalInterface
public interface IoAccounting {
    void ioDone(Bio bio);
}
