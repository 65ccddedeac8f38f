package io.biostack.nbd.tls;

import java.io.IOException;

/**
 * A TLS handshake refused or a TLS stream broken. The message is the one log line a refusal gets:
 * the reason in words (such as "certificate not signed by the CA", "unknown PSK identity 'bob'",
 * "'CN=eve' is not in --tls-allow", "not TLS: got 0x4e42443a"), never a stack trace.
 */
public final class TlsException extends IOException {
    /**
     * A refusal or failure.
     *
     * @param reason the one log line that says why
     */
    public TlsException(String reason) {
        super(reason);
    }

    /**
     * A refusal or failure with its cause.
     *
     * @param reason the one log line that says why
     * @param cause  what failed underneath
     */
    public TlsException(String reason, Throwable cause) {
        super(reason, cause);
    }
}
