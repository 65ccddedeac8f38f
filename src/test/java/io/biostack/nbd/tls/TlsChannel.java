package io.biostack.nbd.tls;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.SocketChannel;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A {@link TlsSession} over a blocking {@link SocketChannel}, for a thread-per-connection loop:
 * {@link #read} and {@link #write} move plaintext, the session does the records.
 *
 * <p>Threads: one reader thread and any number of writer threads. Two locks, always taken in this
 * order: {@code sendLock} makes one thread at a time write ciphertext to the socket, in the order
 * the session made it; {@code sessionLock} guards the session (not thread-safe) and is held only
 * to feed, encrypt or drain it, never across a socket call. So a reader blocked on the network
 * holds up nobody, and a writer sending a large reply to a slow client does not stop the reader
 * from decrypting the next requests. A reactor drives the session itself and needs none of this.
 */
public final class TlsChannel implements ByteChannel, GatheringByteChannel {
    private static final int NET_BUFFER = 64 * 1024;
    /** Plaintext encrypted per sessionLock hold: 16 TLS records (RFC 8446 section 5.1: 2^14 bytes each). */
    private static final int CHUNK = 256 * 1024;

    private final SocketChannel ch;
    private final TlsSession session;
    private final ReentrantLock sendLock = new ReentrantLock();
    private final ReentrantLock sessionLock = new ReentrantLock();
    private final ByteBuffer netIn = ByteBuffer.allocateDirect(NET_BUFFER);
    /** Ciphertext on its way to the socket; used under sendLock. */
    private final ByteBuffer netOut = ByteBuffer.allocateDirect(2 * CHUNK);

    private TlsChannel(SocketChannel ch, TlsSession session) {
        this.ch = ch;
        this.session = session;
    }

    /**
     * Runs the TLS handshake on a blocking channel; returns the channel to use from then on.
     * On refusal the session's alert is sent (best effort) before the TlsException is thrown;
     * the caller closes the socket.
     *
     * @throws EOFException when the peer left during the handshake
     */
    public static TlsChannel handshake(SocketChannel ch, TlsSession session) throws IOException {
        TlsChannel t = new TlsChannel(ch, session);
        try {
            t.send();
            while (!session.isHandshakeComplete()) {
                if (session.isClosed()) {
                    throw new TlsException("peer closed TLS during the handshake");
                }
                t.netIn.clear();
                if (ch.read(t.netIn) < 0) {
                    throw new EOFException("peer left during the TLS handshake");
                }
                session.offerInput(t.netIn.flip());
                t.send();
            }
        } catch (TlsException e) {
            try {
                t.send(); // the alert, so the peer learns why
            } catch (IOException ignored) {
                // the refusal is what matters
            }
            throw e;
        }
        return t;
    }

    public TlsSession session() {
        return session;
    }

    @Override
    public int read(ByteBuffer dst) throws IOException {
        if (!dst.hasRemaining()) {
            return 0;
        }
        sessionLock.lock();
        try {
            if (session.availableApplication() > 0) {
                return session.readApplication(dst);
            }
        } finally {
            sessionLock.unlock();
        }
        while (true) {
            if (session.isClosed()) {
                return -1; // close_notify
            }
            netIn.clear();
            int n = ch.read(netIn); // the only reader: no lock while blocked here
            if (n < 0) {
                return -1;
            }
            int k;
            boolean answer;
            sessionLock.lock();
            try {
                session.offerInput(netIn.flip());
                k = session.readApplication(dst);
                answer = session.pendingOutput() > 0; // e.g. a TLS 1.3 KeyUpdate to answer
            } finally {
                sessionLock.unlock();
            }
            if (answer) {
                send();
            }
            if (k > 0) {
                return k;
            }
        }
    }

    @Override
    public int write(ByteBuffer src) throws IOException {
        int n = src.remaining();
        sendLock.lock();
        try {
            encrypt(src);
        } finally {
            sendLock.unlock();
        }
        return n;
    }

    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
        long n = 0;
        sendLock.lock();
        try {
            for (int i = offset; i < offset + length; i++) {
                n += srcs[i].remaining();
                encrypt(srcs[i]);
            }
        } finally {
            sendLock.unlock();
        }
        return n;
    }

    @Override
    public long write(ByteBuffer[] srcs) throws IOException {
        return write(srcs, 0, srcs.length);
    }

    /** Encrypts and sends {@code src} a chunk at a time; the caller holds sendLock. */
    private void encrypt(ByteBuffer src) throws IOException {
        int limit = src.limit();
        try {
            while (src.hasRemaining()) {
                sessionLock.lock();
                try {
                    src.limit(Math.min(limit, src.position() + CHUNK));
                    session.writeApplication(src);
                } finally {
                    src.limit(limit);
                    sessionLock.unlock();
                }
                sendLocked();
            }
        } finally {
            src.limit(limit);
        }
    }

    private void send() throws IOException {
        sendLock.lock();
        try {
            sendLocked();
        } finally {
            sendLock.unlock();
        }
    }

    /** Sends every record the session has ready; the caller holds sendLock. */
    private void sendLocked() throws IOException {
        while (true) {
            netOut.clear();
            sessionLock.lock();
            try {
                if (session.pendingOutput() == 0) {
                    return;
                }
                session.readOutput(netOut);
            } finally {
                sessionLock.unlock();
            }
            netOut.flip();
            while (netOut.hasRemaining()) {
                if (ch.write(netOut) < 0) {
                    throw new ClosedChannelException();
                }
            }
        }
    }

    @Override
    public boolean isOpen() {
        return ch.isOpen();
    }

    /**
     * Encrypts {@code src}, then close_notify, and sends both in one socket write: a client that
     * ends its side of TLS right after its last request (gnutls_bye with GNUTLS_SHUT_WR). Reading
     * goes on until the peer's close_notify or EOF.
     */
    public void writeThenCloseNotify(ByteBuffer src) throws IOException {
        sendLock.lock();
        try {
            sessionLock.lock();
            try {
                session.writeApplication(src);
                session.close();
            } finally {
                sessionLock.unlock();
            }
            sendLocked();
        } finally {
            sendLock.unlock();
        }
    }

    /** Sends close_notify (best effort), then closes the socket. */
    @Override
    public void close() throws IOException {
        sendLock.lock();
        try {
            sessionLock.lock();
            try {
                session.close();
            } finally {
                sessionLock.unlock();
            }
            if (ch.isOpen()) {
                sendLocked();
            }
        } catch (IOException e) {
            // close_notify is a courtesy
        } finally {
            sendLock.unlock();
            ch.close();
        }
    }
}
