package io.biostack.replay;

import io.biostack.file.FileClone;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.function.IntPredicate;

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

    /** Tests set this: every predicted key is checked against the state built (see Replayer). */
    static volatile boolean VERIFY;

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
    /** Whether {@link #predict} is wanted: the writes since the last flush are followed block by block. */
    private final boolean followWindow;

    /** One write since the last flush to a block: the block's hash after it, and whether it wrote the whole block. */
    private record After(int entry, long lo, long hi, boolean covered) { }

    /** A block written since the last flush: its hash before the first such write, and the writes. */
    private static final class WindowBlock {
        long lo;
        long hi;
        final List<After> writes = new ArrayList<>(2);
    }

    private final Map<Long, WindowBlock> window = new HashMap<>();
    /** False when a write since the last flush came before tracking began: no prediction then. */
    private boolean windowKnown = true;
    private long lo;
    private long hi;

    /** For an image of {@code size} bytes; {@code followWindow} for {@link #predict}. */
    StateKey(long size, boolean followWindow) {
        this.size = size;
        this.followWindow = followWindow;
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
            window.clear();
        }
    }

    /**
     * Called after the replay wrote [off, off + len) of {@code image} ({@code zeros}: a
     * discard, the range now reads as zeros): the key follows.
     */
    void afterWrite(FileClone image, long off, long len, boolean zeros, int entry) throws IOException {
        if (gaveUp) {
            return;
        }
        long[] now = new long[2];
        for (long b = off / BLOCK; b * BLOCK < off + len; b++) {
            long[] h = blocks.get(b);
            boolean covered = b * BLOCK >= off && Math.min((b + 1) * BLOCK, size) <= off + len;
            mix(b, zeros && covered ? zeroDigest : digest(image, b), now);
            if (followWindow) {
                WindowBlock w = window.get(b);
                if (w == null) {
                    w = new WindowBlock();
                    w.lo = h[2];
                    w.hi = h[3];
                    window.put(b, w);
                }
                w.writes.add(new After(entry, now[0], now[1], covered));
            }
            lo += now[0] - h[2];
            hi += now[1] - h[3];
            h[2] = now[0];
            h[3] = now[1];
        }
    }

    /** A flush: the writes since the last one start anew. */
    void windowCleared() {
        window.clear();
        windowKnown = true;
    }

    /** A write since the last flush that was not tracked (before the start mark). */
    void untrackedWrite() {
        windowKnown = false;
    }

    /**
     * The key of a reordered state, without building it: the image with the writes since the
     * last flush undone, then FUA writes and the persisted units redone in log order. Per block,
     * the state holds the bytes after the last write to it that persisted, when that write
     * covered the whole block and all its units on the block persisted; the bytes from before
     * the flush when none persisted. Null when some block is neither (a torn or partial write
     * left it mixed: build the state and ask {@link #keyOf}), or when prediction is off.
     *
     * @param us        the units of the non-FUA writes since the last flush
     * @param persisted which units persist
     * @param fua       whether an entry is a FUA write (always persists)
     */
    Key predict(List<Report.Unit> us, BitSet persisted, IntPredicate fua) {
        if (gaveUp || !followWindow || !windowKnown) {
            return null;
        }
        // per (entry, block): units on it that persisted, and units on it
        Map<Long, Map<Integer, int[]>> status = new HashMap<>();
        for (int k = 0; k < us.size(); k++) {
            Report.Unit u = us.get(k);
            for (long b = u.offset() / BLOCK; b * BLOCK < u.offset() + u.length(); b++) {
                int[] c = status.computeIfAbsent(b, x -> new HashMap<>()).computeIfAbsent(u.entry(), x -> new int[2]);
                c[0] += persisted.get(k) ? 1 : 0;
                c[1]++;
            }
        }
        long l = lo;
        long h = hi;
        for (Map.Entry<Long, WindowBlock> e : window.entrySet()) {
            long b = e.getKey();
            WindowBlock w = e.getValue();
            long sl = w.lo;
            long sh = w.hi;
            Map<Integer, int[]> st = status.get(b);
            for (int k = w.writes.size() - 1; k >= 0; k--) {
                After a = w.writes.get(k);
                int[] c = fua.test(a.entry()) ? null : st == null ? null : st.get(a.entry());
                if (!fua.test(a.entry()) && c == null) {
                    return null; // a unit list that does not match the window: do not guess
                }
                boolean all = c == null || c[0] == c[1];
                if (c != null && c[0] == 0) {
                    continue;
                }
                if (!all || !a.covered()) {
                    return null;
                }
                sl = a.lo();
                sh = a.hi();
                break;
            }
            long[] cur = blocks.get(b);
            l += sl - cur[2];
            h += sh - cur[3];
        }
        return new Key(l, h);
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
