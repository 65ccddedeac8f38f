package io.biostack.block;

import java.util.concurrent.atomic.AtomicLong;

/**
 * A lock-free pool of bios ({@code struct bio_set}) so the I/O path allocates nothing once warm.
 *
 * <p>{@link #get()} takes an idle bio or, when none is idle, makes a new one (only while warming
 * up, or when more bios are in flight than the pool keeps); {@link Bio#put()} brings it back, and
 * a bio that does not fit is left to the GC. Backed by {@link MpmcRing}s, one stripe per group of
 * threads: a thread descheduled between claiming a slot and publishing it blocks its ring (that is
 * how a Vyukov ring works), so with one ring every other thread's get would allocate until it runs
 * again. Gets and puts start at the caller's home stripe and move on to the others.
 *
 * <p>Thread-safe: any thread may get and put.
 */
public final class BioPool {
    private final MpmcRing<Bio>[] stripes;
    private final int stripeMask;
    private final int vecCapacity;
    private final AtomicLong created = new AtomicLong();

    /**
     * A pool that keeps up to {@code capacity} (rounded up to a power of two) idle bios.
     *
     * @param capacity the most idle bios kept; bios put back beyond it go to the garbage collector
     */
    public BioPool(int capacity) {
        this(capacity, 4);
    }

    /**
     * As {@link #BioPool(int)}, with room for {@code vecCapacity} segments in each new bio.
     *
     * @param capacity the most idle bios kept
     * @param vecCapacity the segment slots each new bio starts with (it grows if more are added)
     */
    @SuppressWarnings({"unchecked", "rawtypes"})
    public BioPool(int capacity, int vecCapacity) {
        int n = Integer.highestOneBit(Math.max(1, Math.min(8, capacity / 8)));
        this.stripes = new MpmcRing[n];
        for (int i = 0; i < n; i++) {
            stripes[i] = new MpmcRing<>(Math.max(2, capacity / n));
        }
        this.stripeMask = n - 1;
        this.vecCapacity = vecCapacity;
    }

    private int home() {
        return (int) Thread.currentThread().threadId() & stripeMask;
    }

    /**
     * Takes a bio; the caller owns it and must {@link Bio#init} it before use.
     *
     * @return a bio from the pool, or a new one when the pool is empty
     */
    public Bio get() {
        int h = home();
        for (int i = 0; i <= stripeMask; i++) {
            Bio b = stripes[(h + i) & stripeMask].poll();
            if (b != null) {
                b.markTaken();
                return b;
            }
        }
        created.incrementAndGet();
        return new Bio(this, vecCapacity);
    }

    /**
     * How many bios this pool has had to create (a warm pool stops growing).
     *
     * @return the count of bios created since the pool was made
     */
    public long created() {
        return created.get();
    }

    void release(Bio bio) {
        int h = home();
        for (int i = 0; i <= stripeMask; i++) {
            if (stripes[(h + i) & stripeMask].offer(bio)) {
                return;
            }
        }
    }
}
