package io.biostack.nbd;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.BioSplitter;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.Op;

import io.biostack.nbd.tls.TlsException;
import io.biostack.nbd.tls.TlsSession;

import java.lang.System.Logger.Level;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

import static io.biostack.nbd.proto.NbdProtocol.*;

/**
 * One client, as a state machine over buffers that knows nothing of the transport: the
 * {@link Reactor} that owns the connection receives bytes into {@link #recvTarget()}, reports
 * them with {@link #received(int)}, and sends the {@link SendBatch}es that {@link #nextBatch()}
 * gives. The same code runs on the io_uring reactor and on the java.nio one; a TLS session can sit
 * between the socket bytes and these plaintext buffers.
 *
 * <p>Handshake ({@link Handshake}), then transmission: requests are parsed from a small receive
 * buffer, checked against the rules of doc/proto.md ("Error values", "Size constraints",
 * "Command flags"), turned into pooled bios with pooled, 4096-aligned native payload buffers and
 * submitted on the reactor thread, so a file bio goes down that reactor's own ring. A WRITE
 * payload is received straight into its payload buffer (after what the receive buffer already
 * held), and that buffer goes to the device as it is. A READ's reply is sent from the buffer the
 * device filled. Completions on the reactor thread are handled at once; from any other thread they
 * go through the reactor's lock-free queue.
 *
 * <p>Limits: at most {@code maxRequests} requests and {@code maxInflightBytes} of payload in
 * flight; past them the connection stops parsing and receiving until replies have been sent (TCP
 * back-pressure does the rest). A WRITE longer than the maximum payload is read and thrown away
 * when no longer than {@link #DISCARD_LIMIT}, and answered EINVAL; a longer one is taken for an
 * attack and disconnected (section "Size constraints" allows both).
 *
 * <p>Threads: every method runs on the owning reactor's thread, except {@link NbdRequest}'s
 * completion, which routes itself there.
 */
final class NbdConnection {
    private static final System.Logger LOG = System.getLogger("io.biostack.nbd");
    /** Receive buffer: request headers and small payloads; larger payloads bypass it. */
    static final int RECV_BUFFER = 16 * 1024;
    /**
     * Receive buffer during the handshake: options are gathered by {@link Handshake} itself, so a
     * small one does; a connection that never gets further (a flood of stalled handshakes) costs
     * little. Replaced by one of {@link #RECV_BUFFER} when transmission starts.
     */
    static final int HANDSHAKE_RECV = 2048;
    /**
     * Option replies waiting to be sent past which the handshake reads no more options: a client
     * that pipelines options and never reads the replies (each NBD_OPT_INFO takes 22 bytes and
     * answers 86) meets TCP back-pressure, as in transmission, instead of the server holding
     * every reply (and copying them all each time more come).
     */
    static final int HANDSHAKE_OUT_MAX = 64 * 1024;
    /** Oversized WRITE payloads up to this size are skipped and answered; longer ones disconnect. */
    static final long DISCARD_LIMIT = 64L << 20;
    /**
     * Largest READ or WRITE (its aligned range) served to a client that did not negotiate block
     * sizes, whose maximum is "effectively unlimited" (doc/proto.md, "Block size constraints"): as
     * nbdkit, up to 64 MiB, split to the device's limits; beyond it EOVERFLOW.
     */
    static final int LENIENT_MAX = 64 << 20;

    static final int HANDSHAKE = 0;
    static final int TRANSMISSION = 1;
    /** No more input: answering what is in flight, then closing. */
    static final int DRAINING = 2;
    static final int CLOSED = 3;

    final NbdServer server;
    final Reactor reactor;
    final int id;
    final String peer;
    final long startNanos;
    int phase = HANDSHAKE;
    /** Holds a place in the server's handshake budget (given up once, by whoever gets there first). */
    final java.util.concurrent.atomic.AtomicBoolean handshakeSlot = new java.util.concurrent.atomic.AtomicBoolean(true);
    /** Counted in the server's clients in transmission. */
    private boolean countedInTransmission;
    /** Why the connection ended, for one DEBUG line. */
    String endReason;

    private Handshake handshake;
    private ByteBuffer handshakeOut;

    // ---- transmission state, set once after the handshake --------------------------------
    private NbdExport export;
    /** The export's counters, from transmission on (null before); not per I/O allocation: LongAdders. */
    private ExportStats stats;
    private boolean statsOpen;
    private BlockDevice device;
    /** Where this connection's bios go (the server's submitter for the device, held from the start). */
    private java.util.function.Consumer<Bio> submitter;
    private boolean structured;
    private boolean blockStatus;
    /** The metadata contexts the client selected, in the order their chunks go out. */
    private MetaContext[] contexts = MetaContext.NONE;
    private boolean fastZero;
    /** The client did not agree to our block sizes: the spec's defaults apply (RMW, oversized requests). */
    private boolean lenient;
    /** Serialises the read-modify-writes of the device over every connection (cold path only). */
    private RmwGate rmwGate;
    private long size;
    private int minBlock;

    /** Receive buffer; grows (cold) only for bytes a shared receive brought while the budget was spent. */
    private ByteBuffer rb = ByteBuffer.allocateDirect(HANDSHAKE_RECV);
    private MemorySegment rbSeg = MemorySegment.ofBuffer(rb);
    /**
     * Where the unparsed bytes [rStart, rEnd) are: {@link #rb}, or, for the length of one
     * {@link #receivedShared} call, the buffer the reactor lent.
     */
    private ByteBuffer in = rb;
    private MemorySegment inSeg = rbSeg;
    private int rStart;
    private int rEnd;
    /** Most unparsed input held while the budget is spent (a shared receive can't be stopped at once). */
    static final int MAX_HELD_INPUT = 16 << 20;
    /** A WRITE payload with at least this much still to come is received straight into its buffer. */
    static final int DIRECT_PAYLOAD_MIN = 64 * 1024;
    /** A WRITE whose payload is arriving, and how much of it has. */
    private NbdRequest payloadFor;
    private int payloadGot;
    /** Bytes of an oversized WRITE payload still to throw away. */
    private long skipLeft;
    /** Native address of the last {@link #recvTarget()}'s position, for a RECV SQE. */
    long targetAddress;
    /** Set while the receive target is a payload buffer rather than {@link #rb}. */
    private boolean targetIsPayload;

    // ---- requests and budget (reactor thread only) -----------------------------------------
    private NbdRequest free;
    private int created;
    private int outstanding;
    private long inflightBytes;
    /** Completed requests waiting for a batch, oldest first. */
    private NbdRequest doneHead;
    private NbdRequest doneTail;
    /** The plaintext batch being sent, or null. */
    SendBatch sending;
    /** What the transport is sending (the plaintext batch, or one of ciphertext), or null. */
    SendBatch wireSending;

