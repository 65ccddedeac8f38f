package io.biostack.nbd.tls;

import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;
import javax.security.auth.x500.X500Principal;
import java.nio.ByteBuffer;
import java.security.cert.CertPathValidatorException;
import java.security.cert.CertificateExpiredException;
import java.security.cert.CertificateNotYetValidException;
import java.security.cert.X509Certificate;

/**
 * {@link TlsSession} over the JDK's {@link SSLEngine}, for X.509 certificates. The JDK's engine
 * does TLS 1.3 and 1.2 with AES-GCM on the CPU's AES and carry-less multiply instructions
 * (HotSpot intrinsics), and checks certificate chains, dates and host names with the PKIX code
 * every Java TLS client trusts.
 *
 * <p>Buffers: {@code netIn} holds ciphertext not yet a whole record, {@code appIn} decrypted
 * plaintext not yet read, {@code netOut} records not yet sent. All three are heap buffers in
 * write mode (position = end of data), grown when a record does not fit and kept at that size.
 */
final class JdkTlsSession implements TlsSession {
    private static final ByteBuffer EMPTY = ByteBuffer.allocate(0);
    /**
     * The one-piece array that {@link #wrap(ByteBuffer)} and {@link #writeApplication(ByteBuffer)}
     * pass on, reused (the JDK's engine still allocates per record: its result, an array for the
     * destination, cipher state).
     */
    private final ByteBuffer[] one = new ByteBuffer[1];

    private final SSLEngine engine;
    private final String peer;
    private final AllowList allow;
    private ByteBuffer netIn;
    private ByteBuffer appIn;
    private ByteBuffer netOut;
    /** How much of netOut's data (0..position) readOutput already took: no compaction per read. */
    private int netOutRead;
    private boolean sawInput;
    private boolean complete;
    /** No more input: the peer sent close_notify, or the session failed ({@link #isClosed}). */
    private boolean closed;
    /**
     * No more output: our close_notify is queued ({@link #close}), the engine closed its outbound
     * side, or the session failed. Apart from {@link #closed}: TLS 1.3 closes each direction on
     * its own (RFC 8446, section 6.1), so replies still go after the peer's close_notify.
     */
    private boolean outClosed;
    /** Ciphertext bytes the last {@link #wrap(ByteBuffer[], int, int)} made. */
    private int produced;
    private String identity;

    JdkTlsSession(SSLEngine engine, String peer, AllowList allow) throws TlsException {
        this.engine = engine;
        this.peer = peer;
        this.allow = allow;
        SSLSession s = engine.getSession();
        netIn = ByteBuffer.allocate(s.getPacketBufferSize());
        appIn = ByteBuffer.allocate(s.getApplicationBufferSize());
        netOut = ByteBuffer.allocate(s.getPacketBufferSize());
        try {
            engine.beginHandshake();
        } catch (SSLException e) {
            throw new TlsException(reason(e), e);
        }
        pump(); // a client's ClientHello is ready to send at once
    }

    @Override
    public void offerInput(ByteBuffer net) throws TlsException {
        if (closed) {
            net.position(net.limit());
            return;
        }
        if (!sawInput && net.hasRemaining()) {
            TlsRecords.checkFirst(net);
            sawInput = true;
        }
        netIn = ensure(netIn, net.remaining());
        netIn.put(net);
        pump();
    }

    /**
     * Runs the engine until it needs more input: handshake steps, then records into appIn. netIn
     * is in read mode for the whole run and compacted once at the end.
     */
    private void pump() throws TlsException {
        netIn.flip();
        try {
            while (!closed) {
                HandshakeStatus hs = engine.getHandshakeStatus();
                if (hs == HandshakeStatus.NEED_TASK) {
                    for (Runnable t = engine.getDelegatedTask(); t != null; t = engine.getDelegatedTask()) {
                        t.run();
                    }
                    continue;
                }
                if (hs == HandshakeStatus.NEED_WRAP) {
                    if (engine.isOutboundDone()) {
                        return; // nothing can be sent any more: don't ask again
                    }
                    wrap(EMPTY);
                    continue;
                }
                if (!netIn.hasRemaining()) {
                    return;
                }
                SSLEngineResult r = engine.unwrap(netIn, appIn);
                switch (r.getStatus()) {
                    case BUFFER_UNDERFLOW -> {
                        int need = engine.getSession().getPacketBufferSize();
                        if (netIn.capacity() < need) {
                            ByteBuffer n = ByteBuffer.allocate(need);
                            n.put(netIn).flip();
                            netIn = n;
                        }
                        return; // the rest of the record has not come yet
                    }
                    case BUFFER_OVERFLOW -> appIn = ensure(appIn, engine.getSession().getApplicationBufferSize());
                    case CLOSED -> closed = true;
                    case OK -> { }
                }
                if (r.getHandshakeStatus() == HandshakeStatus.FINISHED) {
                    finished();
                }
                if (r.bytesConsumed() == 0 && r.bytesProduced() == 0 && r.getStatus() == SSLEngineResult.Status.OK) {
                    HandshakeStatus now = engine.getHandshakeStatus();
                    if (now != HandshakeStatus.NEED_TASK && now != HandshakeStatus.NEED_WRAP) {
                        return; // nothing moved: wait for more input
                    }
                }
            }
        } catch (SSLException e) {
            fail();
            throw new TlsException(reason(e), e);
        } finally {
            compactIn();
        }
    }

