package io.biostack.layer.qcow2;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.biostack.block.BioException;
import io.biostack.block.IoIter;
import io.biostack.block.RamDisk;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A coverage-guided fuzz target over the qcow2 metadata parsers: every input is a whole image
 * file. It goes through the header parser (fields, header extensions, feature names, the backing
 * name), the snapshot table and bitmap directory readers, {@link Qcow2Image#open} on a file of
 * those bytes with {@code img check}'s walk of every L1/L2 entry and refcount, the compressed
 * cluster reader (deflate and zstd), and {@link Qcow2Device#open} over a RAM disk of the same
 * bytes with reads of the clusters it maps (L2 entry decoding on the I/O path). The only
 * answers allowed are a result, a {@link Qcow2Exception}, or an {@link IOException} (an I/O
 * error on a read); anything else, a hang or an allocation the input asks for is a bug.
 *
 * <p>With Jazzer ({@code scripts/fuzz.sh qcow2}: {@code JAZZER_FUZZ=1} and the class-version agent
 * that lets Jazzer instrument Java 25 classes) it fuzzes from the
 * seeds under {@code src/test/resources/io/biostack/layer/qcow2/Qcow2MetadataFuzzTestInputs}
 * (images qemu-img made: plain, snapshot, bitmap, zlib, zstd, extended L2, version 2, refcount
 * bits 1, an overlay) for {@code maxDuration}; the suite runs the seeds and deterministic
 * mutations of them without it (see below).
 */
class Qcow2MetadataFuzzTest {
    private static final Path SEEDS = Path.of("src/test/resources/io/biostack/layer/qcow2/Qcow2MetadataFuzzTestInputs/"
            + "imageParsersAnswerEveryInputWithAResultOrAQcow2Error");
    /** Values that make header fields interesting: zero, all ones, signs, powers of two, near-ends. */
    private static final long[] INTERESTING = {0, 1, -1, 0x7fffffffL, 0x80000000L, 0xffffffffL, Long.MAX_VALUE,
            Long.MIN_VALUE, 512, 0x200, 0x10000, 0xfff0, 0x7fffffffffff0000L, 9, 21, 22, 3, 104, 112, 1L << 62};
    /**
     * Whether inputs also go through the device's read path: on in the suite and in the script
     * ({@code -Dqcow2.fuzz.device=false} leaves it out). It was off while {@code classify} left
     * a stale run length after a bad entry (a lost bio, a hang); that is fixed.
     */
    private static final boolean DEVICE = Boolean.parseBoolean(System.getProperty("qcow2.fuzz.device", "true"));
    /** Inputs that opened as a device and had their reads answered (the device path ran). */
    private static final java.util.concurrent.atomic.AtomicInteger DEVICE_READS = new java.util.concurrent.atomic.AtomicInteger();
    private static final PrintStream NULL = new PrintStream(OutputStream.nullOutputStream());

    @TempDir
    static Path tmp;

    @Tag("jazzer") // not in the suite: see jazzer.excluded in the pom
    @FuzzTest(maxDuration = "60s")
    @EnabledIfEnvironmentVariable(named = "JAZZER_FUZZ", matches = ".+")
    void imageParsersAnswerEveryInputWithAResultOrAQcow2Error(byte[] image) throws Exception {
        target(image, 0);
    }

    /**
     * The suite's brief run: every seed, then deterministic mutations of them (bytes flipped,
     * header fields set to edge values, ranges deleted or repeated, the file cut short), each
     * through the same target, for at most 8 seconds. Not coverage-guided: the {@code @FuzzTest}
     * above is, from {@code scripts/fuzz.sh qcow2}, outside the suite. {@code -Dqcow2.fuzz.seconds=N}
     * runs the mutations longer ({@code scripts/fuzz.sh --mutate qcow2 N}).
     */
    @Test
    void mutatedQemuImagesAreAnsweredWithAResultOrAQcow2Error() throws Exception {
        List<byte[]> corpus = new ArrayList<>();
        try (var files = Files.list(SEEDS)) {
            for (Path p : files.sorted().toList()) {
                corpus.add(Files.readAllBytes(p));
            }
        }
        assertThat(corpus).hasSizeGreaterThanOrEqualTo(8);
        long seconds = Long.getLong("qcow2.fuzz.seconds", 8);
        assertTimeoutPreemptively(Duration.ofSeconds(seconds + 30), () -> {
            for (byte[] seed : corpus) {
                target(seed, 0);
            }
            Random r = new Random(Long.getLong("qcow2.fuzz.seed", 15));
            long deadline = System.nanoTime() + seconds * 1_000_000_000L;
            int runs = 0;
            for (; runs < 1_000_000 && System.nanoTime() < deadline; runs++) {
                byte[] b = mutate(corpus.get(r.nextInt(corpus.size())), r);
                try {
                    target(b, r.nextLong());
                } catch (AssertionError | RuntimeException e) {
                    Path keep = Files.write(tmp.resolve("crash-" + runs + ".qcow2"), b);
                    throw new AssertionError("input " + runs + " (kept in " + keep + "): " + e, e);
                }
            }
            assertThat(runs).isPositive();
            if (DEVICE) {
                // every seed opens as a device: the read path ran on them, and on mutations too
                assertThat(DEVICE_READS.get()).isGreaterThan(corpus.size());
            }
            System.out.println("qcow2 fuzz: " + corpus.size() + " seeds, " + runs + " mutations in " + seconds
                    + " s; device reads answered for " + DEVICE_READS.get() + " inputs");
        });
    }

    static byte[] mutate(byte[] seed, Random r) {
        byte[] b = seed.clone();
        int edits = 1 + r.nextInt(4);
        for (int e = 0; e < edits && b.length > 16; e++) {
            // Half of the edits in the first 512 bytes: the header, its extensions, the backing name.
            int span = r.nextBoolean() ? Math.min(512, b.length) : b.length;
            int at = r.nextInt(span - 8);
            switch (r.nextInt(6)) {
                case 0 -> b[at] ^= (byte) (1 << r.nextInt(8));
                case 1 -> ByteBuffer.wrap(b).putInt(at & ~3, (int) INTERESTING[r.nextInt(INTERESTING.length)]);
                case 2 -> ByteBuffer.wrap(b).putLong(at & ~7, INTERESTING[r.nextInt(INTERESTING.length)]);
                case 3 -> b = splice(b, at, r.nextInt(Math.min(64, b.length - at)));
                case 4 -> b = dup(b, at, r.nextInt(Math.min(64, b.length - at)));
                default -> b = Arrays.copyOf(b, Math.max(1, b.length - r.nextInt(b.length)));
            }
        }
        return b;
    }

    private static byte[] splice(byte[] b, int at, int n) {
        byte[] out = new byte[b.length - n];
        System.arraycopy(b, 0, out, 0, at);
        System.arraycopy(b, at + n, out, at, b.length - at - n);
        return out;
    }

    private static byte[] dup(byte[] b, int at, int n) {
        byte[] out = new byte[b.length + n];
        System.arraycopy(b, 0, out, 0, at + n);
        System.arraycopy(b, at, out, at + n, b.length - at);
        return out;
    }

    /** One input through every parser; returns normally, or fails the test with what escaped. */
    static void target(byte[] image, long pick) throws Exception {
        // The header and its extensions, on their own.
        Qcow2Header h = null;
        try {
            h = Qcow2Header.parse(image, image.length);
            h.featureNames();
            h.backingFormat();
            h.dataFileName();
            Qcow2Header.parse(h.encode(), image.length);
        } catch (Qcow2Exception expected) {
            // a refusal with a message is the right answer to bad input
        }
        Qcow2Image.Source src = (off, len) -> {
            byte[] out = new byte[len];
            if (off < image.length) {
                System.arraycopy(image, (int) off, out, 0, (int) Math.min(len, image.length - off));
            }
            return out;
        };
        if (h != null) {
            try {
                Qcow2Image.readSnapshotTable(src, image.length, h);
                Qcow2Image.readBitmapDirectory(src, image.length, h);
            } catch (Qcow2Exception expected) {
                // refused
            }
        }
        try {
            Qcow2Image.parseBitmapDirectory(image, image.length == 0 ? 0 : image[0] & 0x3f);
        } catch (Qcow2Exception expected) {
            // refused
        }
        offline(image);
        if (h != null && DEVICE) {
            device(image, pick);
        }
    }

    /** {@code img info/check/map}'s reader over a file of these bytes. */
    private static void offline(byte[] image) throws IOException {
        Path f = tmp.resolve("fuzz.qcow2");
        Files.write(f, image);
        try (Qcow2Image q = Qcow2Image.open(f, false)) {
            Qcow2Check.check(q, NULL, 0);
            int step = q.extendedL2() ? 2 : 1;
            int compressed = 0;
            for (long l1e : q.l1) {
                long l2 = l1e & Qcow2Header.OFFSET_MASK;
                if (l2 == 0) {
                    continue;
                }
                try {
                    long[] t = q.readL2(l2);
                    for (int j = 0; j < t.length && compressed < 4; j += step) {
                        if ((t[j] & Qcow2Header.OFLAG_COMPRESSED) != 0) {
                            compressed++;
                            try {
                                q.readCompressed(t[j]);
                            } catch (IOException expected) {
                                // refused
                            }
                        }
                    }
                } catch (IOException expected) {
                    // an L2 table outside the file
                }
            }
        } catch (IOException expected) {
            // refused at open, or an I/O error the check could not get past
        }
    }

    /** The device over a RAM disk of these bytes: open read-only, read what the map points at. */
    private static void device(byte[] image, long pick) throws Exception {
        long size = Math.max(512, (image.length + 511) & ~511L);
        try (RamDisk ram = new RamDisk("fuzz", size)) {
            ram.write(0, IoIter.of(Arrays.copyOf(image, (int) size)), 0).join();
            Qcow2Device q;
            try {
                q = Qcow2Device.open("fuzz", ram, new Qcow2Device.Options(true, 1 << 20, null, true, null, null, "fuzz"));
            } catch (Qcow2Exception | IOException expected) {
                return;
            }
            try (q; Arena a = Arena.ofShared()) {
                int n = (int) Math.min(q.size(), 64 << 10) & ~511;
                if (n == 0) {
                    return;
                }
                MemorySegment m = a.allocate(n, 4096);
                long far = q.size() <= n ? 0 : Math.floorMod(pick, q.size() - n) & ~511L;
                for (long off : new long[] {0, far}) {
                    try {
                        q.read(off, m).get(10, TimeUnit.SECONDS);
                    } catch (ExecutionException e) {
                        if (!(e.getCause() instanceof BioException)) {
                            fail("a read failed with " + e.getCause(), e.getCause());
                        }
                    } catch (TimeoutException e) {
                        fail("a read at " + off + " did not complete in 10 s");
                    }
                }
                DEVICE_READS.incrementAndGet();
            }
        }
    }
}
