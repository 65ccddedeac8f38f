package io.biostack.nbd;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.BioSplitter;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.Op;

import java.io.EOFException;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.SocketChannel;

import io.biostack.nbd.tls.TlsChannel;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

import static io.biostack.nbd.NbdProtocol.*;

/**
 * One client: the handshake, then the transmission phase on this (reader) thread plus a
 * {@link ReplyWriter} thread.
 *
 * <p>The reader parses requests from a receive buffer that takes as many as one read returns,
 * checks each against the rules of doc/proto.md ("Error values", "Size constraints", "Command
 * flags"), turns it into a pooled bio with a pooled payload buffer and submits it; it never waits
 * for a completion. WRITE payloads are read into a 4096-aligned native buffer that goes down the
 * stack as it is. Completions hand the request to the writer; nothing blocks on a completion
 * thread.
 *
 * <p>Limits: at most {@code maxRequests} requests and {@code maxInflightBytes} of payload in flight;
 * past them the reader stops reading until replies have been sent (TCP back-pressure does the
 * rest). A WRITE longer than the maximum payload is read and thrown away when no longer than
 * {@link #DISCARD_LIMIT}, and answered EINVAL; a longer one is taken for an attack and disconnected
 * (section "Size constraints" allows both).
 */
final class NbdConnection implements Runnable {
    private static final System.Logger LOG = System.getLogger("io.biostack.nbd");
    private static final int RECV_BUFFER = 256 * 1024;
    /** Oversized WRITE payloads up to this size are skipped and answered; longer ones disconnect. */
    static final long DISCARD_LIMIT = 64L << 20;

    private final NbdServer server;
    private final SocketChannel ch;
    final int id;
    private final String peer;
    private volatile Thread readerThread;
    private volatile boolean inTransmission;
    /** Where requests are read from: the socket, or the TLS channel after STARTTLS. */
    private ReadableByteChannel in;
    /** Whether this connection holds a transmission slot of the server (--max-connections). */
    private boolean holdsSlot;
    /** Set once STARTTLS succeeded. */
    private volatile TlsChannel tls;

    // ---- transmission state, set once after the handshake --------------------------------
    ReplyWriter writer;
    private NbdExport export;
    private BlockDevice device;
    private boolean structured;
    private boolean blockStatus;
    private boolean fastZero;
    private long size;
    private int minBlock;
    private ByteBuffer rb;

    // ---- request pool and budget (reader takes, writer gives back) -------------------------
    private final AtomicReference<NbdRequest> freeShared = new AtomicReference<>();
    private NbdRequest freeLocal;
    private int created;
    private final AtomicInteger outstanding = new AtomicInteger();
    private final AtomicLong inflightBytes = new AtomicLong();
    private volatile boolean readerWaiting;

    NbdConnection(NbdServer server, SocketChannel ch, int id, String peer) {
        this.server = server;
        this.ch = ch;
        this.id = id;
        this.peer = peer;
        this.in = ch;
    }

    String peer() {
        return peer;
    }

    /** The handshake upgraded the connection to TLS. */
    void tlsUp(TlsChannel t) {
        tls = t;
        LOG.log(Level.DEBUG, "nbd connection {0} from {1}: {2}, peer {3}", id, peer, t.session().describe(),
                t.session().peerIdentity());
    }

    boolean inTransmission() {
        return inTransmission;
    }

    /**
     * Starts the handshake on a virtual thread: an idle client costs a parked virtual thread (a
     * few kilobytes), not a platform thread's stack. Transmission moves to a platform thread.
     */
    void start() {
        Thread t = Thread.ofVirtual().name("nbd-" + id + "-hs").unstarted(this);
        readerThread = t;
        t.start();
    }

    @Override
    public void run() {
        Handshake.Session s = null;
        Handshake h = new Handshake(server, this, ch);
        try {
            s = h.negotiate();
            server.handshakeDone(this);
            Handshake.Session session = s;
            Thread t = Thread.ofPlatform().name("nbd-" + id + "-rx").daemon(true).unstarted(() -> transmit(session));
            readerThread = t;
            t.start();
        } catch (Handshake.TlsRefused e) {
            // One line per refused client, no stack trace: who, and why.
            LOG.log(Level.WARNING, "nbd: refused TLS client {0}: {1}", peer, e.getMessage());
        } catch (Handshake.Disconnect e) {
            LOG.log(Level.DEBUG, "nbd connection {0} from {1}: {2}", id, peer, e.getMessage());
        } catch (EOFException | ClosedChannelException e) {
            LOG.log(Level.DEBUG, "nbd connection {0} from {1} closed: {2}", id, peer, e.toString());
        } catch (IOException e) {
            LOG.log(Level.DEBUG, "nbd connection {0} from {1}: {2}", id, peer, e.toString());
        } catch (RuntimeException | Error e) {
            LOG.log(Level.WARNING, "nbd connection " + id + " failed", e);
        } finally {
            if (s == null) {
                if (h.refusedPlain()) {
                    LOG.log(Level.WARNING, "nbd: refused plain client {0}: TLS is required", peer);
                }
                end();
            }
        }
    }