    /** Keeps netIn in write mode; moves bytes only when some are left over (a partial record). */
    private void compactIn() {
        if (netIn.hasRemaining()) {
            netIn.compact();
        } else {
            netIn.clear();
        }
    }

    private void wrap(ByteBuffer src) throws SSLException {
        one[0] = src;
        try {
            wrap(one, 0, 1);
        } finally {
            one[0] = null;
        }
    }

    /** One record (or handshake message) from {@code srcs} into netOut; returns the plaintext bytes it took. */
    private int wrap(ByteBuffer[] srcs, int offset, int length) throws SSLException {
        while (true) {
            SSLEngineResult r = engine.wrap(srcs, offset, length, netOut);
            if (r.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
                roomOut(engine.getSession().getPacketBufferSize());
                continue;
            }
            if (r.getStatus() == SSLEngineResult.Status.CLOSED) {
                outClosed = true;
            }
            if (r.getHandshakeStatus() == HandshakeStatus.FINISHED) {
                finished();
            }
            produced = r.bytesProduced();
            return r.bytesConsumed();
        }
    }

    /** The handshake is done: check the peer against --tls-allow before any data passes. */
    private void finished() throws SSLException {
        if (complete) {
            return;
        }
        X500Principal subject = null;
        try {
            if (engine.getSession().getPeerCertificates()[0] instanceof X509Certificate c) {
                subject = c.getSubjectX500Principal();
            }
        } catch (SSLPeerUnverifiedException e) {
            // no client certificate: only a problem when names are required
        }
        identity = subject == null ? null : subject.getName(X500Principal.RFC2253);
        if (!engine.getUseClientMode() && !allow.isEmpty()) {
            if (subject == null) {
                throw new SSLException("no client certificate, and --tls-allow wants one");
            }
            if (!allow.allowsSubject(subject)) {
                throw new SSLException("'" + identity + "' is not in --tls-allow");
            }
        }
        complete = true;
    }

    /** After a failure: let the engine put its alert in netOut, so the peer learns why. */
    private void fail() {
        closed = true;
        outClosed = true;
        try {
            engine.closeOutbound();
            for (int i = 0; i < 4 && engine.getHandshakeStatus() == HandshakeStatus.NEED_WRAP; i++) {
                roomOut(engine.getSession().getPacketBufferSize());
                SSLEngineResult r = engine.wrap(EMPTY, netOut);
                if (r.getStatus() != SSLEngineResult.Status.OK) {
                    break;
                }
            }
        } catch (SSLException | RuntimeException e) {
            // the alert is a courtesy
        }
    }

    /** Room for {@code n} more bytes in netOut: first by dropping what was read, then by growing. */
    private void roomOut(int n) {
        if (netOutRead > 0) {
            netOut.flip().position(netOutRead);
            netOut.compact();
            netOutRead = 0;
        }
        netOut = ensure(netOut, n);
    }

    @Override
    public int pendingOutput() {
        return netOut.position() - netOutRead;
    }

    @Override
    public int readOutput(ByteBuffer dst) {
        int n = Math.min(netOut.position() - netOutRead, dst.remaining());
        if (n <= 0) {
            return 0;
        }
        dst.put(dst.position(), netOut, netOutRead, n);
        dst.position(dst.position() + n);
        netOutRead += n;
        if (netOutRead == netOut.position()) {
            netOut.clear();
            netOutRead = 0;
        }
        return n;
    }

    @Override
    public int availableApplication() {
        return appIn.position();
    }

    @Override
    public int readApplication(ByteBuffer dst) {
        return move(appIn, dst);
    }

