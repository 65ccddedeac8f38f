package io.biostack.nbd.client;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.BioQueue;
import io.biostack.block.Op;
import io.biostack.block.Status;

import java.io.EOFException;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.locks.LockSupport;

import static io.biostack.nbd.proto.NbdProtocol.*;

/**
 * One NBD connection of a {@link NbdClient}: a table of in-flight slots, a send path shared by the
 * submitting threads, and one receiving thread.
 *
 * <h2>Slots and cookies</h2>
 * A request lives in one of {@link #SLOTS} slots from the moment it is sent until its reply has
 * been handled (as the kernel's nbd.c keeps one tag per request). The slot's state word packs a
 * generation and a phase ({@code gen << 3 | phase}); the cookie on the wire is
 * {@code gen << 32 | slot}, so a reply to a request that was never sent, or to one already
 * finished, is recognised and the connection treated as broken. Every change of phase is a CAS of
 * the whole word, which is how the receiver, the watchdog and a reconnect agree on who completes
 * a bio: exactly one of them wins.
 *
 * <pre>
 *  FREE ─(sender)→ FILLING ─→ SENT ─(receiver)→ RECEIVING ─(last chunk)→ FREE
 *                              │  ↑ (connection lost: reissued)   │
 *                              │  └───────────────────────────────┘
 *                              └─(watchdog: past the timeout, or a protocol error)→ ABANDONED ─(reconnect)→ FREE
 * </pre>
 *
 * <h2>Sending without a lock</h2>
 * Submitters push bios onto a lock-free queue and then try to take the send flag (one CAS); the
 * thread that holds it drains the queue into free slots, encodes the requests into the
 * connection's send buffer and writes them with one system call per batch; the others return at
 * once. A thread waits only for socket buffer space (TCP back-pressure), never for another
 * thread. The receiving thread never sends a payload (it could deadlock against a server that
 * stops reading while its replies back up): a WRITE submitted from an end-io callback on the
 * receiving thread, a bio that waited for a free slot, or the second half of a PREFLUSH write are
 * sent by the next submitter or by the client's supervisor thread (one hop). Requests without a
 * payload (READ, FLUSH, TRIM, ...) resubmitted from a callback go out at once: 28 bytes can't
 * fill a socket that 256 slots' worth of headers never could.
 *
 * <h2>Memory</h2>
 * Two direct buffers per connection, allocated once: WRITE payloads are copied from the bio into
 * the send buffer with the header; READ payloads are copied from the receive buffer into the bio.
 * Nothing is allocated per request.
 */
final class Connection {
    static final int SLOTS = 256;
    private static final int WORDS = SLOTS / 64;

    static final int FREE = 0;
    static final int FILLING = 1;
    static final int SENT = 2;
    static final int RECEIVING = 3;
    static final int ABANDONED = 4;
    private static final int PHASE = 7;

    static final int CONNECTED = 0;
    static final int BROKEN = 1;
    static final int CLOSED = 2;

    private static final int RECV_BUFFER = 256 * 1024;
    /** Non-data reply chunks longer than this are taken for garbage (an error message is at most 4096). */
    private static final int MAX_SMALL_CHUNK = 64 * 1024;

    private final NbdClient dev;
    final int id;

    volatile Transport transport;
    volatile int phase;
    volatile Thread receiver;
    volatile long lastRecv;
    /** The supervisor's: when to try to reconnect next, and how long it waits after a failure. */
    long nextAttempt;
    long backoff;
    /** The supervisor's: when the link was lost (System.nanoTime), and attempts since. */
    long lostAt;
    int attempts;
    /** Set when someone must call {@link #kick()} on a thread that may block (the supervisor). */
    volatile boolean needKick;