    // ---- TLS (after NBD_OPT_STARTTLS) -------------------------------------------------------
    /** Ciphertext received per RECV at first: a TLS record and then some. */
    static final int CIPHER_IN = 32 * 1024;
    /**
     * Ciphertext received per RECV at most. The buffer doubles each time a RECV fills it (the peer
     * had more queued), so a client that writes 1 MiB payloads takes 4-8 RECVs per payload instead
     * of 32: each RECV is a submission, a completion and often a sleep and a wake-up of the
     * reactor, which took over a third of the server's CPU on 1 MiB writes over TLS (bench/tls
     * --jobs "write 1M 8"). At most 3 growths per connection; idle and handshaking ones keep
     * 32 KiB.
     */
    static final int CIPHER_IN_MAX = 256 * 1024;
    /** Plaintext encrypted per send, so the ciphertext buffer stays small. */
    static final long TLS_BATCH = 1 << 20;
    /** Most ciphertext per send: one pooled buffer's worth (a reply of the maximum payload spans several). */
    static final int CIPHER_OUT_MAX = 4 << 20;
    private TlsSession tls;
    /** STARTTLS was acknowledged; TLS starts once that ACK has been sent. */
    private boolean tlsPending;
    /**
     * The ACK is out and no byte of the ClientHello has come yet: the TLS session (an engine and
     * its buffers, tens of KiB) is made only when one does, so that clients that ask for STARTTLS
     * and stall cost little more than their socket (issue 19).
     */
    private boolean tlsAwaitingHello;
    /** Our close_notify is queued: the last thing sent before the socket closes. */
    private boolean tlsClosing;
    private ByteBuffer cipherIn;
    private MemorySegment cipherInSeg;
    private BufferPool.Buf cipherOut;

    // ---- reactor bookkeeping ---------------------------------------------------------------
    boolean dirty;
    NbdConnection nextDirty;
    /** Place in the reactor's table of connections. */
    int index = -1;
    /** Transport's per-connection state (a socket fd, a channel). */
    Object transport;

    NbdConnection(NbdServer server, Reactor reactor, int id, String peer) {
        this.server = server;
        this.reactor = reactor;
        this.id = id;
        this.peer = peer;
        this.startNanos = System.nanoTime();
        this.handshake = new Handshake(server);
        this.handshakeOut = handshake.takeOutput(); // the greeting
    }

    boolean inTransmission() {
        return phase == TRANSMISSION || phase == DRAINING;
    }

    /** Requests taken and not yet given back (their bios may be in flight). */
    int outstanding() {
        return outstanding;
    }

    // ---- input ---------------------------------------------------------------------------------

    /**
     * Where the next received bytes should go, as a buffer whose [position, limit) is free room,
     * or null when the connection wants no input now (budget used up, draining, closed).
     */
    ByteBuffer recvTarget() {
        if ((phase != HANDSHAKE && phase != TRANSMISSION) || tlsPending) {
            return null;
        }
        if (payloadFor != null && rStart == rEnd) {
            // The rest of a WRITE payload: straight into the buffer that goes to the device.
            ByteBuffer b = payloadFor.buf.bytes;
            int off = payloadFor.dataOff;
            b.limit(off + (int) payloadFor.length).position(off + payloadGot);
            targetIsPayload = true;
            targetAddress = payloadFor.buf.segment.address() + off + payloadGot;
            return b;
        }
        if (blocked()) {
            return null;
        }
        if (phase == HANDSHAKE && handshakeOut != null && handshakeOut.remaining() > HANDSHAKE_OUT_MAX) {
            return null; // the client is not reading its replies: wait until they are sent
        }
        if (rStart == rEnd) {
            rStart = rEnd = 0;
        } else if (rEnd == rb.capacity()) {
            rb.limit(rEnd).position(rStart);
            rb.compact();
            rEnd -= rStart;
            rStart = 0;
        }
        if (rEnd == rb.capacity()) {
            return null; // full of unparsed bytes: parse first (blocked on budget)
        }
        targetIsPayload = false;
        targetAddress = rbSeg.address() + rEnd;
        return rb.limit(rb.capacity()).position(rEnd);
    }

    /** {@code n} bytes arrived in the last {@link #recvTarget()}; parses what it can. */
    void received(int n) {
        if (targetIsPayload) {
            payloadGot += n;
            if (payloadGot == payloadFor.length) {
                NbdRequest r = payloadFor;
                payloadFor = null;
                submitWrite(r);
            }
        } else {
            rEnd += n;
        }
        process();
    }

    /**
     * True when the transport may receive with a shared buffer (a multishot RECV into a provided
     * buffer ring) and pass the bytes to {@link #receivedShared}: plaintext transmission, the
     * budget not spent, and no large WRITE payload to receive straight into its own buffer. Before
     * transmission the handshake and STARTTLS decide how many bytes to read (ciphertext must not be
     * read as plaintext), so the transport receives into {@link #recvTarget()} then.
     */
    boolean sharedReceiveOk() {
        if (phase != TRANSMISSION || tls != null || tlsPending) {
            return false;
        }
        if (payloadFor != null) {
            return rStart != rEnd || payloadFor.length - payloadGot < DIRECT_PAYLOAD_MIN;
        }
        return !blocked() && rEnd - rStart < rb.capacity() / 2;
    }

    /**
     * {@code n} bytes arrived in {@code seg} (viewed as {@code view}), a buffer the transport lends
     * for this call only. Where nothing was left over from before, the requests are parsed where
     * they lie; whatever can't be parsed yet (a partial request, requests beyond the budget) is
     * copied to the connection's own buffer. Bytes after the end of transmission are dropped.
     */
    void receivedShared(MemorySegment seg, ByteBuffer view, int n) {
        if (phase != TRANSMISSION) {
            return; // draining or closed: nothing more is read
        }
        if (rStart == rEnd) {
            view.limit(n);
            in = view;
            inSeg = seg;
            rStart = 0;
            rEnd = n;
            try {
                process();
            } finally {
                int from = rStart;
                int left = rEnd - rStart;
                in = rb;
                inSeg = rbSeg;
                rStart = rEnd = 0;
                if (left > 0 && phase == TRANSMISSION) {
                    hold(seg, from, left);
                }
            }
        } else {
            hold(seg, 0, n);
            process();
        }
    }

