package io.biostack.block;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * A lock-free pool of bios ({@code struct bio_set}) so the I/O path allocates nothing once warm.
 *
 * <p>A bounded multi-producer multi-consumer ring after Dmitry Vyukov's bounded MPMC queue: each
 * slot has a sequence number that says whether it is free to fill or ready to take, so there is
 * no ABA problem although bios are reused. {@link #get()} takes a bio or, when the pool is empty,
 * makes a new one (only while warming up, or when more bios are in flight than the pool holds);
 * {@link Bio#put()} brings it back, and a bio that does not fit is left to the GC.
 *
 * <p>Thread-safe: any thread may get and put.
 */
public final class BioPool {
    private final int mask;
    private final AtomicReferenceArray<Bio> slots;
    private final AtomicLongArray seq;
    private final AtomicLong enqueuePos = new AtomicLong();
    private final AtomicLong dequeuePos = new AtomicLong();
    private final int vecCapacity;
    private final AtomicLong created = new AtomicLong();

    /** A pool that keeps up to {@code capacity} (rounded up to a power of two) idle bios. */
    public BioPool(int capacity) {
        this(capacity, 4);
    }

    /** As {@link #BioPool(int)}, with room for {@code vecCapacity} segments in each new bio. */
    public BioPool(int capacity, int vecCapacity) {
        int cap = Integer.highestOneBit(Math.max(2, capacity - 1)) << 1;
        this.mask = cap - 1;
        this.slots = new AtomicReferenceArray<>(cap);
        this.seq = new AtomicLongArray(cap);
        for (int i = 0; i < cap; i++) {
            seq.set(i, i);
        }
        this.vecCapacity = vecCapacity;
    }

    /** Takes a bio; the caller owns it and must {@link Bio#init} it before use. */
    public Bio get() {
        Bio b = poll();
        if (b == null) {
            created.incrementAndGet();
            return new Bio(this, vecCapacity);
        }
        b.markTaken();
        return b;
    }

    /** How many bios this pool has had to create (a warm pool stops growing). */
    public long created() {
        return created.get();
    }

    void release(Bio bio) {
        offer(bio);
    }

    private boolean offer(Bio bio) {
        long pos = enqueuePos.get();
        while (true) {
            int idx = (int) (pos & mask);
            long s = seq.getAcquire(idx);
            long dif = s - pos;
            if (dif == 0) {
                if (enqueuePos.compareAndSet(pos, pos + 1)) {
                    slots.setPlain(idx, bio);
                    seq.setRelease(idx, pos + 1);
                    return true;
                }
                pos = enqueuePos.get();
            } else if (dif < 0) {
                return false; // full: let the GC have it
            } else {
                pos = enqueuePos.get();
            }
        }
    }

    private Bio poll() {
        long pos = dequeuePos.get();
        while (true) {
            int idx = (int) (pos & mask);
            long s = seq.getAcquire(idx);
            long dif = s - (pos + 1);
            if (dif == 0) {
                if (dequeuePos.compareAndSet(pos, pos + 1)) {
                    Bio b = slots.getPlain(idx);
                    slots.setPlain(idx, null);
                    seq.setRelease(idx, pos + mask + 1);
                    return b;
                }
                pos = dequeuePos.get();
            } else if (dif < 0) {
                return null; // empty
            } else {
                pos = dequeuePos.get();
            }
        }
    }
}
