package io.biostack.block;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * A block device in memory ({@code brd}). Memory is taken in chunks on first write, so a large
 * ramdisk costs only what is written, untouched chunks read as zeros and report as holes, and a
 * discard of a whole chunk gives its memory back. Bios complete on the submitting thread.
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
            if (chunk == null) {
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
                chunks.set(c, null);
            } else {
                MemorySegment chunk = unmap ? chunks.get(c) : chunkForWrite(c);
                if (chunk != null) {
                    chunk.asSlice(in, k).fill((byte) 0);
                }
            }
            dev += k;
            n -= k;
        }
    }

    private MemorySegment chunkForWrite(int c) {
        MemorySegment chunk = chunks.get(c);
        if (chunk == null) {
            // Arena.ofAuto: the GC frees a chunk once a discard has dropped it and no bio uses it.
            MemorySegment fresh = Arena.ofAuto().allocate(CHUNK, 4096);
            chunk = chunks.compareAndExchange(c, null, fresh);
            if (chunk == null) {
                chunk = fresh;
            }
        }
        return chunk;
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        long end = maxLength >= size - offset ? size : offset + maxLength;
        if (offset >= end) {
            return Extent.data(0);
        }
        boolean hole = chunks.get((int) (offset / CHUNK)) == null;
        long pos = offset;
        while (pos < end && (chunks.get((int) (pos / CHUNK)) == null) == hole) {
            pos = (pos / CHUNK + 1) * CHUNK;
        }
        long len = Math.min(pos, end) - offset;
        return hole ? Extent.hole(len) : Extent.data(len);
    }

    @Override
    public void close() {
        for (int i = 0; i < chunks.length(); i++) {
            chunks.set(i, null);
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
