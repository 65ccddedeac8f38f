package io.biostack.layer.crypt;

/**
 * A LUKS volume could not be opened or formatted. Nothing was opened; the message says which
 * device and what is wrong, never anything about the passphrase or keys.
 */
public final class LuksException extends RuntimeException {
    /** Why, for callers that react differently (ask for the passphrase again, say "not LUKS"). */
    public enum Reason {
        /** No LUKS magic: the device is not a LUKS volume. */
        NOT_LUKS,
        /** A LUKS version, cipher or hash biostack does not implement. */
        UNSUPPORTED,
        /** The header contradicts itself or the device (offsets past the end, zero stripes...). */
        CORRUPT_HEADER,
        /** No active key slot opens with the passphrase or key file given. */
        WRONG_PASSPHRASE,
        /** Reading or writing the header or key material failed. */
        IO
    }

    /** Why the volume could not be used. */
    private final Reason reason;

    /**
     * A refusal.
     *
     * @param reason  why, as a kind
     * @param message what was found, for a person
     */
    public LuksException(Reason reason, String message) {
        super(message);
        this.reason = reason;
    }

    /**
     * A refusal caused by another exception.
     *
     * @param reason  why, as a kind
     * @param message what was found, for a person
     * @param cause   the underlying failure
     */
    public LuksException(Reason reason, String message, Throwable cause) {
        super(message, cause);
        this.reason = reason;
    }

    /**
     * Why the volume could not be used.
     *
     * @return the reason
     */
    public Reason reason() {
        return reason;
    }
}
