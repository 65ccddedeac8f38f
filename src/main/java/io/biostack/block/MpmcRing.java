package io.biostack.block;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * A bounded lock-free multi-producer multi-consumer ring of references, after Dmitry Vyukov's
 * bounded MPMC queue: each slot carries a sequence number that says whether it is free to fill or
 * ready to take, so reused elements cause no ABA problem. Offer and poll allocate nothing.
 *
 * <p>Used by the pools (bios, bounce buffers): thread-safe for any number of threads.
 *
 * @param <T> the type of the elements the ring holds
 */
public final class MpmcRing<T> {
    private final int mask;
    private final AtomicReferenceArray<T> slots;
    private final AtomicLongArray seq;
    private final AtomicLong enqueuePos = new AtomicLong();
    private final AtomicLong dequeuePos = new AtomicLong();

    /**
     * A ring of at least {@code capacity} slots (rounded up to a power of two).
     *
     * @param capacity the least number of slots, at least 1
     */
    public MpmcRing(int capacity) {
        int cap = Integer.highestOneBit(Math.max(2, capacity - 1)) << 1;
        this.mask = cap - 1;
        this.slots = new AtomicReferenceArray<>(cap);
        this.seq = new AtomicLongArray(cap);
        for (int i = 0; i < cap; i++) {
            seq.set(i, i);
        }
    }

    /**
     * Slots in the ring.
     *
     * @return the number of slots, a power of two
     */
    public int capacity() {
        return mask + 1;
    }

    /**
     * Adds {@code e}; false when the ring is full.
     *
     * @param e the element to add, not null
     * @return true when it was added, false when the ring was full (nothing changed)
     */
    public boolean offer(T e) {
        long pos = enqueuePos.get();
        while (true) {
            int idx = (int) (pos & mask);
            long dif = seq.getAcquire(idx) - pos;
            if (dif == 0) {
                if (enqueuePos.compareAndSet(pos, pos + 1)) {
                    slots.setPlain(idx, e);
                    seq.setRelease(idx, pos + 1);
                    return true;
                }
                pos = enqueuePos.get();
            } else if (dif < 0) {
                return false;
            } else {
                pos = enqueuePos.get();
            }
        }
    }

    /**
     * Takes the oldest element; null when empty.
     *
     * @return the element, or null when the ring is empty
     */
    public T poll() {
        long pos = dequeuePos.get();
        while (true) {
            int idx = (int) (pos & mask);
            long dif = seq.getAcquire(idx) - (pos + 1);
            if (dif == 0) {
                if (dequeuePos.compareAndSet(pos, pos + 1)) {
                    T e = slots.getPlain(idx);
                    slots.setPlain(idx, null);
                    seq.setRelease(idx, pos + mask + 1);
                    return e;
                }
                pos = dequeuePos.get();
            } else if (dif < 0) {
                return null;
            } else {
                pos = dequeuePos.get();
            }
        }
    }
}