    /** The transmission phase, on its platform reader thread. */
    private void transmit(Handshake.Session s) {
        try {
            transmission(s);
        } catch (IOException e) {
            LOG.log(Level.DEBUG, "nbd connection {0} from {1}: {2}", id, peer, e.toString());
        } catch (RuntimeException | Error e) {
            LOG.log(Level.WARNING, "nbd connection " + id + " failed", e);
        } finally {
            end();
        }
    }

    /** Reserves a transmission slot (--max-connections); false when the server is full. */
    boolean reserveTransmission() {
        if (!server.enterTransmission()) {
            return false;
        }
        holdsSlot = true;
        return true;
    }

    /** Gives back the transmission slot, says close_notify over TLS, closes, and leaves the server. */
    private void end() {
        if (holdsSlot) {
            holdsSlot = false;
            server.leaveTransmission();
        }
        TlsChannel t = tls;
        if (t != null) {
            try {
                t.close(); // close_notify, then the socket
            } catch (IOException e) {
                // the socket is closed below anyway
            }
        }
        closeChannel();
        server.connectionEnded(this);
    }

    // ---- transmission -----------------------------------------------------------------------

    private void transmission(Handshake.Session s) throws IOException {
        export = s.export();
        device = export.device();
        structured = s.structured();
        blockStatus = s.blockStatus();
        size = device.size();
        minBlock = export.minimumBlock();
        fastZero = device.limits().writeZeroes();
        rb = ByteBuffer.allocateDirect(RECV_BUFFER);
        rb.flip();
        if (s.tls() != null) {
            in = s.tls();
        }
        writer = new ReplyWriter(this, s.tls() != null ? s.tls() : ch, structured);
        writer.start("nbd-" + id + "-tx", Thread.currentThread());
        inTransmission = true;
        try {
            readLoop();
        } catch (EOFException | ClosedChannelException e) {
            LOG.log(Level.DEBUG, "nbd connection {0}: client went away", id);
        } catch (IOException e) {
            LOG.log(Level.DEBUG, "nbd connection {0}: {1}", id, e.toString());
        } finally {
            drain();
        }
    }