    // ---- slots: written by the sender before SENT (release), read after acquire ----------
    private final Bio[] bios = new Bio[SLOTS];
    private final int[] cmds = new int[SLOTS];
    private final int[] cflags = new int[SLOTS];
    private final long[] offs = new long[SLOTS];
    private final int[] lens = new int[SLOTS];
    private final long[] sentAt = new long[SLOTS];
    private final int[] errs = new int[SLOTS];     // receiver only: first error of a structured reply
    /** A FLUSH's: the device's count of acknowledged writes when it was sent (see {@link NbdClient#flushDone}). */
    private final long[] flushMark = new long[SLOTS];
    /**
     * Writes (WRITE, TRIM, WRITE_ZEROES without FUA) this connection's receivers have acknowledged
     * to their callers: written by the one receiver alive at a time, summed by the device.
     */
    volatile long acked;
    /**
     * Receiver only: bytes of a READ that content chunks described so far. doc/proto.md,
     * NBD_CMD_READ: "When no error is detected, the server MUST send enough data chunks to cover
     * the entire region"; a reply that ends in success short of that would hand the caller
     * whatever its buffer held before.
     */
    private final long[] covered = new long[SLOTS];
    /**
     * Receiver only: a fingerprint of the ranges the content chunks of a READ described, so that
     * chunks that overlap (which the spec forbids) are caught even when their lengths add up to
     * the READ's: the sum over chunks [a, b) of r^b - r^a modulo the prime {@link #P}, which
     * equals r^len - 1 when the chunks tile [0, len) exactly. The sum is (r - 1) times the
     * polynomial whose coefficient at x counts the chunks covering byte x, so any other cover
     * gives a different polynomial of degree at most len, which a random r (per connection)
     * makes equal with probability at most len / P, below 2^-29. Two longs per slot; no
     * allocation, no range list. Computed only once chunks come out of order (see
     * {@link #inOrder}): servers send a READ's chunks in order, and then no powMod is paid.
     */
    private final long[] coverHash = new long[SLOTS];
    /**
     * Receiver only: where the next chunk of a READ starts while every chunk so far has followed
     * the one before from 0 (a cover with no gap and no overlap), or -1 once one did not: from
     * then on {@link #coverHash} holds the cover, the prefix folded in.
     */
    private final long[] inOrder = new long[SLOTS];
    /** The Mersenne prime 2^61 - 1, the modulus of {@link #coverHash}. */
    private static final long P = (1L << 61) - 1;
    /** The point r at which {@link #coverHash} evaluates the cover, in [2, P - 2]. */
    private final long coverBase = java.util.concurrent.ThreadLocalRandom.current().nextLong(2, P - 1);
    private final AtomicIntegerArray state = new AtomicIntegerArray(SLOTS);
    /** Free-slot bitmap: bits set by any thread (getAndBitwiseOr), cleared only by the send-flag holder. */
    private final long[] free = new long[WORDS];
    private static final VarHandle FREE_BITS = MethodHandles.arrayElementVarHandle(long[].class);

    // ---- send path ----------------------------------------------------------------------------
    private final BioQueue incoming = new BioQueue();
    private final AtomicInteger sending = new AtomicInteger();
    private final Backlog backlog = new Backlog();  // owned by the send-flag holder
    private volatile boolean backlogged;
    private final ByteBuffer sbuf;
    private final MemorySegment sseg;

    // ---- receive path (receiver thread only) --------------------------------------------------
    private final ByteBuffer rbuf = ByteBuffer.allocateDirect(RECV_BUFFER);
    private final MemorySegment rseg = MemorySegment.ofBuffer(rbuf);

    Connection(NbdClient dev, int id, int maxPayload) {
        this.dev = dev;
        this.id = id;
        this.sbuf = ByteBuffer.allocateDirect(Math.max(256 * 1024, maxPayload + 64 * 1024));
        this.sseg = MemorySegment.ofBuffer(sbuf);
        for (int w = 0; w < WORDS; w++) {
            FREE_BITS.setVolatile(free, w, -1L);
        }
        this.phase = BROKEN;
    }

    // ---- submit side ----------------------------------------------------------------------------

    /** Takes ownership of {@code bio} until its completion. */
    void queue(Bio bio) {
        incoming.push(bio);
        kick();
    }

    /** Sends what is queued if no other thread is sending; returns at once otherwise. */
    void kick() {
        while (true) {
            if (!sending.compareAndSet(0, 1)) {
                return;
            }
            try {
                drainLocked();
            } finally {
                sending.set(0);
            }
            // A bio pushed, or a slot freed, while we held the flag: its thread saw the flag taken.
            if (incoming.isEmpty() && !(backlogged && hasFree()) || Thread.currentThread() == receiver && needKick) {
                return;
            }
        }
    }

