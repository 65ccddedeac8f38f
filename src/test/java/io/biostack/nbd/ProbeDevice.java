package io.biostack.nbd;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.QueueLimits;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A real ramdisk with a window on it, for tests that need to see what the server sends down: it
 * records each bio's op and flags, can hold bios until the test lets them go (requests in flight,
 * limits, out-of-order completion), can fail bios with a given status, and can publish other
 * limits (e.g. no WRITE_ZEROES). Bios it lets go complete on the releasing thread.
 */
final class ProbeDevice implements BlockDevice {
    final RamDisk ram;
    private final QueueLimits limits;
    final ConcurrentLinkedQueue<String> log = new ConcurrentLinkedQueue<>();
    final LinkedBlockingQueue<Bio> held = new LinkedBlockingQueue<>();
    final AtomicInteger flushes = new AtomicInteger();
    volatile boolean holding;
    volatile Status failWith;
    /** Thrown by {@link #extentAt} when set, as a qcow2 image's does when an L2 table can't be read. */
    volatile RuntimeException extentFailure;

    ProbeDevice(long size) {
        this(size, null);
    }

    ProbeDevice(long size, QueueLimits limits) {
        this.ram = new RamDisk("probe", size);
        this.limits = limits == null ? ram.limits() : limits;
    }

    @Override public String name() { return "probe"; }
    @Override public long size() { return ram.size(); }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return false; }
    @Override
    public Extent extentAt(long offset, long maxLength) {
        RuntimeException e = extentFailure;
        if (e != null) {
            throw e;
        }
        return ram.extentAt(offset, maxLength);
    }
    @Override public void close() { ram.close(); }

    @Override
    public void submit(Bio bio) {
        log.add(bio.op() + " " + BioFlags.toString(bio.flags()) + " " + bio.offset() + " " + bio.size());
        if (bio.op() == io.biostack.block.Op.FLUSH) {
            flushes.incrementAndGet();
        }
        if (holding) {
            held.add(bio);
            return;
        }
        pass(bio);
    }

    private void pass(Bio bio) {
        Status s = failWith;
        if (s != null) {
            bio.fail(s, "injected " + s);
            return;
        }
        ram.submit(bio);
    }

    /** Waits until {@code n} bios are held (or the timeout passes); returns how many are. */
    int awaitHeld(int n, long millis) throws InterruptedException {
        long end = System.currentTimeMillis() + millis;
        while (held.size() < n && System.currentTimeMillis() < end) {
            Thread.sleep(5);
        }
        return held.size();
    }

    /** Stops holding and completes the held bios, last one first. */
    void releaseReversed() {
        holding = false;
        List<Bio> l = new ArrayList<>();
        held.drainTo(l);
        for (int i = l.size() - 1; i >= 0; i--) {
            pass(l.get(i));
        }
    }

    /** Completes up to {@code n} held bios, oldest first; keeps holding the rest. */
    void release(int n) throws InterruptedException {
        for (int i = 0; i < n; i++) {
            Bio b = held.poll(5, TimeUnit.SECONDS);
            if (b == null) {
                return;
            }
            pass(b);
        }
    }
}
