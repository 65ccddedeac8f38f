package io.biostack.layer.crypt;

import io.biostack.block.Bio;
import io.biostack.block.MpmcRing;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Native, page-aligned buffers that ciphertext is written from, so a write never encrypts the
 * caller's memory ({@code cc->page_pool} in dm-crypt). Idle buffers wait in an {@link MpmcRing},
 * as bios do in {@link io.biostack.block.BioPool}; when it is empty a new buffer is made rather
 * than waiting (an end-io or a submitter must never block), and a buffer that does not fit back
 * is left to the GC ({@link Arena#ofAuto()} memory, so no arena is closed on the I/O path).
 *
 * <p>Thread-safe.
 */
final class BouncePool {
    private final int bufferBytes;
    private final MpmcRing<Bounce> idle;
    private final AtomicLong created = new AtomicLong();

    BouncePool(int bufferBytes, int capacity) {
        this.bufferBytes = bufferBytes;
        this.idle = new MpmcRing<>(capacity);
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
        Bounce b = idle.poll();
        if (b == null) {
            created.incrementAndGet();
            b = new Bounce(Arena.ofAuto().allocate(bufferBytes, 4096));
        }
        return b;
    }

    /** Gives a buffer back; the caller must not touch it again. A full pool leaves it to the GC. */
    void put(Bounce b) {
        b.owner = null;
        idle.offer(b);
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
