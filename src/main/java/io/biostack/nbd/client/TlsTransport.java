package io.biostack.nbd.client;

import io.biostack.nbd.tls.TlsException;
import io.biostack.nbd.tls.TlsSession;

import java.io.EOFException;
import java.io.IOException;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The socket of an {@code nbds://} connection after NBD_OPT_STARTTLS: a {@link TlsSession} (the
 * buffer state machine of io.biostack.nbd.tls) over the plain channel.
 *
 * <p>Threads: the session is single-threaded, and a connection has two sides (the receiver
 * reads, the send-flag holder writes), so every session call is made under {@link #lock}; the
 * socket itself is read and written outside it. Only the writing side ever writes to the socket:
 * records the session makes while the receiver feeds it (a TLS 1.3 KeyUpdate reply) wait in the
 * session for the next write, so that two threads never interleave records, and a writer blocked
 * on a full socket never holds the lock the receiver needs (the server might be waiting for us to
 * read). This lock is the one per-I/O lock of the leaf, and only on TLS connections.
 */
final class TlsTransport extends Transport {
    private final TlsSession session;
    private final ReentrantLock lock = new ReentrantLock();
    private final ByteBuffer netIn = ByteBuffer.allocateDirect(64 * 1024);
    private ByteBuffer netOut = ByteBuffer.allocateDirect(64 * 1024); // the writing side's

    private TlsTransport(SocketChannel ch, TlsSession session) {
        super(ch);
        this.session = session;
    }

    /** Runs the TLS handshake over {@code plain}'s channel (still non-blocking) by {@code deadline}. */
    static TlsTransport start(Transport plain, TlsSession session, long deadline) throws IOException {
        TlsTransport t = new TlsTransport(plain.ch, session);
        try (Selector sel = Selector.open()) {
            plain.ch.register(sel, SelectionKey.OP_READ);
            while (true) {
                t.flushPending(deadline);
                if (session.isHandshakeComplete()) {
                    return t;
                }
                if (session.isClosed()) {
                    throw new TlsException("the server closed the TLS session during the handshake");
                }
                t.fill(sel, deadline);
            }
        } catch (IOException | RuntimeException e) {
            session.close();
            throw e;
        }
    }

    /** Reads what the socket has (waiting until {@code deadline}) and feeds it to the session. */
    private void fill(Selector sel, long deadline) throws IOException {
        netIn.clear();
        int n;
        while ((n = ch.read(netIn)) == 0) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new SocketTimeoutException("the server did not finish the TLS handshake in time");
            }
            sel.select(Math.max(1, left / 1_000_000));
            sel.selectedKeys().clear();
        }
        if (n < 0) {
            throw new EOFException("the server closed the connection during TLS");
        }
        netIn.flip();
        session.offerInput(netIn);
    }

    /** Sends the session's pending records (handshake phase, non-blocking channel). */
    private void flushPending(long deadline) throws IOException {
        while (session.pendingOutput() > 0) {
            netOut.clear();
            session.readOutput(netOut);
            netOut.flip();
            super.writeFully(netOut, deadline);
        }
    }

    // ---- the rest of the NBD handshake, non-blocking with a deadline ---------------------------

    @Override
    void readFully(ByteBuffer buf, long deadline) throws IOException {
        try (Selector sel = Selector.open()) {
            ch.register(sel, SelectionKey.OP_READ);
            while (buf.hasRemaining()) {
                if (session.availableApplication() > 0) {
                    session.readApplication(buf);
                    continue;
                }
                if (session.isClosed()) {
                    throw new EOFException("the server closed the TLS session");
                }
                fill(sel, deadline);
                flushPending(deadline);
            }
        }
    }

    @Override
    void writeFully(ByteBuffer buf, long deadline) throws IOException {
        session.writeApplication(buf);
        flushPending(deadline);
    }

    // ---- transmission: blocking ----------------------------------------------------------------

    @Override
    int read(ByteBuffer dst) throws IOException {
        while (true) {
            lock.lock();
            try {
                if (session.availableApplication() > 0) {
                    return session.readApplication(dst);
                }
                if (session.isClosed()) {
                    return -1;
                }
            } finally {
                lock.unlock();
            }
            netIn.clear();
            if (ch.read(netIn) < 0) {
                return -1;
            }
            netIn.flip();
            lock.lock();
            try {
                session.offerInput(netIn);
            } finally {
                lock.unlock();
            }
        }
    }

    @Override
    void write(ByteBuffer src) throws IOException {
        lock.lock();
        try {
            session.writeApplication(src);
            int n = session.pendingOutput();
            if (netOut.capacity() < n) {
                netOut = ByteBuffer.allocateDirect(Math.max(n, netOut.capacity() * 2));
            }
            netOut.clear();
            while (session.pendingOutput() > 0 && netOut.hasRemaining()) {
                session.readOutput(netOut);
            }
        } finally {
            lock.unlock();
        }
        netOut.flip();
        super.write(netOut);
    }

    @Override
    public void close() {
        lock.lock();
        try {
            session.close();
        } finally {
            lock.unlock();
        }
        super.close();
    }
}
