package io.biostack.nbd;

import io.biostack.block.Bio;
import io.biostack.block.BioPool;
import io.biostack.block.BlockDevice;
import io.biostack.block.StatusContext;
import io.biostack.nbd.tls.TlsCredentials;
import io.biostack.nbd.tls.TlsMode;
import io.biostack.sys.Errno;
import io.biostack.sys.ErrnoException;
import io.biostack.sys.Libc;
import io.biostack.sys.SocketFiles;
import io.biostack.sys.Sockets;
import io.biostack.uring.IoUring;
import io.biostack.uring.IoUringConstants;
import io.biostack.uring.Probe;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnixDomainSocketAddress;
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
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.CountDownLatch;
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
 * <h2>Threads: reactors</h2>
 * N reactor threads ({@link Builder#threads}, default the available processors), each running
 * many connections; no thread per connection or per request (DESIGN.md, "Threads and the ring").
 * Where io_uring has the socket operations, each reactor owns one ring that does its connections'
 * socket I/O and, through the file engine's per-thread rings, the file I/O of their bios: a
 * request is received, parsed, submitted, completed and answered on one thread. Elsewhere (or
 * with {@code -Dbiostack.engine=threads}) the reactors are java.nio selectors. Which one runs is
 * probed at start-up and said in one log line. The first reactor accepts and hands connections
 * out round-robin.
 *
 * <h2>No lockout</h2>
 * Connections still in the handshake have their own budget ({@link Builder#handshakeBudget}) and
 * timeout ({@link Builder#handshakeTimeout}, default 10 s, counted from the connect, so a client
 * that trickles a byte a second is treated like an idle one); when the budget is full the oldest
 * unfinished handshake is dropped, never the newcomer. {@link Builder#maxConnections} counts the
 * clients in transmission.
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
    /** The prefix of qemu's dirty bitmap contexts (qemu's docs/interop/nbd.txt, "qemu:dirty-bitmap:"). */
    static final String DIRTY_BITMAP = "qemu:dirty-bitmap:";

    /** Copy-on-write: {@link #addExport}/{@link #removeExport} replace the maps, readers never lock. */
    private volatile Map<String, NbdExport> exports;
    /** Counters per export, by export name; read by /metrics, bumped by connections. */
    private volatile Map<String, ExportStats> exportStats = new LinkedHashMap<>();
    private final NbdExport defaultExport;
    private final int maxConnections;
    private final int handshakeBudget;
    private final int maxRequests;
    private final int sharedReceiveBuffers;
    private final long pollNanos;
    private final long maxInflightBytes;
    private final int maxPayload;
    private final int holeProbeMin;
    private final Duration handshakeTimeout;
    private final Duration drainTimeout;
    private final TlsMode tlsMode;
    private final TlsCredentials tlsCredentials;
    /** The dirty bitmaps offered (qemu-nbd's -B), or null to offer every bitmap a device answers. */
    private final List<String> bitmaps;
    /** The exports given to the builder: those {@link #bitmaps} filters (by identity). */
    private final java.util.Set<NbdExport> builtExports;

    private final BioPool bios = new BioPool(1024);
    private final MemorySegment zeros = Arena.ofAuto().allocate(1 << 20, 4096);
    private volatile Map<BlockDevice, Consumer<Bio>> submitters = new IdentityHashMap<>();

    private final Reactor[] reactors;
    private final boolean uring;
    private final String loopDescription;
    private int nextReactor;
    private final List<ServerSocketChannel> nioListeners = new ArrayList<>();
    private final AtomicInteger open = new AtomicInteger();
    /** Sockets not yet closed by their transport (lingering closes included). */
    private final AtomicInteger sockets = new AtomicInteger();
    private final AtomicInteger handshakes = new AtomicInteger();
    private final AtomicInteger transmissions = new AtomicInteger();
    /** Connections in the handshake, oldest first (to drop the oldest when the budget is full). */
    private final ConcurrentLinkedDeque<NbdConnection> handshakeOrder = new ConcurrentLinkedDeque<>();
    private final AtomicInteger nextId = new AtomicInteger();
    private final AtomicBoolean closing = new AtomicBoolean();
    private final CountDownLatch closed = new CountDownLatch(1);
    private final CountDownLatch listenersClosed = new CountDownLatch(1);
    private InetSocketAddress tcpAddress;
    private Path unixPath;

    private NbdServer(Builder b) {
        this.exports = new LinkedHashMap<>(b.exports);
        this.defaultExport = b.defaultExport == null ? null : exports.get(b.defaultExport);
        this.maxConnections = b.maxConnections;
        this.handshakeBudget = b.handshakeBudget;
        this.maxRequests = b.maxRequests;
        this.maxInflightBytes = b.maxInflightBytes;
        this.maxPayload = b.maxPayload;
        this.holeProbeMin = b.holeProbeMin;
        this.sharedReceiveBuffers = b.sharedReceiveBuffers;
        this.pollNanos = b.pollMicros * 1000L;
        this.handshakeTimeout = b.handshakeTimeout;
        this.drainTimeout = b.drainTimeout;
        this.tlsMode = b.tlsMode;
        this.tlsCredentials = b.tlsCredentials;
        this.bitmaps = b.bitmaps;
        this.builtExports = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
        this.builtExports.addAll(b.exports.values());
        for (NbdExport e : exports.values()) {
            BlockDevice d = e.device();
            submitters.computeIfAbsent(d, dev -> dev::submit);
            exportStats.put(e.name(), b.exportStats.getOrDefault(e.name(), new ExportStats(e.name())));
        }
        Optional<String> noUring = uringMissing();
        this.uring = noUring.isEmpty();
        int n = b.threads > 0 ? b.threads : Runtime.getRuntime().availableProcessors();
        this.reactors = new Reactor[n];
        for (int i = 0; i < n; i++) {
            reactors[i] = uring ? new UringReactor(this, "nbd-reactor-" + i) : new NioReactor(this, "nbd-reactor-" + i);
        }
        this.loopDescription = noUring.map(why -> "java.nio reactors (" + why + ")").orElse(null);
    }

    /** Why the io_uring reactor can't run here, or empty when it can. */
    private static Optional<String> uringMissing() {
        String forced = System.getProperty("biostack.engine", "auto");
        if (forced.equals("threads")) {
            return Optional.of("forced by -Dbiostack.engine=threads");
        }
        if (!IoUring.isAvailable()) {
            return Optional.of("io_uring unavailable: " + IoUring.unavailableReason().orElse("unknown"));
        }
        try (IoUring r = IoUring.open(4, 0, 0)) {
            Probe p = r.probe();
            int[] need = {IoUringConstants.IORING_OP_RECV, IoUringConstants.IORING_OP_SENDMSG,
                IoUringConstants.IORING_OP_ACCEPT, IoUringConstants.IORING_OP_ASYNC_CANCEL};
            for (int op : need) {
                if (!p.supports(op)) {
                    return Optional.of("io_uring lacks socket op " + op);
                }
            }
            // Multishot ACCEPT (5.19) has no opcode of its own; SEND_ZC (6.0) is newer still.
            if (!p.supports(IoUringConstants.IORING_OP_SEND_ZC)) {
                return Optional.of("io_uring older than 6.0 (no multishot accept)");
            }
        } catch (ErrnoException e) {
            return Optional.of("io_uring probe failed: " + e.getMessage());
        }
        return Optional.empty();
    }

    /**
     * A builder: add exports and at least one socket, then {@link Builder#start()}.
     *
     * @return a builder with nothing set
     */
    public static Builder builder() {
        return new Builder();
    }

    // ---- listening -------------------------------------------------------------------------

    private void listenTcp(InetSocketAddress addr) throws IOException {
        if (uring) {
            int fd = Sockets.socket(Sockets.family(addr));
            if (fd < 0) {
                throw new IOException("can't listen on " + addr + ": socket: " + Errno.name(-fd));
            }
            Sockets.setIntOption(fd, Sockets.SOL_SOCKET, Sockets.SO_REUSEADDR, 1);
            int r = Sockets.bindInet(fd, addr);
            if (r == 0) {
                r = Sockets.listen(fd, 128);
            }
            if (r < 0) {
                Libc.close(fd);
                throw new IOException("can't listen on " + addr.getHostString() + ":" + addr.getPort() + ": "
                        + (r == -Errno.EADDRINUSE
                        ? "address already in use (another NBD server? choose another with --listen HOST:PORT)"
                        : Errno.name(-r)));
            }
            tcpAddress = Sockets.localAddress(fd);
            listenUring(fd, "tcp");
            return;
        }
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
        listenNio(s, "tcp");
    }

    private void listenUnix(Path path, int mode) throws IOException {
        SocketFiles.removeStale(path, "can't listen on " + path);
        if (uring) {
            int fd = Sockets.socket(Sockets.AF_UNIX);
            int r = fd < 0 ? fd : bindUnix(fd, path, mode);
            if (r == 0) {
                r = Sockets.listen(fd, 128);
            }
            if (r < 0) {
                if (fd >= 0) {
                    Libc.close(fd);
                }
                throw new IOException("can't listen on " + path + ": " + Errno.name(-r));
            }
            unixPath = path;
            listenUring(fd, "unix");
            return;
        }
        ServerSocketChannel s = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            SocketFiles.bind(path, mode, at -> s.bind(UnixDomainSocketAddress.of(at), 128));
        } catch (IOException e) {
            s.close();
            throw new IOException("can't listen on " + path + ": " + e.getMessage(), e);
        }
        unixPath = path;
        listenNio(s, "unix");
    }

    /** bind(2) of {@code fd} to {@code path} with file mode {@code mode} ({@link SocketFiles}): 0 or -errno. */
    private static int bindUnix(int fd, Path path, int mode) {
        try {
            SocketFiles.bind(path, mode, at -> {
                int r = Sockets.bindUnix(fd, at);
                if (r < 0) {
                    throw new ErrnoException("bind", -r);
                }
            });
            return 0;
        } catch (ErrnoException e) {
            return -e.errno();
        } catch (IOException e) {
            return -Errno.EACCES;
        }
    }

    private void listenUring(int fd, String kind) {
        UringReactor r = (UringReactor) reactors[0];
        r.execute(() -> r.listen(fd, kind));
    }

    private void listenNio(ServerSocketChannel s, String kind) {
        nioListeners.add(s);
        NioReactor r = (NioReactor) reactors[0];
        r.execute(() -> {
            try {
                r.listen(s, kind);
            } catch (IOException e) {
                LOG.log(Level.WARNING, "nbd: can't accept on {0}: {1}", kind, e.toString());
            }
        });
    }

    // ---- accepting (on the first reactor) ------------------------------------------------------

    /** io_uring accepted {@code fd}: admit it and hand it to a reactor. */
    void accepted(int fd, String kind) {
        String peer = "unix socket";
        if (kind.equals("tcp")) {
            Sockets.setIntOption(fd, Sockets.IPPROTO_TCP, Sockets.TCP_NODELAY, 1);
            peer = String.valueOf(Sockets.peerAddress(fd));
        }
        if (!admit(peer)) {
            Libc.close(fd);
            return;
        }
        UringReactor r = (UringReactor) pickReactor();
        NbdConnection c = newConnection(r, peer);
        if (r.inLoop()) {
            r.adoptFd(fd, c);
        } else {
            r.execute(() -> r.adoptFd(fd, c));
        }
    }

    /** java.nio accepted {@code ch}: admit it and hand it to a reactor. */
    void acceptedChannel(SocketChannel ch, String kind) {
        String peer;
        try {
            peer = NioReactor.prepare(ch, kind);
        } catch (IOException e) {
            closeQuietly(ch);
            return;
        }
        if (!admit(peer)) {
            closeQuietly(ch);
            return;
        }
        NioReactor r = (NioReactor) pickReactor();
        NbdConnection c = newConnection(r, peer);
        if (r.inLoop()) {
            r.adoptChannel(ch, c);
        } else {
            r.execute(() -> r.adoptChannel(ch, c));
        }
    }

    /**
     * False to refuse a newcomer (only while closing); drops the oldest handshake when that budget
     * is full. {@code --max-connections} is applied when a client asks to enter transmission.
     */
    private boolean admit(String peer) {
        if (closing.get()) {
            return false;
        }
        while (handshakes.get() >= handshakeBudget) {
            NbdConnection old = handshakeOrder.pollFirst();
            if (old == null) {
                break;
            }
            if (old.handshakeSlot.compareAndSet(true, false)) {
                handshakes.decrementAndGet();
                LOG.log(Level.DEBUG, "nbd: {0} handshakes open, dropping the oldest, {1}", handshakeBudget, old);
                old.reactor.execute(() -> {
                    if (old.phase == NbdConnection.HANDSHAKE) {
                        old.close("dropped: the oldest of " + handshakeBudget + " unfinished handshakes");
                        old.reactor.service(old);
                    }
                });
            }
        }
        return true;
    }

    /**
     * The reactor for a new connection: the one with the fewest connections, ties going round
     * robin. Plain round robin put two of one client's multi-conn connections on one reactor
     * whenever another client had come and gone between them, leaving a core idle (issue 19).
     * Called by the one thread that accepts (reactor 0's loop, or the java.nio acceptor).
     */
    private Reactor pickReactor() {
        int n = reactors.length;
        int best = nextReactor;
        int bestCount = reactors[best].assigned.get();
        for (int k = 1; k < n && bestCount > 0; k++) {
            int i = (nextReactor + k) % n;
            int c = reactors[i].assigned.get();
            if (c < bestCount) {
                best = i;
                bestCount = c;
            }
        }
        nextReactor = (best + 1) % n;
        Reactor r = reactors[best];
        r.assigned.incrementAndGet();
        return r;
    }

    /** Connections each reactor holds now (handed to it and not yet closed), for tests. */
    int[] connectionsPerReactor() {
        int[] a = new int[reactors.length];
        for (int i = 0; i < a.length; i++) {
            a[i] = reactors[i].assigned.get();
        }
        return a;
    }

    /**
     * Payload buffers taken from the reactors' pools and not given back, for tests: 0 once every
     * connection is gone, or a request's buffer was lost. Asks each reactor on its own thread.
     */
    long payloadBuffersOut() throws Exception {
        long n = 0;
        for (Reactor r : reactors) {
            java.util.concurrent.CompletableFuture<Long> f = new java.util.concurrent.CompletableFuture<>();
            r.execute(() -> {
                BufferPool p = r.buffers();
                f.complete(p.made() - p.dropped() - p.idle());
            });
            n += f.get(5, java.util.concurrent.TimeUnit.SECONDS);
        }
        return n;
    }

    private NbdConnection newConnection(Reactor r, String peer) {
        NbdConnection c = new NbdConnection(this, r, nextId.incrementAndGet(), peer);
        open.incrementAndGet();
        sockets.incrementAndGet();
        handshakes.incrementAndGet();
        handshakeOrder.addLast(c);
        return c;
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

    /**
     * The metadata contexts export {@code e} offers beyond {@code base:allocation}: what its device
     * answers now ({@link BlockDevice#statusContexts()}), its dirty bitmaps only those named by
     * {@link Builder#bitmaps} when that was given (for the exports given to the builder; one added later, a
     * backup view, offers its own). Cold path (option haggling).
     */
    List<StatusContext> contextsOf(NbdExport e) {
        List<StatusContext> all = e.device().statusContexts();
        if (bitmaps == null || !builtExports.contains(e)) {
            // -B names bitmaps of the devices it was given: an export added later (a backup
            // view) offers its own bitmap, which -B could not name
            return all;
        }
        List<StatusContext> kept = new ArrayList<>();
        for (StatusContext c : all) {
            String n = c.name();
            if (!n.startsWith(DIRTY_BITMAP) || bitmaps.contains(n.substring(DIRTY_BITMAP.length()))) {
                kept.add(c);
            }
        }
        return kept;
    }

    /** The counters of export {@code e}; connections look them up once, when they enter transmission. */
    ExportStats statsOf(NbdExport e) {
        return exportStats.get(e.name());
    }

    /**
     * Where a refused TLS client is counted: the default export's counters, since TLS comes before
     * the client names an export (doc/proto.md, "TLS support").
     */
    ExportStats refusalStats() {
        return defaultExport == null ? null : exportStats.get(defaultExport.name());
    }

    /**
     * The counters of every export, in the order the exports were added. Any thread.
     *
     * @return the counters, one per export
     */
    public List<ExportStats> exportStats() {
        return List.copyOf(exportStats.values());
    }

    boolean isClosing() {
        return closing.get();
    }

    int maxPayload() {
        return maxPayload;
    }

    TlsMode tlsMode() {
        return tlsMode;
    }

    TlsCredentials tlsCredentials() {
        return tlsCredentials;
    }

    int maxConnections() {
        return maxConnections;
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

    long handshakeTimeoutNanos() {
        return handshakeTimeout.toNanos();
    }

    BioPool bios() {
        return bios;
    }

    MemorySegment zeros() {
        return zeros;
    }

    Consumer<Bio> submitter(BlockDevice d) {
        return submitters.get(d);
    }

    /**
     * The read-modify-writes of each device, made on first use (cold: a connection's start).
     * Weak keys (no device overrides equals): a removed export's device, a backup view's, is not
     * kept once its connections are gone; they hold the gate themselves while they last.
     */
    private final Map<BlockDevice, RmwGate> rmwGates = new java.util.WeakHashMap<>();

    /** The gate that serialises the read-modify-writes of {@code d} over all connections. */
    RmwGate rmwGate(BlockDevice d) {
        synchronized (rmwGates) {
            return rmwGates.computeIfAbsent(d, x -> new RmwGate());
        }
    }

    /**
     * Adds an export while the server runs (a backup view that {@code backup-begin} made).
     *
     * @param e the export; its name must be new
     * @throws IllegalArgumentException when an export has that name already
     */
    public synchronized void addExport(NbdExport e) {
        if (exports.containsKey(e.name())) {
            throw new IllegalArgumentException("an export named '" + e.name() + "' exists already");
        }
        Map<BlockDevice, Consumer<Bio>> subs = new IdentityHashMap<>(submitters);
        subs.computeIfAbsent(e.device(), dev -> dev::submit);
        submitters = subs;
        Map<String, ExportStats> st = new LinkedHashMap<>(exportStats);
        st.put(e.name(), new ExportStats(e.name()));
        exportStats = st;
        Map<String, NbdExport> ex = new LinkedHashMap<>(exports);
        ex.put(e.name(), e);
        exports = ex;
    }

    /**
     * Removes an export: new clients can't open it; connections that did keep their device.
     *
     * @param name the export's name
     * @return true when there was such an export
     */
    public synchronized boolean removeExport(String name) {
        if (!exports.containsKey(name) || (defaultExport != null && defaultExport.name().equals(name))) {
            return false;
        }
        Map<String, NbdExport> ex = new LinkedHashMap<>(exports);
        BlockDevice gone = ex.remove(name).device();
        exports = ex;
        if (ex.values().stream().noneMatch(e -> e.device() == gone)) {
            // Connections still on it keep their own submitter; the server keeps nothing of a
            // device no export offers (a backup view's snapshot tables and frozen bitmap).
            Map<BlockDevice, Consumer<Bio>> subs = new IdentityHashMap<>(submitters);
            subs.remove(gone);
            submitters = subs;
        }
        return true;
    }

    /** The connection left the handshake (finished, failed or dropped). */
    void handshakeEnded(NbdConnection c) {
        if (c.handshakeSlot.compareAndSet(true, false)) {
            handshakes.decrementAndGet();
            handshakeOrder.remove(c);
        }
    }

    /**
     * Takes a transmission slot for a client about to enter transmission; false when
     * {@code maxConnections} clients are already there. Given back by {@link #transmissionEnded}.
     */
    boolean enterTransmission() {
        while (true) {
            int n = transmissions.get();
            if (n >= maxConnections) {
                return false;
            }
            if (transmissions.compareAndSet(n, n + 1)) {
                return true;
            }
        }
    }

    void transmissionEnded(NbdConnection c) {
        transmissions.decrementAndGet();
    }

    /** The connection ended (the protocol is over; the transport may still be closing its socket). */
    void connectionEnded(NbdConnection c) {
        handshakeEnded(c);
        open.decrementAndGet();
    }

    /** The transport closed the connection's socket. */
    void connectionClosed(NbdConnection c) {
        sockets.decrementAndGet();
    }

    void listenersClosed() {
        listenersClosed.countDown();
    }

    // ---- public face -----------------------------------------------------------------------

    /**
     * The TCP address actually bound (the port is real when 0 was asked for), or null.
     *
     * @return the address, or null without TCP
     */
    public InetSocketAddress tcpAddress() {
        return tcpAddress;
    }

    /**
     * The unix socket path, or null.
     *
     * @return the path, or null without a unix socket
     */
    public Path unixSocket() {
        return unixPath;
    }

    /**
     * Connections open now (in handshake or transmission).
     *
     * @return the count
     */
    public int connectionCount() {
        return open.get();
    }

    /**
     * Reactor threads.
     *
     * @return the count
     */
    public int threads() {
        return reactors.length;
    }

    /**
     * File I/Os of the reactors that went down as READ_FIXED/WRITE_FIXED, from payload buffers
     * registered with the reactor's ring (issue 9); 0 on the java.nio reactors. Read it after
     * replies you waited for.
     */
    long pollNanos() {
        return pollNanos;
    }

    int sharedReceiveBuffers() {
        return sharedReceiveBuffers;
    }

    /** Multishot RECVs armed, cancelled, and ended for want of buffers, summed over the reactors (tests). */
    long[] receiveCounts() {
        long[] n = new long[3];
        for (Reactor r : reactors) {
            if (r instanceof UringReactor u) {
                long[] k = u.receiveCounts();
                for (int i = 0; i < 3; i++) {
                    n[i] += k[i];
                }
            }
        }
        return n;
    }

    /** Idle periods ended by polling, and the widest poll window now (ns), over the io_uring reactors (tests). */
    long[] pollCounts() {
        long[] n = new long[2];
        for (Reactor r : reactors) {
            if (r instanceof UringReactor u) {
                long[] k = u.pollCounts();
                n[0] += k[0];
                n[1] = Math.max(n[1], k[1]);
            }
        }
        return n;
    }

    long fixedIos() {
        long n = 0;
        for (Reactor r : reactors) {
            n += r.fixedIos();
        }
        return n;
    }

    /** WRITEs the reactors' file rings held for one submit per pass (the write plug). Tests. */
    long heldWrites() {
        long n = 0;
        for (Reactor r : reactors) {
            n += r.heldWrites();
        }
        return n;
    }

    /** Reactors whose payload buffers are registered with their ring (they made some). */
    int reactorsWithRegisteredBuffers() {
        int n = 0;
        for (Reactor r : reactors) {
            n += r.buffersRegistered() ? 1 : 0;
        }
        return n;
    }

    /**
     * "io_uring reactors (...)" or "java.nio reactors (why)": what this server runs on.
     *
     * @return the description, for one log line
     */
    public String describeLoop() {
        return reactors.length + " " + (loopDescription != null ? loopDescription : reactors[0].describe());
    }

    /**
     * Waits until {@link #close()} has finished.
     *
     * @throws InterruptedException when the waiting thread is interrupted
     */
    public void awaitClosed() throws InterruptedException {
        closed.await();
    }

    private void startReactors() throws IOException {
        for (Reactor r : reactors) {
            r.start();
        }
        String files = io.biostack.file.BackingFile.runningEngines();
        LOG.log(Level.INFO, "nbd server: " + describeLoop() + (files.isEmpty() ? "" : "; file engine: " + files));
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
            stopListening();
            for (Reactor r : reactors) {
                r.execute(r::shutdownConnections);
            }
            long deadline = System.nanoTime() + drainTimeout.toNanos();
            waitForConnections(deadline);
            if (sockets.get() > 0) {
                for (Reactor r : reactors) {
                    r.execute(() -> r.closeAll("drain timeout at shutdown"));
                }
                waitForConnections(System.nanoTime() + TimeUnit.SECONDS.toNanos(1));
            }
            flushDevices();
            for (Reactor r : reactors) {
                r.stop(30_000);
            }
            if (unixPath != null) {
                try {
                    Files.deleteIfExists(unixPath);
                } catch (IOException e) {
                    LOG.log(Level.WARNING, "nbd: can't remove {0}: {1}", unixPath, e.toString());
                }
            }
        } finally {
            closed.countDown();
        }
    }

    private void stopListening() {
        if (uring) {
            UringReactor r = (UringReactor) reactors[0];
            r.execute(r::stopListening);
            try {
                listenersClosed.await(2, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return;
        }
        for (ServerSocketChannel s : nioListeners) {
            closeQuietly(s);
        }
    }

    private void waitForConnections(long deadline) {
        while (sockets.get() > 0 && System.nanoTime() < deadline) {
            try {
                Thread.sleep(5);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
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

    private static void closeQuietly(java.io.Closeable c) {
        try {
            c.close();
        } catch (IOException e) {
            // nothing more to do
        }
    }

    /** Configures and starts a server. */
    public static final class Builder {
        /** Made by {@link NbdServer#builder()}. */
        Builder() {
        }

        private final Map<String, NbdExport> exports = new LinkedHashMap<>();
        private String defaultExport;
        private InetSocketAddress tcp;
        private Path unix;
        private int socketMode = SocketFiles.DEFAULT_MODE;
        private int maxConnections = 256;
        private int handshakeBudget = 256;
        private int threads;
        private int pollMicros = Integer.getInteger("biostack.nbd.pollMicros", 50);
        private int sharedReceiveBuffers = UringReactor.MULTISHOT_WANTED ? UringReactor.SHARED_BUFFERS : 0;
        private int maxRequests = 256;
        private long maxInflightBytes = 128L << 20;
        private int maxPayload = DEFAULT_MAX_PAYLOAD;
        private int holeProbeMin = 64 * 1024;
        private Duration handshakeTimeout = Duration.ofSeconds(10);
        private Duration drainTimeout = Duration.ofSeconds(10);
        private TlsMode tlsMode = TlsMode.OFF;
        private TlsCredentials tlsCredentials;
        private List<String> bitmaps;
        private final Map<String, ExportStats> exportStats = new LinkedHashMap<>();

        /**
         * Counts into {@code stats} for the export of the same name (one the caller already hands
         * to /metrics); exports without one get their own, see {@link NbdServer#exportStats()}.
         *
         * @param stats counters named as an export
         * @return this builder
         */
        public Builder exportStats(ExportStats stats) {
            exportStats.put(stats.name(), stats);
            return this;
        }

        /**
         * Adds an export; the first one added is also the default export (the empty name).
         *
         * @param e the export; its name must be new
         * @return this builder
         */
        public Builder export(NbdExport e) {
            if (exports.putIfAbsent(e.name(), e) != null) {
                throw new IllegalArgumentException("two exports named '" + e.name() + "'");
            }
            if (defaultExport == null) {
                defaultExport = e.name();
            }
            return this;
        }

        /**
         * Adds a writable (unless the device is read-only) export of {@code device}.
         *
         * @param name   the export name
         * @param device what the requests go to
         * @return this builder
         */
        public Builder export(String name, BlockDevice device) {
            return export(NbdExport.of(name, device));
        }

        /**
         * Adds every device of {@code devices} under its key.
         *
         * @param devices devices by export name
         * @return this builder
         */
        public Builder exports(Map<String, BlockDevice> devices) {
            devices.forEach(this::export);
            return this;
        }

        /**
         * Which export the empty name selects (by default the first added).
         *
         * @param name an export added
         * @return this builder
         */
        public Builder defaultExport(String name) {
            this.defaultExport = name;
            return this;
        }

        /**
         * Listens on TCP; port 0 picks a free port (see {@link NbdServer#tcpAddress()}).
         *
         * @param host the address to bind
         * @param port the port, or 0 for a free one
         * @return this builder
         */
        public Builder tcp(String host, int port) {
            this.tcp = new InetSocketAddress(host, port);
            return this;
        }

        /**
         * Listens on a unix socket at {@code path} (removed again by {@link NbdServer#close()}).
         *
         * @param path the socket file
         * @return this builder
         */
        public Builder unixSocket(Path path) {
            this.unix = path;
            return this;
        }

        /**
         * The unix socket's file mode, whatever the umask; {@code 0600} unless set.
         *
         * @param mode permission bits, 0 to 0777 (0660: the group too)
         * @return this builder
         */
        public Builder socketMode(int mode) {
            if (mode < 0 || mode > 0777) {
                throw new IllegalArgumentException("socket mode " + Integer.toOctalString(mode) + " is not within 0..0777");
            }
            this.socketMode = mode;
            return this;
        }

        /**
         * Most connections at once; more are refused.
         *
         * @param n clients in transmission at most, at least 1
         * @return this builder
         */
        public Builder maxConnections(int n) {
            if (n < 1) {
                // 0 would refuse every client's NBD_OPT_GO while the server looks ready.
                throw new IllegalArgumentException("max connections must be at least 1, not " + n);
            }
            this.maxConnections = n;
            return this;
        }

        /**
         * Most connections still in the handshake; when full, the oldest of them is dropped for
         * a newcomer (never the newcomer).
         *
         * @param n handshakes at most, at least 1
         * @return this builder
         */
        public Builder handshakeBudget(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("handshake budget must be at least 1");
            }
            this.handshakeBudget = n;
            return this;
        }

        /**
         * Provided buffers (16 KiB each) per io_uring reactor for multishot RECV: a power of two,
         * or 0 for single-shot RECV into each connection's own buffer. The default is 128, or 0
         * with {@code -Dbiostack.nbd.multishot=false}.
         *
         * @param n buffers per reactor: 0 or a power of two up to 32768
         * @return this builder
         */
        public Builder sharedReceiveBuffers(int n) {
            if (n < 0 || (n != 0 && Integer.bitCount(n) != 1) || n > 32768) {
                throw new IllegalArgumentException("shared receive buffers must be 0 or a power of two up to 32768: " + n);
            }
            this.sharedReceiveBuffers = n;
            return this;
        }

        /**
         * How long an io_uring reactor polls its ring before it sleeps while events come closer
         * together than this (after QEMU's iothread poll-max-ns; polling stops when they don't,
         * so a quiet reactor never spins). 0 never polls. Default 50 us, or
         * {@code -Dbiostack.nbd.pollMicros}. The java.nio reactors never poll.
         *
         * @param us microseconds, 0 to 1000000
         * @return this builder
         */
        public Builder pollMicros(int us) {
            if (us < 0 || us > 1_000_000) {
                throw new IllegalArgumentException("poll time must be 0 to 1000000 us: " + us);
            }
            this.pollMicros = us;
            return this;
        }

        /**
         * Reactor threads; 0 (the default) means one per available processor.
         *
         * @param n threads, or 0 for one per processor
         * @return this builder
         */
        public Builder threads(int n) {
            if (n < 0) {
                throw new IllegalArgumentException("threads must not be negative");
            }
            this.threads = n;
            return this;
        }

        /**
         * Most requests in flight on one connection before the server stops reading it.
         *
         * @param n requests
         * @return this builder
         */
        public Builder maxRequestsPerConnection(int n) {
            this.maxRequests = n;
            return this;
        }

        /**
         * Most payload bytes in flight on one connection (at least the maximum payload).
         *
         * @param n bytes
         * @return this builder
         */
        public Builder maxInflightBytesPerConnection(long n) {
            this.maxInflightBytes = n;
            return this;
        }

        /**
         * The maximum payload advertised in NBD_INFO_BLOCK_SIZE (at least 1 MiB).
         *
         * @param n bytes
         * @return this builder
         */
        public Builder maxPayload(int n) {
            this.maxPayload = n;
            return this;
        }

        /**
         * Structured READs at least this long are split by holes (device.extentAt) into
         * OFFSET_DATA and OFFSET_HOLE chunks; shorter ones are sent as data, as one lseek per
         * small random read costs more than it saves.
         *
         * @param n bytes
         * @return this builder
         */
        public Builder holeProbeMin(int n) {
            this.holeProbeMin = n;
            return this;
        }

        /**
         * A connection that has not finished its handshake by then is closed.
         *
         * @param d the time from the connect
         * @return this builder
         */
        public Builder handshakeTimeout(Duration d) {
            this.handshakeTimeout = d;
            return this;
        }

        /**
         * TLS (doc/proto.md "TLS support"): OFF answers STARTTLS with NBD_REP_ERR_POLICY; ON
         * offers it; REQUIRE refuses every option but STARTTLS and ABORT until TLS is up.
         * {@code credentials} make one session per connection; needed unless {@code mode} is OFF.
         *
         * @param mode        OFF, ON or REQUIRE
         * @param credentials what makes the sessions, or null when OFF
         * @return this builder
         */
        public Builder tls(TlsMode mode, TlsCredentials credentials) {
            this.tlsMode = Objects.requireNonNull(mode, "mode");
            this.tlsCredentials = credentials;
            return this;
        }

        /**
         * Offers the dirty bitmaps {@code names} as {@code qemu:dirty-bitmap:NAME} contexts, and no
         * other bitmap, as qemu-nbd's {@code -B} does; {@link #start()} fails when an export's
         * device doesn't answer one of them. Without this call every bitmap a device answers is
         * offered. Other contexts ({@code qemu:allocation-depth}) are offered either way.
         *
         * @param names bitmap names, without the {@code qemu:dirty-bitmap:} prefix; null or empty
         *              offers every bitmap
         * @return this builder
         */
        public Builder bitmaps(List<String> names) {
            this.bitmaps = names == null || names.isEmpty() ? null : List.copyOf(names);
            return this;
        }

        /**
         * How long close() waits for requests in flight before dropping them.
         *
         * @param d the longest wait
         * @return this builder
         */
        public Builder drainTimeout(Duration d) {
            this.drainTimeout = d;
            return this;
        }

        private void checkBitmaps() {
            if (bitmaps == null) {
                return;
            }
            for (NbdExport e : exports.values()) {
                List<String> has = new ArrayList<>();
                for (StatusContext c : e.device().statusContexts()) {
                    if (c.name().startsWith(DIRTY_BITMAP)) {
                        has.add(c.name().substring(DIRTY_BITMAP.length()));
                    }
                }
                for (String bm : bitmaps) {
                    if (!has.contains(bm)) {
                        throw new IllegalArgumentException("export '" + e.name() + "' (" + e.device().name()
                                + ") has no dirty bitmap '" + bm + "' to offer as " + DIRTY_BITMAP + bm + " ("
                                + (has.isEmpty() ? "it has none" : "it has " + String.join(", ", has)) + ")");
                    }
                }
            }
        }

        /**
         * Binds the sockets and starts serving; throws with a clear message when a socket is taken.
         *
         * @return the running server; the caller closes it
         * @throws IOException when a socket can't be bound
         */
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
            if (tlsMode != TlsMode.OFF && tlsCredentials == null) {
                throw new IllegalArgumentException("TLS " + tlsMode + " needs credentials");
            }
            checkBitmaps();
            NbdServer s = new NbdServer(this);
            try {
                s.startReactors();
                if (unix != null) {
                    s.listenUnix(unix, socketMode);
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
