package io.biostack.stack;

/**
 * A stack file or a control request that can't be done: the message names the source and line
 * ("stack.conf:4: ...") and says what is wrong. Nothing was opened or changed.
 */
public final class StackException extends RuntimeException {
    /** The 1-based line, 0 when the problem is not about one line. */
    private final int line;

    /**
     * A problem on {@code line} of {@code source} (null when there is no source).
     *
     * @param source the stack file's path or the text's name, or null
     * @param line the 1-based line number, 0 when the problem is not about one line
     * @param message what is wrong, for a person
     */
    public StackException(String source, int line, String message) {
        super((source == null ? "" : source + ":") + (line > 0 ? line + ": " : " ") + message);
        this.line = line;
    }

    /**
     * A problem not tied to a line, caused by {@code cause}.
     *
     * @param message what went wrong, for a person
     * @param cause the failure behind it
     */
    public StackException(String message, Throwable cause) {
        super(message, cause);
        this.line = 0;
    }

    /**
     * The 1-based line the problem is on, 0 when it is not about one line.
     *
     * @return the line number, 0 when there is none
     */
    public int line() {
        return line;
    }
}
