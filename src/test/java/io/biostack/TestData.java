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

    /**
     * Checks that the seed files a fuzz target's Jazzer run starts from ({@code dir/seed-0},
     * {@code seed-1}, ...) hold exactly the seeds its code builds, after writing them there when
     * the system property {@code fuzz.writeSeeds} is true (how they are made).
     *
     * @param dir   the target's inputs folder under src/test/resources
     * @param seeds the seeds, in order
     * @throws java.io.IOException when a file cannot be read or written
     */
    public static void seedFilesMatch(java.nio.file.Path dir, java.util.List<byte[]> seeds) throws java.io.IOException {
        if (Boolean.getBoolean("fuzz.writeSeeds")) {
            java.nio.file.Files.createDirectories(dir);
            for (int i = 0; i < seeds.size(); i++) {
                java.nio.file.Files.write(dir.resolve("seed-" + i), seeds.get(i));
            }
        }
        for (int i = 0; i < seeds.size(); i++) {
            org.assertj.core.api.Assertions.assertThat(java.nio.file.Files.readAllBytes(dir.resolve("seed-" + i)))
                    .as("%s/seed-%d (rewrite with -Dfuzz.writeSeeds=true)", dir, i).isEqualTo(seeds.get(i));
        }
    }
}
