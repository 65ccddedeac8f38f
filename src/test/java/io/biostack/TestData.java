package io.biostack;

import java.util.Random;

/** Test data that every suite builds the same way. */
public final class TestData {
    private TestData() {
    }

    /**
     * {@code n} bytes from a seeded {@link Random}: the same bytes for the same seed, so that a
     * failure names data that can be made again, and no two seeds read alike.
     *
     * @param n    how many bytes
     * @param seed the seed
     * @return fresh bytes
     */
    public static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }
}
