package io.biostack.nbd.client;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioFlags;
import io.biostack.block.BioPool;
import io.biostack.block.BioSplitter;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import io.biostack.block.stats.LeafReconnectEvent;
import io.biostack.nbd.client.ClientHandshake.ExportInfo;
import io.biostack.nbd.client.ClientHandshake.Negotiated;
import io.biostack.nbd.tls.PskCredentials;
import io.biostack.nbd.tls.TlsCredentials;
import io.biostack.nbd.tls.X509Credentials;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;

import static io.biostack.nbd.proto.NbdProtocol.*;

/**
 * A leaf device on a remote NBD export: the stack's counterpart of the kernel's
 * {@code drivers/block/nbd.c} and of qemu's and libnbd's NBD clients.
 *
 * <h2>Negotiation</h2>
 * Fixed newstyle, structured replies, {@code base:allocation} (so {@link #extentAt} answers from
 * NBD_CMD_BLOCK_STATUS and holes stay holes), and NBD_OPT_GO with NBD_INFO_BLOCK_SIZE: the
 * server's minimum block becomes the logical block size (at least 512), its preferred block the
 * physical block size, its maximum payload the largest data bio. FLUSH, FUA, TRIM and
 * WRITE_ZEROES (NOUNMAP as NBD_CMD_FLAG_NO_HOLE) are passed on when the transmission flags
 * allow them and fail with NOTSUPP otherwise; a FLUSH to a server without a write cache
 * completes at once. With {@code connections=N} requests are spread over N connections, only when
 * the server sets NBD_FLAG_CAN_MULTI_CONN (doc/proto.md: otherwise a flush on one connection
 * need not cover writes on another).
 *
 * <h2>Threads</h2>
 * {@link #submit} runs on the caller's thread and sends the request itself (see
 * {@link Connection}: a lock-free queue and a send flag; no hop to another thread). Each
 * connection has one receiving thread that blocks on its socket, as nbd.c's {@code recv_work}
 * does; <b>end-io callbacks run on it</b> and must not block. One watchdog thread fails requests
 * past the timeout; one supervisor thread reconnects. No thread per request.
 *
 * <h2>Faults</h2>
 * When a connection drops (EOF, reset, a request unanswered while nothing arrives for half the
 * timeout), it reconnects with backoff (0.1 s doubling to 2 s) and sends again every request that
 * had no reply; an NBD request can be repeated without harm. Writes already acknowledged are not
 * sent again: if none was flushed since, the next FLUSH fails with IOERR, once, because a server
 * that restarted meanwhile may have lost them from its cache. Requests older than the timeout
 * fail with {@link Status#TIMEOUT} and a message that names the URI and the last reason, never a
 * hang. A server that breaks the protocol (garbage, an oversized chunk, a reply to a cookie never
 * sent) gets its connection dropped and the requests in flight on it fail with IOERR; nothing
 * outside a READ's own range is written. The leaf keeps trying to reconnect until closed, so a
 * server that comes back is used again (a mirror above sees its leg answer again).
 *
 * <h2>Ownership</h2>
 * The device owns a submitted bio until its callback; the bio's memory must stay valid until then.
 * WRITE data is copied into the connection's send buffer, READ data out of its receive buffer:
 * the leaf hands no caller memory to the kernel.
 */
public final class NbdClient implements BlockDevice {
    private static final System.Logger LOG = System.getLogger("io.biostack.nbd.client");

    /** Largest data bio: the server's maximum payload, at most this (bounds the send buffers). */
    static final int MAX_DATA = 4 << 20;
    /** Largest TRIM or WRITE_ZEROES: the length field is 32 bits (doc/proto.md "Request message"). */
    static final long MAX_RANGE = 1L << 30;
    /** Connect and handshake give up after this (or the timeout, when shorter). */
    static final long CONNECT_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(5);
    private static final long BACKOFF_MIN = TimeUnit.MILLISECONDS.toNanos(100);
    private static final long BACKOFF_MAX = TimeUnit.SECONDS.toNanos(2);
    private static final long WATCHDOG_PERIOD = TimeUnit.MILLISECONDS.toNanos(50);

