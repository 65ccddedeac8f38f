package io.biostack.replay;

/** Bad input to a replay (a log that is not one, truncated, out of range; a missing mark). */
public final class ReplayException extends RuntimeException {
    public ReplayException(String message) {
        super(message);
    }
}
