package io.biostack.nbd.client;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A TCP proxy on loopback between the leaf and a server, for faults without netem: it can stall
 * (stop forwarding in both directions, sockets kept open: what a dead link looks like to TCP),
 * cut every connection (a reset), or refuse new ones. Threads are daemons; {@link #close} ends all.
 */
final class TcpProxy implements AutoCloseable {
    private final ServerSocket listen;
    private final InetSocketAddress target;
    private final List<Socket> open = new CopyOnWriteArrayList<>();
    private volatile boolean stalled;
    private volatile boolean refusing;
    private volatile boolean closed;

    TcpProxy(InetSocketAddress target) throws IOException {
        this.target = target;
        this.listen = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        Thread.ofPlatform().daemon().name("proxy-accept").start(this::accept);
    }

    int port() {
        return listen.getLocalPort();
    }

    private void accept() {
        while (!closed) {
            try {
                Socket c = listen.accept();
                if (refusing) {
                    c.setSoLinger(true, 0);
                    c.close();
                    continue;
                }
                Socket s = new Socket();
                s.connect(target, 2000);
                open.add(c);
                open.add(s);
                Thread.ofPlatform().daemon().name("proxy-up").start(() -> pump(c, s));
                Thread.ofPlatform().daemon().name("proxy-down").start(() -> pump(s, c));
            } catch (IOException e) {
                if (closed) {
                    return;
                }
            }
        }
    }

    private void pump(Socket from, Socket to) {
        byte[] buf = new byte[64 * 1024];
        try (InputStream in = from.getInputStream(); OutputStream out = to.getOutputStream()) {
            while (true) {
                while (stalled && !from.isClosed()) {
                    Thread.sleep(5);
                }
                int n = in.read(buf);
                if (n < 0) {
                    break;
                }
                while (stalled && !from.isClosed()) {
                    Thread.sleep(5);
                }
                out.write(buf, 0, n);
            }
        } catch (IOException | InterruptedException e) {
            // a cut connection
        } finally {
            quietClose(from);
            quietClose(to);
        }
    }

    /** Stops (true) or resumes (false) forwarding; connections stay open. */
    void stall(boolean on) {
        stalled = on;
    }

    /** New connections are accepted and reset at once (a server that is gone). */
    void refuse(boolean on) {
        refusing = on;
    }

    /** Resets every connection now. */
    void cutAll() {
        for (Socket s : open) {
            try {
                s.setSoLinger(true, 0);
            } catch (IOException e) {
                // already closed
            }
            quietClose(s);
        }
        open.clear();
    }

    private static void quietClose(Socket s) {
        try {
            s.close();
        } catch (IOException e) {
            // closing
        }
    }

    @Override
    public void close() {
        closed = true;
        stalled = false;
        try {
            listen.close();
        } catch (IOException e) {
            // closing
        }
        cutAll();
    }
}
