package io.biostack.layer.part;

/** A partition table that can't be used (a GPT with no valid header, an unreadable disk). */
public final class PartitionException extends RuntimeException {
    public PartitionException(String message) {
        super(message);
    }

    public PartitionException(String message, Throwable cause) {
        super(message, cause);
    }
}