    private void drainLocked() {
        for (Bio in = incoming.takeAll(); in != null; ) {
            Bio next = BioQueue.next(in);
            backlog.addLast(in, System.nanoTime());
            in = next;
        }
        Transport t = phase == CONNECTED ? transport : null;
        boolean wrote = false;
        boolean onReceiver = Thread.currentThread() == receiver;
        while (!backlog.isEmpty()) {
            if (onReceiver && t != null && backlog.peekFirst().op() == Op.WRITE) {
                // An end-io callback resubmitting on the receiving thread: a WRITE payload could
                // block on a full socket while the server waits for us to read its replies.
                needKick = true;
                dev.wakeSupervisor();
                break;
            }
            int i = alloc();
            if (i < 0) {
                break;
            }
            fill(i, backlog.pollFirst());
            if (t != null) {
                try {
                    t = encode(i, t);
                    wrote = true;
                } catch (IOException e) {
                    lost(t, e);
                    t = null;
                }
            }
            publish(i, SENT);
        }
        backlogged = !backlog.isEmpty();
        if (wrote && t != null) {
            try {
                flushOut(t);
            } catch (IOException e) {
                lost(t, e);
            }
        }
    }

    private void fill(int i, Bio b) {
        int s = state.get(i);
        int gen = (s >>> 3) + 1;
        state.set(i, gen << 3 | FILLING);
        bios[i] = b;
        Op op = b.op();
        int cmd;
        int f = 0;
        if (b.driverData() instanceof NbdClient.StatusQuery) {
            cmd = CMD_BLOCK_STATUS;
            f = CMD_FLAG_REQ_ONE;
        } else if (b.driverData() == NbdClient.CACHE) {
            cmd = CMD_CACHE;
        } else if (b.hasFlag(BioFlags.PREFLUSH) && op != Op.FLUSH && dev.info.has(FLAG_SEND_FLUSH)) {
            cmd = CMD_FLUSH; // the data part goes out again once the flush has completed
        } else {
            cmd = switch (op) {
                case READ -> CMD_READ;
                case WRITE -> CMD_WRITE;
                case FLUSH -> CMD_FLUSH;
                case DISCARD -> CMD_TRIM;
                case WRITE_ZEROES -> CMD_WRITE_ZEROES;
            };
            if (b.hasFlag(BioFlags.FUA) && op != Op.READ && op != Op.FLUSH && dev.info.has(FLAG_SEND_FUA)) {
                f |= CMD_FLAG_FUA;
            }
            if (op == Op.WRITE_ZEROES && b.hasFlag(BioFlags.NOUNMAP)) {
                f |= CMD_FLAG_NO_HOLE;
            }
        }
        cmds[i] = cmd;
        cflags[i] = f;
        offs[i] = cmd == CMD_FLUSH ? 0 : b.offset();
        if (cmd == CMD_FLUSH) {
            flushMark[i] = dev.ackedWrites();
        }
        // A READ of the last block of an export whose size is not whole blocks stops at its end.
        lens[i] = cmd == CMD_FLUSH ? 0 : (int) Math.min(b.size(), dev.info.size() - b.offset());
        sentAt[i] = System.nanoTime();
    }

    private void publish(int i, int phase) {
        int s = state.get(i);
        state.set(i, (s & ~PHASE) | phase);
    }

    /** Puts slot {@code i}'s request into the send buffer; flushes first when it would not fit. */
    private Transport encode(int i, Transport t) throws IOException {
        int cmd = cmds[i];
        int payload = cmd == CMD_WRITE ? lens[i] : 0;
        if (sbuf.remaining() < REQUEST_SIZE + payload) {
            flushOut(t);
        }
        int p = sbuf.position();
        long cookie = (long) (state.get(i) >>> 3) << 32 | i;
        sbuf.putInt(p, REQUEST_MAGIC)
                .putShort(p + 4, (short) cflags[i])
                .putShort(p + 6, (short) cmd)
                .putLong(p + 8, cookie)
                .putLong(p + 16, offs[i])
                .putInt(p + 24, lens[i]);
        if (payload > 0) {
            BioMemory.copyOut(bios[i], sseg, p + REQUEST_SIZE);
        }
        sbuf.position(p + REQUEST_SIZE + payload);
        return t;
    }

    private void flushOut(Transport t) throws IOException {
        sbuf.flip();
        try {
            t.write(sbuf);
        } finally {
            sbuf.clear();
        }
    }

    private int alloc() {
        for (int w = 0; w < WORDS; w++) {
            long v = (long) FREE_BITS.getVolatile(free, w);
            if (v != 0) {
                long bit = Long.lowestOneBit(v);
                long unused = (long) FREE_BITS.getAndBitwiseAnd(free, w, ~bit); // only the send-flag holder clears bits
                return w * 64 + Long.numberOfTrailingZeros(bit);
            }
        }
        return -1;
    }

