package io.biostack.layer.qcow2;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.util.Arrays;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@link ZstdEncoder} round trips through {@link ZstdDecoder}: every input comes back byte-exact,
 * whatever its size (empty, one byte, cluster sizes up to 2 MiB) and content (random, runs,
 * repeated patterns, text), and a frame is either within the cap given or refused.
 */
class ZstdEncoderProperties {
    private final ZstdEncoder enc = new ZstdEncoder();
    private final ZstdDecoder dec = new ZstdDecoder();

    /** Bytes from a mix of runs, copies of earlier bytes, small-alphabet text and noise. */
    static byte[] mixed(long seed, int size, int kinds) {
        Random r = new Random(seed);
        byte[] b = new byte[size];
        int i = 0;
        while (i < size) {
            int n = Math.min(size - i, 1 + r.nextInt(r.nextBoolean() ? 16 : 3000));
            switch (r.nextInt(kinds)) {
                case 0 -> Arrays.fill(b, i, i + n, (byte) r.nextInt(256));
                case 1 -> {
                    if (i > 0) {
                        int from = r.nextInt(i);
                        for (int k = 0; k < n; k++) {
                            b[i + k] = b[from + k % (i - from)];
                        }
                    }
                }
                case 2 -> {
                    for (int k = 0; k < n; k++) {
                        b[i + k] = (byte) ("etaoin shrdlu\n".charAt(Math.abs((int) (r.nextGaussian() * 4)) % 14));
                    }
                }
                default -> {
                    for (int k = 0; k < n; k++) {
                        b[i + k] = (byte) r.nextInt(256);
                    }
                }
            }
            i += n;
        }
        return b;
    }

    private byte[] roundTrip(byte[] in) {
        byte[] frame = new byte[in.length + in.length / 64 + 64];
        int n = enc.compress(in, in.length, frame, frame.length);
        assertThat(n).as("a frame with room for raw blocks always fits").isPositive();
        byte[] out = new byte[in.length];
        dec.decompress(frame, n, out);
        assertThat(out).isEqualTo(in);
        return Arrays.copyOf(frame, n);
    }

    @Provide
    Arbitrary<Integer> sizes() {
        return Arbitraries.oneOf(Arbitraries.of(0, 1, 2, 3, 4, 5, 8, 9, 31, 32, 255, 256, 257, 512, 4095, 4096,
                65535, 65536, 65791, 65792, 131071, 131072, 131073, 65536 * 4, 2 << 20),
                Arbitraries.integers().between(0, 300_000));
    }

    @Property(tries = 120)
    void mixedDataOfAnySizeRoundTrips(@ForAll("sizes") int size, @ForAll long seed,
                                      @ForAll @IntRange(min = 1, max = 4) int kinds) {
        roundTrip(mixed(seed, size, kinds));
    }

    /**
     * Bytes of a skewed distribution over the whole alphabet, with short repeats: literals
     * whose Huffman weights need the FSE-coded description (symbols above 128).
     */
    static byte[] skewed(long seed, int size, int spread) {
        Random r = new Random(seed);
        byte[] b = new byte[size];
        for (int i = 0; i < size; i++) {
            b[i] = i > 16 && r.nextInt(4) == 0 ? b[i - 1 - r.nextInt(16)]
                    : (byte) (200 + (int) (r.nextGaussian() * spread));
        }
        return b;
    }

    @Property(tries = 80)
    void skewedBinaryDataRoundTrips(@ForAll("sizes") int size, @ForAll long seed,
                                    @ForAll @IntRange(min = 1, max = 120) int spread) {
        roundTrip(skewed(seed, size, spread));
    }

    @Property(tries = 40)
    void randomBytesRoundTripAndStayNearTheirSize(@ForAll("sizes") int size, @ForAll long seed) {
        byte[] in = new byte[size];
        new Random(seed).nextBytes(in);
        byte[] frame = roundTrip(in);
        // Raw blocks: 3 bytes a 128 KiB block and at most 9 of frame header.
        assertThat(frame.length).isLessThanOrEqualTo(size + 9 + 3 * (size / (128 << 10) + 1));
    }

    @Property(tries = 40)
    void repetitiveDataShrinks(@ForAll @IntRange(min = 1, max = 64) int period, @ForAll long seed,
                               @ForAll @IntRange(min = 9, max = 21) int clusterBits) {
        byte[] pat = new byte[period];
        new Random(seed).nextBytes(pat);
        byte[] in = new byte[1 << clusterBits];
        for (int i = 0; i < in.length; i++) {
            in[i] = pat[i % period];
        }
        byte[] frame = roundTrip(in);
        assertThat(frame.length).isLessThan(in.length / 8 + 80);
    }

    @Property(tries = 60)
    void aFrameNeverPassesItsCapAndIsRefusedInstead(@ForAll("sizes") int size, @ForAll long seed,
                                                    @ForAll @IntRange(min = 0, max = 70000) int cap) {
        byte[] in = mixed(seed, size, 4);
        byte[] frame = new byte[in.length + 4096];
        int n = enc.compress(in, in.length, frame, cap);
        if (n < 0) {
            int full = enc.compress(in, in.length, frame, frame.length);
            assertThat(full).as("refused only when the frame is longer than the cap").isGreaterThan(cap);
        } else {
            assertThat(n).isLessThanOrEqualTo(cap);
            byte[] out = new byte[in.length];
            dec.decompress(frame, n, out);
            assertThat(out).isEqualTo(in);
        }
    }

    @Property(tries = 30)
    void oneEncoderReusedAcrossClustersGivesTheSameFrameAsAFreshOne(@ForAll long seed) {
        byte[] a = mixed(seed, 65536, 4);
        byte[] b = mixed(seed + 1, 65536, 4);
        byte[] fa = new byte[70000];
        byte[] fb = new byte[70000];
        int na = enc.compress(a, a.length, fa, fa.length);
        int nb = enc.compress(b, b.length, fb, fb.length);
        byte[] fresh = new byte[70000];
        int nf = new ZstdEncoder().compress(b, b.length, fresh, fresh.length);
        assertThat(Arrays.copyOf(fb, nb)).isEqualTo(Arrays.copyOf(fresh, nf));
        assertThat(na).isPositive();
    }
}
