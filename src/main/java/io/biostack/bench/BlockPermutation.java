package io.biostack.bench;

/**
 * A pseudo-random order of the blocks {@code 0 .. blocks-1} in which each block comes exactly once:
 * the bench's counterpart of fio's random map (fio's default for random I/O, turned off by
 * {@code norandommap}), which hands out every block of the range once per pass, never twice.
 * Without it, random offsets repeat: on a 1 GiB range of 4 KiB blocks, a write lands on a block
 * one of the last 6144 writes touched 2.3% of the time (6144 / 262144), and a device that orders
 * overlapping writes (librbd's write-around cache keeps up to {@code rbd_cache_max_dirty} = 24 MiB,
 * 6144 such writes, in flight and holds back a write that overlaps one of them) makes that write
 * wait for the older one, where fio's job never waits so.
 *
 * <p>A bijection on the smallest power of two that holds {@code blocks}, built from steps that are
 * each invertible modulo 2<sup>k</sup> (adding a key, multiplying by an odd number, x ^ (x >>> s)
 * with s at least 1), and cycle-walking (apply it again until the result is below {@code blocks})
 * to stay in range; the power of two is less than twice {@code blocks}, so fewer than two steps are
 * needed on average. No state, no allocation: {@link #block} is a pure function of the index.
 */
final class BlockPermutation {
    private final long blocks;
    private final long mask;
    private final int shiftA;
    private final int shiftB;
    private final long key0;
    private final long key1;

    /**
     * An order of {@code blocks} blocks, one for each {@code seed}.
     *
     * @param blocks the count of blocks, at least 1
     * @param seed   picks the order
     */
    BlockPermutation(long blocks, long seed) {
        if (blocks < 1) {
            throw new IllegalArgumentException("blocks must be at least 1: " + blocks);
        }
        this.blocks = blocks;
        int bits = Math.max(1, 64 - Long.numberOfLeadingZeros(blocks - 1));
        this.mask = bits == 64 ? -1L : (1L << bits) - 1;
        this.shiftA = Math.max(1, bits / 2);
        this.shiftB = Math.max(1, (bits + 2) / 3);
        long z = seed * 0x9E3779B97F4A7C15L + 0x632BE59BD9B4E019L; // splitmix64's constants
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        this.key0 = z ^ (z >>> 31);
        z = (key0 ^ (key0 >>> 27)) * 0x94D049BB133111EBL;
        this.key1 = z ^ (z >>> 31);
    }

    /**
     * The block at {@code index} of the order.
     *
     * @param index a position in the order, {@code 0 <= index < blocks}
     * @return the block there, {@code 0 <= block < blocks}; distinct indices give distinct blocks
     */
    long block(long index) {
        long x = index;
        do {
            x = mix(x);
        } while (Long.compareUnsigned(x, blocks) >= 0);
        return x;
    }

    private long mix(long x) {
        x = (x + key0) & mask;
        x ^= x >>> shiftA;
        x = (x * 0xD6E8FEB86659FD93L) & mask; // odd: invertible modulo 2^k
        x ^= x >>> shiftB;
        x = (x + key1) & mask;
        x = (x * 0x9E3779B97F4A7C15L) & mask; // odd
        x ^= x >>> shiftA;
        return x;
    }
}