    private boolean hasFree() {
        for (int w = 0; w < WORDS; w++) {
            if ((long) FREE_BITS.getVolatile(free, w) != 0) {
                return true;
            }
        }
        return false;
    }

    /** Frees slot {@code i}; its bio must have been taken out already. */
    private void release(int i) {
        bios[i] = null;
        int s = state.get(i);
        state.set(i, (s & ~PHASE) | FREE);
        long unused = (long) FREE_BITS.getAndBitwiseOr(free, i >>> 6, 1L << (i & 63));
        if (backlogged) {
            needKick = true;
            dev.wakeSupervisor();
        }
    }

    // ---- receiver ---------------------------------------------------------------------------

    /** The receiving loop for transport {@code t}; runs on its own thread until {@code t} breaks. */
    void receive(Transport t) {
        rbuf.clear().limit(0);
        try {
            while (true) {
                readReply(t);
            }
        } catch (ProtocolException e) {
            lost(t, e, false);
            abandonInFlight(Status.IOERR, dev.uri + ": " + e.getMessage());
        } catch (IOException | RuntimeException e) {
            lost(t, e);
        } finally {
            // Requests half answered go out again on the next connection.
            for (int i = 0; i < SLOTS; i++) {
                int s = state.get(i);
                if ((s & PHASE) == RECEIVING) {
                    state.compareAndSet(i, s, (s & ~PHASE) | SENT);
                }
            }
        }
    }

    private void need(Transport t, int n) throws IOException {
        if (rbuf.remaining() >= n) {
            return;
        }
        rbuf.compact();
        while (rbuf.position() < n) {
            if (t.read(rbuf) < 0) {
                rbuf.flip();
                throw new EOFException("the server closed the connection");
            }
        }
        rbuf.flip();
        lastRecv = System.nanoTime();
    }

    private void readReply(Transport t) throws IOException {
        need(t, 4);
        int p = rbuf.position();
        int magic = rbuf.getInt(p);
        if (magic == SIMPLE_REPLY_MAGIC) {
            need(t, SIMPLE_REPLY_SIZE);
            p = rbuf.position();
            int err = rbuf.getInt(p + 4);
            long cookie = rbuf.getLong(p + 8);
            rbuf.position(p + SIMPLE_REPLY_SIZE);
            int i = claim(cookie, "simple reply");
            if (cmds[i] == CMD_READ && dev.info.structured()) {
                throw new ProtocolException("a simple reply to a READ after structured replies were negotiated");
            }
            if (cmds[i] == CMD_READ && err == 0) {
                stream(t, bios[i], 0, lens[i]);
            }
            finish(i, err);
        } else if (magic == STRUCTURED_REPLY_MAGIC) {
            need(t, CHUNK_HEADER_SIZE);
            p = rbuf.position();
            int flags = Short.toUnsignedInt(rbuf.getShort(p + 4));
            int type = Short.toUnsignedInt(rbuf.getShort(p + 6));
            long cookie = rbuf.getLong(p + 8);
            long length = Integer.toUnsignedLong(rbuf.getInt(p + 16));
            rbuf.position(p + CHUNK_HEADER_SIZE);
            if (!dev.info.structured()) {
                throw new ProtocolException("a structured reply that was never negotiated");
            }
            int i = claim(cookie, "reply chunk");
            chunk(t, i, type, length);
            if ((flags & REPLY_FLAG_DONE) != 0) {
                if (errs[i] == 0 && cmds[i] == CMD_READ && covered[i] != lens[i]) {
                    // A count that is not the length is a gap or an overlap, both against the
                    // spec, which lets the client hard-disconnect: the READ fails, never
                    // succeeds.
                    throw new ProtocolException("the server ended a READ of " + lens[i] + " bytes at " + offs[i]
                            + " as a success with " + covered[i] + " bytes of data and holes");
                }
                if (errs[i] == 0 && cmds[i] == CMD_READ && inOrder[i] < 0 && coverHash[i] != cover(0, lens[i])) {
                    // As many bytes as asked, but not each once: chunks overlapped, and the
                    // bytes they left out would be whatever the caller's buffer held.
                    throw new ProtocolException("the server ended a READ of " + lens[i] + " bytes at " + offs[i]
                            + " as a success with chunks that overlap and leave bytes out");
                }
                finish(i, errs[i]);
            }
        } else {
            throw new ProtocolException("garbage where a reply should be (magic 0x" + Integer.toHexString(magic) + ")");
        }
    }