    /**
     * How to connect.
     *
     * @param connections connections wanted (used only when the server allows multi-conn)
     * @param timeout     a request without a reply for this long fails with TIMEOUT
     * @param tls         credentials for nbds:// URIs; null for plain
     */
    public record Options(int connections, Duration timeout, TlsCredentials tls) {
        /**
         * Checks the options.
         *
         * @param connections connections wanted, 1 to 64
         * @param timeout how long a request may wait for its reply, positive
         * @param tls credentials for nbds:// URIs; null for plain
         * @throws IllegalArgumentException when the count or the timeout is out of range
         */
        public Options {
            if (connections < 1 || connections > 64) {
                throw new IllegalArgumentException("connections must be 1 to 64, not " + connections);
            }
            if (timeout.isNegative() || timeout.isZero()) {
                throw new IllegalArgumentException("timeout must be positive");
            }
        }

        /**
         * One connection, a 30-second request timeout, no TLS.
         *
         * @return the defaults
         */
        public static Options defaults() {
            return new Options(1, Duration.ofSeconds(30), null);
        }

        /**
         * These options with another connection count.
         *
         * @param n connections wanted, 1 to 64 (more than 1 only used when the server allows
         *         multi-conn)
         * @return new options; these are unchanged
         * @throws IllegalArgumentException when {@code n} is out of range
         */
        public Options withConnections(int n) {
            return new Options(n, timeout, tls);
        }

        /**
         * These options with another request timeout.
         *
         * @param d how long a request may wait for its reply before it fails with TIMEOUT, positive
         * @return new options; these are unchanged
         * @throws IllegalArgumentException when {@code d} is zero or negative
         */
        public Options withTimeout(Duration d) {
            return new Options(connections, d, tls);
        }

        /**
         * These options with TLS credentials.
         *
         * @param c the credentials for nbds:// URIs, or null for plain connections
         * @return new options; these are unchanged
         */
        public Options withTls(TlsCredentials c) {
            return new Options(connections, timeout, c);
        }
    }

    private final String name;
    final NbdUri uri;
    final ExportInfo info;
    private final QueueLimits limits;
    /**
     * The export's size rounded up to whole logical blocks, as qemu's NBD client shows an export
     * of 1000 bytes as 1024: reads of the tail past the real end give zeros (the NBD request
     * stops at the end), writes that reach past it fail.
     */
    private final long size;
    private final long timeoutNanos;
    private final long stallNanos;
    private final String timeoutText;
    private final Connection[] conns;
    private final AtomicInteger robin = new AtomicInteger();
    private final BioPool splitPool = new BioPool(256);
    private final Consumer<Bio> queueFn = this::queue;
    volatile boolean closed;
    private volatile String lastFailure = "";
    private final java.util.concurrent.atomic.AtomicLong reconnects = new java.util.concurrent.atomic.AtomicLong();
    /**
     * Acknowledged writes (counted as {@link #ackedWrites}) that a completed FLUSH has made stable,
     * or that a failed FLUSH has reported as possibly lost.
     */
    private final java.util.concurrent.atomic.AtomicLong flushed = new java.util.concurrent.atomic.AtomicLong();
    /**
     * The supervisor's, at each reconnect: acknowledged writes up to this count may have been in
     * the cache of a server that has since restarted. NBD can't tell a restart from a dropped
     * link, and a server with a write cache (NBD_FLAG_SEND_FLUSH) loses unflushed writes when it
     * dies (qemu-nbd on qcow2 keeps new L2 entries in memory until a flush): the next FLUSH
     * fails with IOERR once instead of saying they are stable, as the kernel reports a writeback
     * error to the next fsync (errseq).
     */
    private volatile long maybeLost;
    private final Thread watchdog;
    private final Thread supervisor;
    private final Options opts;

