package io.biostack.nbd.tls;

/**
 * Credentials that make TLS sessions: X.509 certificates or pre-shared keys, with the server's
 * list of allowed peers. Immutable and shared by every connection; any thread may call it.
 */
public interface TlsCredentials {
    /** A new server-side session for a peer ({@code peer} names it in refusal messages). */
    TlsSession newServerSession(String peer) throws TlsException;

    /** A new client-side session towards {@code serverName} (checked against the certificate where X.509). */
    TlsSession newClientSession(String serverName) throws TlsException;
}
