package io.biostack.nbd.tls;

import java.nio.ByteBuffer;

/**
 * One TLS connection as a state machine over buffers (in the manner of {@code SSLEngine} and of
 * BouncyCastle's non-blocking {@code TlsProtocol}), so that it runs inside whatever loop owns the
 * connection: a blocking thread, a selector, or an io_uring reactor. It never touches a socket.
 *
 * <p>The loop feeds every byte it received with {@link #offerInput}, sends whatever
 * {@link #readOutput} gives (handshake messages and encrypted records alike), hands plaintext to
 * {@link #writeApplication} and takes decrypted plaintext from {@link #readApplication}.
 *
 * <p>In NBD (doc/proto.md "TLS support"): once the NBD_REP_ACK to NBD_OPT_STARTTLS is sent in
 * plain text, make the session ({@link TlsCredentials#newServerSession}) and give it every byte
 * that follows, including any the loop had already read past the STARTTLS option; run the rest of
 * the option haggling and the transmission phase through {@link #readApplication} and
 * {@link #writeApplication} once {@link #isHandshakeComplete}. A {@link TlsException} from
 * {@link #offerInput} refuses the client: send {@link #readOutput} (the alert), log the message as
 * one line, close. {@link TlsPolicy} says which options come before STARTTLS; the server's
 * reactors ({@code NbdConnection}) and the client leaf ({@code nbd.client.TlsTransport}) drive it
 * this way.
 *
 * <p>Threads: not thread-safe. Owned by the one thread that runs the connection's loop; every
 * method is called on it. Memory: the session copies what it is given; no buffer passed in is
 * kept after a call returns.
 */
public interface TlsSession extends AutoCloseable {
    /**
     * Consumes all of {@code net}'s remaining bytes (ciphertext from the peer); partial records are
     * kept inside until the rest arrives.
     *
     * @param net ciphertext from the peer, consumed in full
     * @throws TlsException when the peer is refused (bad certificate, unknown PSK identity, a name
     *     not allowed) or sent something that is not TLS; the message says why, for one log line
     */
    void offerInput(ByteBuffer net) throws TlsException;

    /**
     * Bytes of ciphertext waiting to be sent to the peer.
     *
     * @return the count
     */
    int pendingOutput();

    /**
     * Moves up to {@code dst.remaining()} bytes of ciphertext to send into {@code dst}.
     *
     * @param dst where the ciphertext goes, from its position
     * @return how many bytes were moved
     */
    int readOutput(ByteBuffer dst);

    /**
     * Bytes of decrypted plaintext ready for {@link #readApplication}.
     *
     * @return the count
     */
    int availableApplication();

    /**
     * Moves up to {@code dst.remaining()} bytes of decrypted plaintext into {@code dst}.
     *
     * @param dst where the plaintext goes, from its position
     * @return how many bytes were moved
     */
    int readApplication(ByteBuffer dst);

    /**
     * Encrypts all of {@code src}'s remaining bytes; the records become {@link #readOutput} bytes.
     *
     * @param src plaintext, consumed in full
     * @throws TlsException when the session failed
     * @throws IllegalStateException before the handshake is complete
     */
    void writeApplication(ByteBuffer src) throws TlsException;

    /**
     * Encrypts all the remaining bytes of {@code srcs[offset .. offset + length)}, in that order,
     * gathered into as few records as the record size allows: the pieces of a batch of NBD replies
     * (a header, a payload, the next header...) share records instead of taking one each. Records
     * cost per record (a header and tag on the wire, a cipher initialisation and a tag on each
     * side), and a 4 KiB read reply is two pieces.
     *
     * @param srcs   plaintext pieces, each consumed in full
     * @param offset the first piece
     * @param length how many pieces
     * @throws TlsException when the session failed
     * @throws IllegalStateException before the handshake is complete
     */
    void writeApplication(ByteBuffer[] srcs, int offset, int length) throws TlsException;

    /**
     * Whether the handshake finished and the peer was accepted.
     *
     * @return true once it did
     */
    boolean isHandshakeComplete();

    /**
     * Whether the peer sent close_notify or the session failed.
     *
     * @return true once either happened
     */
    boolean isClosed();

    /**
     * Who the peer is, once the handshake is complete: the PSK identity, or the subject DN of the
     * client certificate; null when the peer showed none.
     *
     * @return the identity, or null
     */
    String peerIdentity();

    /**
     * The negotiated protocol and cipher suite.
     *
     * @return for instance {@code TLSv1.3 TLS_AES_256_GCM_SHA384}
     */
    String describe();

    /**
     * Queues close_notify (send {@link #readOutput} once more); nothing can be written after it.
     * Input may still come: in TLS 1.3 each side closes its own direction (RFC 8446, section 6.1).
     */
    @Override
    void close();
}
