package io.biostack.stack;

import io.biostack.block.stats.DeviceSnapshot;
import io.biostack.block.stats.DeviceStats;
import io.biostack.sys.SocketFiles;

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
 * Requests are {@link Stack#control}'s, plus {@code stats [NAME]}: one line per device (or for
 * the one named), {@link DeviceSnapshot#toWire}, which {@code biostack dm stats} turns into
 * iostat columns.
 *
 * <p>Start with {@link #start(Stack, Path)} (see {@link Stack} for the whole set-up); a stale
 * socket file is replaced (anything else there is refused) and the socket is removed on
 * {@link #close()}. Each connection is served on a
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

    /**
     * Listens on the unix socket {@code socket} for control requests on {@code stack}; the socket
     * is {@code 0600} whatever the umask (only its owner may drive the stack).
     *
     * @param stack  the stack the requests work on, owned by the caller
     * @param socket where the socket is made (a stale socket there is replaced; any other file, or
     *               a socket a server still listens on, is refused)
     * @return the server; close it before the stack
     * @throws IOException when the socket can't be made
     */
    public static ControlServer start(Stack stack, Path socket) throws IOException {
        return start(stack, socket, SocketFiles.DEFAULT_MODE);
    }

    /**
     * As {@link #start(Stack, Path)}, with the socket's file mode.
     *
     * @param stack  the stack the requests work on, owned by the caller
     * @param socket where the socket is made (a stale socket there is replaced; any other file, or
     *               a socket a server still listens on, is refused)
     * @param mode   the socket's permission bits, 0 to 0777, whatever the umask (0660: the group too)
     * @return the server; close it before the stack
     * @throws IOException when the socket can't be made
     */
    public static ControlServer start(Stack stack, Path socket, int mode) throws IOException {
        SocketFiles.removeStale(socket, "can't make the control socket " + socket);
        ServerSocketChannel s = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            SocketFiles.bind(socket, mode, at -> s.bind(UnixDomainSocketAddress.of(at)));
        } catch (IOException | RuntimeException e) {
            s.close();
            throw e;
        }
        return new ControlServer(stack, socket, s);
    }

    /**
     * The unix socket path clients connect to.
     *
     * @return the path the server bound, as given to {@code start}
     */
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
            String out;
            boolean ok;
            try {
                List<String> argv = readRequest(c);
                out = !argv.isEmpty() && argv.getFirst().equals("stats") ? stats(stack, argv) : stack.control(argv);
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

    /** {@code stats [NAME]}: the wire lines of every device's snapshot, or of NAME's. */
    static String stats(Stack stack, List<String> argv) {
        if (argv.size() > 2) {
            throw new IllegalArgumentException("stats takes at most one device name");
        }
        List<DeviceStats> all = stack.stats();
        if (all.isEmpty()) {
            throw new IllegalArgumentException("statistics are off in this biostack (-Dbiostack.stats=false)");
        }
        StringBuilder sb = new StringBuilder();
        boolean found = false;
        for (DeviceStats d : all) {
            if (argv.size() == 2 && !d.name().equals(argv.get(1))) {
                continue;
            }
            DeviceSnapshot snap = d.snapshot();
            sb.append(snap.toWire()).append('\n');
            found = true;
        }
        if (!found) {
            stack.device(argv.get(1)); // throws naming the devices there are
        }
        return sb.toString();
    }

    private static List<String> readRequest(SocketChannel c) throws IOException {
        ByteArrayOutputStream all = new ByteArrayOutputStream();
        ByteBuffer b = ByteBuffer.allocate(8192);
        boolean tooLarge = false;
        while (c.read(b) >= 0) {
            b.flip();
            tooLarge |= all.size() + b.limit() > MAX_REQUEST;
            if (!tooLarge) {
                all.write(b.array(), 0, b.limit());
            }
            b.clear();
        }
        if (tooLarge) {
            // Read to the end and answer: closed under a client still writing, the socket gave it
            // a broken pipe, which it took for a server that is not there.
            throw new IllegalArgumentException("request of more than " + MAX_REQUEST + " bytes refused");
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

    /**
     * The answer to one request: whether it was done, and the text to show.
     *
     * @param ok true when the request was done, false when it was refused (then {@code text} says
     *         why)
     * @param text what to print: the answer's lines, or the error message
     */
    public record Reply(boolean ok, String text) {
    }

    /**
     * Sends one request to the control socket at {@code socket} (the client side).
     *
     * @param socket the path of a running server's control socket
     * @param argv the request's words, as {@code biostack dm} takes them after
     *         {@code --control PATH}
     * @return the server's reply
     * @throws IOException when the socket can't be reached or closes without an answer
     */
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
