package io.biostack.nbd.tls;

import java.io.IOException;

/**
 * A TLS handshake refused or a TLS stream broken. The message is the one log line a refusal gets:
 * the reason in words (such as "certificate not signed by the CA", "unknown PSK identity 'bob'",
 * "'CN=eve' is not in --tls-allow", "not TLS: got 0x4e42443a"), never a stack trace.
 */
public final class TlsException extends IOException {
    /** A refusal or failure said in {@code reason}. */
    public TlsException(String reason) {
        super(reason);
    }

    /** A refusal or failure said in {@code reason}, caused by {@code cause}. */
    public TlsException(String reason, Throwable cause) {
        super(reason, cause);
    }
}
