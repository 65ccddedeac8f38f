package io.biostack.block;

import java.io.IOException;

/** A failed bio, as seen through the {@code CompletableFuture} conveniences. */
public final class BioException extends IOException {
    /** The status the bio completed with. */
    private final Status status;

    /**
     * A failed bio's status and the words that say why.
     *
     * @param status how the bio failed, not {@link Status#OK}
     * @param message what went wrong, for a person
     */
    public BioException(Status status, String message) {
        super(message == null ? status.text() : message + " (" + status.text() + ")");
        this.status = status;
    }

    /**
     * The status the bio completed with.
     *
     * @return the bio's status, never {@link Status#OK}
     */
    public Status status() {
        return status;
    }
}
