package io.biostack.replay;

import io.biostack.file.FileClone;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeSet;

/**
 * Names a crash state by its bytes, so that a state byte-identical to one already checked is not
 * checked again (a reordered state that loses only writes a later persisted write covers, or
 * only writes that rewrote the same bytes; the state with every write since a flush lost, which
 * is the state checked at that flush).
 *
 * <p>The key of a state is a 128-bit sum, over the 4 KiB blocks the replay has written so far,
 * of {@code H(block, bytes now) - H(block, bytes before the replay first wrote it)}, with H the
 * first 128 bits of SHA-256 over the block number and the block's bytes: blocks the replay never
 * wrote hold the image's starting bytes in every state and add nothing. The sum is a function of
 * the state's bytes alone (a block written back to its first bytes adds zero again), so two
 * states with one key hold the same bytes, up to a 2^-128 chance; each is kept up to date as
 * blocks change, without reading the whole image. (A sum of per-element hashes is the
 * incremental "AdHash" of Bellare and Micciancio, 1997.)
 *
 * <p>Single-threaded: the replaying thread owns it.
 */
final class StateKey {
    /** The unit hashed: 4 KiB, the common file system block and page. */
    static final int BLOCK = 4096;

    /** A state's key. */
    record Key(long lo, long hi) { }

    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Per written block: {H(first bytes).lo, .hi, H(bytes now).lo, .hi}. */
    private final Map<Long, long[]> blocks = new HashMap<>();
    private final long size;
    private final MessageDigest sha;
    private final Arena arena = Arena.ofConfined();
    private final MemorySegment buf;
    private final byte[] heap = new byte[BLOCK + 8];
    private long lo;
    private long hi;

    /** For an image of {@code size} bytes. */
    StateKey(long size) {
        this.size = size;
        try {
            this.sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every JDK has SHA-256", e);
        }
        this.buf = arena.allocate(BLOCK, BLOCK);
    }

    /** The key of the image as it is now. */
    Key key() {
        return new Key(lo, hi);
    }

    /**
     * Called before the replay writes [off, off + len) of {@code image}: remembers the first
     * bytes of blocks written for the first time.
     */
    void beforeWrite(FileClone image, long off, long len) throws IOException {
        for (long b = off / BLOCK; b * BLOCK < off + len; b++) {
            if (!blocks.containsKey(b)) {
                long[] h = new long[4];
                hash(image, b, h, 0);
                h[2] = h[0];
                h[3] = h[1];
                blocks.put(b, h);
            }
        }
    }

    /** Called after the replay wrote [off, off + len) of {@code image}: the key follows. */
    void afterWrite(FileClone image, long off, long len) throws IOException {
        long[] now = new long[2];
        for (long b = off / BLOCK; b * BLOCK < off + len; b++) {
            long[] h = blocks.get(b);
            hash(image, b, now, 0);
            lo += now[0] - h[2];
            hi += now[1] - h[3];
            h[2] = now[0];
            h[3] = now[1];
        }
    }

    /**
     * The key of a state that equals the image except, at most, in the blocks of the given
     * ranges (each {offset, length}, all written by the replay before): those blocks are read
     * from {@code state}.
     */
    Key keyOf(FileClone state, Iterable<long[]> ranges) throws IOException {
        TreeSet<Long> touched = new TreeSet<>();
        for (long[] r : ranges) {
            for (long b = r[0] / BLOCK; b * BLOCK < r[0] + r[1]; b++) {
                touched.add(b);
            }
        }
        long l = lo;
        long h = hi;
        long[] now = new long[2];
        for (long b : touched) {
            long[] was = blocks.get(b);
            if (was == null) {
                throw new IllegalStateException("block " + b + " differs from the image but the replay never wrote it");
            }
            hash(state, b, now, 0);
            l += now[0] - was[2];
            h += now[1] - was[3];
        }
        return new Key(l, h);
    }

    private void hash(FileClone f, long block, long[] out, int at) throws IOException {
        long off = block * BLOCK;
        int n = (int) Math.min(BLOCK, size - off);
        f.read(buf, n, off);
        MemorySegment.ofArray(heap).set(LE64, 0, block);
        MemorySegment.copy(buf, 0, MemorySegment.ofArray(heap), 8, n);
        sha.update(heap, 0, 8 + n);
        byte[] d = sha.digest();
        MemorySegment ds = MemorySegment.ofArray(d);
        out[at] = ds.get(LE64, 0);
        out[at + 1] = ds.get(LE64, 8);
    }

    void close() {
        arena.close();
    }
}
