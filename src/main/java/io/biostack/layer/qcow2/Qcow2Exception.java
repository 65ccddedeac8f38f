package io.biostack.layer.qcow2;

/**
 * A qcow2 image could not be opened or is inconsistent. The message names the image's problem
 * (the field, the offset, the feature bit); nothing was written because of it.
 */
public final class Qcow2Exception extends RuntimeException {
    /**
     * A refusal said in {@code message}.
     *
     * @param message what is wrong with the image
     */
    public Qcow2Exception(String message) {
        super(message);
    }

    /**
     * A refusal said in {@code message}, caused by {@code cause}.
     *
     * @param message what is wrong with the image
     * @param cause   the underlying failure
     */
    public Qcow2Exception(String message, Throwable cause) {
        super(message, cause);
    }
}