    /** Appends {@code len} bytes of {@code src} to the unparsed input in {@link #rb}, making room. */
    private void hold(MemorySegment src, long from, int len) {
        int need = rEnd - rStart + len;
        if (rEnd + len > rb.capacity()) {
            if (need > rb.capacity()) {
                if (need > MAX_HELD_INPUT) {
                    close("client sent over " + (MAX_HELD_INPUT >> 20) + " MiB of requests beyond the budget");
                    return;
                }
                ByteBuffer bigger = ByteBuffer.allocateDirect(Integer.highestOneBit(need - 1) << 1);
                MemorySegment biggerSeg = MemorySegment.ofBuffer(bigger);
                MemorySegment.copy(rbSeg, rStart, biggerSeg, 0, rEnd - rStart);
                rb = in = bigger;
                rbSeg = inSeg = biggerSeg;
            } else {
                MemorySegment.copy(rbSeg, rStart, rbSeg, 0, rEnd - rStart);
            }
            rEnd -= rStart;
            rStart = 0;
        }
        MemorySegment.copy(src, from, rbSeg, rEnd, len);
        rEnd += len;
        rb.limit(rb.capacity()); // absolute gets check the limit, which the handshake moved
    }

    /** The peer closed its side, or the server stops reading: answer what is in flight, then close. */
    void inputEnded(String why) {
        if (phase == HANDSHAKE) {
            close(why);
            return;
        }
        if (phase != TRANSMISSION) {
            return; // already draining or closed
        }
        phase = DRAINING;
        endReason = why;
        if (payloadFor != null) {
            recycle(payloadFor); // never became a bio
            payloadFor = null;
        }
        reactor.markDirty(this);
    }

    /** Ends the connection now; requests still in flight are given back when they complete. */
    void close(String why) {
        if (phase == CLOSED) {
            return;
        }
        if (endReason == null) {
            endReason = why;
        }
        if (handshake != null && handshake.refusedPlain()) {
            LOG.log(Level.WARNING, "nbd: refused plain client {0}: TLS is required", peer);
            countTlsRefusal();
        }
        if (statsOpen) {
            statsOpen = false;
            stats.connectionClosed();
        }
        server.handshakeEnded(this);
        if (countedInTransmission) {
            countedInTransmission = false;
            server.transmissionEnded(this);
        }
        phase = CLOSED;
        server.connectionEnded(this); // no longer counted, though its socket may linger a moment
        for (NbdRequest r = doneHead; r != null; ) {
            NbdRequest n = r.next;
            recycle(r);
            r = n;
        }
        doneHead = doneTail = null;
        LOG.log(Level.DEBUG, "nbd connection {0} from {1} closed: {2}", id, peer, endReason);
        reactor.markDirty(this);
    }

    /**
     * The transport has no operation in flight on this connection any more (it is about to close
     * the socket): a WRITE payload that was being received can go back to the pool.
     */
    void released() {
        if (payloadFor != null) {
            recycle(payloadFor);
            payloadFor = null;
        }
    }

    /** True when the transport should close the socket (once its own operations are done). */
    boolean finished() {
        if (phase == DRAINING && outstanding == 0 && doneHead == null && sending == null && wireSending == null
                && (handshakeOut == null || !handshakeOut.hasRemaining()) && (tls == null || tls.pendingOutput() == 0)) {
            if (tls != null && !tlsClosing && tls.isHandshakeComplete()) {
                // Every reply is out: end TLS with our close_notify before the socket closes, as
                // RFC 8446 (section 6.1) asks and nbdkit (gnutls_bye) does; without it GnuTLS
                // clients see "The TLS connection was non-properly terminated".
                tlsClosing = true;
                tls.close();
                if (tls.pendingOutput() > 0) {
                    return false; // the transport sends it, then asks again
                }
            }
            close(endReason);
        }
        return phase == CLOSED;
    }

    /** Parses and dispatches what the receive buffer holds, as far as the budget allows. */
    void process() {
        if (phase == HANDSHAKE) {
            if (rStart < rEnd && !tlsPending && !tlsAwaitingHello) {
                handshakeInput();
            }
        }
        while (phase == TRANSMISSION) {
            if (payloadFor != null) {
                int n = Math.min(rEnd - rStart, (int) payloadFor.length - payloadGot);
                if (n > 0) {
                    MemorySegment.copy(inSeg, rStart, payloadFor.buf.segment, payloadFor.dataOff + payloadGot, n);
                    rStart += n;
                    payloadGot += n;
                }
                if (payloadGot < payloadFor.length) {
                    return;
                }
                NbdRequest r = payloadFor;
                payloadFor = null;
                submitWrite(r);
                continue;
            }
            if (skipLeft > 0) {
                int n = (int) Math.min(skipLeft, rEnd - rStart);
                rStart += n;
                skipLeft -= n;
                if (skipLeft > 0) {
                    return;
                }
                continue;
            }
            if (rEnd - rStart < REQUEST_SIZE || blocked()) {
                return;
            }
            request();
        }
    }

    private void handshakeInput() {
        rb.limit(rEnd).position(rStart);
        Handshake.Session s;
        try {
            s = handshake.feed(rb);
        } catch (Handshake.Disconnect e) {
            rStart = rb.position();
            queueHandshakeOutput();
            endReason = e.getMessage();
            phase = DRAINING; // send what the handshake answered (ABORT's ack), then close
            reactor.markDirty(this);
            return;
        }
        rStart = rb.position();
        queueHandshakeOutput();
        if (s == Handshake.START_TLS) {
            tlsPending = true; // TLS starts once the ACK is on the wire; what follows is TLS
        } else if (s != null) {
            startTransmission(s);
        }
        reactor.markDirty(this);
    }

    private void queueHandshakeOutput() {
        ByteBuffer o = handshake.takeOutput();
        if (o == null) {
            return;
        }
        if (handshakeOut == null || !handshakeOut.hasRemaining()) {
            handshakeOut = o;
        } else {
            ByteBuffer b = ByteBuffer.allocate(handshakeOut.remaining() + o.remaining());
            b.put(handshakeOut).put(o).flip();
            handshakeOut = b;
        }
    }

    private void startTransmission(Handshake.Session s) {
        // The full-size receive buffer, holding the first requests that came with the last option.
        ByteBuffer big = ByteBuffer.allocateDirect(RECV_BUFFER);
        MemorySegment bigSeg = MemorySegment.ofBuffer(big);
        MemorySegment.copy(rbSeg, rStart, bigSeg, 0, rEnd - rStart);
        rEnd -= rStart;
        rStart = 0;
        rb = in = big;
        rbSeg = inSeg = bigSeg;
        server.handshakeEnded(this);
        countedInTransmission = true; // the handshake took the slot (NbdServer.enterTransmission)
        handshake = null;
        export = s.export();
        stats = server.statsOf(export);
        stats.connectionOpened();
        statsOpen = true;
        device = export.device();
        // Kept: the export may be removed while we serve it (or was, since the handshake chose it).
        java.util.function.Consumer<Bio> sub = server.submitter(device);
        submitter = sub != null ? sub : device::submit;
        structured = s.structured();
        contexts = s.contexts();
        blockStatus = contexts.length > 0;
        size = device.size();
        minBlock = export.minimumBlock();
        fastZero = device.limits().writeZeroes();
        lenient = !s.blockSizeAgreed();
        rmwGate = server.rmwGate(device);
        phase = TRANSMISSION;
    }

