package io.biostack.stack;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A unix-socket control endpoint for a running {@link Stack}: what the kernel's
 * {@code /dev/mapper/control} ioctls are to dmsetup, for {@code biostack dm --control PATH}.
 *
 * <h2>Protocol</h2>
 * One request per connection. The client sends the words of the command, each followed by a NUL
 * byte, and shuts down its output; the server answers with one line holding {@code 0} (done) or
 * {@code 1} (refused), then the text to show (the answer, or what is wrong), and closes.
 * Requests are {@link Stack#control}'s.
 *
 * <p>Start with {@link #start(Stack, Path)} (see {@link Stack} for the whole set-up); the socket
 * file is replaced if it exists and removed on {@link #close()}. Each connection is served on a
 * virtual thread, so a slow suspend holds up nobody else.
 */
public final class ControlServer implements AutoCloseable {
    private static final int MAX_REQUEST = 1 << 20;

    private final Stack stack;
    private final Path path;
    private final ServerSocketChannel server;
    private final Thread acceptor;

    private ControlServer(Stack stack, Path path, ServerSocketChannel server) {
        this.stack = stack;
        this.path = path;
        this.server = server;
        this.acceptor = Thread.ofPlatform().daemon().name("biostack-control").start(this::acceptLoop);
    }

    /** Listens on the unix socket {@code socket} for control requests on {@code stack}. */
    public static ControlServer start(Stack stack, Path socket) throws IOException {
        Files.deleteIfExists(socket);
        ServerSocketChannel s = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        s.bind(UnixDomainSocketAddress.of(socket));
        return new ControlServer(stack, socket, s);
    }

    /** The unix socket path clients connect to. */
    public Path path() {
        return path;
    }

    private void acceptLoop() {
        while (server.isOpen()) {
            try {
                SocketChannel c = server.accept();
                Thread.ofVirtual().name("biostack-control-request").start(() -> serve(c));
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                System.err.println("biostack: control socket " + path + ": " + e.getMessage());
                return;
            }
        }
    }

    private void serve(SocketChannel c) {
        try (c) {
            List<String> argv = readRequest(c);
            String out;
            boolean ok;
            try {
                out = stack.control(argv);
                ok = true;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                out = "interrupted";
                ok = false;
            } catch (Exception e) {
                out = e.getMessage() == null ? e.toString() : e.getMessage();
                ok = false;
            }
            if (!out.isEmpty() && !out.endsWith("\n")) {
                out += "\n";
            }
            ByteBuffer b = ByteBuffer.wrap(((ok ? "0" : "1") + "\n" + out).getBytes(StandardCharsets.UTF_8));
            while (b.hasRemaining()) {
                c.write(b);
            }
        } catch (IOException e) {
            // The client went away; nothing to answer.
        }
    }

    private static List<String> readRequest(SocketChannel c) throws IOException {
        ByteArrayOutputStream all = new ByteArrayOutputStream();
        ByteBuffer b = ByteBuffer.allocate(8192);
        while (c.read(b) >= 0) {
            b.flip();
            all.write(b.array(), 0, b.limit());
            b.clear();
            if (all.size() > MAX_REQUEST) {
                throw new IOException("request too large");
            }
        }
        List<String> argv = new ArrayList<>();
        byte[] bytes = all.toByteArray();
        int start = 0;
        for (int i = 0; i < bytes.length; i++) {
            if (bytes[i] == 0) {
                argv.add(new String(bytes, start, i - start, StandardCharsets.UTF_8));
                start = i + 1;
            }
        }
        return argv;
    }

    /** Stops listening and removes the socket file; requests being served finish. */
    @Override
    public void close() throws IOException {
        server.close();
        try {
            acceptor.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        Files.deleteIfExists(path);
    }

    /** The answer to one request: whether it was done, and the text to show. */
    public record Reply(boolean ok, String text) {
    }

    /** Sends one request to the control socket at {@code socket} (the client side). */
    public static Reply send(Path socket, List<String> argv) throws IOException {
        try (SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            c.connect(UnixDomainSocketAddress.of(socket));
            ByteArrayOutputStream req = new ByteArrayOutputStream();
            for (String a : argv) {
                req.write(a.getBytes(StandardCharsets.UTF_8));
                req.write(0);
            }
            ByteBuffer b = ByteBuffer.wrap(req.toByteArray());
            while (b.hasRemaining()) {
                c.write(b);
            }
            c.shutdownOutput();
            ByteArrayOutputStream resp = new ByteArrayOutputStream();
            ByteBuffer r = ByteBuffer.allocate(8192);
            while (c.read(r) >= 0) {
                r.flip();
                resp.write(r.array(), 0, r.limit());
                r.clear();
            }
            String s = resp.toString(StandardCharsets.UTF_8);
            int nl = s.indexOf('\n');
            if (nl < 0) {
                throw new IOException("control socket " + socket + " gave no answer");
            }
            return new Reply(s.substring(0, nl).equals("0"), s.substring(nl + 1));
        }
    }
}
