package io.biostack.nbd;

import io.biostack.nbd.proto.NbdProtocol;
import io.biostack.block.Bio;
import io.biostack.block.EndIo;
import io.biostack.block.Extent;
import io.biostack.block.Status;

/**
 * One request of a connection in flight, from the header its reactor parsed to the reply it
 * sent. Pooled per connection: the reactor takes it, a device completes it on any thread (the
 * cached {@link #endIo} routes it back to the reactor's thread, never blocking: at once when it
 * completes there, else through the reactor's lock-free queue), the reactor sends the reply and
 * gives it back. Exactly one of them owns it at a time; the hand-off publishes the fields.
 */
final class NbdRequest {
    /** Most runs a structured READ is split into by holes, or a BLOCK_STATUS reply describes. */
    static final int MAX_RUNS = 32;

    final NbdConnection conn;
    /** Completion of this request's bio: records the status and queues the reply. Cached, no allocation. */
    final EndIo endIo;

    // ---- the request as sent (section "Request message") ----
    long cookie;
    int type;
    int flags;
    long offset;
    long length;

    // ---- what the reply needs ----
    /** The payload buffer (WRITE data received, READ data to send), or null. */
    BufferPool.Buf buf;
    /**
     * Where the request's own bytes start in {@link #buf}: 0, or, for an unaligned request served
     * by read-modify-write, its distance from the aligned start {@link #ioOffset}.
     */
    int dataOff;
    /** Read-modify-write: the aligned range the bios cover, and the stage reached (RMW_*). */
    long ioOffset;
    int ioLength;
    int stage;
    /** Read-modify-write: the head and tail blocks as they were on the device. */
    BufferPool.Buf edges;
    /** Link in the device's queue of read-modify-writes waiting their turn ({@link RmwGate}). */
    NbdRequest rmwNext;
    /**
     * A TRIM or WRITE_ZEROES with FUA: a FLUSH follows it before the reply (a bio's FUA is for
     * writes; DISCARD and WRITE_ZEROES make no promise of it).
     */
    boolean flushAfter;
    /**
     * A WRITE_ZEROES sent down as such: when the device can't zero that way (NOTSUPP), its zeros
     * are written instead ({@link NbdConnection#completed}).
     */
    boolean zeroOp;
    /** Bytes charged against the connection's in-flight budget. */
    long charged;
    /** NBD error (section "Error values"), 0 for success. */
    int error;
    /** Text for a structured error chunk, or null. */
    String message;
    /**
     * Runs of a sparse READ or a BLOCK_STATUS reply: length at [2i], flags at [2i+1]. Grown once
     * (this request is pooled) for a session with several metadata contexts.
     */
    long[] runs = new long[2 * MAX_RUNS];
    int nruns;
    /** BLOCK_STATUS: the end (in runs) of each selected context's runs, in the order selected. */
    final int[] contextEnd = new int[MetaContext.MAX_SELECTED];

    /** Link in the connection's reply queue or free list; owned by the list that holds it. */
    NbdRequest next;

    NbdRequest(NbdConnection conn) {
        this.conn = conn;
        this.endIo = this::complete;
    }

    void set(long cookie, int type, int flags, long offset, long length) {
        this.cookie = cookie;
        this.type = type;
        this.flags = flags;
        this.offset = offset;
        this.length = length;
        this.error = 0;
        this.message = null;
        this.nruns = 0;
        this.buf = null;
        this.charged = 0;
        this.dataOff = 0;
        this.stage = 0;
        this.rmwNext = null;
        this.flushAfter = false;
        this.zeroOp = false;
    }

    /** No read-modify-write, or it is done. */
    static final int RMW_NONE = 0;
    /** The payload is being received or the request waits for the device's RMW in flight. */
    static final int RMW_WAITING = 1;
    /** The head block is being read into {@link #edges}. */
    static final int RMW_HEAD = 2;
    /** The tail block is being read into {@link #edges}. */
    static final int RMW_TAIL = 3;
    /** The aligned range is being written. */
    static final int RMW_WRITE = 4;
    /** Its turn came ({@link RmwGate}): handed to its reactor to start. */
    static final int RMW_GRANTED = 5;

    void fail(int nbdError, String why) {
        this.error = nbdError;
        this.message = why;
    }

    /** Makes room for {@code n} runs (cold: once per pooled request). */
    void ensureRuns(int n) {
        if (runs.length < 2 * n) {
            runs = new long[2 * n];
        }
    }

    /**
     * Data pieces this request's reply adds to a send (READ data runs; none for other replies).
     * Hole runs are headers only: counting them asked 65 pieces of a 64-piece batch for a READ of
     * {@link #MAX_RUNS} alternating runs, which no batch had room for, and its reply never went.
     */
    int dataPieces() {
        if (type != NbdProtocol.CMD_READ || error != 0) {
            return 0;
        }
        int data = 0;
        for (int i = 0; i < nruns; i++) {
            if ((runs[2 * i + 1] & Extent.ZERO) == 0) {
                data++;
            }
        }
        return Math.max(1, data);
    }

    void addRun(long len, int extentFlags) {
        runs[2 * nruns] = len;
        runs[2 * nruns + 1] = extentFlags;
        nruns++;
    }

    /** The bio's end-io: may run on any thread, so it only records and routes. */
    private void complete(Bio bio) {
        Status s = bio.status();
        if (s != Status.OK) {
            fail(NbdProtocol.errorOf(s), bio.detail() != null ? bio.detail() : s.text());
        }
        bio.put();
        conn.reactor.completedFromBio(this);
    }
}
