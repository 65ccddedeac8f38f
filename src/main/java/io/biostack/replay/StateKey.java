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
 * <p>The key of a state is a 128-bit sum, over the 4 KiB blocks written since tracking began
 * (the first crash point's entries: everything before is the same in every state checked), of
 * {@code H(block, bytes now) - H(block, bytes when tracking began)}, where {@code H(b, c)} is the
 * first 128 bits of {@code SHA-256(b || SHA-256(c))}: blocks never written add nothing. The sum
 * is a function of the state's bytes alone (a block written back to its first bytes adds zero
 * again), so two states with one key hold the same bytes, up to a 2^-128 chance; it is kept up
 * to date as blocks change, without reading the whole image. (A sum of per-element hashes is the
 * incremental "AdHash" of Bellare and Micciancio, 1997.) Hashing the block's digest rather than
 * the block lets a discarded block cost one 40-byte hash: the digest of a zero block is computed
 * once.
 *
 * <p>Past {@link #MAX_BLOCKS} blocks tracked, it gives up: every key is null from then on, and
 * every state is checked, as without it.
 *
 * <p>Single-threaded: the replaying thread owns it.
 */
final class StateKey {
    /** The unit hashed: 4 KiB, the common file system block and page. */
    static final int BLOCK = 4096;
    /** Blocks tracked at most (16 GiB written; some 100 bytes of heap each). */
    static final int MAX_BLOCKS = 1 << 22;

    /** A state's key. */
    record Key(long lo, long hi) { }

    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Per written block: {H(first bytes).lo, .hi, H(bytes now).lo, .hi}. */
    private final Map<Long, long[]> blocks = new HashMap<>();
    private final long size;
    private final MessageDigest sha;
    private final Arena arena = Arena.ofConfined();
    private final MemorySegment buf;
    private final byte[] heap = new byte[BLOCK];
    private final byte[] pair = new byte[8 + 32];
    private final byte[] zeroDigest;
    private boolean gaveUp;
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
        this.zeroDigest = sha.digest(new byte[BLOCK]);
    }

    /** The key of the image as it is now, or null after giving up. */
    Key key() {
        return gaveUp ? null : new Key(lo, hi);
    }

    /**
     * Called before the replay writes [off, off + len) of {@code image}: remembers the first
     * bytes of blocks written for the first time.
     */
    void beforeWrite(FileClone image, long off, long len) throws IOException {
        if (gaveUp) {
            return;
        }
        long b0 = off / BLOCK;
        long end = Math.min((off + len + BLOCK - 1) / BLOCK * BLOCK, size);
        boolean hole = image.nextData(b0 * BLOCK) >= end;   // no data in any of the blocks: they read as zeros
        for (long b = b0; b * BLOCK < off + len; b++) {
            if (!blocks.containsKey(b)) {
                long[] h = new long[4];
                mix(b, hole && full(b) ? zeroDigest : digest(image, b), h);
                h[2] = h[0];
                h[3] = h[1];
                blocks.put(b, h);
            }
        }
        if (blocks.size() > MAX_BLOCKS) {
            gaveUp = true;
            blocks.clear();
        }
    }

    /**
     * Called after the replay wrote [off, off + len) of {@code image} ({@code zeros}: a
     * discard, the range now reads as zeros): the key follows.
     */
    void afterWrite(FileClone image, long off, long len, boolean zeros) throws IOException {
        if (gaveUp) {
            return;
        }
        long[] now = new long[2];
        for (long b = off / BLOCK; b * BLOCK < off + len; b++) {
            long[] h = blocks.get(b);
            boolean covered = b * BLOCK >= off && Math.min((b + 1) * BLOCK, size) <= off + len;
            mix(b, zeros && covered ? zeroDigest : digest(image, b), now);
            lo += now[0] - h[2];
            hi += now[1] - h[3];
            h[2] = now[0];
            h[3] = now[1];
        }
    }

    /**
     * The key of a state that equals the image except, at most, in the blocks of the given
     * ranges (each {offset, length}): those blocks are read from {@code state}. Null when one of
     * them was not written since tracking began (its first bytes are not known) or after giving up.
     */
    Key keyOf(FileClone state, Iterable<long[]> ranges) throws IOException {
        if (gaveUp) {
            return null;
        }
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
                return null;
            }
            mix(b, digest(state, b), now);
            l += now[0] - was[2];
            h += now[1] - was[3];
        }
        return new Key(l, h);
    }

    /** Whether block {@code b} is whole (the last one of an image whose size is no multiple of 4 KiB is not). */
    private boolean full(long b) {
        return (b + 1) * BLOCK <= size;
    }

    /** SHA-256 of block {@code b}'s bytes in {@code f}. */
    private byte[] digest(FileClone f, long b) throws IOException {
        long off = b * BLOCK;
        int n = (int) Math.min(BLOCK, size - off);
        f.read(buf, n, off);
        MemorySegment.copy(buf, 0, MemorySegment.ofArray(heap), 0, n);
        sha.update(heap, 0, n);
        return sha.digest();
    }

    /** {@code out} = the first 128 bits of SHA-256(b || digest). */
    private void mix(long b, byte[] digest, long[] out) {
        MemorySegment p = MemorySegment.ofArray(pair);
        p.set(LE64, 0, b);
        System.arraycopy(digest, 0, pair, 8, 32);
        MemorySegment d = MemorySegment.ofArray(sha.digest(pair));
        out[0] = d.get(LE64, 0);
        out[1] = d.get(LE64, 8);
    }

    void close() {
        arena.close();
    }
}
