package io.biostack.layer.crypt;

import java.util.Arrays;

/**
 * BLAKE2b (RFC 7693), unkeyed, with an output of 1 to 64 bytes: Argon2's {@code H}, and its
 * variable-length hash {@code H'} (RFC 9106 section 3.3). Argon2 hashes a few hundred bytes per
 * call (the parameters, the first blocks of each lane, the final block), so this is written for
 * clarity, not for throughput. One instance hashes one message; it is not thread-safe.
 */
final class Argon2Blake2b {
    /** RFC 7693 section 2.6, the SHA-512 initial values. */
    private static final long[] IV = {
        0x6a09e667f3bcc908L, 0xbb67ae8584caa73bL, 0x3c6ef372fe94f82bL, 0xa54ff53a5f1d36f1L,
        0x510e527fade682d1L, 0x9b05688c2b3e6c1fL, 0x1f83d9abfb41bd6bL, 0x5be0cd19137e2179L,
    };

    /** RFC 7693 section 2.7, the message schedule SIGMA; rounds 10 and 11 repeat rows 0 and 1. */
    private static final byte[][] SIGMA = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
        {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
        {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
        {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
        {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
        {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
        {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
        {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
        {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    };

    private static final int BLOCK = 128;

    private final long[] h = new long[8];
    private final long[] v = new long[16];
    private final long[] m = new long[16];
    private final byte[] buf = new byte[BLOCK];
    private final int outLen;
    private int bufLen;
    private long counter;

    /**
     * A hash of {@code outLen} bytes.
     *
     * @param outLen 1 to 64
     */
    Argon2Blake2b(int outLen) {
        if (outLen < 1 || outLen > 64) {
            throw new IllegalArgumentException("BLAKE2b output must be 1 to 64 bytes, not " + outLen);
        }
        this.outLen = outLen;
        System.arraycopy(IV, 0, h, 0, 8);
        // Parameter block word 0 (RFC 7693 section 2.5): digest length, key length 0, fanout 1, depth 1.
        h[0] ^= 0x01010000L | outLen;
    }

    /** Absorbs {@code len} bytes of {@code in} from {@code off}. */
    Argon2Blake2b update(byte[] in, int off, int len) {
        while (len > 0) {
            // The last block is compressed only at the end, with the final flag: keep a full
            // buffer until more input shows it was not the last.
            if (bufLen == BLOCK) {
                counter += BLOCK;
                compress(false);
                bufLen = 0;
            }
            int n = Math.min(BLOCK - bufLen, len);
            System.arraycopy(in, off, buf, bufLen, n);
            bufLen += n;
            off += n;
            len -= n;
        }
        return this;
    }

    /** Absorbs all of {@code in}. */
    Argon2Blake2b update(byte[] in) {
        return update(in, 0, in.length);
    }

    /** Absorbs a 32-bit value, little-endian (Argon2's {@code LE32}). */
    Argon2Blake2b updateLe32(int x) {
        byte[] b = {(byte) x, (byte) (x >>> 8), (byte) (x >>> 16), (byte) (x >>> 24)};
        return update(b, 0, 4);
    }

    /** Finishes the hash into {@code out} at {@code off}, {@code outLen} bytes, and wipes the state. */
    void digest(byte[] out, int off) {
        counter += bufLen;
        Arrays.fill(buf, bufLen, BLOCK, (byte) 0);
        compress(true);
        for (int i = 0; i < outLen; i++) {
            out[off + i] = (byte) (h[i >>> 3] >>> ((i & 7) << 3));
        }
        Arrays.fill(h, 0);
        Arrays.fill(v, 0);
        Arrays.fill(m, 0);
        Arrays.fill(buf, (byte) 0);
    }

    /** Finishes the hash into a new array of {@code outLen} bytes. */
    byte[] digest() {
        byte[] out = new byte[outLen];
        digest(out, 0);
        return out;
    }

    private void compress(boolean last) {
        for (int i = 0; i < 16; i++) {
            m[i] = le64(buf, i * 8);
        }
        System.arraycopy(h, 0, v, 0, 8);
        System.arraycopy(IV, 0, v, 8, 8);
        v[12] ^= counter; // the high 64 bits of the 128-bit counter stay 0 for Argon2's inputs
        if (last) {
            v[14] = ~v[14];
        }
        for (int r = 0; r < 12; r++) {
            byte[] s = SIGMA[r % 10];
            mix(0, 4, 8, 12, m[s[0]], m[s[1]]);
            mix(1, 5, 9, 13, m[s[2]], m[s[3]]);
            mix(2, 6, 10, 14, m[s[4]], m[s[5]]);
            mix(3, 7, 11, 15, m[s[6]], m[s[7]]);
            mix(0, 5, 10, 15, m[s[8]], m[s[9]]);
            mix(1, 6, 11, 12, m[s[10]], m[s[11]]);
            mix(2, 7, 8, 13, m[s[12]], m[s[13]]);
            mix(3, 4, 9, 14, m[s[14]], m[s[15]]);
        }
        for (int i = 0; i < 8; i++) {
            h[i] ^= v[i] ^ v[i + 8];
        }
    }

    /** RFC 7693 section 3.1, the mixing function G. */
    private void mix(int a, int b, int c, int d, long x, long y) {
        long[] w = v;
        w[a] = w[a] + w[b] + x;
        w[d] = Long.rotateRight(w[d] ^ w[a], 32);
        w[c] = w[c] + w[d];
        w[b] = Long.rotateRight(w[b] ^ w[c], 24);
        w[a] = w[a] + w[b] + y;
        w[d] = Long.rotateRight(w[d] ^ w[a], 16);
        w[c] = w[c] + w[d];
        w[b] = Long.rotateRight(w[b] ^ w[c], 63);
    }

    static long le64(byte[] b, int off) {
        return (b[off] & 0xffL) | (b[off + 1] & 0xffL) << 8 | (b[off + 2] & 0xffL) << 16
                | (b[off + 3] & 0xffL) << 24 | (b[off + 4] & 0xffL) << 32 | (b[off + 5] & 0xffL) << 40
                | (b[off + 6] & 0xffL) << 48 | (b[off + 7] & 0xffL) << 56;
    }

    /** {@code H^outLen(in)}, one call. */
    static byte[] hash(int outLen, byte[] in) {
        return new Argon2Blake2b(outLen).update(in).digest();
    }

    /**
     * {@code H'^T(A)}, the variable-length hash of RFC 9106 section 3.3, into {@code out} at
     * {@code off}: {@code T = len} bytes of {@code LE32(T) || A}, chaining 64-byte hashes and
     * keeping the first 32 bytes of each when {@code T} exceeds 64.
     *
     * @param a the input {@code A}; not kept
     */
    static void hashLong(byte[] a, byte[] out, int off, int len) {
        if (len <= 64) {
            new Argon2Blake2b(len).updateLe32(len).update(a).digest(out, off);
            return;
        }
        int r = (len + 31) / 32 - 2;
        byte[] vi = new Argon2Blake2b(64).updateLe32(len).update(a).digest();
        System.arraycopy(vi, 0, out, off, 32);
        int pos = off + 32;
        for (int i = 2; i <= r; i++) {
            vi = hash(64, vi);
            System.arraycopy(vi, 0, out, pos, 32);
            pos += 32;
        }
        int last = len - 32 * r;
        byte[] tail = hash(last, vi);
        System.arraycopy(tail, 0, out, pos, last);
        Arrays.fill(vi, (byte) 0);
        Arrays.fill(tail, (byte) 0);
    }
}
