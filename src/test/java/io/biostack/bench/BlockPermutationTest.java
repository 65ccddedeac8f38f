package io.biostack.bench;

import org.junit.jupiter.api.Test;

import java.util.BitSet;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The bench's random map: every block of the range exactly once, in an order the seed picks. */
class BlockPermutationTest {

    private static BitSet walk(BlockPermutation p, long blocks) {
        BitSet seen = new BitSet();
        for (long i = 0; i < blocks; i++) {
            long b = p.block(i);
            assertThat(b).isBetween(0L, blocks - 1);
            assertThat(seen.get((int) b)).as("block %d came twice (index %d)", b, i).isFalse();
            seen.set((int) b);
        }
        return seen;
    }

    @Test
    void everyBlockComesExactlyOnceForSizesOnAndOffPowersOfTwo() {
        for (long blocks : new long[] {1, 2, 3, 5, 64, 1000, 4095, 4096, 4097, 262_144}) {
            for (long seed : new long[] {0, 1, 42}) {
                assertThat(walk(new BlockPermutation(blocks, seed), blocks).cardinality()).isEqualTo((int) blocks);
            }
        }
    }

    @Test
    void theOrderIsTheSameForASeedAndDiffersBetweenSeeds() {
        BlockPermutation a = new BlockPermutation(262_144, 1);
        BlockPermutation b = new BlockPermutation(262_144, 1);
        BlockPermutation c = new BlockPermutation(262_144, 2);
        int same = 0;
        for (long i = 0; i < 1000; i++) {
            assertThat(a.block(i)).isEqualTo(b.block(i));
            if (a.block(i) == c.block(i)) {
                same++;
            }
        }
        assertThat(same).isLessThan(10);
    }

    @Test
    void theOrderIsScatteredNotAStride() {
        // Consecutive positions land far apart: of 1000 steps on 262144 blocks, few are short.
        BlockPermutation p = new BlockPermutation(262_144, 1);
        int near = 0;
        for (long i = 1; i < 1000; i++) {
            if (Math.abs(p.block(i) - p.block(i - 1)) < 1024) {
                near++;
            }
        }
        assertThat(near).isLessThan(30);
    }

    @Test
    void anEmptyRangeIsRefused() {
        assertThatThrownBy(() -> new BlockPermutation(0, 1)).hasMessageContaining("at least 1");
    }
}
