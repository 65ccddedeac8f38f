package io.biostack.block.stats;

import io.biostack.block.Bio;
import io.biostack.block.BioPool;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Extent;
import io.biostack.block.IoAccounting;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.StatusContext;
import io.biostack.block.bitmap.DeviceBitmaps;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A device seen through its {@link DeviceStats}: every bio submitted here is counted when it
 * starts and when it completes ({@code blk_account_io_start/done}), then passes to the device
 * underneath. This is how a {@code Stack} counts each of its devices, leaves and layers alike,
 * without any change to the devices themselves.
 *
 * <h2>A bio's way through</h2>
 * The bio goes down as it is: {@link Bio#startAccounting} notes the start time, offset and size
 * in the bio's accounting slot, and the bio's completion calls {@link #ioDone} just before the
 * caller's callback, wherever it completes. No clone, no allocation, no lock. Only when the
 * slot is taken already (a counted device passed the bio down in place to this one, as a
 * partition does to its disk) is the bio cloned from a pool ({@code bio_alloc_clone}) and the
 * clone counted; its completion completes the caller's bio with the clone's status.
 *
 * <h2>Dirty bitmaps</h2>
 * A device with {@linkplain #setBitmaps bitmaps} has its writes, discards and write-zeroes marked
 * in them before they go down ({@link DeviceBitmaps#beforeWrite}); a write whose persistent marks
 * are not durable yet is held by the bitmaps until they are. Its {@link #statusContexts()} lists
 * the bitmaps ({@code qemu:dirty-bitmap:NAME}) before the inner device's contexts.
 *
 * <h2>The clock</h2>
 * A clock reading costs more than the rest of counting, so an I/O reads it as few times as
 * latency allows ({@link SubmitClock}): its start is the submitter's reading
 * ({@link Bio#issueTime}) or one reading per outermost counted submit, shared by the counted
 * devices below it in the same call; its end is read once, by the first counted device that
 * hears of the completion, and handed up with the bio ({@link Bio#completionTime}) or through
 * the same call, to the devices above and to the submitter's callback. Measured with
 * {@code bench/stats/run.sh}.
 *
 * <p>Ownership is {@link BlockDevice#submit}'s: this device owns the caller's bio until it
 * completes it, on whatever thread the device underneath completes the clone. Closing closes
 * the device underneath.
 */
public final class CountedDevice implements BlockDevice, IoAccounting, io.biostack.block.Resizable,
        io.biostack.block.ImageLocking {
    /** Enough idle clones for a deep queue; more in flight are allocated, as any BioPool does. */
    private static final BioPool POOL = new BioPool(4096);

    private final BlockDevice inner;
    private final DeviceStats stats;
    private final EndIo cloneDone = CountedDevice::cloneDone;
    /** The device's dirty bitmaps, once it has any: the second observer of its writes. */
    private volatile DeviceBitmaps bitmaps;
    /** Where bios go: the inner device, or a handler in front of it (a backup's copy-on-write). */
    private volatile BlockDevice below;

    /**
     * Counts the I/O of {@code inner} in {@code stats}.
     *
     * @param inner the device counted
     * @param stats where its I/O is counted
     */
    public CountedDevice(BlockDevice inner, DeviceStats stats) {
        this.inner = inner;
        this.stats = stats;
        this.below = inner;
    }

    /**
     * Counts the I/O of {@code inner} under its own name.
     *
     * @param inner the device counted
     */
    public CountedDevice(BlockDevice inner) {
        this(inner, new DeviceStats(inner.name()));
    }

    /**
     * The statistics this device counts in.
     *
     * @return the statistics
     */
    public DeviceStats stats() {
        return stats;
    }

    /**
     * The device underneath.
     *
     * @return the counted device
     */
    public BlockDevice inner() {
        return inner;
    }

    @Override public String name() { return inner.name(); }
    @Override public long size() { return inner.size(); }
    @Override public QueueLimits limits() { return inner.limits(); }
    @Override public boolean isReadOnly() { return inner.isReadOnly(); }

    /**
     * Counts the bio in and passes it down; see {@link BlockDevice#submit}. Its start time is
     * the submitter's {@link Bio#issueTime} (taken and cleared), or the reading of the counted
     * submit this one runs inside, or a new reading.
     *
     * @param bio the bio; this device owns it until it completes it
     */
    @Override
    public void submit(Bio bio) {
        SubmitClock.Scope scope = SubmitClock.scope();
        try {
            long now = SubmitClock.enter(scope, bio.issueTime());
            bio.setIssueTime(0);
            if (!bio.startAccounting(this, now)) {
                Bio c = bio.cloneShallow(POOL);
                c.setEndIo(cloneDone);
                c.setPrivateData(bio);
                c.startAccounting(this, now);
                bio = c;
            }
            stats.start(bio.op(), now);
            DeviceBitmaps b = bitmaps;
            if (b != null && bio.op().changesData() && !b.beforeWrite(bio)) {
                return; // held until its marks are durable; the bitmaps send it down
            }
            below.submit(bio);
        } finally {
            scope.depth--;
        }
    }

    /**
     * Counts the bio out; called by {@link Bio#endIo()} on the completing thread.
     *
     * @param bio the completed bio this device started counting
     */
    @Override
    public void ioDone(Bio bio) {
        long start = bio.accountingStart();
        long end = bio.completionTime();
        if (end == 0 || end - start <= 0) { // none handed up, or one from before this start (reused without init)
            end = SubmitClock.end(start);
            bio.setCompletionTime(end);
        }
        stats.done(bio.op(), bio.accountingOffset(), bio.accountingSize(), start, end);
    }

    private static void cloneDone(Bio c) {
        Bio bio = (Bio) c.privateData();
        Status s = c.status();
        if (s != Status.OK) {
            bio.setStatus(s, c.detail());
        }
        bio.setCompletionTime(c.completionTime()); // read once below; the devices above reuse it
        c.put();
        bio.endIo();
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        return inner.extentAt(offset, maxLength);
    }

    /**
     * The bitmaps' contexts, then the inner device's.
     *
     * @return the contexts this device answers
     */
    @Override
    public java.util.List<StatusContext> statusContexts() {
        DeviceBitmaps b = bitmaps;
        if (b == null) {
            return inner.statusContexts();
        }
        java.util.List<StatusContext> out = new java.util.ArrayList<>(b.contexts());
        out.addAll(inner.statusContexts());
        return java.util.List.copyOf(out);
    }

    /**
     * The dirty bitmaps of this device, or null before it has any.
     *
     * @return the bitmaps
     */
    public DeviceBitmaps bitmaps() {
        return bitmaps;
    }

    /**
     * Sends a bio that was counted here (and held by the bitmaps) on down.
     *
     * @param bio a bio this device owns; ownership passes down
     */
    public void submitBelow(Bio bio) {
        below.submit(bio);
    }

    /**
     * Puts a handler between this wrapper and the inner device (a snapshot origin handler while
     * a backup view needs copy-on-write), or takes it away ({@code inner()}). The caller quiesces
     * writes first: a write in flight keeps the path it took.
     *
     * @param dev the device bios go to from now on; it must pass them to {@link #inner()}
     */
    public void setBelow(BlockDevice dev) {
        below = dev;
    }

    /**
     * Gives the device its bitmaps; writes are marked in them from the next submit on.
     *
     * @param b the bitmaps, built with {@link #submitBelow} as their way down
     */
    public void setBitmaps(DeviceBitmaps b) {
        bitmaps = b;
    }

    @Override
    public MemorySegment allocateIoMemory(long bytes, Arena owner) {
        return inner.allocateIoMemory(bytes, owner);
    }

    /**
     * Grows the counted device when it can grow ({@link io.biostack.block.Resizable}).
     *
     * @param minSize the size wanted
     * @return the size afterwards
     * @throws java.io.IOException when the device below cannot grow
     */
    @Override
    public long growTo(long minSize) throws java.io.IOException {
        return io.biostack.block.Resizable.grow(inner, minSize);
    }

    /**
     * Shrinks the counted device when the device below can shrink ({@link io.biostack.block.Resizable#shrinkTo}).
     *
     * @param size the size wanted
     * @return true when the device below shrank (or was that small already)
     * @throws java.io.IOException when the device below failed to shrink
     */
    @Override
    public boolean shrinkTo(long size) throws java.io.IOException {
        return io.biostack.block.Resizable.shrink(inner, size);
    }

    /**
     * Shows the last part block of the device below, when it has one ({@link io.biostack.block.Resizable#showPartBlock}).
     *
     * @return the size afterwards, or -1 when there is none
     * @throws java.io.IOException when the device below failed to find it
     */
    @Override
    public long showPartBlock() throws java.io.IOException {
        return io.biostack.block.Resizable.showPart(inner);
    }

    /**
     * The image locks of the device below, when it is over a file ({@link io.biostack.block.ImageLocking}).
     *
     * @param write true when the format writes
     * @return the locks, or none held
     * @throws java.io.IOException when another user of the file conflicts
     */
    @Override
    public io.biostack.block.ImageLocking.Held lockImage(boolean write) throws java.io.IOException {
        return io.biostack.block.ImageLocking.lock(inner, write);
    }

    @Override
    public void close() {
        inner.close();
    }

    @Override
    public String toString() {
        return inner.toString();
    }
}
