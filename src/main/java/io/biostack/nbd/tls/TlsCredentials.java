package io.biostack.nbd.tls;

/**
 * Credentials that make TLS sessions: X.509 certificates or pre-shared keys, with the server's
 * list of allowed peers. Immutable and shared by every connection; any thread may call it.
 */
public interface TlsCredentials {
    /**
     * A new server-side session for a peer.
     *
     * @param peer names the peer in refusal messages
     * @return the session; the caller owns it and closes it
     * @throws TlsException when no session can be made
     */
    TlsSession newServerSession(String peer) throws TlsException;

    /**
     * A new client-side session.
     *
     * @param serverName the server, checked against its certificate where X.509
     * @return the session; the caller owns it and closes it
     * @throws TlsException when no session can be made
     */
    TlsSession newClientSession(String serverName) throws TlsException;
}
