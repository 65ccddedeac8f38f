package io.biostack.replay;

/** Bad input to a replay (a log that is not one, truncated, out of range; a missing mark). */
public final class ReplayException extends RuntimeException {
    /**
     * Bad input, said in a sentence.
     *
     * @param message what is wrong and with what (a path, an entry, an option)
     */
    public ReplayException(String message) {
        super(message);
    }
}
