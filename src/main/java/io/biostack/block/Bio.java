package io.biostack.block;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * A block I/O request that carries its own memory and its own completion callback
 * ({@code struct bio}, include/linux/blk_types.h).
 *
 * <h2>Shape</h2>
 * An {@link Op}, {@link BioFlags}, a list of memory segments (the bio_vec table, immutable once
 * the bio is submitted) and an {@link BioIter} that holds all progress: device offset, bytes left,
 * current segment. Offsets and sizes are bytes. Segments may be native or heap memory; a layer
 * that hands memory to the kernel bounces what the kernel can't take.
 *
 * <h2>Two counts</h2>
 * As in the kernel: a <em>remaining</em> count for completion (starts at 1; {@link #chain}
 * raises the parent's; {@link #endIo()} lowers it and completes at zero), and pooled lifetime:
 * {@link #put()} returns the bio to the pool it came from.
 *
 * <h2>Ownership</h2>
 * Whoever allocates a bio owns it until {@link BlockDevice#submit}; the device then owns it until
 * it calls {@link #endIo()}, which runs the callback exactly once. During the callback and after
 * it the bio belongs to whoever set the callback, who puts it back when done. A device may
 * change the bio's iterator (remap, advance) before completion; after completion only
 * {@link #status()} is meaningful. The memory behind the segments belongs to the bio's owner and
 * must stay valid until completion.
 *
 * <p>Status: the first error wins. Completing a bio twice throws {@link IllegalStateException}.
 */
public final class Bio {
    private static final VarHandle REMAINING;
    private static final VarHandle STATUS;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            REMAINING = l.findVarHandle(Bio.class, "remaining", int.class);
            STATUS = l.findVarHandle(Bio.class, "status", Status.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private static final MemorySegment[] NO_VECS = new MemorySegment[0];

    private Op op = Op.READ;
    private int flags;
    private MemorySegment[] vecs;
    private int vcnt;
    private final BioIter iter = new BioIter();
    private EndIo endIo;
    private Object privateData;
    private long privateLong;
    private Bio chainParent;
    private Object driverData;
    private final BioPool pool;
    private boolean inPool;
    private volatile int remaining;
    private volatile Status status = Status.OK;
    private String detail;
    // I/O accounting of the one counted device the bio is in (blk_account_io_start/done; the
    // kernel keeps start_time_ns in the request the same way). Four fields rather than a clone
    // per counted device: a clone costs a pool round trip per I/O, more than the 50 ns budget.
    private IoAccounting acct;
    private long acctStart;
    private long acctOffset;
    private long acctSize;
    // One clock reading per end of the I/O, shared by everyone who needs it, as the kernel reads
    // the time once per request (rq->start_time_ns, and the `now` that blk_mq_end_request hands
    // to both accounting and the latency stats). 0 means "not read": a reading of exactly 0 only
    // costs a second read. Neither is inherited by clones or splits: a clone may be sent down
    // long after its parent started (delay, crypt, qcow2), and the counted device below must not
    // count that wait as its own latency.
    private long issueNs;
    private long completionNs;

    /** Intrusive link for lock-free queues; owned by the queue that holds the bio. */
    Bio next;

    /** Creates a bio outside any pool (for tests and one-off requests). */
    public Bio() {
        this(null, 4);
    }

    Bio(BioPool pool, int vecCapacity) {
        this.pool = pool;
        this.vecs = vecCapacity == 0 ? NO_VECS : new MemorySegment[vecCapacity];
        this.remaining = 1;
    }

    // ---- set-up (by the owner, before submit) ----------------------------------------------

    /**
     * Sets op, flags, offset and callback and clears segments, size and status: ready for
     * {@link #addSegment}. Returns this bio.
     *
     * @param op what the bio is to do
     * @param flags {@link BioFlags} bits, 0 for none
     * @param offset where on the device the bio starts, in bytes
     * @param endIo the callback run once on completion, or null for none (a chained bio gets its own)
     * @return this bio, for chaining the set-up calls
     */
    public Bio init(Op op, int flags, long offset, EndIo endIo) {
        this.op = op;
        this.flags = flags;
        this.endIo = endIo;
        this.vcnt = 0;
        this.iter.reset();
        this.iter.offset = offset;
        this.status = Status.OK;
        this.detail = null;
        this.chainParent = null;
        this.privateData = null;
        this.privateLong = 0;
        this.driverData = null;
        this.acct = null;
        this.issueNs = 0;
        this.completionNs = 0;
        REMAINING.setRelease(this, 1);
        return this;
    }

    /**
     * Appends a segment and grows the size by its length. The caller keeps owning the memory and
     * must keep it valid until the bio completes. Only before submit.
     *
     * @param segment memory the bio reads into or writes from; still the caller's, and it must stay valid
     *         (and, for native I/O, unmoved) until the bio completes
     * @return this bio, for chaining the set-up calls
     */
    public Bio addSegment(MemorySegment segment) {
        if (vcnt == vecs.length) {
            MemorySegment[] bigger = new MemorySegment[Math.max(4, vecs.length * 2)];
            System.arraycopy(vecs, 0, bigger, 0, vcnt);
            vecs = bigger;
        }
        vecs[vcnt++] = segment;
        iter.size += segment.byteSize();
        return this;
    }

    /**
     * Shrinks the bio to its first {@code size} bytes ({@code bio_trim}): the segments stay, the
     * iterator covers less. Lets a bio use part of a larger buffer without slicing it.
     *
     * @param size the bytes to keep, from 0 to the current size
     * @return this bio, for chaining the set-up calls
     */
    public Bio trim(long size) {
        if (size < 0 || size > iter.size) {
            throw new IllegalArgumentException("trim to " + size + " of a bio of " + iter.size);
        }
        iter.size = size;
        return this;
    }

    /**
     * Sets the byte count of a bio without data (DISCARD, WRITE_ZEROES). Only before submit.
     *
     * @param size the bytes the DISCARD or WRITE_ZEROES covers
     * @return this bio, for chaining the set-up calls
     */
    public Bio setSize(long size) {
        if (op.hasData()) {
            throw new IllegalStateException("size of a " + op + " bio comes from its segments");
        }
        iter.size = size;
        return this;
    }

    /**
     * What the bio does.
     *
     * @return the operation set by {@link #init}
     */
    public Op op() {
        return op;
    }

    /**
     * The {@link BioFlags} bits.
     *
     * @return the flag bits, 0 when none is set
     */
    public int flags() {
        return flags;
    }

    /**
     * True when {@code flag} (a {@link BioFlags} bit) is set.
     *
     * @param flag one {@link BioFlags} bit (or several, any of which answers true)
     * @return whether any bit of {@code flag} is set
     */
    public boolean hasFlag(int flag) {
        return (flags & flag) != 0;
    }

    /**
     * Replaces the flags (a layer may clear PREFLUSH once it has flushed, as blk-flush does).
     *
     * @param flags the new {@link BioFlags} bits; they replace all the old ones
     */
    public void setFlags(int flags) {
        this.flags = flags;
    }

    /**
     * The device offset in bytes (shortcut for {@code iter().offset()}).
     *
     * @return the current device offset in bytes, after any remap and advance so far
     */
    public long offset() {
        return iter.offset;
    }

    /**
     * Bytes left to do (shortcut for {@code iter().size()}).
     *
     * @return the bytes the iterator still covers
     */
    public long size() {
        return iter.size;
    }

    /**
     * Moves the bio to another device offset: how remapping layers pass a bio down.
     *
     * @param offset the new device offset in bytes
     */
    public void setOffset(long offset) {
        iter.offset = offset;
    }

    /**
     * The progress through the bio: device offset, bytes left, current segment. Changed by whoever owns the
     * bio now.
     *
     * @return the bio's live iterator (not a copy: changing it changes the bio)
     */
    public BioIter iter() {
        return iter;
    }

    /**
     * Number of segments in the table (not only those the iterator still covers).
     *
     * @return the count of segments added since {@link #init}
     */
    public int segmentCount() {
        return vcnt;
    }

    /**
     * Segment {@code i} of the table.
     *
     * @param i the segment's index, from 0 to {@link #segmentCount()} - 1
     * @return the segment as it was added (the whole of it, whatever the iterator covers)
     */
    public MemorySegment segment(int i) {
        if (i >= vcnt) {
            throw new IndexOutOfBoundsException(i);
        }
        return vecs[i];
    }

    /**
     * The callback {@link #endIo()} runs, or null.
     *
     * @return the callback, null when none was set
     */
    public EndIo endIoCallback() {
        return endIo;
    }

    /**
     * Sets the completion callback ({@code bi_end_io}). Only the bio's owner, before submit: it runs
     * once, on the thread that completes the bio, and must not block.
     *
     * @param endIo the callback to run once on completion, or null for none
     */
    public void setEndIo(EndIo endIo) {
        this.endIo = endIo;
    }

    /**
     * A reference the callback's owner may keep in the bio ({@code bi_private}).
     *
     * @return what the owner stored with {@link #setPrivateData}, or null
     */
    public Object privateData() {
        return privateData;
    }

    /**
     * Sets the reference the callback's owner keeps in the bio.
     *
     * @param privateData any object of the owner's; the bio only holds it until {@link #init} or {@link #put}
     */
    public void setPrivateData(Object privateData) {
        this.privateData = privateData;
    }

    /**
     * A slot for the device at the bottom of the stack that holds the bio between submit and
     * completion (the file engine keeps its backing file here). Layers that pass a bio down in
     * place must not use it; layers that need per-bio state clone the bio.
     *
     * @return what the bottom device stored, or null
     */
    public Object driverData() {
        return driverData;
    }

    /**
     * Sets the bottom device's slot (see {@link #driverData()}).
     *
     * @param driverData the bottom device's per-bio object, or null to clear the slot
     */
    public void setDriverData(Object driverData) {
        this.driverData = driverData;
    }

    /**
     * A primitive slot for the callback's owner (a tag, a start time) — no boxing.
     *
     * @return the value stored with {@link #setPrivateLong}, 0 after {@link #init}
     */
    public long privateLong() {
        return privateLong;
    }

    /**
     * Sets the primitive slot of the callback's owner.
     *
     * @param value any value of the owner's (a tag, a start time in ns)
     */
    public void setPrivateLong(long value) {
        this.privateLong = value;
    }

    // ---- accounting --------------------------------------------------------------------------

    /**
     * Makes {@code accounting} hear of this bio's completion ({@link IoAccounting#ioDone}, run
     * once, just before the callback), and notes {@code startNs}, the offset and the size now,
     * before a device remaps or advances the bio. Returns false, and changes nothing, when the
     * bio is already being accounted (a counted device passed it down in place to another one):
     * the caller then counts a clone instead. For the counted device that receives the bio,
     * between its submit and completion; the slot is cleared by {@link #init}, clones and
     * {@link #put}.
     *
     * @param accounting the counted device that will hear {@link IoAccounting#ioDone} for this bio
     * @param startNs the start time, in {@link System#nanoTime()} nanoseconds
     * @return true when accounting started, false when the bio was already accounted elsewhere
     */
    public boolean startAccounting(IoAccounting accounting, long startNs) {
        if (acct != null) {
            return false;
        }
        acct = accounting;
        acctStart = startNs;
        acctOffset = iter.offset;
        acctSize = iter.size;
        return true;
    }

    /**
     * The start time given to {@link #startAccounting}.
     *
     * @return the start time in {@link System#nanoTime()} nanoseconds
     */
    public long accountingStart() {
        return acctStart;
    }

    /**
     * The offset when accounting started (before any remap).
     *
     * @return the device offset in bytes at {@link #startAccounting}
     */
    public long accountingOffset() {
        return acctOffset;
    }

    /**
     * The size when accounting started (before any advance).
     *
     * @return the size in bytes at {@link #startAccounting}
     */
    public long accountingSize() {
        return acctSize;
    }

    /**
     * Notes when the submitter issues this bio, a {@link System#nanoTime()} reading it took
     * anyway (for its own latency), just before {@link BlockDevice#submit}. The first counted
     * device takes it as its start instead of reading the clock again, and clears it, so a
     * resubmission of the same bio reads the clock afresh. Cleared by {@link #init}, clones and
     * {@link #put}.
     *
     * @param nanos the reading, or 0 for none
     */
    public void setIssueTime(long nanos) {
        this.issueNs = nanos;
    }

    /**
     * The submitter's reading given to {@link #setIssueTime}, until a counted device took it.
     *
     * @return the reading in {@link System#nanoTime()} nanoseconds, or 0 when there is none
     */
    public long issueTime() {
        return issueNs;
    }

    /**
     * When this bio completed: the {@link System#nanoTime()} reading the first counted device
     * to hear of its completion took ({@link IoAccounting#ioDone}), or one handed up from a
     * clone or child that completed it. The callback may use it instead of reading the clock
     * again (the submitter's latency); 0 when nobody read the clock for this completion. Valid
     * in the callback; cleared by {@link #init}, clones and {@link #put}.
     *
     * @return the reading in {@link System#nanoTime()} nanoseconds, or 0
     */
    public long completionTime() {
        return completionNs;
    }

    /**
     * Notes when this bio completed: by the counted device that read the clock for it, or by the
     * owner of a clone or child whose completion completes this bio (hand up the clone's
     * {@link #completionTime()}, so that the devices above need not read the clock again). Only
     * between the completion of the I/O and the end of this bio's callback.
     *
     * @param nanos a {@link System#nanoTime()} reading taken at or after the I/O completed, or 0
     */
    public void setCompletionTime(long nanos) {
        this.completionNs = nanos;
    }

    // ---- status and completion -------------------------------------------------------------

    /**
     * The first error recorded, or {@link Status#OK}. Final once the bio has completed.
     *
     * @return the status; OK while no error has been recorded
     */
    public Status status() {
        return status;
    }

    /**
     * Text that says what went wrong (null when OK or when nobody said).
     *
     * @return the message of the first error, or null
     */
    public String detail() {
        return detail;
    }

    /**
     * Records an error; the first error wins, later ones are dropped.
     *
     * @param s the error; OK is ignored
     */
    public void setStatus(Status s) {
        setStatus(s, null);
    }

    /**
     * Records an error with a message for humans; the first error wins.
     *
     * @param s the error; OK is ignored
     * @param why what went wrong, in words for a person reading the log or the error; may be null
     */
    public void setStatus(Status s, String why) {
        if (s == Status.OK) {
            return;
        }
        if (STATUS.compareAndSet(this, Status.OK, s)) {
            detail = why;
        }
    }

    /**
     * Records the error and completes the bio: {@code bio_io_error}.
     *
     * @param s the error to complete with
     * @param why what went wrong, in words; may be null
     */
    public void fail(Status s, String why) {
        setStatus(s, why);
        endIo();
    }

    /**
     * Completes the bio ({@code bio_endio}): lowers the remaining count and, when it reaches
     * zero, either completes the chain parent (passing the first error up) or runs the
     * callback. Call exactly once per submit (plus once per chained child, which the child's
     * own completion does).
     */
    public void endIo() {
        Bio bio = this;
        while (true) {
            int left = (int) REMAINING.getAndAdd(bio, -1) - 1;
            if (left > 0) {
                return;
            }
            if (left < 0) {
                throw new IllegalStateException("bio completed more than once: " + bio);
            }
            IoAccounting a = bio.acct;
            if (a != null) {
                bio.acct = null;
                a.ioDone(bio);
            }
            Bio parent = bio.chainParent;
            if (parent == null) {
                EndIo cb = bio.endIo;
                if (cb != null) {
                    cb.endIo(bio);
                }
                return;
            }
            // bio_chain_endio: pass the first error up, drop the child, go on with the parent.
            Status s = bio.status;
            if (s != Status.OK) {
                parent.setStatus(s, bio.detail);
            }
            bio.chainParent = null;
            bio.put();
            bio = parent;
        }
    }

    /**
     * Makes {@code parent} complete only after this bio ({@code bio_chain}). This bio's callback
     * is replaced: on completion it passes its status to the parent and is put back in its pool.
     * Call before submitting this bio; the parent must not have completed yet.
     *
     * @param parent the bio that completes after this one (and after all its other chained children); it
     *         keeps its own callback
     */
    public void chain(Bio parent) {
        if (chainParent != null) {
            throw new IllegalStateException("bio already chained");
        }
        this.chainParent = parent;
        this.endIo = CHAINED;
        REMAINING.getAndAdd(parent, 1);
    }

    /** Marker callback of chained bios: never called, the parent is completed instead. */
    private static final EndIo CHAINED = b -> {
        throw new IllegalStateException("chained bio completed without its parent");
    };

    /** Raises the remaining count: the bio completes after one more {@link #endIo()}. */
    public void incRemaining() {
        REMAINING.getAndAdd(this, 1);
    }

    // ---- split and clone -------------------------------------------------------------------

    /**
     * Splits off the first {@code bytes} ({@code bio_split}): returns a new bio from {@code pool}
     * that shares this bio's segments and covers [offset, offset + bytes); this bio advances past
     * them. The caller owns the returned bio (usually it chains it to this one and submits it);
     * this bio's segments must outlive it. Bios without data split by range alone.
     *
     * @param bytes how many bytes to split off the front, more than 0 and less than {@link #size()}
     * @param pool where to take the new bio from, or null for a new unpooled one
     * @return the front piece, owned by the caller
     */
    public Bio split(long bytes, BioPool pool) {
        if (bytes <= 0 || bytes >= iter.size) {
            throw new IllegalArgumentException("split of " + bytes + " bytes from a bio of " + iter.size);
        }
        Bio front = cloneShallow(pool);
        front.iter.size = bytes;
        advance(bytes);
        return front;
    }

    /**
     * A bio that shares this bio's segments and copies its op, flags and iterator
     * ({@code bio_alloc_clone}). It has no callback and an OK status; the caller owns it. This
     * bio's segments must outlive the clone.
     *
     * @param pool where to take the clone from, or null for a new unpooled one
     * @return the clone, owned by the caller, with the same iterator as this bio now
     */
    public Bio cloneShallow(BioPool pool) {
        Bio c = pool == null ? new Bio() : pool.get();
        c.op = op;
        c.flags = flags;
        if (c.vecs.length < vcnt) {
            c.vecs = new MemorySegment[vcnt];
        }
        System.arraycopy(vecs, 0, c.vecs, 0, vcnt);
        c.vcnt = vcnt;
        c.iter.copyFrom(iter);
        c.endIo = null;
        c.chainParent = null;
        c.status = Status.OK;
        c.detail = null;
        c.privateData = null;
        c.privateLong = 0;
        c.driverData = null;
        c.acct = null;
        c.issueNs = 0;
        c.completionNs = 0;
        REMAINING.setRelease(c, 1);
        return c;
    }

    /**
     * Advances the iterator by {@code bytes} ({@code bio_advance}).
     *
     * @param bytes how many bytes to move forward, at most {@link #size()}
     */
    public void advance(long bytes) {
        if (bytes > iter.size) {
            throw new IllegalArgumentException("advance " + bytes + " past size " + iter.size);
        }
        iter.offset += bytes;
        iter.size -= bytes;
        if (!op.hasData()) {
            return;
        }
        long left = bytes + iter.done;
        int i = iter.idx;
        while (i < vcnt && left >= vecs[i].byteSize() && left > 0) {
            left -= vecs[i].byteSize();
            i++;
        }
        iter.idx = i;
        iter.done = left;
    }

    // ---- data movement over the iterator (does not advance) --------------------------------

    /**
     * Copies the bytes the iterator covers into {@code dst} (which must hold {@link #size()}
     * bytes from its start). Used by memory-backed devices and bounce buffers.
     *
     * @param dst native or heap memory of at least {@link #size()} bytes; it is not kept
     */
    public void copyTo(MemorySegment dst) {
        long left = op.hasData() ? iter.size : 0;
        long pos = 0;
        int i = iter.idx;
        long skip = iter.done;
        while (left > 0) {
            MemorySegment v = vecs[i++];
            long n = Math.min(v.byteSize() - skip, left);
            MemorySegment.copy(v, skip, dst, pos, n);
            pos += n;
            left -= n;
            skip = 0;
        }
    }

    /**
     * Copies {@link #size()} bytes from the start of {@code src} into the iterator's memory.
     *
     * @param src memory holding at least {@link #size()} bytes; it is not kept
     */
    public void copyFrom(MemorySegment src) {
        long left = op.hasData() ? iter.size : 0;
        long pos = 0;
        int i = iter.idx;
        long skip = iter.done;
        while (left > 0) {
            MemorySegment v = vecs[i++];
            long n = Math.min(v.byteSize() - skip, left);
            MemorySegment.copy(src, pos, v, skip, n);
            pos += n;
            left -= n;
            skip = 0;
        }
    }

    /** Fills the iterator's memory with zeros (reads of holes). */
    public void zeroFill() {
        long left = op.hasData() ? iter.size : 0;
        int i = iter.idx;
        long skip = iter.done;
        while (left > 0) {
            MemorySegment v = vecs[i++];
            long n = Math.min(v.byteSize() - skip, left);
            v.asSlice(skip, n).fill((byte) 0);
            left -= n;
            skip = 0;
        }
    }

    /**
     * Walks the memory the iterator covers without advancing it; calls {@code visitor} once per
     * piece with the segment, the offset in it and the length. No allocation.
     *
     * @param visitor called once per contiguous piece, on this thread, before this method returns
     */
    public void forEachSegment(SegmentVisitor visitor) {
        long left = op.hasData() ? iter.size : 0;
        int i = iter.idx;
        long skip = iter.done;
        while (left > 0) {
            MemorySegment v = vecs[i++];
            long n = Math.min(v.byteSize() - skip, left);
            visitor.visit(v, skip, n);
            left -= n;
            skip = 0;
        }
    }

    /** Receives the pieces of a bio's memory, see {@link #forEachSegment}. */
    @FunctionalInterface
    public interface SegmentVisitor {
        /**
         * One piece: {@code length} bytes of {@code segment} from {@code offset}. Don't keep the segment past
         * the bio's completion.
         *
         * @param segment one of the bio's segments
         * @param offset where the piece starts in {@code segment}, in bytes
         * @param length the piece's length in bytes
         */
        void visit(MemorySegment segment, long offset, long length);
    }

    // ---- pool ------------------------------------------------------------------------------

    /**
     * Returns the bio to the pool it came from ({@code bio_put}); a bio from no pool is left to
     * the garbage collector. The caller gives up the bio and everything it references.
     */
    public void put() {
        if (inPool) {
            throw new IllegalStateException("bio put twice");
        }
        endIo = null;
        privateData = null;
        driverData = null;
        chainParent = null;
        acct = null;
        issueNs = 0;
        completionNs = 0;
        for (int i = 0; i < vcnt; i++) {
            vecs[i] = null;
        }
        vcnt = 0;
        if (pool != null) {
            inPool = true;
            pool.release(this);
        }
    }

    void markTaken() {
        inPool = false;
    }

    @Override
    public String toString() {
        return "Bio[" + op + " " + BioFlags.toString(flags) + " offset=" + iter.offset + " size=" + iter.size
                + " segs=" + vcnt + " status=" + status + "]";
    }
}
