package io.biostack.layer.crypt;

import io.biostack.block.Bio;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * Native, page-aligned buffers that ciphertext is written from, so a write never encrypts the
 * caller's memory ({@code cc->page_pool} in dm-crypt). A bounded lock-free ring after Vyukov's
 * MPMC queue, as {@link io.biostack.block.BioPool}; when it is empty a new buffer is made rather
 * than waiting (an end-io or a submitter must never block), and a buffer that does not fit back
 * is left to the GC ({@link Arena#ofAuto()} memory, so no arena is closed on the I/O path).
 *
 * <p>Thread-safe.
 */
final class BouncePool {
    private final int bufferBytes;
    private final int mask;
    private final AtomicReferenceArray<Bounce> slots;
    private final AtomicLongArray seq;
    private final AtomicLong enqueuePos = new AtomicLong();
    private final AtomicLong dequeuePos = new AtomicLong();
    private final AtomicLong created = new AtomicLong();

    BouncePool(int bufferBytes, int capacity) {
        int cap = Integer.highestOneBit(Math.max(2, capacity - 1)) << 1;
        this.bufferBytes = bufferBytes;
        this.mask = cap - 1;
        this.slots = new AtomicReferenceArray<>(cap);
        this.seq = new AtomicLongArray(cap);
        for (int i = 0; i < cap; i++) {
            seq.set(i, i);
        }
    }

    int bufferBytes() {
        return bufferBytes;
    }

    /** How many buffers were ever made (a warm pool stops growing). */
    long created() {
        return created.get();
    }

    /** Takes a buffer; the caller owns it until {@link #put}. */
    Bounce get() {
        long pos = dequeuePos.get();
        while (true) {
            int idx = (int) (pos & mask);
            long dif = seq.getAcquire(idx) - (pos + 1);
            if (dif == 0) {
                if (dequeuePos.compareAndSet(pos, pos + 1)) {
                    Bounce b = slots.getPlain(idx);
                    slots.setPlain(idx, null);
                    seq.setRelease(idx, pos + mask + 1);
                    return b;
                }
                pos = dequeuePos.get();
            } else if (dif < 0) {
                created.incrementAndGet();
                return new Bounce(Arena.ofAuto().allocate(bufferBytes, 4096));
            } else {
                pos = dequeuePos.get();
            }
        }
    }

    /** Gives a buffer back; the caller must not touch it again. */
    void put(Bounce b) {
        b.owner = null;
        long pos = enqueuePos.get();
        while (true) {
            int idx = (int) (pos & mask);
            long dif = seq.getAcquire(idx) - pos;
            if (dif == 0) {
                if (enqueuePos.compareAndSet(pos, pos + 1)) {
                    slots.setPlain(idx, b);
                    seq.setRelease(idx, pos + 1);
                    return;
                }
                pos = enqueuePos.get();
            } else if (dif < 0) {
                return; // full: the GC takes it
            } else {
                pos = enqueuePos.get();
            }
        }
    }

    /** A bounce buffer and the bio it serves while a write is in flight. */
    static final class Bounce {
        final MemorySegment mem;
        /** The bio whose ciphertext this holds; set by the writer, cleared by {@link #put}. */
        Bio owner;
        private MemorySegment slice;

        Bounce(MemorySegment mem) {
            this.mem = mem;
        }

        /** The first {@code len} bytes; the last slice is kept, so steady same-size I/O allocates nothing. */
        MemorySegment slice(long len) {
            if (len == mem.byteSize()) {
                return mem;
            }
            MemorySegment s = slice;
            if (s == null || s.byteSize() != len) {
                s = mem.asSlice(0, len);
                slice = s;
            }
            return s;
        }
    }
}