    /** The slot a cookie names, moved to RECEIVING; a cookie we have no request for is a protocol error. */
    private int claim(long cookie, String what) throws IOException {
        long slot = cookie & 0xffff_ffffL;
        int gen = (int) (cookie >>> 32);
        if (slot >= SLOTS) {
            throw new ProtocolException(what + " for cookie 0x" + Long.toHexString(cookie) + ", which was never sent");
        }
        int i = (int) slot;
        int s = state.get(i);
        // A failed CAS means the watchdog (or abandonInFlight) moved the slot meanwhile: decide on
        // the word it left, not the one read before. Deciding on the stale SENT took a late reply
        // to a request that had just timed out for a protocol error, which fails every other
        // request on the connection with EIO instead of sending it again.
        while (s >>> 3 == (gen & 0x1fff_ffff)) {
            if ((s & PHASE) == RECEIVING) {
                return i;
            }
            if ((s & PHASE) == ABANDONED) {
                throw new IOException("a late reply to a request that timed out");
            }
            if ((s & PHASE) != SENT) {
                break;
            }
            if (state.compareAndSet(i, s, (s & ~PHASE) | RECEIVING)) {
                errs[i] = 0;
                covered[i] = 0;
                coverHash[i] = 0;
                inOrder[i] = 0;
                return i;
            }
            s = state.get(i);
        }
        throw new ProtocolException(what + " for cookie 0x" + Long.toHexString(cookie) + ", which was never sent");
    }

    private void chunk(Transport t, int i, int type, long length) throws IOException {
        int cmd = cmds[i];
        switch (type) {
            case REPLY_TYPE_OFFSET_DATA -> {
                if (cmd != CMD_READ || length < 8 || length - 8 > lens[i]) {
                    throw new ProtocolException("an OFFSET_DATA chunk of " + length + " bytes to a "
                            + commandName(cmd) + " of " + lens[i]);
                }
                need(t, 8);
                long off = rbuf.getLong();
                long n = length - 8;
                long pos = off - offs[i];
                if (pos < 0 || pos + n > lens[i]) {
                    throw new ProtocolException("OFFSET_DATA at " + off + " outside the READ of " + lens[i] + " at " + offs[i]);
                }
                stream(t, bios[i], pos, n);
                covered[i] += n;
                addCover(i, pos, n);
            }
            case REPLY_TYPE_OFFSET_HOLE -> {
                if (cmd != CMD_READ || length != 12) {
                    throw new ProtocolException("a bad OFFSET_HOLE chunk (" + length + " bytes to a " + commandName(cmd) + ")");
                }
                need(t, 12);
                long off = rbuf.getLong();
                long n = Integer.toUnsignedLong(rbuf.getInt());
                long pos = off - offs[i];
                if (pos < 0 || pos + n > lens[i]) {
                    throw new ProtocolException("OFFSET_HOLE at " + off + " outside the READ of " + lens[i] + " at " + offs[i]);
                }
                BioMemory.copyIn(bios[i], pos, null, 0, n);
                covered[i] += n;
                addCover(i, pos, n);
            }
            case REPLY_TYPE_BLOCK_STATUS -> {
                if (cmd != CMD_BLOCK_STATUS || length < 12 || (length - 4) % 8 != 0) {
                    throw new ProtocolException("a bad BLOCK_STATUS chunk (" + length + " bytes to a " + commandName(cmd) + ")");
                }
                need(t, 12);
                int ctx = rbuf.getInt();
                long elen = Integer.toUnsignedLong(rbuf.getInt());
                int eflags = rbuf.getInt();
                if (ctx == dev.info.metaId() && bios[i].driverData() instanceof NbdClient.StatusQuery q) {
                    q.set(elen, eflags);
                }
                skip(t, length - 12);
            }
            case REPLY_TYPE_NONE -> {
                if (length != 0) {
                    throw new ProtocolException("a NONE chunk with " + length + " bytes");
                }
            }
            default -> {
                if ((type & REPLY_TYPE_ERROR_BIT) == 0) {
                    throw new ProtocolException("an unknown reply chunk type " + type);
                }
                if (length < 6 || length > MAX_SMALL_CHUNK) {
                    throw new ProtocolException("an error chunk of " + length + " bytes");
                }
                need(t, 6);
                int err = rbuf.getInt();
                int mlen = Short.toUnsignedInt(rbuf.getShort());
                if (mlen > length - 6) {
                    throw new ProtocolException("an error message longer than its chunk");
                }
                if (errs[i] == 0) {
                    errs[i] = err == 0 ? 5 : err; // an error chunk with error 0 is still an error
                }
                skip(t, length - 6);
            }
        }
    }

