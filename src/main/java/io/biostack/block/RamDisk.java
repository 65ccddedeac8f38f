package io.biostack.block;

import io.biostack.sys.AnonymousMemory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * A block device in memory ({@code brd}). Memory is taken in chunks on first write, so a large
 * ramdisk costs only what is written, untouched chunks read as zeros and report as holes, and a
 * discard of a whole chunk gives its memory back. Bios complete on the submitting thread.
 *
 * <p>The memory is one anonymous mapping of the whole size ({@link AnonymousMemory}), which the
 * kernel fills a zeroed page at a time as it is first written: no allocation, zeroing or GC on the
 * thread that serves a write, and no limit but the machine's memory. Where mapping is not
 * possible (native access off), chunks are arena allocations instead.
 *
 * <p>Thread-safe. Concurrent writes to the same bytes race as they would on a disk.
 */
public final class RamDisk implements BlockDevice {
    /** Allocation unit; also the granularity of holes and discards. */
    public static final int CHUNK = 64 * 1024;

    private final String name;
    private final long size;
    private final QueueLimits limits;
    private final boolean readOnly;
    private final AtomicReferenceArray<MemorySegment> chunks;
    /**
     * The whole disk as one anonymous mapping the kernel fills a zeroed page at a time on first
     * write (as brd does), or null where mapping is not available: chunks are then arena
     * allocations. An automatic arena owns it, so a bio still copying when the disk closes never
     * touches unmapped memory.
     */
    private final MemorySegment mapped;
    /**
     * A bit per chunk of {@link #mapped} that a discard dropped: its pages are cleaned again before
     * it is handed out, in case a write that raced the discard landed in them.
     */
    private final AtomicLongArray stale;
    /** Marks a chunk whose first writer is cleaning it; reads it as a hole meanwhile. */
    private static final MemorySegment CLAIMED = MemorySegment.ofArray(new byte[0]);

    /**
     * A writable ramdisk of {@code size} bytes with 512-byte blocks.
     *
     * @param name the device's name in messages
     * @param size the capacity in bytes, a multiple of 512; memory is taken off heap, a chunk at a
     *         time, as it is first written
     */
    public RamDisk(String name, long size) {
        this(name, size, 512, false);
    }

    /**
     * A ramdisk of {@code size} bytes (a multiple of {@code logicalBlockSize}).
     *
     * @param name the device's name in messages
     * @param size the capacity in bytes, a multiple of {@code logicalBlockSize}
     * @param logicalBlockSize the block size bios must align to, in bytes (a power of two, at least
     *         512)
     * @param readOnly true to refuse every write, discard and write-zeroes
     */
    public RamDisk(String name, long size, int logicalBlockSize, boolean readOnly) {
        if (size < 0 || size % logicalBlockSize != 0) {
            throw new IllegalArgumentException("ramdisk size " + size + " is not a multiple of " + logicalBlockSize);
        }
        long n = (size + CHUNK - 1) / CHUNK;
        if (n > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("ramdisk too large: " + size);
        }
        this.name = name;
        this.size = size;
        this.readOnly = readOnly;
        this.chunks = new AtomicReferenceArray<>((int) n);
        this.mapped = size == 0 ? null : AnonymousMemory.reserve(size, Arena.ofAuto());
        this.stale = new AtomicLongArray((int) ((n + 63) / 64));
        this.limits = QueueLimits.builder()
                .logicalBlockSize(logicalBlockSize)
                .physicalBlockSize(Math.max(logicalBlockSize, 4096))
                .maxDiscardBytes(Long.MAX_VALUE)
                .discardGranularity(logicalBlockSize)
                .maxWriteZeroesBytes(Long.MAX_VALUE)
                .fua(true)
                .build();
    }

