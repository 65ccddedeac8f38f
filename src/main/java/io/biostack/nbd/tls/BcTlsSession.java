package io.biostack.nbd.tls;

import org.bouncycastle.tls.AlertDescription;
import org.bouncycastle.tls.PSKTlsClient;
import org.bouncycastle.tls.PSKTlsServer;
import org.bouncycastle.tls.ProtocolVersion;
import org.bouncycastle.tls.PskIdentity;
import org.bouncycastle.tls.TlsClientProtocol;
import org.bouncycastle.tls.TlsFatalAlert;
import org.bouncycastle.tls.TlsPSKExternal;
import org.bouncycastle.tls.TlsPSKIdentityManager;
import org.bouncycastle.tls.TlsProtocol;
import org.bouncycastle.tls.TlsServerProtocol;
import org.bouncycastle.tls.TlsUtils;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Vector;

/**
 * {@link TlsSession} over BouncyCastle's non-blocking {@link TlsProtocol} (offerInput /
 * readOutput / readInput), for pre-shared keys. BouncyCastle takes byte arrays, so input and
 * application data pass through one scratch array per session.
 *
 * <p>Refusals: the PSK callbacks note why a peer was turned away (unknown identity, not in
 * --tls-allow); when BouncyCastle then fails the handshake the note is the message, and a
 * decrypt_error after a known identity was chosen means the peer's key differs from ours.
 *
 * <p>Closing: BouncyCastle answers a close_notify by closing both directions at once (RFC 5246's
 * rule, section 7.2.1). Under TLS 1.3 each side closes only its own direction (RFC 8446, section
 * 6.1), so there the protocol classes below take the peer's close_notify as the end of input
 * only, and replies in flight still go out (a GnuTLS client's gnutls_bye(GNUTLS_SHUT_WR) right
 * after its last request); and our {@link #close} sends close_notify and keeps reading.
 */
final class BcTlsSession implements TlsSession {
    private static final int SCRATCH = 64 * 1024;

    private final TlsProtocol protocol;
    private final boolean server;
    private final byte[] scratch = new byte[SCRATCH];
    private boolean sawInput;
    volatile boolean complete;
    private boolean failed;
    /** TLS 1.3: the peer sent close_notify; our direction stays open until {@link #close}. */
    private boolean peerClosed;
    /**
     * Once {@link #peerClosed}: the plaintext that came before the close_notify and is not read
     * yet. Anything after it is ignored (RFC 8446, section 6.1: "Any data received after a
     * closure alert has been received MUST be ignored").
     */
    private int appBeforeClose;
    /** TLS 1.3: our close_notify is queued; input goes on until the peer's. */
    private boolean outClosed;
    /** Why the PSK callbacks refused the peer, or null. */
    String refusal;
    /** The identity the handshake chose. */
    String identity;
    private String description;

    private BcTlsSession(TlsProtocol protocol, boolean server) {
        this.protocol = protocol;
        this.server = server;
    }

    static BcTlsSession server(PskCredentials creds, String peer) throws TlsException {
        ServerProtocol p = new ServerProtocol();
        BcTlsSession s = new BcTlsSession(p, true);
        p.session = s;
        try {
            p.accept(new Server(creds, s));
        } catch (IOException e) {
            throw new TlsException("can't start TLS: " + e.getMessage(), e);
        }
        return s;
    }

    static BcTlsSession client(PskCredentials creds, String user) throws TlsException {
        ClientProtocol p = new ClientProtocol();
        BcTlsSession s = new BcTlsSession(p, false);
        p.session = s;
        s.identity = user;
        try {
            p.connect(new Client(creds, s));
        } catch (IOException e) {
            throw new TlsException("can't start TLS: " + e.getMessage(), e);
        }
        return s;
    }

    @Override
    public void offerInput(ByteBuffer net) throws TlsException {
        if (isClosed()) {
            net.position(net.limit());
            return;
        }
        if (!sawInput && net.hasRemaining()) {
            TlsRecords.checkFirst(net);
            sawInput = true;
        }
        try {
            while (net.hasRemaining() && !peerClosed) {
                int n = Math.min(net.remaining(), scratch.length);
                net.get(scratch, 0, n);
                protocol.offerInput(scratch, 0, n);
            }
        } catch (IOException e) {
            failed = true;
            net.position(net.limit());
            throw new TlsException(reason(e), e);
        }
        net.position(net.limit()); // what followed a close_notify is ignored
    }

    /**
     * The peer's close_notify under TLS 1.3 (called by the protocol classes while they process
     * it): input ends here, output goes on.
     */
    void peerClosed() {
        peerClosed = true;
        appBeforeClose = protocol.getAvailableInputBytes();
    }

    @Override
    public int pendingOutput() {
        return protocol.getAvailableOutputBytes();
    }