    // ---- the cover fingerprint of a READ's chunks (see coverHash) ------------------------------

    /** Adds the chunk [pos, pos + n) to slot {@code i}'s cover: a compare while in order, the fingerprint after. */
    private void addCover(int i, long pos, long n) {
        long next = inOrder[i];
        if (next == pos) {
            inOrder[i] = pos + n;
            return;
        }
        if (next >= 0) {
            coverHash[i] = cover(0, next); // the prefix [0, next) so far
            inOrder[i] = -1;
        }
        coverHash[i] = addMod(coverHash[i], cover(pos, pos + n));
    }

    /** r^b - r^a mod P: the term of the chunk [a, b) (0 <= a <= b < 2^32). */
    private long cover(long a, long b) {
        return addMod(powMod(coverBase, b), P - powMod(coverBase, a));
    }

    private static long addMod(long x, long y) {
        long s = x + y; // both below P = 2^61 - 1: no overflow
        return s >= P ? s - P : s;
    }

    /** x * y mod P for x, y below P, with 2^61 = 1 (mod P). */
    private static long mulMod(long x, long y) {
        long hi = Math.multiplyHigh(x, y); // below 2^58
        long lo = x * y;
        long r = (lo & P) + (lo >>> 61) + (hi << 3); // 2^64 = 8 (mod P); below 2^62 + 8
        r = (r & P) + (r >>> 61);
        return r >= P ? r - P : r;
    }

    private static long powMod(long base, long e) {
        long r = 1;
        for (long b = base; e > 0; e >>>= 1) {
            if ((e & 1) != 0) {
                r = mulMod(r, b);
            }
            b = mulMod(b, b);
        }
        return r;
    }

    /** Moves {@code n} payload bytes into {@code b} at {@code pos} as they arrive. */
    private void stream(Transport t, Bio b, long pos, long n) throws IOException {
        while (n > 0) {
            if (!rbuf.hasRemaining()) {
                need(t, 1);
            }
            int k = (int) Math.min(rbuf.remaining(), n);
            BioMemory.copyIn(b, pos, rseg, rbuf.position(), k);
            rbuf.position(rbuf.position() + k);
            pos += k;
            n -= k;
        }
    }

    private void skip(Transport t, long n) throws IOException {
        while (n > 0) {
            if (!rbuf.hasRemaining()) {
                need(t, 1);
            }
            int k = (int) Math.min(rbuf.remaining(), n);
            rbuf.position(rbuf.position() + k);
            n -= k;
        }
    }

    private void finish(int i, int err) throws IOException {
        Bio b = bios[i];
        if (err == ESHUTDOWN) {
            throw new EOFException("the server is shutting down"); // reissued on the next connection
        }
        if (err != 0) {
            b.setStatus(Status.fromErrno(err), dev.uri + ": the server failed " + commandName(cmds[i])
                    + " of " + lens[i] + " bytes at " + offs[i] + " with error " + err);
            release(i);
            b.endIo();
            return;
        }
        if (cmds[i] == CMD_FLUSH && !dev.flushDone(flushMark[i])) {
            // The server answered, but it is not the one that acknowledged the writes this flush
            // had to make stable: they may have died with its cache. Said once, here.
            b.setStatus(Status.IOERR, dev.uri + ": FLUSH after a reconnect: writes acknowledged before the"
                    + " connection was lost had not been flushed, and may be lost if the server restarted");
            release(i);
            b.endIo();
            return;
        }
        if (cmds[i] == CMD_WRITE || cmds[i] == CMD_TRIM || cmds[i] == CMD_WRITE_ZEROES) {
            if ((cflags[i] & CMD_FLAG_FUA) == 0) {
                acked = acked + 1; // before endIo: a FLUSH the callback sends must count this write
            }
        }
        if (cmds[i] == CMD_FLUSH && b.op() != Op.FLUSH) {
            // The PREFLUSH half is done: send the data half (the supervisor does; we never send).
            b.setFlags(b.flags() & ~BioFlags.PREFLUSH);
            release(i);
            incoming.push(b);
            needKick = true;
            dev.wakeSupervisor();
            return;
        }
        if (cmds[i] == CMD_READ && lens[i] < b.size()) {
            BioMemory.copyIn(b, lens[i], null, 0, b.size() - lens[i]); // past the export's end: zeros
        }
        release(i);
        b.endIo();
    }

