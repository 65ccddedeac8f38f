package io.biostack.layer.crypt;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * Fills Argon2 segments (RFC 9106 section 3.4): the compression function {@code G} of section
 * 3.5 and the indexing of section 3.4.1, over the blocks of one {@link MemorySegment}.
 *
 * <p>Written for the JIT: a block in flight lives in {@code long[128]} scratch arrays owned by this
 * object, the permutation {@code P} works on sixteen {@code long} locals, and nothing is allocated
 * per block. One filler per thread; it is not thread-safe. The memory it fills belongs to the
 * caller, which guarantees (by the slice barrier of {@link Argon2}) that no other thread writes a
 * block this filler reads while it reads it. The scratch arrays hold key-derived data:
 * {@link #wipe} them when done.
 */
final class Argon2Fill {
    /** Words of a 1 KiB block. */
    static final int WORDS = 128;
    /** Bytes of a block. */
    static final int BLOCK_BYTES = 1024;
    /** Pseudo-random values that one address block gives (section 3.4.1.2). */
    private static final int ADDRESSES_PER_BLOCK = WORDS;

    private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG;

    private final MemorySegment mem;
    private final int lanes;
    private final int laneLength;
    private final int segmentLength;
    private final int passes;
    private final int y;

    /** The block before the one being made: the previous output, kept so it is not read back. */
    private long[] prev = new long[WORDS];
    /** The block being made. */
    private long[] cur = new long[WORDS];
    /** {@code R = X xor Y} of the compression in flight. */
    private final long[] r = new long[WORDS];
    /** {@code P}'s work when the output is XORed into an old block. */
    private final long[] q = new long[WORDS];
    /** Argon2i's input block {@code Z} (section 3.4.1.2) and the addresses it gave. */
    private final long[] input = new long[WORDS];
    private final long[] address = new long[WORDS];
    private final long[] zero = new long[WORDS];

    /**
     * A filler over {@code mem}, which holds {@code lanes * laneLength} blocks, lane after lane.
     *
     * @param y the variant (RFC 9106's {@code y})
     */
    Argon2Fill(MemorySegment mem, int lanes, int laneLength, int passes, int y) {
        this.mem = mem;
        this.lanes = lanes;
        this.laneLength = laneLength;
        this.segmentLength = laneLength / 4;
        this.passes = passes;
        this.y = y;
    }

    /** Zeroes the scratch blocks. */
    void wipe() {
        Arrays.fill(prev, 0);
        Arrays.fill(cur, 0);
        Arrays.fill(r, 0);
        Arrays.fill(q, 0);
        Arrays.fill(input, 0);
        Arrays.fill(address, 0);
    }

    /**
     * Computes segment {@code slice} of lane {@code lane} in pass {@code pass}. The first two
     * blocks of each lane must be in place for pass 0, slice 0.
     */
    void fillSegment(int pass, int lane, int slice) {
        boolean independent = y == 1 || (y == 2 && pass == 0 && slice < 2);
        int start = 0;
        if (independent) {
            Arrays.fill(input, 0);
            input[0] = pass;
            input[1] = lane;
            input[2] = slice;
            input[3] = (long) lanes * laneLength;
            input[4] = passes;
            input[5] = y;
        }
        if (pass == 0 && slice == 0) {
            start = 2;
            if (independent) {
                nextAddresses();
            }
        }
        long laneBase = (long) lane * laneLength;
        int col = slice * segmentLength + start;
        int prevCol = col == 0 ? laneLength - 1 : col - 1;
        load(laneBase + prevCol, prev);
        for (int i = start; i < segmentLength; i++, col++) {
            long rand;
            if (independent) {
                if (i % ADDRESSES_PER_BLOCK == 0) {
                    nextAddresses();
                }
                rand = address[i % ADDRESSES_PER_BLOCK];
            } else {
                rand = prev[0];
            }
            int refLane = (int) ((rand >>> 32) % lanes);
            if (pass == 0 && slice == 0) {
                refLane = lane;
            }
            long refIndex = refIndex(pass, slice, i, rand & 0xffffffffL, refLane == lane);
            long refOff = ((long) refLane * laneLength + refIndex) * BLOCK_BYTES;
            long curOff = (laneBase + col) * BLOCK_BYTES;
            // Version 0x13: from the second pass on, the new block is XORed into the old one.
            compress(refOff, curOff, pass > 0);
            MemorySegment.copy(cur, 0, mem, LONG, curOff, WORDS);
            long[] t = prev;
            prev = cur;
            cur = t;
        }
    }

    /**
     * The column of the reference block in its lane (RFC 9106 section 3.4.2; the reference code's
     * {@code index_alpha}): the area that may be referenced, then {@code J1} mapped onto it
     * non-uniformly, favouring recent blocks.
     */
    private long refIndex(int pass, int slice, int index, long j1, boolean sameLane) {
        long area;
        if (pass == 0) {
            if (slice == 0) {
                area = index - 1;
            } else if (sameLane) {
                area = (long) slice * segmentLength + index - 1;
            } else {
                area = (long) slice * segmentLength + (index == 0 ? -1 : 0);
            }
        } else {
            if (sameLane) {
                area = laneLength - segmentLength + index - 1;
            } else {
                area = laneLength - segmentLength + (index == 0 ? -1 : 0);
            }
        }
        long rel = (j1 * j1) >>> 32;
        rel = area - 1 - ((area * rel) >>> 32);
        long startPos = pass == 0 || slice == 3 ? 0 : (long) (slice + 1) * segmentLength;
        return (startPos + rel) % laneLength;
    }

    /** The next block of Argon2i addresses: {@code G(0, G(0, Z))} with the counter advanced. */
    private void nextAddresses() {
        input[6]++;
        compressArrays(zero, input, address);
        compressArrays(zero, address, address);
    }

    private void load(long block, long[] dst) {
        MemorySegment.copy(mem, LONG, block * BLOCK_BYTES, dst, 0, WORDS);
    }

    /**
     * {@code cur = G(prev, mem[refOff])}, or {@code cur = mem[curOff] xor G(prev, mem[refOff])}
     * when {@code xor}.
     */
    private void compress(long refOff, long curOff, boolean xor) {
        long[] p = prev;
        long[] rr = r;
        long[] z = cur;
        for (int i = 0; i < WORDS; i++) {
            long v = p[i] ^ mem.get(LONG, refOff + ((long) i << 3));
            rr[i] = v;
        }
        if (xor) {
            for (int i = 0; i < WORDS; i++) {
                z[i] = mem.get(LONG, curOff + ((long) i << 3));
            }
        }
        permuteAndFinish(z, xor);
    }

    /** {@code out = G(x, y)} over arrays ({@code out} may be {@code y}); for the address blocks. */
    private void compressArrays(long[] x, long[] y, long[] out) {
        for (int i = 0; i < WORDS; i++) {
            r[i] = x[i] ^ y[i];
        }
        permuteAndFinish(out, false);
    }

    /**
     * With {@code R} in {@link #r}: {@code Q = P(rows of R)}, {@code Z = P(columns of Q)}, then
     * {@code out = Z xor R} ({@code out ^= Z xor R} when {@code xor}, permuting in {@link #q};
     * otherwise in {@code out} itself). {@code out} must not be {@link #r}.
     */
    private void permuteAndFinish(long[] out, boolean xor) {
        long[] q = xor ? this.q : out;
        System.arraycopy(r, 0, q, 0, WORDS);
        for (int i = 0; i < 8; i++) {
            round(q, 16 * i, 2);
        }
        for (int i = 0; i < 8; i++) {
            round(q, 2 * i, 16);
        }
        long[] rr = r;
        if (xor) {
            for (int i = 0; i < WORDS; i++) {
                out[i] ^= q[i] ^ rr[i];
            }
        } else {
            for (int i = 0; i < WORDS; i++) {
                out[i] = q[i] ^ rr[i];
            }
        }
    }

    /**
     * The permutation {@code P} (RFC 9106 section 3.6) on sixteen words of {@code v}: word
     * {@code k} is {@code v[base + (k / 2) * step + k % 2]}, so step 2 takes a row of eight
     * 16-byte registers and step 16 a column.
     */
    private static void round(long[] v, int base, int step) {
        int b1 = base + step;
        int b2 = b1 + step;
        int b3 = b2 + step;
        int b4 = b3 + step;
        int b5 = b4 + step;
        int b6 = b5 + step;
        int b7 = b6 + step;
        long v0 = v[base];
        long v1 = v[base + 1];
        long v2 = v[b1];
        long v3 = v[b1 + 1];
        long v4 = v[b2];
        long v5 = v[b2 + 1];
        long v6 = v[b3];
        long v7 = v[b3 + 1];
        long v8 = v[b4];
        long v9 = v[b4 + 1];
        long v10 = v[b5];
        long v11 = v[b5 + 1];
        long v12 = v[b6];
        long v13 = v[b6 + 1];
        long v14 = v[b7];
        long v15 = v[b7 + 1];

        // GB(v0, v4, v8, v12)
        v0 = v0 + v4 + 2 * (v0 & 0xffffffffL) * (v4 & 0xffffffffL);
        v12 = Long.rotateRight(v12 ^ v0, 32);
        v8 = v8 + v12 + 2 * (v8 & 0xffffffffL) * (v12 & 0xffffffffL);
        v4 = Long.rotateRight(v4 ^ v8, 24);
        v0 = v0 + v4 + 2 * (v0 & 0xffffffffL) * (v4 & 0xffffffffL);
        v12 = Long.rotateRight(v12 ^ v0, 16);
        v8 = v8 + v12 + 2 * (v8 & 0xffffffffL) * (v12 & 0xffffffffL);
        v4 = Long.rotateRight(v4 ^ v8, 63);
        // GB(v1, v5, v9, v13)
        v1 = v1 + v5 + 2 * (v1 & 0xffffffffL) * (v5 & 0xffffffffL);
        v13 = Long.rotateRight(v13 ^ v1, 32);
        v9 = v9 + v13 + 2 * (v9 & 0xffffffffL) * (v13 & 0xffffffffL);
        v5 = Long.rotateRight(v5 ^ v9, 24);
        v1 = v1 + v5 + 2 * (v1 & 0xffffffffL) * (v5 & 0xffffffffL);
        v13 = Long.rotateRight(v13 ^ v1, 16);
        v9 = v9 + v13 + 2 * (v9 & 0xffffffffL) * (v13 & 0xffffffffL);
        v5 = Long.rotateRight(v5 ^ v9, 63);
        // GB(v2, v6, v10, v14)
        v2 = v2 + v6 + 2 * (v2 & 0xffffffffL) * (v6 & 0xffffffffL);
        v14 = Long.rotateRight(v14 ^ v2, 32);
        v10 = v10 + v14 + 2 * (v10 & 0xffffffffL) * (v14 & 0xffffffffL);
        v6 = Long.rotateRight(v6 ^ v10, 24);
        v2 = v2 + v6 + 2 * (v2 & 0xffffffffL) * (v6 & 0xffffffffL);
        v14 = Long.rotateRight(v14 ^ v2, 16);
        v10 = v10 + v14 + 2 * (v10 & 0xffffffffL) * (v14 & 0xffffffffL);
        v6 = Long.rotateRight(v6 ^ v10, 63);
        // GB(v3, v7, v11, v15)
        v3 = v3 + v7 + 2 * (v3 & 0xffffffffL) * (v7 & 0xffffffffL);
        v15 = Long.rotateRight(v15 ^ v3, 32);
        v11 = v11 + v15 + 2 * (v11 & 0xffffffffL) * (v15 & 0xffffffffL);
        v7 = Long.rotateRight(v7 ^ v11, 24);
        v3 = v3 + v7 + 2 * (v3 & 0xffffffffL) * (v7 & 0xffffffffL);
        v15 = Long.rotateRight(v15 ^ v3, 16);
        v11 = v11 + v15 + 2 * (v11 & 0xffffffffL) * (v15 & 0xffffffffL);
        v7 = Long.rotateRight(v7 ^ v11, 63);
        // GB(v0, v5, v10, v15)
        v0 = v0 + v5 + 2 * (v0 & 0xffffffffL) * (v5 & 0xffffffffL);
        v15 = Long.rotateRight(v15 ^ v0, 32);
        v10 = v10 + v15 + 2 * (v10 & 0xffffffffL) * (v15 & 0xffffffffL);
        v5 = Long.rotateRight(v5 ^ v10, 24);
        v0 = v0 + v5 + 2 * (v0 & 0xffffffffL) * (v5 & 0xffffffffL);
        v15 = Long.rotateRight(v15 ^ v0, 16);
        v10 = v10 + v15 + 2 * (v10 & 0xffffffffL) * (v15 & 0xffffffffL);
        v5 = Long.rotateRight(v5 ^ v10, 63);
        // GB(v1, v6, v11, v12)
        v1 = v1 + v6 + 2 * (v1 & 0xffffffffL) * (v6 & 0xffffffffL);
        v12 = Long.rotateRight(v12 ^ v1, 32);
        v11 = v11 + v12 + 2 * (v11 & 0xffffffffL) * (v12 & 0xffffffffL);
        v6 = Long.rotateRight(v6 ^ v11, 24);
        v1 = v1 + v6 + 2 * (v1 & 0xffffffffL) * (v6 & 0xffffffffL);
        v12 = Long.rotateRight(v12 ^ v1, 16);
        v11 = v11 + v12 + 2 * (v11 & 0xffffffffL) * (v12 & 0xffffffffL);
        v6 = Long.rotateRight(v6 ^ v11, 63);
        // GB(v2, v7, v8, v13)
        v2 = v2 + v7 + 2 * (v2 & 0xffffffffL) * (v7 & 0xffffffffL);
        v13 = Long.rotateRight(v13 ^ v2, 32);
        v8 = v8 + v13 + 2 * (v8 & 0xffffffffL) * (v13 & 0xffffffffL);
        v7 = Long.rotateRight(v7 ^ v8, 24);
        v2 = v2 + v7 + 2 * (v2 & 0xffffffffL) * (v7 & 0xffffffffL);
        v13 = Long.rotateRight(v13 ^ v2, 16);
        v8 = v8 + v13 + 2 * (v8 & 0xffffffffL) * (v13 & 0xffffffffL);
        v7 = Long.rotateRight(v7 ^ v8, 63);
        // GB(v3, v4, v9, v14)
        v3 = v3 + v4 + 2 * (v3 & 0xffffffffL) * (v4 & 0xffffffffL);
        v14 = Long.rotateRight(v14 ^ v3, 32);
        v9 = v9 + v14 + 2 * (v9 & 0xffffffffL) * (v14 & 0xffffffffL);
        v4 = Long.rotateRight(v4 ^ v9, 24);
        v3 = v3 + v4 + 2 * (v3 & 0xffffffffL) * (v4 & 0xffffffffL);
        v14 = Long.rotateRight(v14 ^ v3, 16);
        v9 = v9 + v14 + 2 * (v9 & 0xffffffffL) * (v14 & 0xffffffffL);
        v4 = Long.rotateRight(v4 ^ v9, 63);

        v[base] = v0;
        v[base + 1] = v1;
        v[b1] = v2;
        v[b1 + 1] = v3;
        v[b2] = v4;
        v[b2 + 1] = v5;
        v[b3] = v6;
        v[b3 + 1] = v7;
        v[b4] = v8;
        v[b4 + 1] = v9;
        v[b5] = v10;
        v[b5 + 1] = v11;
        v[b6] = v12;
        v[b6 + 1] = v13;
        v[b7] = v14;
        v[b7 + 1] = v15;
    }
}
