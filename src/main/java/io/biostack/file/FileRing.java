package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.BioList;
import io.biostack.block.Op;
import io.biostack.block.Status;
import io.biostack.sys.Errno;
import io.biostack.sys.Iovec;
import io.biostack.uring.IoUring;
import io.biostack.uring.IoUringConstants;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * File bios on one ring: a fixed slot table of bios in flight (each slot with its own iovec
 * array, so the steady state allocates nothing), their SQEs and their completions. Used by the
 * io_uring worker ({@link UringEngine}) and, one per thread, by every reactor that attached the
 * file engine to its ring ({@link ReactorQueue}): the blk-mq shape, a bio submitted on a reactor goes
 * to that reactor's ring and completes on that thread.
 *
 * <p>Owned by the ring's thread: every method is called there. A slot's user data is
 * {@code tagBase + slot}.
 */
final class FileRing {
    private static final int PHASE_PREFLUSH = 1;
    private static final int PHASE_DATA = 2;

    private final IoUring ring;
    private final long tagBase;
    private final int slots;
    private final MemorySegment iovecs;
    private final Bio[] slotBio;
    private final int[] slotPhase;
    private final int[] freeSlots;
    private int freeTop;
    private int inflight;
    private final BioList backlog = new BioList();
    /** SQEs prepared since the last io_uring_enter that submitted. */
    int unsubmitted;
    private final int submitBatch;
    /**
     * Most WRITE SQEs of one pass handed to the kernel together (1: none held, as reads). The
     * held ones go down with the enter that ends the pass (the reactor loop's submit after its
     * reap, or its wait), or when a READ, a FLUSH or the cap comes first.
     */
    private final int writePlug;
    /** WRITE SQEs held by the plug, none submitted since; they are all of {@link #unsubmitted}. */
    private int plugged;

    // Registered-buffer ranges, sorted by start (they never overlap: each is live memory of its
    // own), so that the per-I/O lookup is a binary search. Changed on the ring's thread only, by
    // addFixed/removeFixed (cold path); empty on a ring without a fixed-buffer table.
    private final long[] regStart;
    private final long[] regEnd;
    private final int[] regSlot;
    /** The start of the range registered in each table slot, to find it again by slot. */
    private final long[] slotStart;
    /** Free slots of the ring's fixed-buffer table, a stack. */
    private final int[] freeTableSlots;
    private int freeTableTop;
    private int regCount;
    /** I/Os that went down as READ_FIXED/WRITE_FIXED. */
    long fixedIos;
    /** WRITE SQEs the plug held for the pass's enter (see {@link #writePlug}). */
    long heldWrites;

    FileRing(IoUring ring, Arena arena, int slots, long tagBase, int submitBatch, int bufferSlots) {
        this(ring, arena, slots, tagBase, submitBatch, bufferSlots, 1);
    }

    /**
     * A file ring that holds up to {@code writePlug} WRITE SQEs of a pass and submits them
     * together (the block layer then plugs them: one doorbell for the lot). Only for a ring
     * whose loop submits what is prepared at the end of every pass ({@link ReactorQueue}).
     */
    FileRing(IoUring ring, Arena arena, int slots, long tagBase, int submitBatch, int bufferSlots, int writePlug) {
        this.ring = ring;
        this.tagBase = tagBase;
        this.slots = slots;
        this.submitBatch = submitBatch;
        this.writePlug = Math.max(1, writePlug);
        this.iovecs = arena.allocate((long) slots * UringEngine.MAX_SEGMENTS * Iovec.SIZE, 4096);
        this.slotBio = new Bio[slots];
        this.slotPhase = new int[slots];
        this.freeSlots = new int[slots];
        for (int i = 0; i < slots; i++) {
            freeSlots[i] = slots - 1 - i;
        }
        freeTop = slots;
        regStart = new long[bufferSlots];
        regEnd = new long[bufferSlots];
        regSlot = new int[bufferSlots];
        slotStart = new long[bufferSlots];
        freeTableSlots = new int[bufferSlots];
        for (int i = 0; i < bufferSlots; i++) {
            freeTableSlots[i] = bufferSlots - 1 - i;
        }
        freeTableTop = bufferSlots;
    }

    /** Queues a bio (ring thread only); {@link #start} prepares it. */
    void add(Bio bio) {
        backlog.add(bio);
    }

    void addAll(Bio chain) {
        backlog.addAll(chain);
    }

    int inflight() {
        return inflight;
    }

    boolean idle() {
        return inflight == 0 && backlog.isEmpty();
    }