    @Override public String name() { return name; }
    @Override public long size() { return size; }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return readOnly; }

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, size, limits, readOnly)) {
            return;
        }
        switch (bio.op()) {
            case READ -> readTo(bio);
            case WRITE -> writeFrom(bio);
            case DISCARD, WRITE_ZEROES -> zero(bio.offset(), bio.size(), !bio.hasFlag(BioFlags.NOUNMAP));
            case FLUSH -> { }
        }
        bio.endIo();
    }

    private void readTo(Bio bio) {
        long dev = bio.offset();
        BioIter it = bio.iter();
        long left = bio.size();
        int i = it.index();
        long skip = it.doneInSegment();
        while (left > 0) {
            MemorySegment v = bio.segment(i++);
            long n = Math.min(v.byteSize() - skip, left);
            copyOut(dev, v, skip, n);
            dev += n;
            left -= n;
            skip = 0;
        }
    }

    private void writeFrom(Bio bio) {
        long dev = bio.offset();
        BioIter it = bio.iter();
        long left = bio.size();
        int i = it.index();
        long skip = it.doneInSegment();
        while (left > 0) {
            MemorySegment v = bio.segment(i++);
            long n = Math.min(v.byteSize() - skip, left);
            copyIn(dev, v, skip, n);
            dev += n;
            left -= n;
            skip = 0;
        }
    }

    private void copyIn(long dev, MemorySegment src, long srcOff, long n) {
        while (n > 0) {
            int c = (int) (dev / CHUNK);
            long in = dev % CHUNK;
            long k = Math.min(n, CHUNK - in);
            MemorySegment chunk = chunkForWrite(c);
            MemorySegment.copy(src, srcOff, chunk, in, k);
            dev += k;
            srcOff += k;
            n -= k;
        }
    }

    private void copyOut(long dev, MemorySegment dst, long dstOff, long n) {
        while (n > 0) {
            int c = (int) (dev / CHUNK);
            long in = dev % CHUNK;
            long k = Math.min(n, CHUNK - in);
            MemorySegment chunk = chunks.get(c);
            if (chunk == null || chunk == CLAIMED) {
                dst.asSlice(dstOff, k).fill((byte) 0);
            } else {
                MemorySegment.copy(chunk, in, dst, dstOff, k);
            }
            dev += k;
            dstOff += k;
            n -= k;
        }
    }

    private void zero(long dev, long n, boolean unmap) {
        while (n > 0) {
            int c = (int) (dev / CHUNK);
            long in = dev % CHUNK;
            long k = Math.min(n, CHUNK - in);
            if (in == 0 && (k == CHUNK || dev + k == size) && unmap) {
                MemorySegment old = chunks.getAndSet(c, null);
                if (old != null && old != CLAIMED && mapped != null) {
                    long bit = 1L << (c & 63);
                    stale.getAndUpdate(c >>> 6, w -> w | bit);
                    if (!AnonymousMemory.release(old)) {
                        old.fill((byte) 0); // not given back, but it must read as zeros when reused
                    }
                }
            } else {
                MemorySegment chunk = unmap ? chunks.get(c) : chunkForWrite(c);
                if (chunk != null && chunk != CLAIMED) {
                    chunk.asSlice(in, k).fill((byte) 0);
                }
            }
            dev += k;
            n -= k;
        }
    }

    private MemorySegment chunkForWrite(int c) {
        MemorySegment chunk = chunks.get(c);
        if (chunk == null || chunk == CLAIMED) {
            chunk = newChunk(c);
        }
        return chunk;
    }

    /** First write to chunk {@code c} since it was created or discarded: publishes its memory. */
    private MemorySegment newChunk(int c) {
        if (mapped == null) {
            // Arena.ofAuto: the GC frees a chunk once a discard has dropped it and no bio uses it.
            MemorySegment fresh = Arena.ofAuto().allocate(CHUNK, 4096);
            MemorySegment won = chunks.compareAndExchange(c, null, fresh);
            return won == null ? fresh : won;
        }
        long at = (long) c * CHUNK;
        long bit = 1L << (c & 63);
        for (int spins = 0; ; spins++) {
            MemorySegment now = chunks.get(c);
            if (now != null && now != CLAIMED) {
                return now;
            }
            if (now == null && (stale.get(c >>> 6) & bit) == 0) {
                // Never discarded: its pages are the kernel's zero-filled ones, or hold only what
                // writes through this chunk put there. Publish; a racing first writer gets the same.
                MemorySegment fresh = mapped.asSlice(at, Math.min(CHUNK, size - at));
                MemorySegment won = chunks.compareAndExchange(c, null, fresh);
                return won == null ? fresh : won;
            }
            if (now == null && chunks.compareAndSet(c, null, CLAIMED)) {
                // Discarded before: a write that raced the discard may have landed in its pages
                // after they were given back. Clean them before anyone sees the chunk again; the
                // claim keeps a second first-writer from cleaning after this one has written.
                MemorySegment fresh = mapped.asSlice(at, Math.min(CHUNK, size - at));
                if (!AnonymousMemory.release(fresh)) {
                    fresh.fill((byte) 0);
                }
                stale.getAndUpdate(c >>> 6, w -> w & ~bit);
                if (chunks.compareAndSet(c, CLAIMED, fresh)) {
                    return fresh;
                }
                continue; // a discard took the claim back: start over
            }
            if (spins > 1_000_000) {
                throw new IllegalStateException(name + ": chunk " + c + " stayed claimed");
            }
            Thread.onSpinWait(); // another first writer is cleaning it: a few microseconds
        }
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        long end = maxLength >= size - offset ? size : offset + maxLength;
        if (offset >= end) {
            return Extent.data(0);
        }
        boolean hole = isHole((int) (offset / CHUNK));
        long pos = offset;
        while (pos < end && isHole((int) (pos / CHUNK)) == hole) {
            pos = (pos / CHUNK + 1) * CHUNK;
        }
        long len = Math.min(pos, end) - offset;
        return hole ? Extent.hole(len) : Extent.data(len);
    }

    private boolean isHole(int c) {
        MemorySegment chunk = chunks.get(c);
        return chunk == null || chunk == CLAIMED;
    }

    @Override
    public void close() {
        for (int i = 0; i < chunks.length(); i++) {
            chunks.set(i, null);
        }
        if (mapped != null) {
            // Give the memory back now; the range itself is unmapped once nothing refers to it.
            AnonymousMemory.release(mapped);
        }
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The leaf table line {@code ram SIZE [sector-size=N] [read-only]}: a disk in memory,
     * zero-filled, gone when closed.
     *
     * @param a the line's arguments
     * @return the spec
     */
    public static TableSpec parseTable(TableArgs a) {
        long size = a.size("SIZE", a.next("SIZE"));
        int lbs = 512;
        boolean ro = false;
        while (a.hasNext()) {
            TableArgs.Option o = a.option();
            switch (o.key()) {
                case "sector-size" -> lbs = (int) a.size(o);
                case "read-only", "ro" -> ro = true;
                default -> throw a.bad("unknown option '" + o.text() + "' (sector-size=, read-only)");
            }
        }
        int l = lbs;
        boolean readOnly = ro;
        return a.spec((name, len, r) -> new RamDisk(name, size, l, readOnly));
    }
}