    /** Bytes of client input taken by the handshake so far. */
    long handshakeBytes() {
        return handshake == null ? 0 : handshake.consumed();
    }

    // ---- requests --------------------------------------------------------------------------

    /** True when no request can be taken now (all in flight) or the byte budget is spent. */
    private boolean blocked() {
        if (phase != TRANSMISSION) {
            return false;
        }
        if (free == null && created >= server.maxRequests()) {
            return true;
        }
        if (rEnd - rStart >= REQUEST_SIZE) {
            int type = Short.toUnsignedInt(in.getShort(rStart + 6));
            long length = Integer.toUnsignedLong(in.getInt(rStart + 24));
            if ((type == CMD_READ || type == CMD_WRITE) && length <= maxLength()
                    && inflightBytes > 0 && inflightBytes + length > server.maxInflightBytes()) {
                return true;
            }
        }
        return false;
    }

    /** The longest READ or WRITE served: the maximum payload, or for a lenient client {@link #LENIENT_MAX}. */
    private long maxLength() {
        return lenient ? LENIENT_MAX : server.maxPayload();
    }

    private boolean aligned(long offset, long length) {
        return offset % minBlock == 0 && length % minBlock == 0;
    }

    private void request() {
        int p = rStart;
        ByteBuffer in = this.in;
        int magic = in.getInt(p);
        int flags = Short.toUnsignedInt(in.getShort(p + 4));
        int type = Short.toUnsignedInt(in.getShort(p + 6));
        long cookie = in.getLong(p + 8);
        long offset = in.getLong(p + 16);
        long length = Integer.toUnsignedLong(in.getInt(p + 24));
        rStart += REQUEST_SIZE;
        if (magic != REQUEST_MAGIC) {
            // The stream is out of step: nothing after this can be trusted (hard disconnect).
            close("bad request magic 0x" + Integer.toHexString(magic));
            return;
        }
        stats.request(type);
        if (type == CMD_DISC) {
            inputEnded("client sent NBD_CMD_DISC"); // answer what is in flight, then close
            return;
        }
        if (server.isClosing()) {
            if (type == CMD_WRITE && !skip(length)) {
                close("WRITE of " + length + " bytes while shutting down");
                return;
            }
            reply(cookie, type, offset, length, ESHUTDOWN, "server is shutting down");
            return;
        }
        int err = check(type, flags, offset, length);
        if (err != 0 || (length == 0 && type != CMD_FLUSH) || type == CMD_CACHE) {
            if (type == CMD_WRITE && !skip(length)) {
                close("WRITE of " + length + " bytes is far beyond the maximum payload");
                return;
            }
            String why = err == 0 ? null : whyNot(type, flags, offset, length, err);
            reply(cookie, type, offset, length, err, why);
            return;
        }
        if (lenient && (length > server.maxPayload() || !aligned(offset, length))) {
            switch (type) {
                case CMD_READ, CMD_WRITE, CMD_WRITE_ZEROES -> {
                    if (length > server.maxPayload() && type != CMD_WRITE_ZEROES) {
                        stats.oversized();
                    }
                    if (!aligned(offset, length)) {
                        stats.readModifyWrite();
                        if (type != CMD_READ) {
                            rmwWrite(cookie, type, flags, offset, (int) length);
                            return;
                        }
                    }
                    if (type == CMD_READ) {
                        read(cookie, flags, offset, (int) length);
                        return;
                    }
                }
                case CMD_TRIM -> {
                    // A hint: trim the whole blocks inside the range, nothing when there are none.
                    long from = (offset + minBlock - 1) / minBlock * minBlock;
                    long to = (offset + length) / minBlock * minBlock;
                    if (to <= from) {
                        reply(cookie, type, offset, length, 0, null);
                    } else {
                        submitNoData(cookie, type, flags, from, to - from, Op.DISCARD, fua(flags));
                    }
                    return;
                }
                default -> { } // BLOCK_STATUS answers any range as it is
            }
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

    /** Throws away a payload we won't use; false when it is too long to be worth reading. */
    private boolean skip(long length) {
        if (length > DISCARD_LIMIT && !lenient) {
            return false;
        }
        skipLeft = length;
        return true;
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
            // A lenient client's maximum is "effectively unlimited": we serve up to LENIENT_MAX and
            // answer EOVERFLOW past it (doc/proto.md, "Block size constraints", "Error values").
            if (!lenient || length > LENIENT_MAX) {
                return lenient ? EOVERFLOW : EINVAL;
            }
        }
        if (length == 0) {
            return type == CMD_BLOCK_STATUS ? EINVAL : 0;
        }
        if (offset < 0 || (!lenient && (offset % minBlock != 0 || length % minBlock != 0))) {
            return EINVAL;
        }
        if (offset > size || length > size - offset) {
            return type == CMD_WRITE || type == CMD_WRITE_ZEROES ? ENOSPC : EINVAL;
        }
        if (lenient && !aligned(offset, length) && (type == CMD_READ || type == CMD_WRITE || type == CMD_WRITE_ZEROES)
                && alignUp(offset + length) - alignDown(offset) > LENIENT_MAX) {
            return type == CMD_WRITE_ZEROES ? EINVAL : EOVERFLOW; // its aligned range is too large to bounce
        }
        if (type == CMD_WRITE_ZEROES && (flags & CMD_FLAG_FAST_ZERO) != 0 && (!fastZero || !aligned(offset, length))) {
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
            case EOVERFLOW -> cmd + " of " + length + " bytes at " + offset + ": over the " + LENIENT_MAX
                    + "-byte most this server serves (aligned to " + minBlock + ")";
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
                if (lenient && type == CMD_WRITE_ZEROES) {
                    yield "unaligned WRITE_ZEROES of " + length + " bytes at " + offset + ": its " + minBlock
                            + "-byte aligned range is over " + LENIENT_MAX + " bytes; align it or split it";
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

    private void read(long cookie, int flags, long offset, int length) {
        NbdRequest r = take(cookie, CMD_READ, flags, offset, length);
        if (!aligned(offset, length)) {
            // A lenient client's unaligned READ: read the aligned range around it into a pooled
            // bounce buffer and send the bytes asked for out of it.
            long from = alignDown(offset);
            int n = (int) (alignUp(offset + length) - from);
            charge(r, n);
            r.buf = reactor.buffers().get(n);
            r.dataOff = (int) (offset - from);
            Bio bio = server.bios().get().init(Op.READ, 0, from, r.endIo);
            bio.addSegment(r.buf.slice(n));
            submit(bio);
            return;
        }
        if (structured && (flags & CMD_FLAG_DF) == 0 && length >= server.holeProbeMin()) {
            try {
                probeHoles(r);
            } catch (RuntimeException e) {
                // The probe only saves sending zeros: when the device can't say (a qcow2 image
                // whose L2 table can't be read), read it all as data, and the READ tells the truth.
                r.nruns = 0;
            }
            if (r.nruns == 1 && (r.runs[1] & Extent.ZERO) != 0) {
                completed(r); // all zeros: one OFFSET_HOLE chunk, no I/O
                return;
            }
        }
        charge(r, length);
        r.buf = reactor.buffers().get(length);
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

    private void write(long cookie, int flags, long offset, int length) {
        NbdRequest r = take(cookie, CMD_WRITE, flags, offset, length);
        charge(r, length);
        r.buf = reactor.buffers().get(length);
        payloadFor = r;
        payloadGot = 0;
    }

    private void submitWrite(NbdRequest r) {
        if (r.stage == NbdRequest.RMW_WAITING) {
            rmwQueue(r);
            return;
        }
        Bio bio = server.bios().get().init(Op.WRITE, fua(r.flags), r.offset, r.endIo);
        bio.addSegment(r.buf.slice((int) r.length));
        submit(bio);
    }

    // ---- read-modify-write, for the unaligned changes of a lenient client -----------------------

    private long alignDown(long offset) {
        return offset / minBlock * minBlock;
    }

    private long alignUp(long offset) {
        return (offset + minBlock - 1) / minBlock * minBlock;
    }

    /**
     * An unaligned WRITE (its payload still to come) or WRITE_ZEROES of a lenient client: the
     * bytes go into a pooled buffer of the aligned range around them, at their place in it; once
     * they are there the request waits its turn ({@link #rmwQueue}), the head and tail blocks are
     * read into a small pooled buffer, copied around the new bytes, and the aligned range is
     * written. One read-modify-write of the device at a time over all connections ({@link RmwGate}),
     * so two writes into one block never lose each other's bytes, even from two connections of a
     * multi-conn client (as nbdkit's blocksize filter serialises them).
     */
    private void rmwWrite(long cookie, int type, int flags, long offset, int length) {
        NbdRequest r = take(cookie, type, flags, offset, length);
        r.ioOffset = alignDown(offset);
        r.ioLength = (int) (alignUp(offset + length) - r.ioOffset);
        r.dataOff = (int) (offset - r.ioOffset);
        r.stage = NbdRequest.RMW_WAITING;
        charge(r, r.ioLength);
        r.buf = reactor.buffers().get(r.ioLength);
        if (type == CMD_WRITE) {
            payloadFor = r;
            payloadGot = 0;
            return;
        }
        r.buf.segment.asSlice(r.dataOff, length).fill((byte) 0);
        rmwQueue(r);
    }

    /** Starts {@code r} now, or when the read-modify-write before it is done (its reactor is told). */
    private void rmwQueue(NbdRequest r) {
        if (rmwGate.enter(r)) {
            rmwStart(r);
        }
    }

    private void rmwStart(NbdRequest r) {
        r.edges = reactor.buffers().get(2 * minBlock);
        if (r.dataOff != 0) {
            rmwRead(r, NbdRequest.RMW_HEAD, r.ioOffset, 0);
        } else {
            rmwNextStage(r);
        }
    }

    private void rmwRead(NbdRequest r, int stage, long offset, int into) {
        r.stage = stage;
        Bio bio = server.bios().get().init(Op.READ, 0, offset, r.endIo);
        bio.addSegment(r.edges.segment.asSlice(into, minBlock));
        submit(bio);
    }

    /** The edge read of {@code r} completed without error: read the tail, or write the whole. */
    private void rmwNextStage(NbdRequest r) {
        long dataEnd = r.dataOff + r.length;
        boolean tailPartial = dataEnd % minBlock != 0;
        boolean oneBlock = r.ioLength == minBlock;
        if (r.stage != NbdRequest.RMW_TAIL && tailPartial && !(oneBlock && r.stage == NbdRequest.RMW_HEAD)) {
            rmwRead(r, NbdRequest.RMW_TAIL, r.ioOffset + r.ioLength - minBlock, minBlock);
            return;
        }
        MemorySegment buf = r.buf.segment;
        MemorySegment edges = r.edges.segment;
        if (r.dataOff != 0) {
            MemorySegment.copy(edges, 0, buf, 0, r.dataOff);
        }
        if (tailPartial) {
            int tailBase = r.stage == NbdRequest.RMW_TAIL ? minBlock : 0; // else the head block is the tail block
            long blockStart = r.ioLength - minBlock;
            MemorySegment.copy(edges, tailBase + (dataEnd - blockStart), buf, dataEnd, r.ioLength - dataEnd);
        }
        r.stage = NbdRequest.RMW_WRITE;
        Bio bio = server.bios().get().init(Op.WRITE, fua(r.flags), r.ioOffset, r.endIo);
        bio.addSegment(r.buf.slice(r.ioLength));
        submit(bio);
    }

    /**
     * A bio of a read-modify-write completed, or its turn came ({@link NbdRequest#RMW_GRANTED}):
     * go on, or (done, failed, or the connection closed) let the next one of the device start.
     */
    private void rmwCompleted(NbdRequest r) {
        if (r.stage == NbdRequest.RMW_GRANTED) {
            if (phase != CLOSED) {
                r.stage = NbdRequest.RMW_WAITING;
                rmwStart(r);
                return;
            }
            // Closed while it waited: nothing more is written; it is given back below.
        } else if (r.error == 0 && phase != CLOSED && r.stage != NbdRequest.RMW_WRITE) {
            rmwNextStage(r);
            return;
        }
        r.stage = NbdRequest.RMW_NONE;
        if (r.edges != null) {
            reactor.buffers().put(r.edges);
            r.edges = null;
        }
        NbdRequest next = rmwGate.leave();
        if (next != null) {
            // Its own reactor starts it (it may be another connection's, on another thread),
            // through the queue completions take: no recursion here, no allocation.
            next.stage = NbdRequest.RMW_GRANTED;
            next.conn.reactor.handOver(next);
        }
        completed(r);
    }

    private void submitNoData(long cookie, int type, int flags, long offset, long length, Op op, int bioFlags) {
        NbdRequest r = take(cookie, type, flags, offset, length);
        // FUA on TRIM or WRITE_ZEROES: "the server MUST NOT send its reply until the change is
        // persisted" (doc/proto.md, "NBD_CMD_FLAG_FUA"). A bio's FUA is a promise for writes
        // only (the kernel's submit_bio_noacct, blk-core.c, refused it on discards and
        // write-zeroes), and a qcow2 image kept the L2 change in its cache: a FLUSH follows
        // before the reply, as qemu-nbd does for TRIM (nbd/server.c) and qemu's block layer for
        // zeroes a driver can't make FUA.
        r.flushAfter = (flags & CMD_FLAG_FUA) != 0 && op != Op.FLUSH;
        r.zeroOp = op == Op.WRITE_ZEROES;
        Bio bio = server.bios().get().init(op, bioFlags, offset, r.endIo);
        if (op != Op.FLUSH) {
            bio.setSize(length);
        }
        submit(bio);
    }

    private void writeZeroes(long cookie, int flags, long offset, long length) {
        int bioFlags = fua(flags) | ((flags & CMD_FLAG_NO_HOLE) != 0 ? BioFlags.NOUNMAP : 0)
                | ((flags & CMD_FLAG_FAST_ZERO) != 0 ? BioFlags.NOFALLBACK : 0); // a device that would write the zeros says NOTSUPP
        if (fastZero) {
            submitNoData(cookie, CMD_WRITE_ZEROES, flags, offset, length, Op.WRITE_ZEROES, bioFlags);
            return;
        }
        // The device can't zero: write zeros from one shared zero buffer (slow, hence no FAST_ZERO).
        writeZeros(take(cookie, CMD_WRITE_ZEROES, flags, offset, length));
    }

    /** Writes {@code r}'s range from one shared zero buffer, with FUA when asked. */
    private void writeZeros(NbdRequest r) {
        Bio bio = server.bios().get().init(Op.WRITE, fua(r.flags), r.offset, r.endIo);
        for (long left = r.length; left > 0; ) {
            long n = Math.min(left, server.zeros().byteSize());
            bio.addSegment(server.zeros().asSlice(0, n));
            left -= n;
        }
        submit(bio);
    }

    /**
     * Answers BLOCK_STATUS for every selected context in turn, at most {@link NbdRequest#MAX_RUNS}
     * runs each (one with REQ_ONE), never past the range asked (doc/proto.md, "NBD_CMD_BLOCK_STATUS").
     */
    private void blockStatus(long cookie, int flags, long offset, long length) {
        NbdRequest r = take(cookie, CMD_BLOCK_STATUS, flags, offset, length);
        int max = (flags & CMD_FLAG_REQ_ONE) != 0 ? 1 : NbdRequest.MAX_RUNS;
        r.ensureRuns(contexts.length * max);
        long end = offset + length;
        for (int c = 0; c < contexts.length; c++) {
            io.biostack.block.StatusContext src = contexts[c].source();
            int first = r.nruns;
            long pos = offset;
            try {
                while (pos < end && r.nruns - first < max) {
                    Extent x = src == null ? device.extentAt(pos, end - pos) : src.extentAt(pos, end - pos);
                    long n = Math.min(x.length(), end - pos);
                    if (n <= 0) {
                        n = end - pos;
                    }
                    int f = src == null ? x.flags() & (Extent.HOLE | Extent.ZERO) : x.flags();
                    if (r.nruns > first && r.runs[2 * r.nruns - 1] == f) {
                        r.runs[2 * r.nruns - 2] += n;
                    } else {
                        r.addRun(n, f);
                    }
                    pos += n;
                }
            } catch (RuntimeException e) {
                r.fail(EIO, "block status of " + contexts[c].name() + " at " + pos + ": " + e.getMessage());
                break;
            }
            r.contextEnd[c] = r.nruns;
        }
        completed(r);
    }

    private void submit(Bio bio) {
        BioSplitter.submitSplit(bio, device.limits(), server.bios(), submitter);
    }

    /** Answers a request without I/O: an error, a zero-length request, a CACHE. */
    private void reply(long cookie, int type, long offset, long length, int err, String why) {
        NbdRequest r = take(cookie, type, 0, offset, type == CMD_READ ? 0 : length);
        if (err != 0) {
            r.fail(err, why);
        }
        completed(r);
    }

    /** A request from the pool; the caller checked {@link #blocked()}. */
    private NbdRequest take(long cookie, int type, int flags, long offset, long length) {
        NbdRequest r = free;
        if (r == null) {
            created++;
            r = new NbdRequest(this);
        } else {
            free = r.next;
        }
        r.next = null;
        r.set(cookie, type, flags, offset, length);
        outstanding++;
        return r;
    }

    private void charge(NbdRequest r, long n) {
        inflightBytes += n;
        r.charged = n;
    }

    /** Gives a request back once its reply is sent (or dropped): its buffer to the pool. */
    void recycle(NbdRequest r) {
        if (r.edges != null) {
            reactor.buffers().put(r.edges);
            r.edges = null;
        }
        if (r.buf != null) {
            reactor.buffers().put(r.buf);
            r.buf = null;
        }
        if (r.charged != 0) {
            inflightBytes -= r.charged;
            r.charged = 0;
        }
        r.message = null;
        r.next = free;
        free = r;
        outstanding--;
        if (phase == TRANSMISSION) {
            reactor.markDirty(this); // it may have been waiting for this request or these bytes
        }
    }

    /** A request is answered (on the reactor thread): queue its reply. */
    void completed(NbdRequest r) {
        if (r.stage >= NbdRequest.RMW_HEAD) {
            rmwCompleted(r);
            return;
        }
        if (r.zeroOp) {
            r.zeroOp = false;
            if (r.error == ENOTSUP && (r.flags & CMD_FLAG_FAST_ZERO) == 0 && phase != CLOSED) {
                // The device has no way to zero this range (fallocate's ZERO_RANGE on tmpfs or
                // NFS, for NO_HOLE): write the zeros, as qemu's block layer falls back
                // (bdrv_co_do_pwrite_zeroes) and the kernel's blkdev_issue_zeroout do. ENOTSUP is
                // only for FAST_ZERO (doc/proto.md, "Error values"); nbdcopy --allocated failed on it.
                r.error = 0;
                r.message = null;
                r.flushAfter = false; // the write carries FUA itself
                writeZeros(r);
                return;
            }
        }
        if (r.flushAfter) {
            r.flushAfter = false;
            if (r.error == 0 && phase != CLOSED) {
                submit(server.bios().get().init(Op.FLUSH, 0, 0, r.endIo)); // then the reply
                return;
            }
        }
        if (phase == CLOSED) {
            recycle(r);
            return;
        }
        r.next = null;
        if (doneTail == null) {
            doneHead = r;
        } else {
            doneTail.next = r;
        }
        doneTail = r;
        reactor.markDirty(this);
    }

    // ---- output ----------------------------------------------------------------------------

    /** True when there is something to send and no send in flight. */
    boolean hasOutput() {
        return sending == null && phase != CLOSED
                && (doneHead != null || (handshakeOut != null && handshakeOut.hasRemaining()));
    }

    /**
     * Fills {@code b} with replies to send (handshake replies, then completed requests, oldest
     * first) and makes it the batch in flight; false (and {@code b} untouched) when there is none.
     */
    boolean fill(SendBatch b) {
        return fill(b, Long.MAX_VALUE);
    }

    /** {@link #fill(SendBatch)}, stopping once the batch holds {@code maxBytes} (at least one reply). */
    private boolean fill(SendBatch b, long maxBytes) {
        if (!hasOutput()) {
            return false;
        }
        if (handshakeOut != null && handshakeOut.hasRemaining()) {
            ByteBuffer h = b.headers();
            int n = Math.min(h.remaining(), handshakeOut.remaining());
            int lim = handshakeOut.limit();
            handshakeOut.limit(handshakeOut.position() + n);
            h.put(handshakeOut);
            handshakeOut.limit(lim);
            b.headerWritten();
        }
        while (doneHead != null && b.roomForReply(doneHead.dataPieces()) && (b.bytes < maxBytes || b.head == null)) {
            NbdRequest r = doneHead;
            doneHead = r.next;
            if (doneHead == null) {
                doneTail = null;
            }
            encode(r, b);
            b.carry(r);
        }
        b.headerWritten();
        sending = b;
        return true;
    }

    /** The batch in flight was sent in full: give its requests back. */
    void sent(SendBatch b) {
        sending = null;
        for (NbdRequest r = b.head; r != null; ) {
            NbdRequest n = r.next;
            recycle(r);
            r = n;
        }
        b.head = b.tail = null;
    }

    /** The peer can't be written to any more. */
    void sendFailed(SendBatch b, String why) {
        wireSendFailed(b, why);
    }

    // ---- the wire: plaintext as it is, or TLS between the socket and the buffers above ------

    /**
     * Where the transport should receive the next bytes from the socket (a buffer whose
     * [position, limit) is free room, its address in {@link #targetAddress}), or null when the
     * connection wants none now. Without TLS the plaintext target itself; with TLS a ciphertext
     * buffer, decrypted into the plaintext targets as they ask for it.
     */
    ByteBuffer wireTarget() {
        if (tls == null) {
            return recvTarget();
        }
        if (phase == CLOSED || phase == DRAINING || tls.isClosed() || tls.availableApplication() > 0) {
            return null; // plaintext waiting for room (the budget): TCP back-pressure does the rest
        }
        cipherIn.clear();
        targetAddress = cipherInSeg.address();
        return cipherIn;
    }

    /** {@code n} bytes arrived in the last {@link #wireTarget()}. */
    void wireReceived(int n) {
        if (tls == null) {
            if (tlsAwaitingHello) {
                rEnd += n; // the first ClientHello bytes, in rb (recvTarget)
                makeTls();
                return;
            }
            received(n);
            return;
        }
        cipherIn.limit(n).position(0);
        try {
            tls.offerInput(cipherIn);
        } catch (TlsException e) {
            tlsRefused(e);
            return;
        }
        if (n == cipherIn.capacity() && n < CIPHER_IN_MAX) {
            // The RECV is complete, so no receive is in flight into the old buffer.
            newCipherIn(n * 2);
        }
        pullTls();
    }

    /** A fresh ciphertext receive buffer of {@code size} bytes (no RECV may be in flight into the old one). */
    private void newCipherIn(int size) {
        cipherIn = ByteBuffer.allocateDirect(size);
        cipherInSeg = MemorySegment.ofBuffer(cipherIn);
    }

    /** Continues after a pause: decrypted plaintext waiting, requests left in the buffer. */
    void resume() {
        if (tls != null && !tlsPending) {
            pullTls();
        }
        process();
    }

    private boolean tlsUpLogged;

    private void tlsUp() {
        if (!tlsUpLogged) {
            tlsUpLogged = true;
            LOG.log(Level.DEBUG, "nbd connection {0} from {1}: {2}, peer {3}", id, peer, tls.describe(), tls.peerIdentity());
        }
    }

    /** Moves decrypted plaintext into the targets the connection asks for, and parses it. */
    private void pullTls() {
        if (tls != null && !tlsUpLogged && tls.isHandshakeComplete()) {
            tlsUp();
        }
        while (tls != null && tls.availableApplication() > 0) {
            ByteBuffer t = recvTarget();
            if (t == null) {
                break;
            }
            int k = tls.readApplication(t);
            if (k <= 0) {
                break;
            }
            received(k);
        }
        if (tls != null && tls.isClosed() && tls.availableApplication() == 0
                && (phase == HANDSHAKE || phase == TRANSMISSION)) {
            inputEnded("client ended TLS");
        }
        if (tls != null && tls.pendingOutput() > 0 && wireSending == null) {
            reactor.markDirty(this); // a TLS handshake message waits to be sent
        }
    }

    /** The STARTTLS ACK is on the wire: TLS starts with the first ClientHello bytes (maybe here already). */
    private void startTls() {
        tlsPending = false;
        if (tls != null) {
            return;
        }
        if (rStart < rEnd) {
            makeTls();
        } else {
            tlsAwaitingHello = true;
        }
    }

    /** Makes the TLS session and feeds it what arrived since the STARTTLS ACK. */
    private void makeTls() {
        tlsAwaitingHello = false;
        try {
            tls = server.tlsCredentials().newServerSession(peer);
            newCipherIn(CIPHER_IN);
            if (rStart < rEnd) {
                rb.limit(rEnd).position(rStart);
                tls.offerInput(rb);
            }
            rStart = rEnd = 0;
        } catch (TlsException e) {
            tlsRefused(e);
            return;
        }
        pullTls();
        if (tls != null && tls.isHandshakeComplete()) {
            tlsUp();
        }
    }

    private void countTlsRefusal() {
        ExportStats s = server.refusalStats();
        if (s != null) {
            s.tlsRefused();
        }
    }

    private void tlsRefused(TlsException e) {
        // One line per refused client, no stack trace: who, and why.
        LOG.log(Level.WARNING, "nbd: refused TLS client {0}: {1}", peer, e.getMessage());
        countTlsRefusal();
        endReason = "TLS refused: " + e.getMessage();
        if (tls != null && tls.pendingOutput() > 0 && phase != CLOSED) {
            phase = DRAINING; // send the alert, so the peer learns why, then close
            reactor.markDirty(this);
        } else {
            close(endReason);
        }
    }

    /** True when there is something to send and no send in flight. */
    boolean wireHasOutput() {
        if (tls == null) {
            return hasOutput() && wireSending == null;
        }
        return wireSending == null && phase != CLOSED && (hasOutput() || tls.pendingOutput() > 0);
    }

    /**
     * Fills {@code b} with what goes on the wire next and makes it the send in flight. With TLS,
     * replies (at most {@link #TLS_BATCH} bytes of them at a time, so the ciphertext stays small)
     * are encrypted in one call, so that they share records (a batch of 4 KiB read replies took
     * two records each: 13-19 us of server CPU per read, against 4-13 with records shared, in
     * bench/tls), given back at once (the session copied them), and the ciphertext goes out of
     * a pooled buffer.
     */
    void wireFill(SendBatch b) {
        if (tls == null) {
            fill(b);
            wireSending = b;
            return;
        }
        if (hasOutput()) {
            SendBatch plain = reactor.takeBatch();
            fill(plain, TLS_BATCH);
            try {
                for (int i = 0; i < plain.pieces; i++) {
                    plain.view(i);
                }
                tls.writeApplication(plain.views, 0, plain.pieces); // replies share records
            } catch (TlsException | IllegalStateException e) {
                sent(plain);
                reactor.giveBatch(plain);
                if (tls.pendingOutput() == 0 || (phase != TRANSMISSION && phase != DRAINING)) {
                    close("TLS failed: " + e.getMessage());
                    return;
                }
                // The session queued its last record: the close_notify answering a TLS 1.2
                // client's, which "MUST respond with a close_notify alert of its own" while the
                // replies may be discarded (RFC 5246, section 7.2.1), or an alert. It goes out
                // below; the connection ends once the requests in flight are done (finished()).
                tlsClosing = true;
                inputEnded("TLS failed: " + e.getMessage());
            }
            sent(plain);
            reactor.giveBatch(plain);
        }
        int n = Math.min(tls.pendingOutput(), CIPHER_OUT_MAX); // the rest goes with the next send
        cipherOut = reactor.buffers().get(Math.max(n, 1));
        ByteBuffer o = cipherOut.bytes;
        o.clear().limit(n);
        int got = tls.readOutput(o);
        b.data(cipherOut, 0, got);
        wireSending = b;
    }

    /** The send in flight went out in full. */
    void wireSent(SendBatch b) {
        wireSending = null;
        if (tls == null) {
            sent(b);
        } else if (cipherOut != null) {
            reactor.buffers().put(cipherOut);
            cipherOut = null;
        }
        if (tlsPending && (handshakeOut == null || !handshakeOut.hasRemaining())) {
            startTls();
        }
    }

    /** The peer can't be written to any more. */
    void wireSendFailed(SendBatch b, String why) {
        wireSent(b);
        close(why);
    }

    // ---- encoding (section "Simple reply message", "Structured reply chunk message") -------

    private void encode(NbdRequest r, SendBatch b) {
        ByteBuffer out = b.headers();
        if (r.error != 0 && stats != null) {
            stats.error(r.error);
        }
        if (r.type == CMD_READ && r.error == 0) {
            encodeRead(r, b);
        } else if (r.type == CMD_BLOCK_STATUS && r.error == 0) {
            // One chunk per context, in the order selected; the last one ends the reply.
            int from = 0;
            for (int c = 0; c < contexts.length; c++) {
                int to = r.contextEnd[c];
                int done = c == contexts.length - 1 ? REPLY_FLAG_DONE : 0;
                chunkHeader(out, r.cookie, done, REPLY_TYPE_BLOCK_STATUS, 4 + 8 * (to - from));
                out.putInt(contexts[c].id());
                for (int i = from; i < to; i++) {
                    out.putInt((int) r.runs[2 * i]);
                    out.putInt((int) r.runs[2 * i + 1]);
                }
                from = to;
            }
        } else if (r.error != 0 && structured) {
            byte[] msg = r.message == null ? new byte[0] : r.message.getBytes(StandardCharsets.UTF_8);
            int n = Math.min(msg.length, 1024);
            // The message is UTF-8 (section "NBD_REPLY_TYPE_ERROR"): cut before a character, not
            // inside one (10xxxxxx is a continuation byte).
            while (n < msg.length && n > 0 && (msg[n] & 0xc0) == 0x80) {
                n--;
            }
            chunkHeader(out, r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 6 + n);
            out.putInt(r.error);
            out.putShort((short) n);
            out.put(msg, 0, n);
        } else {
            simple(out, r.cookie, r.error); // no payload after an error (section "NBD_CMD_READ")
        }
    }

    private void encodeRead(NbdRequest r, SendBatch b) {
        ByteBuffer out = b.headers();
        int len = (int) r.length;
        if (!structured) {
            simple(out, r.cookie, 0);
            if (len > 0) {
                b.data(r.buf, r.dataOff, len);
            }
            return;
        }
        if (len == 0) {
            chunkHeader(out, r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0);
            return;
        }
        if (r.nruns == 0) {
            chunkHeader(out, r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 8 + len);
            out.putLong(r.offset);
            b.data(r.buf, r.dataOff, len);
            return;
        }
        long pos = 0;
        for (int i = 0; i < r.nruns; i++) {
            int n = (int) r.runs[2 * i];
            boolean hole = (r.runs[2 * i + 1] & Extent.ZERO) != 0;
            int done = i == r.nruns - 1 ? REPLY_FLAG_DONE : 0;
            if (hole) {
                chunkHeader(out, r.cookie, done, REPLY_TYPE_OFFSET_HOLE, 12);
                out.putLong(r.offset + pos);
                out.putInt(n);
            } else {
                chunkHeader(out, r.cookie, done, REPLY_TYPE_OFFSET_DATA, 8 + n);
                out.putLong(r.offset + pos);
                b.data(r.buf, (int) pos, n);
            }
            pos += n;
        }
    }

    private static void simple(ByteBuffer out, long cookie, int error) {
        out.putInt(SIMPLE_REPLY_MAGIC);
        out.putInt(error);
        out.putLong(cookie);
    }

    private static void chunkHeader(ByteBuffer out, long cookie, int flags, int type, int length) {
        out.putInt(STRUCTURED_REPLY_MAGIC);
        out.putShort((short) flags);
        out.putShort((short) type);
        out.putLong(cookie);
        out.putInt(length);
    }

    @Override
    public String toString() {
        return "nbd connection " + id + " from " + peer;
    }
}
