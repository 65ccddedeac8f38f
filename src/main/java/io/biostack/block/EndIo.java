package io.biostack.block;

/**
 * A bio's completion callback ({@code bi_end_io}). Runs exactly once per bio, on whatever thread
 * completed it (usually a ring worker): it must not block. When it returns, the bio belongs to
 * whoever set the callback again (typically to be put back in its pool).
 */
@FunctionalInterface
public interface EndIo {
    /**
     * Called once when {@code bio} has completed; {@link Bio#status()} says how it went.
     *
     * @param bio the completed bio; from now on it belongs to whoever set this callback
     */
    void endIo(Bio bio);
}
