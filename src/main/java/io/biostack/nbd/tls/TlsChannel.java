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
 * <p>Threads: one reader thread and any number of writer threads (one at a time, as
 * ReplyWriter's send role guarantees). The socket read happens outside the lock, so a reader
 * blocked on the network never holds up a writer; feeding the session, encrypting and writing to
 * the socket happen under it, since a session is not thread-safe. A reactor drives the session
 * itself and needs none of this.
 */
public final class TlsChannel implements ByteChannel, GatheringByteChannel {
    private static final int NET_BUFFER = 64 * 1024;
    /** Plaintext encrypted at once: 16 TLS records (RFC 8446 section 5.1: 2^14 bytes each). */
    private static final int CHUNK = 256 * 1024;

    private final SocketChannel ch;
    private final TlsSession session;
    private final ReentrantLock lock = new ReentrantLock();
    private final ByteBuffer netIn = ByteBuffer.allocateDirect(NET_BUFFER);
    private final ByteBuffer netOut = ByteBuffer.allocateDirect(4 * NET_BUFFER);

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
            t.flush();
            while (!session.isHandshakeComplete()) {
                if (session.isClosed()) {
                    throw new TlsException("peer closed TLS during the handshake");
                }
                t.netIn.clear();
                if (ch.read(t.netIn) < 0) {
                    throw new EOFException("peer left during the TLS handshake");
                }
                session.offerInput(t.netIn.flip());
                t.flush();
            }
        } catch (TlsException e) {
            try {
                t.flush(); // the alert, so the peer learns why
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
        lock.lock();
        try {
            if (session.availableApplication() > 0) {
                return session.readApplication(dst);
            }
        } finally {
            lock.unlock();
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
            lock.lock();
            try {
                session.offerInput(netIn.flip());
                flush(); // e.g. a TLS 1.3 KeyUpdate answer
                int k = session.readApplication(dst);
                if (k > 0) {
                    return k;
                }
            } finally {
                lock.unlock();
            }
        }
    }

    @Override
    public int write(ByteBuffer src) throws IOException {
        int n = src.remaining();
        lock.lock();
        try {
            encrypt(src);
            flush();
        } finally {
            lock.unlock();
        }
        return n;
    }

    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
        long n = 0;
        lock.lock();
        try {
            for (int i = offset; i < offset + length; i++) {
                n += srcs[i].remaining();
                encrypt(srcs[i]);
            }
            flush();
        } finally {
            lock.unlock();
        }
        return n;
    }

    /**
     * Encrypts {@code src} a chunk at a time, sending each chunk's records before the next: the
     * session's output buffer stays near {@link #CHUNK} however large a READ reply is.
     */
    private void encrypt(ByteBuffer src) throws IOException {
        int limit = src.limit();
        try {
            while (src.hasRemaining()) {
                src.limit(Math.min(limit, src.position() + CHUNK));
                session.writeApplication(src);
                src.limit(limit);
                if (src.hasRemaining()) {
                    flush();
                }
            }
        } finally {
            src.limit(limit);
        }
    }

    @Override
    public long write(ByteBuffer[] srcs) throws IOException {
        return write(srcs, 0, srcs.length);
    }

    /** Sends every record the session has ready. */
    private void flush() throws IOException {
        while (session.pendingOutput() > 0) {
            netOut.clear();
            session.readOutput(netOut);
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

    /** Sends close_notify (best effort), then closes the socket. */
    @Override
    public void close() throws IOException {
        lock.lock();
        try {
            session.close();
            if (ch.isOpen()) {
                flush();
            }
        } catch (IOException e) {
            // close_notify is a courtesy
        } finally {
            lock.unlock();
            ch.close();
        }
    }
}
