package io.biostack.block.stats;

import io.biostack.block.Bio;
import io.biostack.block.BioPool;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Extent;
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
 * The caller's bio is cloned from a pool ({@code bio_alloc_clone}; no allocation once warm):
 * the clone carries the start time in its {@code privateLong} and the caller's bio in its
 * {@code privateData}, goes down in the caller's place, and its completion counts the I/O,
 * passes the status up and completes the caller's bio. The caller's own slots stay untouched.
 * Size and offset are taken from the caller's bio, which no one below changes.
 *
 * <p>Ownership is {@link BlockDevice#submit}'s: this device owns the caller's bio until it
 * completes it, on whatever thread the device underneath completes the clone. Closing closes
 * the device underneath.
 */
public final class CountedDevice implements BlockDevice {
    /** Enough idle clones for a deep queue; more in flight are allocated, as any BioPool does. */
    private static final BioPool POOL = new BioPool(4096);

    private final BlockDevice inner;
    private final DeviceStats stats;
    private final EndIo done = this::done;

    /** Counts the I/O of {@code inner} in {@code stats}. */
    public CountedDevice(BlockDevice inner, DeviceStats stats) {
        this.inner = inner;
        this.stats = stats;
    }

    /** Counts the I/O of {@code inner} under its own name. */
    public CountedDevice(BlockDevice inner) {
        this(inner, new DeviceStats(inner.name()));
    }

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

    @Override
    public void submit(Bio bio) {
        long now = System.nanoTime();
        Bio c = bio.cloneShallow(POOL);
        c.setEndIo(done);
        c.setPrivateData(bio);
        c.setPrivateLong(now);
        stats.start(bio.op(), now);
        inner.submit(c);
    }

    private void done(Bio c) {
        long now = System.nanoTime();
        Bio bio = (Bio) c.privateData();
        stats.done(bio.op(), bio.offset(), bio.size(), c.privateLong(), now);
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
    public MemorySegment allocateIoMemory(long bytes, Arena owner) {
        return inner.allocateIoMemory(bytes, owner);
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