    private NbdClient(String name, NbdUri uri, Options o, Negotiated first) {
        this.name = name;
        this.uri = uri;
        this.opts = o;
        this.info = first.info();
        this.timeoutNanos = o.timeout().toNanos();
        this.stallNanos = Math.clamp(timeoutNanos / 2, TimeUnit.SECONDS.toNanos(1), TimeUnit.SECONDS.toNanos(10));
        this.timeoutText = uri + ": no reply within " + fmt(o.timeout());
        this.limits = limitsOf(info);
        int lbs = limits.logicalBlockSize();
        this.size = info.size() % lbs == 0 ? info.size() : (info.size() / lbs + 1) * lbs;
        int n = 1;
        if (o.connections() > 1) {
            if (info.has(FLAG_CAN_MULTI_CONN)) {
                n = o.connections();
            } else {
                log(Level.INFO, uri + " does not allow multi-conn (NBD_FLAG_CAN_MULTI_CONN unset): using 1 connection, not "
                        + o.connections());
            }
        }
        this.conns = new Connection[n];
        for (int i = 0; i < n; i++) {
            conns[i] = new Connection(this, i, (int) limits.maxBytes());
        }
        startConnection(conns[0], first.transport());
        this.watchdog = Thread.ofPlatform().daemon().name("biostack-nbd-watchdog-" + name).unstarted(this::watch);
        this.supervisor = Thread.ofPlatform().daemon().name("biostack-nbd-supervisor-" + name).unstarted(this::supervise);
    }

    /**
     * Connects to {@code uri} and negotiates the export. Throws an {@link IOException} whose
     * message starts with the URI when the server can't be reached or refuses.
     *
     * @param name the device's name in the stack and in messages
     * @param uri the export to connect to
     * @param o connections, timeout and TLS credentials
     * @return the open leaf; the caller owns it and closes it, which closes the connections
     * @throws IOException when the server can't be reached, refuses the export or fails the
     *         handshake
     */
    public static NbdClient open(String name, NbdUri uri, Options o) throws IOException {
        Negotiated first;
        try {
            if (uri.tls() && o.tls() == null) {
                o = o.withTls(credentialsOf(uri));
            } else if (!uri.tls() && o.tls() != null) {
                o = o.withTls(null);
            }
            first = dial(uri, o, Math.min(CONNECT_TIMEOUT_NANOS, o.timeout().toNanos()));
        } catch (IOException e) {
            throw new IOException(uri + ": " + reason(e), e);
        }
        NbdClient c = new NbdClient(name, uri, o, first);
        // The other connections before the supervisor starts: it would dial them too.
        for (int i = 1; i < c.conns.length; i++) {
            try {
                c.startConnection(c.conns[i], dial(uri, c.opts, Math.min(CONNECT_TIMEOUT_NANOS, c.opts.timeout().toNanos())).transport());
            } catch (IOException e) {
                c.close();
                throw new IOException(uri + ": connection " + (i + 1) + " of " + c.conns.length + ": " + reason(e), e);
            }
        }
        c.watchdog.start();
        c.supervisor.start();
        c.log(Level.INFO, "nbd leaf " + name + " on " + uri + ": " + c.info.size() + " bytes, "
                + c.conns.length + " connection(s), " + (c.info.metaId() >= 0 ? "block status" : "no block status")
                + ", " + c.limits);
        return c;
    }

    private static Negotiated dial(NbdUri uri, Options o, long budget) throws IOException {
        long deadline = System.nanoTime() + budget;
        Transport t = Transport.connect(uri, deadline);
        TlsCredentials creds = o.tls();
        ClientHandshake.TlsStarter tls = creds == null ? null
                : (plain, dl) -> TlsTransport.start(plain, creds.newClientSession(uri.host() != null ? uri.host() : "localhost"), dl);
        try {
            return ClientHandshake.negotiate(t, uri.export(), deadline, tls);
        } catch (IOException | RuntimeException e) {
            t.close();
            throw e;
        }
    }

