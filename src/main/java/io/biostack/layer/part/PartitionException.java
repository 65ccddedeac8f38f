package io.biostack.layer.part;

/** A partition table that can't be used (a GPT with no valid header, an unreadable disk). */
public final class PartitionException extends RuntimeException {
    /**
     * A table refused for the reason {@code message} says.
     *
     * @param message what is wrong with the table, for a person
     */
    public PartitionException(String message) {
        super(message);
    }

    /**
     * A table refused because reading it failed with {@code cause}.
     *
     * @param message what was being read
     * @param cause the failure of the read
     */
    public PartitionException(String message, Throwable cause) {
        super(message, cause);
    }
}
