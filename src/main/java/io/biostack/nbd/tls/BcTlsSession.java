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
 */
final class BcTlsSession implements TlsSession {
    private static final int SCRATCH = 64 * 1024;

    private final TlsProtocol protocol;
    private final boolean server;
    private final byte[] scratch = new byte[SCRATCH];
    private boolean sawInput;
    volatile boolean complete;
    private boolean failed;
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
        TlsServerProtocol p = new TlsServerProtocol();
        BcTlsSession s = new BcTlsSession(p, true);
        try {
            p.accept(new Server(creds, s));
        } catch (IOException e) {
            throw new TlsException("can't start TLS: " + e.getMessage(), e);
        }
        return s;
    }

    static BcTlsSession client(PskCredentials creds, String user) throws TlsException {
        TlsClientProtocol p = new TlsClientProtocol();
        BcTlsSession s = new BcTlsSession(p, false);
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
        if (failed || protocol.isClosed()) {
            net.position(net.limit());
            return;
        }
        if (!sawInput && net.hasRemaining()) {
            TlsRecords.checkFirst(net);
            sawInput = true;
        }
        try {
            while (net.hasRemaining()) {
                int n = Math.min(net.remaining(), scratch.length);
                net.get(scratch, 0, n);
                protocol.offerInput(scratch, 0, n);
            }
        } catch (IOException e) {
            failed = true;
            net.position(net.limit());
            throw new TlsException(reason(e), e);
        }
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
        return protocol.getAvailableInputBytes();
    }

    @Override
    public int readApplication(ByteBuffer dst) {
        int n = Math.min(dst.remaining(), protocol.getAvailableInputBytes());
        return n == 0 ? 0 : protocol.readInput(dst, n);
    }

    @Override
    public void writeApplication(ByteBuffer src) throws TlsException {
        if (!complete) {
            throw new IllegalStateException("TLS handshake not complete");
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
        return failed || protocol.isClosed();
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
        try {
            protocol.close();
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