    // ---- faults -----------------------------------------------------------------------------

    /** Marks {@code t} broken (once) and closes it, so that its receiver and any writer return. */
    void lost(Transport t, Exception why) {
        lost(t, why, true);
    }

    /** {@code reissue}: the requests in flight go out again (false: they are failed instead). */
    private void lost(Transport t, Exception why, boolean reissue) {
        synchronized (this) {
            if (transport != t || phase != CONNECTED) {
                t.close();
                return;
            }
            phase = BROKEN;
            nextAttempt = System.nanoTime();
            lostAt = nextAttempt;
            attempts = 0;
        }
        t.close();
        if (!dev.closed) {
            dev.log(Level.WARNING, "connection " + id + " to " + dev.uri + " lost: " + NbdClient.reason(why)
                    + (reissue ? "; reconnecting and reissuing unanswered requests"
                    : "; failing the requests in flight on it, and reconnecting"));
        }
        dev.wakeSupervisor();
    }

    /** Fails every request still waiting for a reply (after a protocol error, or at close). */
    void abandonInFlight(Status st, String why) {
        for (int i = 0; i < SLOTS; i++) {
            int s = state.get(i);
            int ph = s & PHASE;
            if (ph == SENT || ph == RECEIVING) {
                Bio b = bios[i];
                if (state.compareAndSet(i, s, (s & ~PHASE) | ABANDONED)) {
                    b.fail(st, why);
                }
            }
        }
    }

    /**
     * The watchdog's pass: fails requests older than {@code timeout} with TIMEOUT, and drops a
     * connection whose oldest request has waited {@code stall} with nothing received.
     */
    void checkDeadlines(long now, long timeout, long stall, String timeoutText) {
        if (backlogged && sending.compareAndSet(0, 1)) {
            // Bios that never got a slot time out as well, counted from when they were queued.
            try {
                while (!backlog.isEmpty() && now - backlog.firstTime() > timeout) {
                    backlog.pollFirst().fail(Status.TIMEOUT, timeoutText);
                }
                backlogged = !backlog.isEmpty();
            } finally {
                sending.set(0);
            }
        }
        boolean drop = false;
        long oldest = Long.MAX_VALUE;
        for (int i = 0; i < SLOTS; i++) {
            int s = state.get(i);
            int ph = s & PHASE;
            if (ph != SENT && ph != RECEIVING) {
                continue;
            }
            long at = sentAt[i];
            if (now - at > timeout) {
                Bio b = bios[i];
                if (ph == SENT && state.compareAndSet(i, s, (s & ~PHASE) | ABANDONED)) {
                    b.fail(Status.TIMEOUT, timeoutText);
                }
                drop = true; // a late reply must not find the slot reused: start a new connection
            } else if (at < oldest) {
                oldest = at;
            }
        }
        Transport t = transport;
        if (phase == CONNECTED && t != null) {
            if (drop) {
                lost(t, new IOException("a request timed out"));
            } else if (oldest != Long.MAX_VALUE && now - oldest > stall && now - lastRecv > stall) {
                lost(t, new IOException("no reply for " + (now - oldest) / 1_000_000 + " ms"));
            }
        }
    }

    /** Frees the slots of requests already failed, once no receiver can answer them any more. */
    void releaseAbandoned() {
        Thread r = receiver;
        if (phase == CONNECTED || r != null && r.isAlive()) {
            return;
        }
        for (int i = 0; i < SLOTS; i++) {
            int s = state.get(i);
            if ((s & PHASE) == ABANDONED && state.compareAndSet(i, s, (s & ~PHASE) | FILLING)) {
                release(i);
            }
        }
    }

