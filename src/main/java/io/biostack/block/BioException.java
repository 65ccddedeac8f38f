package io.biostack.block;

import java.io.IOException;

/** A failed bio, as seen through the {@code CompletableFuture} conveniences. */
public final class BioException extends IOException {
    /** The status the bio completed with. */
    private final Status status;

    /** A failed bio's status and the words that say why. */
    public BioException(Status status, String message) {
        super(message == null ? status.text() : message + " (" + status.text() + ")");
        this.status = status;
    }

    /** The status the bio completed with. */
    public Status status() {
        return status;
    }
}
