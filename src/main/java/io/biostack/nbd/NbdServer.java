package io.biostack.nbd;

import io.biostack.block.Bio;
import io.biostack.block.BioPool;
import io.biostack.block.BlockDevice;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * An NBD server (doc/proto.md of NetworkBlockDevice/nbd): exports named {@link BlockDevice}s over
 * TCP and/or a unix socket, fixed newstyle handshake, structured replies, {@code base:allocation}
 * block status, many requests in flight per connection answered out of order, and several
 * connections per export ({@code NBD_FLAG_CAN_MULTI_CONN}: a FLUSH is a device-wide flush).
 *
 * <h2>Threads</h2>
 * One accept thread per listening socket. Per connection one reader thread (handshake, then
 * request parsing and bio submission) and one writer thread (replies, see {@link ReplyWriter}).
 * Bios complete on whatever thread the device uses (an io_uring worker, or the reader itself for
 * a ramdisk); completion only queues the reply. No thread per request.
 *
 * <h2>Ownership</h2>
 * The server does not own the devices; the caller closes them after {@link #close()}, which
 * stops accepting, lets each connection answer what is in flight, flushes every writable device
 * and removes the unix socket file.
 */
public final class NbdServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger("io.biostack.nbd");
    /** Default maximum payload: 32 MiB, the size every client may assume (section "Size constraints"). */
    public static final int DEFAULT_MAX_PAYLOAD = 32 << 20;

    private final Map<String, NbdExport> exports;
    private final NbdExport defaultExport;
    private final int maxConnections;
    private final int maxRequests;
    private final long maxInflightBytes;
    private final int maxPayload;
    private final int holeProbeMin;
    private final Duration handshakeTimeout;
    private final Duration drainTimeout;

    private final BioPool bios = new BioPool(1024);
    private final BufferPool buffers;
    private final MemorySegment zeros = Arena.ofAuto().allocate(1 << 20, 4096);
    private final Map<BlockDevice, Consumer<Bio>> submitters = new IdentityHashMap<>();

    private final List<ServerSocketChannel> listeners = new ArrayList<>();
    private final List<Thread> acceptThreads = new ArrayList<>();
    private final Set<NbdConnection> connections = ConcurrentHashMap.newKeySet();
    private final Map<NbdConnection, ScheduledFuture<?>> handshakeTimers = new ConcurrentHashMap<>();
    private final ScheduledThreadPoolExecutor timer;
    private final AtomicInteger nextId = new AtomicInteger();
    private final AtomicBoolean closing = new AtomicBoolean();
    private final CountDownLatch closed = new CountDownLatch(1);
    private InetSocketAddress tcpAddress;
    private Path unixPath;

    private NbdServer(Builder b) {
        this.exports = new LinkedHashMap<>(b.exports);
        this.defaultExport = b.defaultExport == null ? null : exports.get(b.defaultExport);
        this.maxConnections = b.maxConnections;
        this.maxRequests = b.maxRequests;
        this.maxInflightBytes = b.maxInflightBytes;
        this.maxPayload = b.maxPayload;
        this.holeProbeMin = b.holeProbeMin;
        this.handshakeTimeout = b.handshakeTimeout;
        this.drainTimeout = b.drainTimeout;
        this.buffers = new BufferPool(maxPayload, 16L << 20);
        for (NbdExport e : exports.values()) {
            BlockDevice d = e.device();
            submitters.computeIfAbsent(d, dev -> dev::submit);
        }
        this.timer = new ScheduledThreadPoolExecutor(1, r -> Thread.ofPlatform().name("nbd-timer").daemon(true).unstarted(r));
        this.timer.setRemoveOnCancelPolicy(true);
    }

    /** A builder: add exports and at least one socket, then {@link Builder#start()}. */
    public static Builder builder() {
        return new Builder();
    }

    // ---- listening -------------------------------------------------------------------------

    private void listenTcp(InetSocketAddress addr) throws IOException {
        ServerSocketChannel s = ServerSocketChannel.open(StandardProtocolFamily.INET);
        try {
            s.setOption(StandardSocketOptions.SO_REUSEADDR, true);
            s.bind(addr, 128);
        } catch (BindException e) {
            s.close();
            throw new IOException("can't listen on " + addr.getHostString() + ":" + addr.getPort() + ": "
                    + (e.getMessage() != null && e.getMessage().contains("in use")
                    ? "address already in use (another NBD server? choose another with --listen HOST:PORT)"
                    : e.getMessage()), e);
        }
        tcpAddress = (InetSocketAddress) s.getLocalAddress();
        startAccepting(s, "tcp");
    }

    private void listenUnix(Path path) throws IOException {
        if (Files.exists(path, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            if (!isSocket(path)) {
                throw new IOException("can't listen on " + path + ": a file that is not a socket is in the way");
            }
            if (socketAnswers(path)) {
                throw new IOException("can't listen on " + path + ": socket already in use by another server");
            }
            Files.delete(path); // a stale socket left by a server that died
        }
        ServerSocketChannel s = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            s.bind(UnixDomainSocketAddress.of(path), 128);
        } catch (IOException e) {
            s.close();
            throw new IOException("can't listen on " + path + ": " + e.getMessage(), e);
        }
        unixPath = path;
        startAccepting(s, "unix");
    }

    private static boolean isSocket(Path p) {
        try {
            Object mode = Files.getAttribute(p, "unix:mode", java.nio.file.LinkOption.NOFOLLOW_LINKS);
            return (((Integer) mode) & 0170000) == 0140000; // S_IFSOCK
        } catch (IOException | UnsupportedOperationException | IllegalArgumentException e) {
            return false;
        }
    }

    private static boolean socketAnswers(Path p) {
        try (SocketChannel c = SocketChannel.open(UnixDomainSocketAddress.of(p))) {
            return c.isConnected();
        } catch (IOException e) {
            return false;
        }
    }

    private void startAccepting(ServerSocketChannel s, String kind) {
        listeners.add(s);
        Thread t = Thread.ofPlatform().name("nbd-accept-" + kind).daemon(true).unstarted(() -> acceptLoop(s, kind));
        acceptThreads.add(t);
        t.start();
    }

    private void acceptLoop(ServerSocketChannel s, String kind) {
        while (!closing.get()) {
            SocketChannel c;
            try {
                c = s.accept();
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                if (closing.get()) {
                    return;
                }
                LOG.log(Level.WARNING, "nbd: accept failed: {0}", e.toString());
                sleepQuietly(50); // e.g. EMFILE: don't spin
                continue;
            }
            accepted(c, kind);
        }
    }

    private void accepted(SocketChannel c, String kind) {
        String peer;
        try {
            if (kind.equals("tcp")) {
                c.setOption(StandardSocketOptions.TCP_NODELAY, true);
            }
            peer = kind.equals("tcp") ? String.valueOf(c.getRemoteAddress()) : "unix socket";
        } catch (IOException e) {
            closeQuietly(c);
            return;
        }
        if (connections.size() >= maxConnections || closing.get()) {
            LOG.log(Level.INFO, "nbd: refusing a connection from {0}: {1} connections already", peer, connections.size());
            closeQuietly(c);
            return;
        }
        NbdConnection conn = new NbdConnection(this, c, nextId.incrementAndGet(), peer);
        connections.add(conn);
        handshakeTimers.put(conn, timer.schedule(() -> {
            if (!conn.inTransmission()) {
                LOG.log(Level.DEBUG, "nbd connection {0}: handshake not done in {1}, closing", conn.id, handshakeTimeout);
                conn.closeChannel();
            }
        }, handshakeTimeout.toMillis(), TimeUnit.MILLISECONDS));
        conn.start();
    }

    // ---- for connections ---------------------------------------------------------------------

    /** The export for a name the client gave: the empty name is the default export. */
    NbdExport export(String name) {
        NbdExport e = exports.get(name);
        if (e == null && name.isEmpty()) {
            e = defaultExport;
        }
        return e;
    }

    Collection<NbdExport> exports() {
        return exports.values();
    }

    boolean isClosing() {
        return closing.get();
    }

    int maxPayload() {
        return maxPayload;
    }

    int maxRequests() {
        return maxRequests;
    }

    long maxInflightBytes() {
        return maxInflightBytes;
    }

    int holeProbeMin() {
        return holeProbeMin;
    }

    long drainTimeoutNanos() {
        return drainTimeout.toNanos();
    }

    BioPool bios() {
        return bios;
    }

    BufferPool buffers() {
        return buffers;
    }

    MemorySegment zeros() {
        return zeros;
    }

    Consumer<Bio> submitter(BlockDevice d) {
        return submitters.get(d);
    }

    void handshakeDone(NbdConnection c) {
        ScheduledFuture<?> f = handshakeTimers.remove(c);
        if (f != null) {
            f.cancel(false);
        }
    }

    void connectionEnded(NbdConnection c) {
        handshakeDone(c);
        connections.remove(c);
    }

    // ---- public face -----------------------------------------------------------------------

    /** The TCP address actually bound (the port is real when 0 was asked for), or null. */
    public InetSocketAddress tcpAddress() {
        return tcpAddress;
    }

    /** The unix socket path, or null. */
    public Path unixSocket() {
        return unixPath;
    }

    /** Connections open now (in handshake or transmission). */
    public int connectionCount() {
        return connections.size();
    }

    /** Waits until {@link #close()} has finished. */
    public void awaitClosed() throws InterruptedException {
        closed.await();
    }

    /**
     * Stops accepting, lets every connection answer its requests in flight (within the drain
     * timeout, then drops them), flushes every writable device and removes the socket file.
     * Idempotent; safe from a shutdown hook.
     */
    @Override
    public void close() {
        if (!closing.compareAndSet(false, true)) {
            try {
                closed.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return;
        }
        try {
            for (ServerSocketChannel s : listeners) {
                closeQuietly(s);
            }
            for (Thread t : acceptThreads) {
                joinQuietly(t, 1000);
            }
            List<NbdConnection> open = new ArrayList<>(connections);
            for (NbdConnection c : open) {
                c.shutdown();
            }
            long deadline = System.nanoTime() + drainTimeout.toNanos() + TimeUnit.SECONDS.toNanos(1);
            for (NbdConnection c : open) {
                long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
                joinQuietly(c, Math.max(1, left));
                if (c.isAlive()) {
                    c.closeChannel();
                }
            }
            flushDevices();
            if (unixPath != null) {
                try {
                    Files.deleteIfExists(unixPath);
                } catch (IOException e) {
                    LOG.log(Level.WARNING, "nbd: can't remove {0}: {1}", unixPath, e.toString());
                }
            }
        } finally {
            timer.shutdownNow();
            closed.countDown();
        }
    }

    private void flushDevices() {
        Set<BlockDevice> seen = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
        for (NbdExport e : exports.values()) {
            if (e.readOnly() || !seen.add(e.device())) {
                continue;
            }
            try {
                e.device().flush().get(30, TimeUnit.SECONDS);
            } catch (Exception ex) {
                LOG.log(Level.WARNING, "nbd: flush of {0} at shutdown failed: {1}", e.device().name(), ex.toString());
            }
        }
    }

    private static void joinQuietly(Thread t, long millis) {
        try {
            t.join(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void joinQuietly(NbdConnection c, long millis) {
        try {
            c.join(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void closeQuietly(java.io.Closeable c) {
        try {
            c.close();
        } catch (IOException e) {
            // nothing more to do
        }
    }

    private static void sleepQuietly(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Configures and starts a server. */
    public static final class Builder {
        private final Map<String, NbdExport> exports = new LinkedHashMap<>();
        private String defaultExport;
        private InetSocketAddress tcp;
        private Path unix;
        private int maxConnections = 256;
        private int maxRequests = 256;
        private long maxInflightBytes = 128L << 20;
        private int maxPayload = DEFAULT_MAX_PAYLOAD;
        private int holeProbeMin = 64 * 1024;
        private Duration handshakeTimeout = Duration.ofSeconds(30);
        private Duration drainTimeout = Duration.ofSeconds(10);

        /** Adds an export; the first one added is also the default export (the empty name). */
        public Builder export(NbdExport e) {
            if (exports.putIfAbsent(e.name(), e) != null) {
                throw new IllegalArgumentException("two exports named '" + e.name() + "'");
            }
            if (defaultExport == null) {
                defaultExport = e.name();
            }
            return this;
        }

        /** Adds a writable (unless the device is read-only) export of {@code device}. */
        public Builder export(String name, BlockDevice device) {
            return export(NbdExport.of(name, device));
        }

        /** Adds every device of {@code devices} under its key. */
        public Builder exports(Map<String, BlockDevice> devices) {
            devices.forEach(this::export);
            return this;
        }

        /** Which export the empty name selects (by default the first added). */
        public Builder defaultExport(String name) {
            this.defaultExport = name;
            return this;
        }

        /** Listens on TCP; port 0 picks a free port (see {@link NbdServer#tcpAddress()}). */
        public Builder tcp(String host, int port) {
            this.tcp = new InetSocketAddress(host, port);
            return this;
        }

        /** Listens on a unix socket at {@code path} (removed again by {@link NbdServer#close()}). */
        public Builder unixSocket(Path path) {
            this.unix = path;
            return this;
        }

        /** Most connections at once; more are refused. */
        public Builder maxConnections(int n) {
            this.maxConnections = n;
            return this;
        }

        /** Most requests in flight on one connection before the server stops reading it. */
        public Builder maxRequestsPerConnection(int n) {
            this.maxRequests = n;
            return this;
        }

        /** Most payload bytes in flight on one connection (at least the maximum payload). */
        public Builder maxInflightBytesPerConnection(long n) {
            this.maxInflightBytes = n;
            return this;
        }

        /** The maximum payload advertised in NBD_INFO_BLOCK_SIZE (at least 1 MiB). */
        public Builder maxPayload(int n) {
            this.maxPayload = n;
            return this;
        }

        /**
         * Structured READs at least this long are split by holes (device.extentAt) into
         * OFFSET_DATA and OFFSET_HOLE chunks; shorter ones are sent as data, as one lseek per
         * small random read costs more than it saves.
         */
        public Builder holeProbeMin(int n) {
            this.holeProbeMin = n;
            return this;
        }

        /** A connection that has not finished its handshake by then is closed. */
        public Builder handshakeTimeout(Duration d) {
            this.handshakeTimeout = d;
            return this;
        }

        /** How long close() waits for requests in flight before dropping them. */
        public Builder drainTimeout(Duration d) {
            this.drainTimeout = d;
            return this;
        }

        /** Binds the sockets and starts serving; throws with a clear message when a socket is taken. */
        public NbdServer start() throws IOException {
            if (exports.isEmpty()) {
                throw new IllegalArgumentException("nothing to export");
            }
            if (tcp == null && unix == null) {
                throw new IllegalArgumentException("give a TCP address, a unix socket, or both");
            }
            if (maxPayload < (1 << 20) || maxInflightBytes < maxPayload) {
                throw new IllegalArgumentException("max payload must be >= 1 MiB and <= the in-flight budget");
            }
            Objects.requireNonNull(exports.get(defaultExport), "default export");
            NbdServer s = new NbdServer(this);
            try {
                if (unix != null) {
                    s.listenUnix(unix);
                }
                if (tcp != null) {
                    s.listenTcp(tcp);
                }
            } catch (IOException | RuntimeException e) {
                s.close();
                throw e;
            }
            return s;
        }
    }
}