    /** Waits until every request has been answered (or dropped, if the peer is gone), then stops the writer. */
    private void drain() {
        long deadline = System.nanoTime() + server.drainTimeoutNanos();
        while (outstanding.get() > 0 && System.nanoTime() < deadline) {
            writer.sendPending();
            readerWaiting = true;
            if (outstanding.get() > 0) {
                LockSupport.parkNanos(this, 10_000_000L);
            }
            readerWaiting = false;
        }
        writer.stop();
        try {
            writer.join(1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void readLoop() throws IOException {
        while (true) {
            fill(REQUEST_SIZE);
            int magic = rb.getInt();
            int flags = Short.toUnsignedInt(rb.getShort());
            int type = Short.toUnsignedInt(rb.getShort());
            long cookie = rb.getLong();
            long offset = rb.getLong();
            long length = Integer.toUnsignedLong(rb.getInt());
            if (magic != REQUEST_MAGIC) {
                // The stream is out of step: nothing after this can be trusted (hard disconnect).
                LOG.log(Level.DEBUG, "nbd connection {0}: bad request magic 0x{1}", id, Integer.toHexString(magic));
                return;
            }
            if (type == CMD_DISC) {
                return; // answer what is in flight, then close (section "NBD_CMD_DISC")
            }
            if (server.isClosing()) {
                if (type == CMD_WRITE && !skip(length)) {
                    return;
                }
                reply(cookie, type, offset, length, ESHUTDOWN, "server is shutting down");
                continue;
            }
            dispatch(cookie, type, flags, offset, length);
        }
    }

    private void dispatch(long cookie, int type, int flags, long offset, long length) throws IOException {
        int err = check(type, flags, offset, length);
        if (err != 0 || (length == 0 && type != CMD_FLUSH) || type == CMD_CACHE) {
            if (type == CMD_WRITE && !skip(length)) {
                throw new IOException("WRITE of " + length + " bytes is far beyond the maximum payload");
            }
            String why = err == 0 ? null : whyNot(type, flags, offset, length, err);
            reply(cookie, type, offset, length, err, why);
            return;
        }
        switch (type) {
            case CMD_READ -> read(cookie, flags, offset, (int) length);
            case CMD_WRITE -> write(cookie, flags, offset, (int) length);
            case CMD_FLUSH -> submitNoData(cookie, type, flags, offset, length, Op.FLUSH, 0);
            case CMD_TRIM -> submitNoData(cookie, type, flags, offset, length, Op.DISCARD, fua(flags));
            case CMD_WRITE_ZEROES -> writeZeroes(cookie, flags, offset, length);
            case CMD_BLOCK_STATUS -> blockStatus(cookie, flags, offset, length);
            default -> throw new IllegalStateException("unreachable: " + type);
        }
    }

    /**
     * The NBD error for a request before it touches the device, 0 when it may go on. After
     * "Error values" and "Command flags": unknown commands and flags EINVAL, changes to a
     * read-only export EPERM, misaligned EINVAL, past the end ENOSPC for writes and EINVAL else.
     */
    private int check(int type, int flags, long offset, long length) {
        int allowed = switch (type) {
            case CMD_READ -> CMD_FLAG_FUA | (structured ? CMD_FLAG_DF : 0);
            case CMD_WRITE, CMD_FLUSH, CMD_TRIM, CMD_CACHE -> CMD_FLAG_FUA;
            case CMD_WRITE_ZEROES -> CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO;
            case CMD_BLOCK_STATUS -> CMD_FLAG_FUA | CMD_FLAG_REQ_ONE;
            default -> -1;
        };
        if (allowed == -1 || (flags & ~allowed) != 0) {
            return EINVAL;
        }
        if (type == CMD_FLUSH) {
            return offset != 0 || length != 0 ? EINVAL : 0;
        }
        if (type == CMD_BLOCK_STATUS && !blockStatus) {
            return EINVAL;
        }
        boolean changes = type == CMD_WRITE || type == CMD_TRIM || type == CMD_WRITE_ZEROES;
        if (changes && export.readOnly()) {
            return EPERM;
        }
        if ((type == CMD_READ || type == CMD_WRITE) && length > server.maxPayload()) {
            return EINVAL;
        }
        if (length == 0) {
            return type == CMD_BLOCK_STATUS ? EINVAL : 0;
        }
        if (offset < 0 || offset % minBlock != 0 || length % minBlock != 0) {
            return EINVAL;
        }
        if (offset > size || length > size - offset) {
            return type == CMD_WRITE || type == CMD_WRITE_ZEROES ? ENOSPC : EINVAL;
        }
        if (type == CMD_WRITE_ZEROES && (flags & CMD_FLAG_FAST_ZERO) != 0 && !fastZero) {
            return ENOTSUP; // fail fast, change nothing (section "NBD_CMD_WRITE_ZEROES")
        }
        return 0;
    }

    private String whyNot(int type, int flags, long offset, long length, int err) {
        String cmd = commandName(type);
        return switch (err) {
            case EPERM -> cmd + " on read-only export '" + export.name() + "'";
            case ENOSPC -> cmd + " of " + length + " bytes at " + offset + " goes beyond the end (" + size + " bytes)";
            case ENOTSUP -> "WRITE_ZEROES with FAST_ZERO: " + device.name() + " can't zero faster than it writes";
            default -> {
                if (cmd.startsWith("command ")) {
                    yield "unknown " + cmd;
                }
                if (type == CMD_FLUSH) {
                    yield "FLUSH with offset or length, or with flags 0x" + Integer.toHexString(flags);
                }
                if (type == CMD_BLOCK_STATUS && !blockStatus) {
                    yield "BLOCK_STATUS without a metadata context from NBD_OPT_SET_META_CONTEXT";
                }
                yield cmd + " with flags 0x" + Integer.toHexString(flags) + " at " + offset + " of " + length
                        + " bytes: bad flags, not aligned to " + minBlock + ", over the " + server.maxPayload()
                        + "-byte maximum payload, or beyond the end (" + size + " bytes)";
            }
        };
    }

    private static int fua(int flags) {
        return (flags & CMD_FLAG_FUA) != 0 ? BioFlags.FUA : 0;
    }

    // ---- one helper per command ----------------------------------------------------------

    private void read(long cookie, int flags, long offset, int length) throws IOException {
        NbdRequest r = take(cookie, CMD_READ, flags, offset, length);
        if (structured && (flags & CMD_FLAG_DF) == 0 && length >= server.holeProbeMin()) {
            probeHoles(r);
            if (r.nruns == 1 && (r.runs[1] & Extent.ZERO) != 0) {
                writer.enqueue(r); // all zeros: one OFFSET_HOLE chunk, no I/O
                return;
            }
        }
        charge(r, length);
        r.buf = server.buffers().get(length);
        Bio bio = server.bios().get().init(Op.READ, 0, offset, r.endIo);
        bio.addSegment(r.buf.slice(length));
        submit(bio);
    }

    /** Splits a READ into data and zero runs (at most MAX_RUNS; the rest is sent as data). */
    private void probeHoles(NbdRequest r) {
        long pos = r.offset;
        long end = r.offset + r.length;
        while (pos < end) {
            Extent x = device.extentAt(pos, end - pos);
            long n = Math.min(x.length(), end - pos);
            int f = x.flags() & Extent.ZERO;
            if (n <= 0 || n % minBlock != 0 || r.nruns == NbdRequest.MAX_RUNS - 1) {
                n = end - pos;
                f = 0;
            }
            if (r.nruns > 0 && r.runs[2 * r.nruns - 1] == f) {
                r.runs[2 * r.nruns - 2] += n;
            } else {
                r.addRun(n, f);
            }
            pos += n;
        }
        if (r.nruns == 1 && r.runs[1] == 0) {
            r.nruns = 0; // plain data: one OFFSET_DATA chunk
        }
    }

    private void write(long cookie, int flags, long offset, int length) throws IOException {
        NbdRequest r = take(cookie, CMD_WRITE, flags, offset, length);
        charge(r, length);
        r.buf = server.buffers().get(length);
        ByteBuffer dst = r.buf.bytes;
        dst.clear().limit(length);
        try {
            receive(dst);
        } catch (IOException e) {
            recycle(r); // never became a bio: give it back, or drain() would wait for it
            throw e;
        }
        Bio bio = server.bios().get().init(Op.WRITE, fua(flags), offset, r.endIo);
        bio.addSegment(r.buf.slice(length));
        submit(bio);
    }

    private void submitNoData(long cookie, int type, int flags, long offset, long length, Op op, int bioFlags) {
        NbdRequest r = take(cookie, type, flags, offset, length);
        Bio bio = server.bios().get().init(op, bioFlags, offset, r.endIo);
        if (op != Op.FLUSH) {
            bio.setSize(length);
        }
        submit(bio);
    }

    private void writeZeroes(long cookie, int flags, long offset, long length) {
        int bioFlags = fua(flags) | ((flags & CMD_FLAG_NO_HOLE) != 0 ? BioFlags.NOUNMAP : 0);
        if (fastZero) {
            submitNoData(cookie, CMD_WRITE_ZEROES, flags, offset, length, Op.WRITE_ZEROES, bioFlags);
            return;
        }
        // The device can't zero: write zeros from one shared zero buffer (slow, hence no FAST_ZERO).
        NbdRequest r = take(cookie, CMD_WRITE_ZEROES, flags, offset, length);
        Bio bio = server.bios().get().init(Op.WRITE, fua(flags), offset, r.endIo);
        for (long left = length; left > 0; ) {
            long n = Math.min(left, server.zeros().byteSize());
            bio.addSegment(server.zeros().asSlice(0, n));
            left -= n;
        }
        submit(bio);
    }

    private void blockStatus(long cookie, int flags, long offset, long length) {
        NbdRequest r = take(cookie, CMD_BLOCK_STATUS, flags, offset, length);
        int max = (flags & CMD_FLAG_REQ_ONE) != 0 ? 1 : NbdRequest.MAX_RUNS;
        long pos = offset;
        long end = offset + length;
        while (pos < end && r.nruns < max) {
            Extent x = device.extentAt(pos, end - pos);
            long n = Math.min(x.length(), end - pos);
            if (n <= 0) {
                n = end - pos;
            }
            int f = x.flags() & (Extent.HOLE | Extent.ZERO);
            if (r.nruns > 0 && r.runs[2 * r.nruns - 1] == f) {
                r.runs[2 * r.nruns - 2] += n;
            } else if (r.nruns < max) {
                r.addRun(n, f);
            }
            pos += n;
        }
        writer.enqueue(r);
    }

    private void submit(Bio bio) {
        BioSplitter.submitSplit(bio, device.limits(), server.bios(), server.submitter(device));
    }

    /** Answers a request without I/O: an error, a zero-length request, a CACHE. */
    private void reply(long cookie, int type, long offset, long length, int err, String why) {
        NbdRequest r = take(cookie, type, 0, offset, type == CMD_READ ? 0 : length);
        if (err != 0) {
            r.fail(err, why);
        }
        writer.enqueue(r);
    }

    // ---- requests and budget -----------------------------------------------------------

    /** A request from the pool, waiting while {@code maxRequests} are in flight. */
    private NbdRequest take(long cookie, int type, int flags, long offset, long length) {
        NbdRequest r = freeLocal;
        while (r == null) {
            r = freeShared.getAndSet(null);
            if (r == null && created < server.maxRequests()) {
                created++;
                r = new NbdRequest(this);
                r.next = null;
            }
            if (r == null) {
                waitForWriter();
            }
        }
        freeLocal = r.next;
        r.next = null;
        r.set(cookie, type, flags, offset, length);
        outstanding.incrementAndGet();
        return r;
    }

    /** Charges {@code n} payload bytes, waiting while the connection is over its budget. */
    private void charge(NbdRequest r, long n) {
        long max = server.maxInflightBytes();
        while (inflightBytes.get() > 0 && inflightBytes.get() + n > max) {
            waitForWriter();
        }
        inflightBytes.addAndGet(n);
        r.charged = n;
    }

    private void waitForWriter() {
        writer.sendPending();
        readerWaiting = true;
        // Re-checked by the caller's loop: the writer reads readerWaiting after it gives back.
        LockSupport.parkNanos(this, 1_000_000L);
        readerWaiting = false;
    }

    /** Called by the writer after a batch: a reader waiting for requests or budget goes on. */
    void wakeReader() {
        if (readerWaiting) {
            LockSupport.unpark(readerThread);
        }
    }

    /** The writer gives a request back once its reply is sent (or dropped). */
    void recycle(NbdRequest r) {
        if (r.buf != null) {
            server.buffers().put(r.buf);
            r.buf = null;
        }
        if (r.charged != 0) {
            inflightBytes.addAndGet(-r.charged);
            r.charged = 0;
        }
        r.message = null;
        NbdRequest h;
        do {
            h = freeShared.get();
            r.next = h;
        } while (!freeShared.compareAndSet(h, r));
        outstanding.decrementAndGet();
    }

    /** The writer lost the peer: stop reading too. */
    void peerGone(IOException e) {
        LOG.log(Level.DEBUG, "nbd connection {0}: write failed: {1}", id, e.toString());
        closeChannel();
    }

    // ---- receiving -------------------------------------------------------------------------

    /** Makes at least {@code n} bytes available in the receive buffer. */
    private void fill(int n) throws IOException {
        if (rb.remaining() >= n) {
            return;
        }
        writer.sendPending(); // about to block: answer what completed first
        rb.compact();
        while (rb.position() < n) {
            if (in.read(rb) < 0) {
                rb.flip();
                throw new EOFException("end of stream");
            }
        }
        rb.flip();
    }

    /** Reads a payload into {@code dst}: first what is buffered, then straight from the socket. */
    private void receive(ByteBuffer dst) throws IOException {
        int n = Math.min(rb.remaining(), dst.remaining());
        if (n > 0) {
            int lim = rb.limit();
            rb.limit(rb.position() + n);
            dst.put(rb);
            rb.limit(lim);
        }
        if (dst.hasRemaining()) {
            writer.sendPending();
        }
        while (dst.hasRemaining()) {
            if (in.read(dst) < 0) {
                throw new EOFException("client left in the middle of a WRITE payload");
            }
        }
    }

    /** Skips a payload we won't use; false when it is too long to be worth reading. */
    private boolean skip(long length) throws IOException {
        if (length > DISCARD_LIMIT) {
            return false;
        }
        long left = length;
        while (left > 0) {
            if (!rb.hasRemaining()) {
                writer.sendPending();
                rb.clear();
                if (in.read(rb) < 0) {
                    throw new EOFException("client left in the middle of a WRITE payload");
                }
                rb.flip();
            }
            int k = (int) Math.min(left, rb.remaining());
            rb.position(rb.position() + k);
            left -= k;
        }
        return true;
    }

    // ---- shutdown ----------------------------------------------------------------------------

    /**
     * Stops taking requests: the reader sees end-of-stream, answers what is in flight and closes.
     * A connection still in the handshake is closed at once.
     */
    void shutdown() {
        try {
            if (inTransmission) {
                ch.shutdownInput();
            } else {
                ch.close();
            }
        } catch (IOException e) {
            closeChannel();
        }
    }

    void closeChannel() {
        try {
            ch.close();
        } catch (IOException e) {
            // nothing more to do
        }
    }

    void join(long millis) throws InterruptedException {
        Thread t = readerThread;
        if (t != null) {
            t.join(millis);
        }
    }

    boolean isAlive() {
        Thread t = readerThread;
        return t != null && t.isAlive();
    }
}