    /**
     * Installs a new transport and sends every unanswered request again (an NBD request can be
     * repeated: a write of the same bytes to the same place, a read, a flush). Called by the
     * supervisor, which takes the send flag so that no submitter writes meanwhile. Returns how
     * many requests went out again.
     */
    int resume(Transport t, Thread recv) {
        int resent = 0;
        while (!sending.compareAndSet(0, 1)) {
            LockSupport.parkNanos(100_000);
        }
        try {
            synchronized (this) {
                transport = t;
                lastRecv = System.nanoTime();
                receiver = recv;
                phase = CONNECTED;
            }
            recv.start();
            boolean ok = true;
            for (int i = 0; i < SLOTS && ok; i++) {
                int s = state.get(i);
                if ((s & PHASE) == SENT && state.compareAndSet(i, s, (s & ~PHASE) | FILLING)) {
                    try {
                        encode(i, t);
                        resent++;
                    } catch (IOException e) {
                        lost(t, e);
                        ok = false;
                    }
                    state.set(i, s);
                }
            }
            if (ok) {
                try {
                    flushOut(t);
                } catch (IOException e) {
                    lost(t, e);
                }
            }
        } finally {
            sending.set(0);
        }
        kick();
        return resent;
    }

    /** Requests still in slots (tests, status). */
    int inFlight() {
        int n = 0;
        for (int i = 0; i < SLOTS; i++) {
            if ((state.get(i) & PHASE) != FREE) {
                n++;
            }
        }
        return n;
    }

    /** At close: tells the server goodbye (NBD_CMD_DISC), closes, fails whatever is left. */
    void shutdown(String why) {
        long end = System.nanoTime() + 1_000_000_000L;
        boolean haveFlag = false;
        while (!(haveFlag = sending.compareAndSet(0, 1)) && System.nanoTime() < end) {
            LockSupport.parkNanos(1_000_000);
        }
        Transport t;
        synchronized (this) {
            t = transport;
            boolean wasConnected = phase == CONNECTED;
            phase = CLOSED;
            if (haveFlag && wasConnected && t != null) {
                try {
                    sbuf.clear();
                    sbuf.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) CMD_DISC)
                            .putLong(0).putLong(0).putInt(0);
                    flushOut(t);
                } catch (IOException e) {
                    // going away anyway
                }
            }
        }
        if (t != null) {
            t.close();
        }
        Thread r = receiver;
        if (r != null) {
            try {
                r.join(2_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        abandonInFlight(Status.CANCELLED, why);
        for (int i = 0; i < SLOTS; i++) {
            int s = state.get(i);
            if ((s & PHASE) == FILLING) {
                Bio b = bios[i];
                if (b != null && state.compareAndSet(i, s, (s & ~PHASE) | ABANDONED)) {
                    b.fail(Status.CANCELLED, why);
                }
            }
        }
        if (haveFlag) {
            for (Bio b; (b = backlog.pollFirst()) != null; ) {
                b.fail(Status.CANCELLED, why);
            }
        }
        for (Bio q = incoming.takeAll(); q != null; ) {
            Bio n = BioQueue.next(q);
            q.fail(Status.CANCELLED, why);
            q = n;
        }
        if (haveFlag) {
            sending.set(0);
        }
    }

    /**
     * Bios waiting for a free slot, oldest first, with the time each was queued: a ring of two
     * arrays that grows (allocates) only when it is full, never per bio.
     */
    private static final class Backlog {
        private Bio[] bios = new Bio[SLOTS];
        private long[] times = new long[SLOTS];
        private int head;
        private int size;

        boolean isEmpty() {
            return size == 0;
        }

        void addLast(Bio b, long at) {
            if (size == bios.length) {
                Bio[] nb = new Bio[size * 2];
                long[] nt = new long[size * 2];
                for (int i = 0; i < size; i++) {
                    nb[i] = bios[(head + i) % bios.length];
                    nt[i] = times[(head + i) % bios.length];
                }
                bios = nb;
                times = nt;
                head = 0;
            }
            int i = (head + size) % bios.length;
            bios[i] = b;
            times[i] = at;
            size++;
        }

        Bio peekFirst() {
            return size == 0 ? null : bios[head];
        }

        long firstTime() {
            return times[head];
        }

        Bio pollFirst() {
            if (size == 0) {
                return null;
            }
            Bio b = bios[head];
            bios[head] = null;
            head = (head + 1) % bios.length;
            size--;
            return b;
        }
    }

    /** The server broke the protocol: the requests in flight fail, the connection starts over. */
    static class ProtocolException extends IOException {
        ProtocolException(String why) {
            super(why);
        }
    }
}