    boolean hasBacklog() {
        return !backlog.isEmpty();
    }

    /**
     * Prepares SQEs for queued bios while there are free slots and SQ room. Each SQE goes to the
     * kernel as soon as the next one is being prepared (see UringEngine's class comment: no plug),
     * except WRITEs on a ring with a {@link #writePlug}: a pass's writes go down in one enter.
     */
    void start() {
        while (freeTop > 0 && ring.sqSpace() > 1) {
            Bio bio = backlog.poll();
            if (bio == null) {
                return;
            }
            boolean write = writePlug > 1 && bio.op() == Op.WRITE && !bio.hasFlag(BioFlags.PREFLUSH);
            if (writePlug > 1 && ring.sqReady() == 0) {
                unsubmitted = plugged = 0; // the loop's enter took them since
            }
            boolean hold = write && plugged == unsubmitted && plugged < writePlug;
            if (unsubmitted >= submitBatch && !hold) {
                unsubmitted = plugged = 0;
                ring.submit();
                hold = write; // a new plug starts with this write
            }
            int slot = freeSlots[--freeTop];
            slotBio[slot] = bio;
            inflight++;
            slotPhase[slot] = bio.hasFlag(BioFlags.PREFLUSH) && bio.op() != Op.FLUSH ? PHASE_PREFLUSH : PHASE_DATA;
            prep(slot, bio);
            if (hold) {
                plugged++;
                heldWrites++;
            }
        }
    }

    /** Prepares the SQE for the slot's current phase, submitting first when the SQ is full. */
    private void prep(int slot, Bio bio) {
        if (ring.sqSpace() == 0) {
            unsubmitted = plugged = 0;
            ring.submit();
        }
        BackingFile f = (BackingFile) bio.driverData();
        int fd = f.fd();
        long ud = tagBase + slot;
        boolean ok;
        if (slotPhase[slot] == PHASE_PREFLUSH) {
            ok = ring.prepFsync(fd, IoUringConstants.IORING_FSYNC_DATASYNC, ud);
        } else {
            switch (bio.op()) {
                case READ, WRITE -> ok = prepData(slot, bio, fd, ud);
                case FLUSH -> ok = ring.prepFsync(fd, IoUringConstants.IORING_FSYNC_DATASYNC, ud);
                case DISCARD, WRITE_ZEROES -> ok = ring.prepFallocate(fd, FileOps.fallocateMode(bio),
                        bio.offset(), bio.size(), ud);
                default -> throw new AssertionError(bio.op());
            }
        }
        if (!ok) {
            throw new IllegalStateException("SQ full after a submit: ring accounting broken");
        }
        unsubmitted++;
    }

    private boolean prepData(int slot, Bio bio, int fd, long ud) {
        boolean read = bio.op() == Op.READ;
        int rw = FileOps.rwFlags(bio);
        int i = bio.iter().index();
        MemorySegment first = bio.segment(i);
        long skip = bio.iter().doneInSegment();
        long size = bio.size();
        if (first.byteSize() - skip >= size) {
            long addr = first.address() + skip;
            int buf = regCount == 0 ? -1 : fixedBuffer(addr, size);
            if (buf >= 0) {
                fixedIos++;
                return read ? ring.prepReadFixed(fd, addr, (int) size, bio.offset(), buf, rw, ud)
                        : ring.prepWriteFixed(fd, addr, (int) size, bio.offset(), buf, rw, ud);
            }
            return ring.prepRw(read ? IoUringConstants.IORING_OP_READ : IoUringConstants.IORING_OP_WRITE,
                    fd, addr, (int) size, bio.offset(), rw, ud, 0, 0);
        }
        long base = (long) slot * UringEngine.MAX_SEGMENTS;
        long left = size;
        int n = 0;
        while (left > 0) {
            MemorySegment v = bio.segment(i++);
            long len = Math.min(v.byteSize() - skip, left);
            Iovec.set(iovecs, (int) base + n, v.address() + skip, len);
            n++;
            left -= len;
            skip = 0;
        }
        long iov = iovecs.address() + base * Iovec.SIZE;
        return read ? ring.prepReadv(fd, iov, n, bio.offset(), rw, ud)
                : ring.prepWritev(fd, iov, n, bio.offset(), rw, ud);
    }

    /**
     * The fixed-buffer slot whose region holds {@code addr..addr+len}, or -1: a binary search for
     * the last range that starts at or before {@code addr} (no allocation).
     */
    private int fixedBuffer(long addr, long len) {
        int i = lastStartAtOrBefore(addr);
        return i >= 0 && addr + len <= regEnd[i] ? regSlot[i] : -1;
    }