    @Override
    public void writeApplication(ByteBuffer src) throws TlsException {
        one[0] = src;
        try {
            writeApplication(one, 0, 1);
        } finally {
            one[0] = null;
        }
    }

    @Override
    public void writeApplication(ByteBuffer[] srcs, int offset, int length) throws TlsException {
        if (!complete) {
            throw new IllegalStateException("TLS handshake not complete");
        }
        if (outClosed) {
            throw new TlsException("TLS session closed");
        }
        long left = 0;
        for (int i = offset; i < offset + length; i++) {
            left += srcs[i].remaining();
        }
        try {
            while (left > 0) {
                int took = wrap(srcs, offset, length);
                if (outClosed) {
                    throw new TlsException("TLS session closed");
                }
                if (took == 0 && produced == 0) {
                    // A wrap that takes no plaintext but makes a record is a handshake message
                    // going first: the KeyUpdate of a key at its limit (RFC 8446 section 4.6.3;
                    // jdk.tls.keyLimits, 2^37 bytes per AES-GCM key). Only nothing at all is stuck.
                    throw new TlsException("TLS engine made no progress");
                }
                left -= took;
                while (length > 0 && !srcs[offset].hasRemaining()) {
                    offset++; // pieces already in records: the engine need not look at them again
                    length--;
                }
            }
        } catch (SSLException e) {
            throw new TlsException(reason(e), e);
        }
    }

    @Override
    public boolean isHandshakeComplete() {
        return complete;
    }

    @Override
    public boolean isClosed() {
        return closed;
    }

    @Override
    public String peerIdentity() {
        return identity;
    }

    @Override
    public String describe() {
        SSLSession s = engine.getSession();
        return s.getProtocol() + " " + s.getCipherSuite();
    }

    @Override
    public void close() {
        if (outClosed) {
            return; // sent already, or failed (the alert is queued)
        }
        engine.closeOutbound();
        try {
            for (int i = 0; i < 4 && !engine.isOutboundDone(); i++) {
                wrap(EMPTY);
            }
        } catch (SSLException | RuntimeException e) {
            // close_notify is a courtesy
        }
        outClosed = true; // input goes on: the peer may still send until its own close_notify
    }

    // ---- helpers -------------------------------------------------------------------------

    /** Moves bytes from a write-mode buffer to {@code dst}; returns how many. */
    static int move(ByteBuffer from, ByteBuffer dst) {
        int n = Math.min(from.position(), dst.remaining());
        if (n == 0) {
            return 0;
        }
        from.flip();
        int lim = from.limit();
        from.limit(n);
        dst.put(from);
        from.limit(lim);
        from.compact();
        return n;
    }

    /** {@code b} with room for {@code more} bytes (a bigger copy when it has not). */
    static ByteBuffer ensure(ByteBuffer b, int more) {
        if (b.remaining() >= more) {
            return b;
        }
        ByteBuffer n = ByteBuffer.allocate(Math.max(b.capacity() * 2, b.position() + more));
        b.flip();
        n.put(b);
        return n;
    }

    /** One line saying why, from the engine's exception and its causes. */
    private String reason(SSLException e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof CertificateExpiredException) {
                return (engine.getUseClientMode() ? "server" : "client") + " certificate has expired";
            }
            if (t instanceof CertificateNotYetValidException) {
                return (engine.getUseClientMode() ? "server" : "client") + " certificate is not valid yet";
            }
            if (t instanceof CertPathValidatorException cv && cv.getReason()
                    == CertPathValidatorException.BasicReason.EXPIRED) {
                return (engine.getUseClientMode() ? "server" : "client") + " certificate has expired";
            }
        }
        String m = String.valueOf(e.getMessage());
        for (Throwable t = e; t != null; t = t.getCause()) {
            String c = t.getClass().getName();
            if (c.contains("SunCertPathBuilderException") || t instanceof CertPathValidatorException) {
                return (engine.getUseClientMode() ? "server" : "client") + " certificate not signed by the CA";
            }
        }
        if (m.contains("Empty client certificate chain") || m.contains("Empty server certificate chain")) {
            return "no client certificate (the server asks for one: --tls-verify-peer)";
        }
        if (m.contains("No subject alternative") || m.contains("No name matching")) {
            return "server certificate does not name " + engine.getPeerHost();
        }
        if (m.startsWith("Received fatal alert: ")) {
            return "peer refused the handshake: " + m.substring("Received fatal alert: ".length());
        }
        return m;
    }

    @Override
    public String toString() {
        return "TLS with " + peer;
    }
}
