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

    /**
     * {@code path}, made a sparse file of {@code size} bytes (as biostack makes a new image).
     *
     * @param path the file, which must not exist yet
     * @param size its size in bytes
     * @return {@code path}
     * @throws java.io.IOException when it cannot be made
     */
    public static java.nio.file.Path sparseFile(java.nio.file.Path path, long size) throws java.io.IOException {
        io.biostack.file.BackingFile.createSparse(path, size);
        return path;
    }
}