    /** Index of the last range starting at or before {@code addr} (unsigned order), or -1. */
    private int lastStartAtOrBefore(long addr) {
        int lo = 0;
        int hi = regCount - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (Long.compareUnsigned(regStart[mid], addr) <= 0) {
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        return hi;
    }

    /**
     * Registers {@code addr..addr+len} in a free slot of the ring's sparse fixed-buffer table
     * (IORING_REGISTER_BUFFERS_UPDATE), so that I/O inside it goes down fixed. Ring thread; cold
     * path. The memory must stay mapped until {@link #unregisterFixed}.
     *
     * @return the table slot, or -errno: -ENOSPC when the table is full, else the kernel's
     */
    int registerFixed(long addr, long len) {
        if (freeTableTop == 0) {
            return -Errno.ENOSPC;
        }
        int slot = freeTableSlots[freeTableTop - 1];
        int r = ring.updateBuffer(slot, addr, len);
        if (r != 1) {
            return r < 0 ? r : -Errno.EINVAL;
        }
        freeTableTop--;
        addFixed(slot, addr, len);
        return slot;
    }

    /**
     * Empties table slot {@code slot}; nothing when it holds no range (given back twice). I/O in
     * flight on the buffer keeps it until it completes (the kernel holds a reference). Ring
     * thread; cold path. 0 or -errno.
     */
    int unregisterFixed(int slot) {
        if (!removeFixed(slot)) {
            return 0;
        }
        freeTableSlots[freeTableTop++] = slot;
        return ring.isClosed() ? 0 : Math.min(0, ring.updateBuffer(slot, 0, 0));
    }

    private void addFixed(int slot, long addr, long len) {
        int i = lastStartAtOrBefore(addr) + 1;
        System.arraycopy(regStart, i, regStart, i + 1, regCount - i);
        System.arraycopy(regEnd, i, regEnd, i + 1, regCount - i);
        System.arraycopy(regSlot, i, regSlot, i + 1, regCount - i);
        regStart[i] = addr;
        regEnd[i] = addr + len;
        regSlot[i] = slot;
        slotStart[slot] = addr;
        regCount++;
    }

    /** Forgets the range of table slot {@code slot}; false when it has none. */
    private boolean removeFixed(int slot) {
        int i = lastStartAtOrBefore(slotStart[slot]);
        if (i < 0 || regSlot[i] != slot) {
            return false;
        }
        regCount--;
        System.arraycopy(regStart, i + 1, regStart, i, regCount - i);
        System.arraycopy(regEnd, i + 1, regEnd, i, regCount - i);
        System.arraycopy(regSlot, i + 1, regSlot, i, regCount - i);
        return true;
    }

    /** Ranges registered now. */
    int fixedCount() {
        return regCount;
    }

    /** One completion of this ring's slot {@code slot} (user data minus the tag base). */
    void complete(int slot, int res) {
        Bio bio = slotBio[slot];
        if (res < 0 && FileOps.retryable(bio, res)) {
            prep(slot, bio);
            return;
        }
        if (slotPhase[slot] == PHASE_PREFLUSH) {
            if (res < 0) {
                finish(slot, bio, res);
                return;
            }
            slotPhase[slot] = PHASE_DATA;
            prep(slot, bio);
            return;
        }
        if (res >= 0 && bio.op().hasData() && res < bio.size()) {
            if (res == 0) {
                if (bio.op() == Op.READ) {
                    bio.zeroFill(); // past the end of the file: reads as zeros, as loop.c does
                } else {
                    bio.setStatus(Status.IOERR, "short write: 0 of " + bio.size() + " bytes at offset "
                            + bio.offset() + " of " + ((BackingFile) bio.driverData()).path());
                }
                finish(slot, bio, 0);
                return;
            }
            bio.advance(res); // short transfer: do the rest, never report missing bytes as success
            prep(slot, bio);
            return;
        }
        finish(slot, bio, res);
    }

    private void finish(int slot, Bio bio, long res) {
        slotBio[slot] = null;
        freeSlots[freeTop++] = slot;
        inflight--;
        BackingFile f = (BackingFile) bio.driverData();
        if (res < 0) {
            FileOps.fail(bio, f, res);
        }
        try {
            f.completed(bio);
        } catch (RuntimeException e) {
            // A broken callback must not take the ring's thread, and every other bio, down with it.
            System.getLogger("biostack.file").log(System.Logger.Level.ERROR, "end-io callback threw for " + bio, e);
        }
    }
}
