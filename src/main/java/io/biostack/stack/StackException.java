package io.biostack.stack;

/**
 * A stack file or a control request that can't be done: the message names the source and line
 * ("stack.conf:4: ...") and says what is wrong. Nothing was opened or changed.
 */
public final class StackException extends RuntimeException {
    private final int line;

    public StackException(String source, int line, String message) {
        super((source == null ? "" : source + ":") + (line > 0 ? line + ": " : " ") + message);
        this.line = line;
    }

    public StackException(String message, Throwable cause) {
        super(message, cause);
        this.line = 0;
    }

    /** The 1-based line the problem is on, 0 when it is not about one line. */
    public int line() {
        return line;
    }
}