    /**
     * TLS credentials as libnbd finds them: {@code tls-psk-file=} (as the URI's user, or the login
     * name), {@code tls-certificates=}, else {@code $HOME/.pki/libnbd} or {@code /etc/pki/libnbd}.
     */
    static TlsCredentials credentialsOf(NbdUri uri) throws IOException {
        if (uri.tlsPskFile() != null) {
            String user = uri.user() != null ? uri.user() : System.getProperty("user.name");
            return PskCredentials.client(uri.tlsPskFile(), user);
        }
        Path dir = uri.tlsCertificates();
        if (dir == null) {
            Path home = Path.of(System.getProperty("user.home"), ".pki", "libnbd");
            dir = Files.isDirectory(home) ? home : Path.of("/etc/pki/libnbd");
        }
        if (!Files.isRegularFile(dir.resolve("ca-cert.pem"))) {
            throw new IOException("no TLS credentials: " + dir.resolve("ca-cert.pem")
                    + " is missing (give tls-certificates=DIR or tls-psk-file=FILE)");
        }
        return X509Credentials.client(dir);
    }

    private int startConnection(Connection c, Transport t) {
        Thread r = Thread.ofPlatform().daemon().name("biostack-nbd-recv-" + name + "-" + c.id).unstarted(() -> c.receive(t));
        return c.resume(t, r);
    }

    static QueueLimits limitsOf(ExportInfo info) {
        int lbs = Math.max(512, info.minBlock());
        int pbs = info.prefBlock() >= lbs && Integer.bitCount(info.prefBlock()) == 1 ? Math.min(info.prefBlock(), 64 * 1024) : lbs;
        long max = Math.min(info.maxBlock(), MAX_DATA) / lbs * lbs;
        long range = MAX_RANGE / lbs * lbs;
        return QueueLimits.builder()
                .logicalBlockSize(lbs)
                .physicalBlockSize(pbs)
                .maxBytes(Math.max(max, lbs))
                .ioMin(pbs)
                .discardGranularity(info.has(FLAG_SEND_TRIM) ? pbs : 0)
                .maxDiscardBytes(info.has(FLAG_SEND_TRIM) ? range : 0)
                .maxWriteZeroesBytes(info.has(FLAG_SEND_WRITE_ZEROES) ? range : 0)
                .writeCache(info.has(FLAG_SEND_FLUSH))
                .fua(info.has(FLAG_SEND_FUA))
                .build();
    }