    @Override
    public int readOutput(ByteBuffer dst) {
        int n = Math.min(dst.remaining(), protocol.getAvailableOutputBytes());
        return n == 0 ? 0 : protocol.readOutput(dst, n);
    }

    @Override
    public int availableApplication() {
        return peerClosed ? appBeforeClose : protocol.getAvailableInputBytes();
    }

    @Override
    public int readApplication(ByteBuffer dst) {
        int n = Math.min(dst.remaining(), availableApplication());
        if (n == 0) {
            return 0;
        }
        if (peerClosed) {
            appBeforeClose -= n;
        }
        return protocol.readInput(dst, n);
    }

    @Override
    public void writeApplication(ByteBuffer src) throws TlsException {
        if (!complete) {
            throw new IllegalStateException("TLS handshake not complete");
        }
        if (outClosed) {
            throw new TlsException("TLS session closed");
        }
        try {
            if (src.hasArray()) {
                int n = src.remaining();
                protocol.writeApplicationData(src.array(), src.arrayOffset() + src.position(), n);
                src.position(src.position() + n);
                return;
            }
            while (src.hasRemaining()) {
                int n = Math.min(src.remaining(), scratch.length);
                src.get(scratch, 0, n);
                protocol.writeApplicationData(scratch, 0, n);
            }
        } catch (IOException e) {
            failed = true;
            throw new TlsException(reason(e), e);
        }
    }

    /**
     * Gathers the pieces into the scratch array and hands it over a whole array at a time:
     * BouncyCastle makes at least one record per call, so pieces given one by one would each take
     * a record of their own.
     */
    @Override
    public void writeApplication(ByteBuffer[] srcs, int offset, int length) throws TlsException {
        if (!complete) {
            throw new IllegalStateException("TLS handshake not complete");
        }
        if (outClosed) {
            throw new TlsException("TLS session closed");
        }
        try {
            int n = 0;
            for (int i = offset; i < offset + length; i++) {
                ByteBuffer src = srcs[i];
                while (src.hasRemaining()) {
                    int k = Math.min(src.remaining(), scratch.length - n);
                    src.get(scratch, n, k);
                    n += k;
                    if (n == scratch.length) {
                        protocol.writeApplicationData(scratch, 0, n);
                        n = 0;
                    }
                }
            }
            if (n > 0) {
                protocol.writeApplicationData(scratch, 0, n);
            }
        } catch (IOException e) {
            failed = true;
            throw new TlsException(reason(e), e);
        }
    }

    @Override
    public boolean isHandshakeComplete() {
        return complete;
    }

    @Override
    public boolean isClosed() {
        return failed || peerClosed || protocol.isClosed();
    }

    @Override
    public String peerIdentity() {
        return complete ? identity : null;
    }

    @Override
    public String describe() {
        return description == null ? "TLS (handshake not complete)" : description;
    }

    /** Called by the peers when the handshake completes. */
    void completed(org.bouncycastle.tls.TlsContext context) {
        var sp = context.getSecurityParametersConnection();
        ProtocolVersion v = sp.getNegotiatedVersion();
        description = (v == null ? "TLS" : v.getName().replace(" ", "v")) + " PSK, cipher suite 0x"
                + Integer.toHexString(sp.getCipherSuite());
        complete = true;
    }

    @Override
    public void close() {
        if (outClosed) {
            return;
        }
        try {
            if (complete && !peerClosed && !isClosed() && ((HalfClose) protocol).isTls13()) {
                outClosed = true;
                ((HalfClose) protocol).closeOutput(); // the peer may still send: TLS 1.3 half-close
            } else {
                protocol.close();
            }
        } catch (IOException e) {
            // close_notify is a courtesy
        }
    }

    private String reason(IOException e) {
        if (refusal != null) {
            return refusal;
        }
        if (e instanceof TlsFatalAlert a) {
            short d = a.getAlertDescription();
            if ((d == AlertDescription.decrypt_error || d == AlertDescription.bad_record_mac) && identity != null) {
                return server ? "wrong key for PSK identity '" + identity + "'"
                        : "the server has another key for '" + identity + "'";
            }
            return "TLS alert " + AlertDescription.getText(d);
        }
        String m = e.getMessage();
        if (e instanceof org.bouncycastle.tls.TlsFatalAlertReceived r) {
            short d = r.getAlertDescription();
            if (d == AlertDescription.unknown_psk_identity) {
                return "the server does not know PSK identity '" + identity + "'";
            }
            if ((d == AlertDescription.decrypt_error || d == AlertDescription.bad_record_mac) && identity != null) {
                return "the peer has another key for '" + identity + "'";
            }
            return "peer refused the handshake: " + AlertDescription.getText(d);
        }
        return m == null ? e.getClass().getSimpleName() : m;
    }

    // ---- TLS 1.3 half-close -------------------------------------------------------------------

