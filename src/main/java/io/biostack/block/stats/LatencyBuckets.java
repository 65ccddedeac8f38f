package io.biostack.block.stats;

import org.HdrHistogram.Histogram;

/**
 * The fixed log-linear buckets that latencies are counted in on the I/O path: exact below 64 ns,
 * then 32 buckets per power of two (at most 1/32, about 3%, wide relative to their value), up
 * to {@link #MAX_NS} (about 36 minutes; longer latencies count in the last bucket). This is
 * HdrHistogram's own bucket shape with a fixed range, kept in a plain {@code long[]} so that
 * recording is an index computation and one single-writer store: no lock, no allocation, no
 * atomic read-modify-write. Readers turn the counts into an HdrHistogram ({@link #toHistogram})
 * or into Prometheus buckets.
 */
public final class LatencyBuckets {
    private static final int SUB_BITS = 5;
    private static final int SUB = 1 << SUB_BITS;           // 32 buckets per octave
    private static final int LINEAR = SUB << 1;             // values below 64 are exact
    private static final int MAX_EXP = 40;                  // last octave [2^40, 2^41)

    /** The largest latency told apart from longer ones: 2^41 - 1 ns. */
    public static final long MAX_NS = (1L << (MAX_EXP + 1)) - 1;

    /** Number of buckets. */
    public static final int COUNT = LINEAR + (MAX_EXP - SUB_BITS) * SUB;

    private LatencyBuckets() {
    }

    /**
     * The bucket of {@code ns} (negative counts as 0, above {@link #MAX_NS} as the last).
     *
     * @param ns a time in ns
     * @return the bucket of {@code ns} (negative counts as 0, above {@link #MAX_NS} as the last)
     */
    public static int index(long ns) {
        if (ns < LINEAR) {
            return ns < 0 ? 0 : (int) ns;
        }
        if (ns > MAX_NS) {
            ns = MAX_NS;
        }
        int e = 63 - Long.numberOfLeadingZeros(ns);
        int sub = (int) (ns >>> (e - SUB_BITS)) & (SUB - 1);
        return LINEAR + (e - SUB_BITS - 1) * SUB + sub;
    }

    /**
     * The smallest latency in bucket {@code i}.
     *
     * @param i an index from 0
     * @return the smallest latency in bucket {@code i}
     */
    public static long lowerBound(int i) {
        if (i < LINEAR) {
            return i;
        }
        int k = i - LINEAR;
        int e = SUB_BITS + 1 + k / SUB;
        return (long) (SUB + k % SUB) << (e - SUB_BITS);
    }

    /**
     * The first latency past bucket {@code i}.
     *
     * @param i an index from 0
     * @return the first latency past bucket {@code i}
     */
    public static long upperBound(int i) {
        if (i < LINEAR) {
            return i + 1;
        }
        int e = SUB_BITS + 1 + (i - LINEAR) / SUB;
        return lowerBound(i) + (1L << (e - SUB_BITS));
    }

    /**
     * An HdrHistogram (3 significant digits) of the counts, each at the middle of its bucket.
     *
     * @param counts counts per latency bucket
     * @return an HdrHistogram (3 significant digits) of the counts, each at the middle of its bucket
     */
    public static Histogram toHistogram(long[] counts) {
        Histogram h = new Histogram(MAX_NS, 3);
        for (int i = 0; i < counts.length; i++) {
            if (counts[i] > 0) {
                long lo = lowerBound(i);
                h.recordValueWithCount(lo + (upperBound(i) - 1 - lo) / 2, counts[i]);
            }
        }
        return h;
    }

    /**
     * The value at {@code percentile} (0..100) of the counts, in ns (the middle of the bucket it falls in); 0 when there are none.
     *
     * @param counts counts per latency bucket
     * @param percentile the percentile, 0 to 100
     * @return the value at {@code percentile} of the counts, in ns
     */
    public static long percentile(long[] counts, double percentile) {
        long total = 0;
        for (long c : counts) {
            total += c;
        }
        if (total == 0) {
            return 0;
        }
        long rank = Math.max(1, (long) Math.ceil(percentile / 100.0 * total));
        long seen = 0;
        for (int i = 0; i < counts.length; i++) {
            seen += counts[i];
            if (seen >= rank) {
                long lo = lowerBound(i);
                return lo + (upperBound(i) - 1 - lo) / 2;
            }
        }
        return MAX_NS;
    }
}
