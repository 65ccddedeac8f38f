package io.biostack.nbd.client;

import java.io.EOFException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;

/**
 * One socket to an NBD server (TCP or Unix). The handshake runs non-blocking with a deadline (a
 * server that accepts and then says nothing cannot hold a reconnect forever); the transmission
 * phase runs blocking: one thread reads replies while submitters write requests.
 *
 * <p>Threads: {@link #read} by the connection's receiver only, {@link #write} by whoever holds
 * the connection's send flag; {@link #close} from any thread, and it wakes both.
 */
class Transport implements AutoCloseable {
    final SocketChannel ch;

    Transport(SocketChannel ch) {
        this.ch = ch;
    }

    /** Connects to {@code uri}'s endpoint by {@code deadline} (System.nanoTime). */
    static Transport connect(NbdUri uri, long deadline) throws IOException {
        SocketChannel ch;
        java.net.SocketAddress addr;
        if (uri.socket() != null) {
            ch = SocketChannel.open(StandardProtocolFamily.UNIX);
            addr = UnixDomainSocketAddress.of(uri.socket());
        } else {
            InetSocketAddress a = new InetSocketAddress(uri.host(), uri.port());
            if (a.isUnresolved()) {
                throw new IOException("unknown host '" + uri.host() + "'");
            }
            ch = SocketChannel.open(a.getAddress() instanceof java.net.Inet6Address
                    ? StandardProtocolFamily.INET6 : StandardProtocolFamily.INET);
            addr = a;
        }
        try {
            ch.configureBlocking(false);
            if (!ch.connect(addr)) {
                try (Selector sel = Selector.open()) {
                    ch.register(sel, SelectionKey.OP_CONNECT);
                    while (!ch.finishConnect()) {
                        long left = deadline - System.nanoTime();
                        if (left <= 0) {
                            throw new SocketTimeoutException("connect timed out");
                        }
                        sel.select(Math.max(1, left / 1_000_000));
                        sel.selectedKeys().clear();
                    }
                }
            }
            if (uri.socket() == null) {
                ch.setOption(StandardSocketOptions.TCP_NODELAY, true);
                ch.setOption(StandardSocketOptions.SO_KEEPALIVE, true);
            }
            return new Transport(ch);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    // ---- handshake: non-blocking with a deadline -------------------------------------------

    /** Fills {@code buf} (to its limit) by {@code deadline}; EOF and timeouts throw. */
    void readFully(ByteBuffer buf, long deadline) throws IOException {
        try (Selector sel = Selector.open()) {
            ch.register(sel, SelectionKey.OP_READ);
            while (buf.hasRemaining()) {
                int n = ch.read(buf);
                if (n < 0) {
                    throw new EOFException("the server closed the connection during the handshake");
                }
                if (n == 0) {
                    long left = deadline - System.nanoTime();
                    if (left <= 0) {
                        throw new SocketTimeoutException("the server did not answer the handshake in time");
                    }
                    sel.select(Math.max(1, left / 1_000_000));
                    sel.selectedKeys().clear();
                }
            }
        }
    }

    /** Sends all of {@code buf} by {@code deadline}. */
    void writeFully(ByteBuffer buf, long deadline) throws IOException {
        try (Selector sel = Selector.open()) {
            ch.register(sel, SelectionKey.OP_WRITE);
            while (buf.hasRemaining()) {
                if (ch.write(buf) == 0) {
                    long left = deadline - System.nanoTime();
                    if (left <= 0) {
                        throw new SocketTimeoutException("the server did not take the handshake in time");
                    }
                    sel.select(Math.max(1, left / 1_000_000));
                    sel.selectedKeys().clear();
                }
            }
        }
    }

    /** Ends the handshake: from now on reads and writes block. */
    void startTransmission() throws IOException {
        ch.configureBlocking(true);
    }

    // ---- transmission: blocking --------------------------------------------------------------

    /** Reads what is there (at least one byte); -1 at EOF. */
    int read(ByteBuffer dst) throws IOException {
        return ch.read(dst);
    }

    /** Writes all of {@code src}; waits for socket buffer space (TCP back-pressure). */
    void write(ByteBuffer src) throws IOException {
        while (src.hasRemaining()) {
            ch.write(src);
        }
    }

    /** Closes the socket; a blocked read or write returns with an exception. Idempotent. */
    @Override
    public void close() {
        try {
            ch.close();
        } catch (IOException e) {
            // closing: nothing left to do with the error
        }
    }
}