    /**
     * Whether {@code description} is a close_notify to take as the end of input only: under TLS
     * 1.3 once the handshake is complete (before it, BouncyCastle's handshake_failure stands).
     */
    static boolean halfClose(short description, BcTlsSession session, org.bouncycastle.tls.TlsContext context) {
        if (description != AlertDescription.close_notify || !session.complete || !TlsUtils.isTLSv13(context)) {
            return false;
        }
        session.peerClosed();
        return true;
    }

    /** Sends close_notify and leaves the input open (TLS 1.3). */
    private interface HalfClose {
        void closeOutput() throws IOException;

        boolean isTls13();
    }

    /** The server's protocol, closing only the input on a TLS 1.3 close_notify. */
    private static final class ServerProtocol extends TlsServerProtocol implements HalfClose {
        BcTlsSession session;

        @Override
        public void closeOutput() throws IOException {
            raiseAlertWarning(AlertDescription.close_notify, "Connection closed");
        }

        @Override
        public boolean isTls13() {
            return TlsUtils.isTLSv13(getContext());
        }

        @Override
        protected void handleAlertWarningMessage(short description) throws IOException {
            if (!halfClose(description, session, getContext())) {
                super.handleAlertWarningMessage(description);
            }
        }
    }

    /** The client's protocol (the NBD leaf), the same. */
    private static final class ClientProtocol extends TlsClientProtocol implements HalfClose {
        BcTlsSession session;

        @Override
        public void closeOutput() throws IOException {
            raiseAlertWarning(AlertDescription.close_notify, "Connection closed");
        }

        @Override
        public boolean isTls13() {
            return TlsUtils.isTLSv13(getContext());
        }

        @Override
        protected void handleAlertWarningMessage(short description) throws IOException {
            if (!halfClose(description, session, getContext())) {
                super.handleAlertWarningMessage(description);
            }
        }
    }

    // ---- the BouncyCastle peers ---------------------------------------------------------------

    /** The server: finds the client's identity in the PSK file (TLS 1.3 and 1.2 paths alike). */
    private static final class Server extends PSKTlsServer {
        private final PskCredentials creds;
        private final BcTlsSession session;

        Server(PskCredentials creds, BcTlsSession session) {
            super(creds.crypto, new Identities(creds, session));
            this.creds = creds;
            this.session = session;
        }

        @Override
        protected ProtocolVersion[] getSupportedVersions() {
            return PskCredentials.VERSIONS;
        }

        @Override
        protected int[] getSupportedCipherSuites() {
            return creds.suites;
        }

        /** TLS 1.3: the first offered identity we know and allow. */
        @Override
        public TlsPSKExternal getExternalPSK(Vector identities) {
            for (Object o : identities) {
                String id = new String(((PskIdentity) o).getIdentity(), StandardCharsets.UTF_8);
                if (Identities.check(creds, session, id)) {
                    return creds.external(id);
                }
            }
            return null;
        }

        @Override
        public void notifyHandshakeComplete() throws IOException {
            super.notifyHandshakeComplete();
            session.completed(context);
        }
    }

    /** TLS 1.2's PSK lookup. */
    private record Identities(PskCredentials creds, BcTlsSession session) implements TlsPSKIdentityManager {
        @Override
        public byte[] getHint() {
            return null;
        }

        @Override
        public byte[] getPSK(byte[] identity) {
            String id = new String(identity, StandardCharsets.UTF_8);
            return check(creds, session, id) ? creds.key(id) : null;
        }

        static boolean check(PskCredentials creds, BcTlsSession session, String id) {
            if (creds.key(id) == null) {
                session.refusal = "unknown PSK identity '" + id + "'";
                return false;
            }
            if (!creds.allow.allowsUser(id)) {
                session.refusal = "PSK identity '" + id + "' is not in --tls-allow";
                return false;
            }
            session.identity = id;
            return true;
        }
    }

    /** The client: offers its identity for TLS 1.3 (external PSK) and for TLS 1.2. */
    private static final class Client extends PSKTlsClient {
        private final PskCredentials creds;
        private final BcTlsSession session;

        Client(PskCredentials creds, BcTlsSession session) {
            super(creds.crypto, creds.identity());
            this.creds = creds;
            this.session = session;
        }

        @Override
        protected ProtocolVersion[] getSupportedVersions() {
            return PskCredentials.VERSIONS;
        }

        @Override
        protected int[] getSupportedCipherSuites() {
            return creds.suites;
        }

        @Override
        public Vector getExternalPSKs() {
            Vector<TlsPSKExternal> v = new Vector<>();
            v.add(creds.external(session.identity));
            return v;
        }

        @Override
        public void notifyHandshakeComplete() throws IOException {
            super.notifyHandshakeComplete();
            session.completed(context);
        }
    }
}