    @Override public String name() { return name; }
    @Override public long size() { return size; }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return info.has(FLAG_READ_ONLY); }

    /**
     * The URI this leaf talks to.
     *
     * @return the URI as given to {@code open}
     */
    public NbdUri uri() {
        return uri;
    }

    /**
     * Connections in use (1 unless the server allows multi-conn).
     *
     * @return the number of connections
     */
    public int connections() {
        return conns.length;
    }

    /**
     * Connections made again after a loss, since open.
     *
     * @return the count of reconnections
     */
    public long reconnects() {
        return reconnects.get();
    }

    /**
     * True when every connection is up (a mirror's probe, tests, status).
     *
     * @return true when all connections are up, false while one is being made again
     */
    public boolean isConnected() {
        for (Connection c : conns) {
            if (c.phase != Connection.CONNECTED) {
                return false;
            }
        }
        return true;
    }

    // ---- I/O ----------------------------------------------------------------------------------

    @Override
    public void submit(Bio bio) {
        if (closed) {
            bio.fail(Status.CANCELLED, name + " (" + uri + ") is closed");
            return;
        }
        if (!BioChecks.admit(bio, name, size, limits, isReadOnly())) {
            return;
        }
        Op op = bio.op();
        if (op != Op.READ && op != Op.FLUSH && bio.offset() + bio.size() > info.size()) {
            bio.fail(Status.IOERR, op + " of " + bio.size() + " bytes at " + bio.offset() + " on " + name
                    + " reaches past the end of " + uri + " at " + info.size() + " bytes (the rest of its last block is not there)");
            return;
        }
        if (op == Op.FLUSH && !info.has(FLAG_SEND_FLUSH)) {
            bio.endIo(); // no write cache on the server: every completed write is already stable
            return;
        }
        if (bio.hasFlag(BioFlags.FUA) && op != Op.READ && !info.has(FLAG_SEND_FUA) && info.has(FLAG_SEND_FLUSH)) {
            bio.fail(Status.NOTSUPP, "FUA is not supported by " + uri + " (NBD_FLAG_SEND_FUA unset)");
            return;
        }
        BioSplitter.submitSplit(bio, limits, splitPool, queueFn);
    }

    private void queue(Bio bio) {
        Connection[] cs = conns;
        Connection c = cs.length == 1 ? cs[0] : cs[Math.floorMod(robin.getAndIncrement(), cs.length)];
        c.queue(bio);
    }

    /** Writes acknowledged to callers so far, on every connection (see {@link #flushed}). */
    long ackedWrites() {
        long n = 0;
        for (Connection c : conns) {
            n += c.acked;
        }
        return n;
    }

    /**
     * A FLUSH sent when {@code mark} writes had been acknowledged was answered with success:
     * true when it made them stable, false when writes acknowledged before a reconnect were
     * never flushed (it must fail; the next one no longer does for them).
     */
    boolean flushDone(long mark) {
        while (true) {
            long f = flushed.get();
            long lost = maybeLost;
            if (lost > f) {
                if (flushed.compareAndSet(f, lost)) {
                    return false;
                }
                continue;
            }
            if (mark <= f || flushed.compareAndSet(f, mark)) {
                return true;
            }
        }
    }

    /** Marks a bio that carries NBD_CMD_CACHE (the block layer has no op for it). */
    static final Object CACHE = new Object();

    /**
     * Asks the server to prefetch a range into its cache (NBD_CMD_CACHE, doc/proto.md "Request
     * types"), as qemu's {@code blk_co_preadv} with BDRV_REQ_PREFETCH does. Fails with NOTSUPP
     * when the server does not set NBD_FLAG_SEND_CACHE. Allocates: not for the I/O path.
     *
     * @param offset the range's start in bytes
     * @param length the range's length in bytes
     * @return a future that completes when the server has answered, or exceptionally with a
     *         {@link io.biostack.block.BioException} (NOTSUPP, or the server's error)
     */
    public CompletableFuture<Void> cache(long offset, long length) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        Bio b = new Bio().init(Op.DISCARD, 0, offset, x -> {
            if (x.status() == Status.OK) {
                f.complete(null);
            } else {
                f.completeExceptionally(new io.biostack.block.BioException(x.status(), x.detail()));
            }
        });
        b.setSize(length);
        int lbs = limits.logicalBlockSize();
        if (!info.has(FLAG_SEND_CACHE)) {
            b.fail(Status.NOTSUPP, "CACHE is not supported by " + uri + " (NBD_FLAG_SEND_CACHE unset)");
        } else if (closed) {
            b.fail(Status.CANCELLED, name + " (" + uri + ") is closed");
        } else if (offset < 0 || length <= 0 || length > limits.maxBytes() || (offset | length) % lbs != 0
                || offset > info.size() - length) {
            b.fail(Status.INVAL, "CACHE of " + length + " bytes at " + offset + " on " + name
                    + ": out of range, misaligned or over " + limits.maxBytes() + " bytes");
        } else {
            b.setDriverData(CACHE);
            queue(b);
        }
        return f;
    }

    /** What {@link #extentAt} asks with NBD_CMD_BLOCK_STATUS; filled by the receiver. */
    static final class StatusQuery {
        volatile long length = -1;
        volatile int flags;

        void set(long len, int f) {
            if (length < 0) {
                flags = f;
                length = len;
            }
        }
    }

    /**
     * Asks the server (NBD_CMD_BLOCK_STATUS, base:allocation, one extent). Says "data" when the
     * server has no block status, or when the query fails or times out.
     */
    @Override
    public Extent extentAt(long offset, long maxLength) {
        long len = Math.min(maxLength, size - offset);
        if (len > 0 && offset >= info.size()) {
            return new Extent(len, Extent.HOLE | Extent.ZERO); // past the export's end: reads as zeros
        }
        if (len <= 0 || info.metaId() < 0 || closed) {
            return Extent.data(Math.max(0, len));
        }
        int lbs = limits.logicalBlockSize();
        // Whole blocks within the export (its last block, when partial, is answered as data).
        long q = Math.min(Math.min(len, info.size() - offset), 0xffff_ffffL) / lbs * lbs;
        if (q == 0 || offset % lbs != 0) {
            return Extent.data(len);
        }
        StatusQuery sq = new StatusQuery();
        CompletableFuture<Status> done = new CompletableFuture<>();
        Bio b = new Bio().init(Op.DISCARD, 0, offset, x -> done.complete(x.status()));
        b.setSize(q);
        b.setDriverData(sq);
        queue(b);
        try {
            Status s = done.get(timeoutNanos + TimeUnit.SECONDS.toNanos(1), TimeUnit.NANOSECONDS);
            long l = sq.length;
            if (s != Status.OK || l <= 0) {
                return Extent.data(len);
            }
            int f = sq.flags & (Extent.HOLE | Extent.ZERO);
            // At most what was asked (q): an extent a server stretched past its query
            // (doc/proto.md forbids it) must not make unasked bytes a hole to a copy.
            return new Extent(Math.min(l, q), f);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return Extent.data(len);
        } catch (Exception e) {
            return Extent.data(len);
        }
    }

    // ---- watchdog and supervisor ---------------------------------------------------------------

    private void watch() {
        while (!closed) {
            LockSupport.parkNanos(WATCHDOG_PERIOD);
            long now = System.nanoTime();
            String text = lastFailure.isEmpty() ? timeoutText : timeoutText + " (" + lastFailure + ")";
            for (Connection c : conns) {
                c.checkDeadlines(now, timeoutNanos, stallNanos, text);
            }
        }
    }

    void wakeSupervisor() {
        LockSupport.unpark(supervisor);
    }

    private void supervise() {
        long lastLog = 0;
        while (!closed) {
            LockSupport.parkNanos(WATCHDOG_PERIOD);
            for (Connection c : conns) {
                if (closed) {
                    return;
                }
                if (c.needKick) {
                    c.needKick = false;
                    c.kick();
                }
                if (c.phase != Connection.BROKEN) {
                    continue;
                }
                Thread r = c.receiver;
                if (r != null && r.isAlive()) {
                    continue;
                }
                c.releaseAbandoned();
                long now = System.nanoTime();
                if (now - c.nextAttempt < 0) {
                    continue;
                }
                c.attempts++;
                try {
                    Negotiated n = dial(uri, opts, Math.min(CONNECT_TIMEOUT_NANOS, timeoutNanos));
                    if (n.info().size() != info.size() || n.info().structured() != info.structured()
                            || n.info().metaId() != info.metaId() && n.info().metaId() >= 0 != info.metaId() >= 0) {
                        n.transport().close();
                        throw new IOException("the export changed (now " + n.info().size() + " bytes)");
                    }
                    if (n.info().metaId() != info.metaId()) {
                        n.transport().close();
                        throw new IOException("the server gave base:allocation a new id");
                    }
                    // The flags the queue limits and the connection count were made from: a
                    // server that now has a write cache would never see our FLUSHes (submit
                    // completes them at once), one without FUA may ignore the flag, and without
                    // NBD_FLAG_CAN_MULTI_CONN a FLUSH on one connection need not cover writes
                    // acknowledged on the others (doc/proto.md). The layers above can't learn it.
                    int kept = FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES
                            | (conns.length > 1 ? FLAG_CAN_MULTI_CONN : 0);
                    if ((n.info().flags() & kept) != (info.flags() & kept)) {
                        n.transport().close();
                        throw new IOException("the export changed (transmission flags 0x"
                                + Integer.toHexString(n.info().flags() & kept) + ", were 0x"
                                + Integer.toHexString(info.flags() & kept) + ")");
                    }
                    long acked = ackedWrites(); // the old receiver is gone: nothing more counts
                    if (info.has(FLAG_SEND_FLUSH) && acked > flushed.get() && acked > maybeLost) {
                        maybeLost = acked;
                    }
                    reconnects.incrementAndGet(); // before the resent requests can complete
                    int resent = startConnection(c, n.transport());
                    LeafReconnectEvent.emit(name, uri.toString(), c.attempts, resent, "connected", c.lostAt);
                    c.backoff = 0;
                    lastFailure = "";
                    log(Level.INFO, "connection " + c.id + " to " + uri + " is back");
                } catch (IOException e) {
                    lastFailure = "last reconnect: " + reason(e);
                    LeafReconnectEvent.emit(name, uri.toString(), c.attempts, 0, reason(e), c.lostAt);
                    c.backoff = c.backoff == 0 ? BACKOFF_MIN : Math.min(c.backoff * 2, BACKOFF_MAX);
                    c.nextAttempt = System.nanoTime() + c.backoff;
                    if (now - lastLog > TimeUnit.SECONDS.toNanos(10)) {
                        lastLog = now;
                        log(Level.WARNING, "reconnecting to " + uri + ": " + reason(e));
                    }
                }
            }
        }
    }

    /** Closes every connection (NBD_CMD_DISC), fails what is still queued with CANCELLED. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        LockSupport.unpark(watchdog);
        LockSupport.unpark(supervisor);
        try {
            if (supervisor.isAlive()) {
                supervisor.join(CONNECT_TIMEOUT_NANOS / 1_000_000 + 1000);
            }
            if (watchdog.isAlive()) {
                watchdog.join(1000);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        for (Connection c : conns) {
            c.shutdown(name + " (" + uri + ") was closed");
        }
    }

    // ---- messages ----------------------------------------------------------------------------

    void log(Level level, String msg) {
        LOG.log(level, msg);
    }

    static String reason(Throwable e) {
        String m = e.getMessage();
        String n = e.getClass().getSimpleName();
        if (m == null || m.isBlank()) {
            return n;
        }
        return switch (n) {
            case "ConnectException", "EOFException", "SocketTimeoutException", "IOException", "Refused", "TlsException",
                 "ProtocolException" -> m;
            default -> m + " (" + n + ")";
        };
    }

    private static String fmt(Duration d) {
        long ms = d.toMillis();
        return ms % 1000 == 0 ? ms / 1000 + " s" : ms + " ms";
    }

    @Override
    public String toString() {
        return "NbdClient[" + name + " " + uri + "]";
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The leaf table line {@code nbd URI [connections=N] [timeout=DURATION]}: an export of an NBD
     * server (URIs as {@link NbdUri} reads them), checked before anything connects.
     *
     * @param a the line's arguments
     * @return the spec
     */
    public static TableSpec parseTable(TableArgs a) {
        String text = a.next("URI");
        NbdUri uri;
        try {
            uri = NbdUri.parse(text);
        } catch (IllegalArgumentException e) {
            throw a.bad(e.getMessage());
        }
        Options o = Options.defaults();
        while (a.hasNext()) {
            TableArgs.Option opt = a.option();
            switch (opt.key()) {
                case "connections" -> {
                    String v = opt.value() == null ? "" : opt.value();
                    try {
                        o = o.withConnections(Integer.parseInt(v));
                    } catch (IllegalArgumentException e) {
                        throw a.bad("connections= takes a number from 1 to 64, not '" + v + "'");
                    }
                }
                case "timeout" -> o = o.withTimeout(a.duration(opt));
                default -> throw a.bad("unknown option '" + opt.text() + "' (connections=N, timeout=DURATION)");
            }
        }
        Options opts = o;
        return a.spec((name, len, r) -> open(name, uri, opts));
    }
}
