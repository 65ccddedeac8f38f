package io.biostack.block.stats;

import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

class LatencyBucketsTest {
    @Test
    void everyValueFallsInTheBucketWhoseBoundsHoldIt() {
        SplittableRandom r = new SplittableRandom(7);
        for (int k = 0; k < 200_000; k++) {
            long v = r.nextLong(1L << r.nextInt(1, 42));
            int i = LatencyBuckets.index(v);
            assertThat(i).isBetween(0, LatencyBuckets.COUNT - 1);
            assertThat(LatencyBuckets.lowerBound(i)).as("value %d bucket %d", v, i).isLessThanOrEqualTo(v);
            assertThat(LatencyBuckets.upperBound(i)).as("value %d bucket %d", v, i).isGreaterThan(v);
        }
    }

    @Test
    void bucketsTileTheRangeWithoutGapsAndStayWithinThreePercent() {
        assertThat(LatencyBuckets.lowerBound(0)).isZero();
        for (int i = 1; i < LatencyBuckets.COUNT; i++) {
            assertThat(LatencyBuckets.lowerBound(i)).isEqualTo(LatencyBuckets.upperBound(i - 1));
            long lo = LatencyBuckets.lowerBound(i);
            long width = LatencyBuckets.upperBound(i) - lo;
            if (lo < 32) {
                assertThat(width).as("exact below 32 ns").isEqualTo(1);
            } else {
                assertThat((double) width / lo).as("bucket %d", i).isLessThanOrEqualTo(1.0 / 32);
            }
        }
        assertThat(LatencyBuckets.upperBound(LatencyBuckets.COUNT - 1) - 1).isEqualTo(LatencyBuckets.MAX_NS);
    }

    @Test
    void outOfRangeValuesClampToTheEnds() {
        assertThat(LatencyBuckets.index(-5)).isZero();
        assertThat(LatencyBuckets.index(Long.MAX_VALUE)).isEqualTo(LatencyBuckets.COUNT - 1);
    }

    @Test
    void percentilesAgreeWithHdrHistogramWithinABucket() {
        long[] counts = new long[LatencyBuckets.COUNT];
        Histogram exact = new Histogram(3);
        SplittableRandom r = new SplittableRandom(3);
        for (int k = 0; k < 100_000; k++) {
            long v = 10_000 + r.nextLong(5_000_000); // 10 us .. 5 ms
            counts[LatencyBuckets.index(v)]++;
            exact.recordValue(v);
        }
        for (double p : new double[]{50, 90, 99, 99.9}) {
            long mine = LatencyBuckets.percentile(counts, p);
            long hdr = exact.getValueAtPercentile(p);
            assertThat((double) Math.abs(mine - hdr) / hdr).as("p%s: %d vs %d", p, mine, hdr).isLessThan(0.035);
            long viaHdr = LatencyBuckets.toHistogram(counts).getValueAtPercentile(p);
            assertThat((double) Math.abs(viaHdr - hdr) / hdr).as("p%s via toHistogram", p).isLessThan(0.035);
        }
        assertThat(LatencyBuckets.toHistogram(counts).getTotalCount()).isEqualTo(100_000);
        assertThat(LatencyBuckets.percentile(new long[LatencyBuckets.COUNT], 99)).isZero();
    }
}
