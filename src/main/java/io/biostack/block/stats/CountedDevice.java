package io.biostack.block.stats;

import io.biostack.block.Bio;
import io.biostack.block.BioPool;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Extent;
import io.biostack.block.IoAccounting;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;

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
 * <p>Measured with {@code bench/stats/run.sh}: the cost is dominated by the two
 * {@link System#nanoTime} reads per I/O (start, completion) that latency needs.
 *
 * <p>Ownership is {@link BlockDevice#submit}'s: this device owns the caller's bio until it
 * completes it, on whatever thread the device underneath completes the clone. Closing closes
 * the device underneath.
 */
public final class CountedDevice implements BlockDevice, IoAccounting , io.biostack.block.Resizable {
    /** Enough idle clones for a deep queue; more in flight are allocated, as any BioPool does. */
    private static final BioPool POOL = new BioPool(4096);

    private final BlockDevice inner;
    private final DeviceStats stats;
    private final EndIo cloneDone = CountedDevice::cloneDone;

    /** Counts the I/O of {@code inner} in {@code stats}. */
    public CountedDevice(BlockDevice inner, DeviceStats stats) {
        this.inner = inner;
        this.stats = stats;
    }

    /** Counts the I/O of {@code inner} under its own name. */
    public CountedDevice(BlockDevice inner) {
        this(inner, new DeviceStats(inner.name()));
    }

    /** The statistics this device counts in. */
    public DeviceStats stats() {
        return stats;
    }

    /** The device underneath. */
    public BlockDevice inner() {
        return inner;
    }

    @Override public String name() { return inner.name(); }
    @Override public long size() { return inner.size(); }
    @Override public QueueLimits limits() { return inner.limits(); }
    @Override public boolean isReadOnly() { return inner.isReadOnly(); }

    /** Counts the bio in and passes it down; see {@link BlockDevice#submit}. */
    @Override
    public void submit(Bio bio) {
        long now = System.nanoTime();
        if (!bio.startAccounting(this, now)) {
            Bio c = bio.cloneShallow(POOL);
            c.setEndIo(cloneDone);
            c.setPrivateData(bio);
            c.startAccounting(this, now);
            bio = c;
        }
        stats.start(bio.op(), now);
        inner.submit(bio);
    }

    /** Counts the bio out; called by {@link Bio#endIo()} on the completing thread. */
    @Override
    public void ioDone(Bio bio) {
        stats.done(bio.op(), bio.accountingOffset(), bio.accountingSize(), bio.accountingStart(), System.nanoTime());
    }

    private static void cloneDone(Bio c) {
        Bio bio = (Bio) c.privateData();
        Status s = c.status();
        if (s != Status.OK) {
            bio.setStatus(s, c.detail());
        }
        c.put();
        bio.endIo();
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        return inner.extentAt(offset, maxLength);
    }

    @Override
    public java.util.List<io.biostack.block.StatusContext> statusContexts() {
        return inner.statusContexts();
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

    @Override
    public void close() {
        inner.close();
    }

    @Override
    public String toString() {
        return inner.toString();
    }
}
