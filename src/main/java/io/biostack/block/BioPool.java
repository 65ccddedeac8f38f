package io.biostack.block;

import java.util.concurrent.atomic.AtomicLong;

/**
 * A lock-free pool of bios ({@code struct bio_set}) so the I/O path allocates nothing once warm.
 *
 * <p>{@link #get()} takes an idle bio or, when none is idle, makes a new one (only while warming
 * up, or when more bios are in flight than the pool keeps); {@link Bio#put()} brings it back, and
 * a bio that does not fit is left to the GC. Backed by an {@link MpmcRing}.
 *
 * <p>Thread-safe: any thread may get and put.
 */
public final class BioPool {
    private final MpmcRing<Bio> idle;
    private final int vecCapacity;
    private final AtomicLong created = new AtomicLong();

    /** A pool that keeps up to {@code capacity} (rounded up to a power of two) idle bios. */
    public BioPool(int capacity) {
        this(capacity, 4);
    }

    /** As {@link #BioPool(int)}, with room for {@code vecCapacity} segments in each new bio. */
    public BioPool(int capacity, int vecCapacity) {
        this.idle = new MpmcRing<>(capacity);
        this.vecCapacity = vecCapacity;
    }

    /** Takes a bio; the caller owns it and must {@link Bio#init} it before use. */
    public Bio get() {
        Bio b = idle.poll();
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
        idle.offer(bio);
    }
}
