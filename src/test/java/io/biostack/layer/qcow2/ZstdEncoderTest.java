package io.biostack.layer.qcow2;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@link ZstdEncoder}'s frames against libzstd: the {@code zstd} command line decodes every one
 * (text, binary, runs, noise, sizes from empty to 2 MiB) to the input, and on compressible
 * clusters our frames are within a margin of {@code zstd -3}'s, the level qemu uses.
 */
class ZstdEncoderTest {
    @TempDir
    Path dir;

    static byte[] text(long seed, int size) {
        Random r = new Random(seed);
        String[] words = {"qcow2", "cluster", "refcount", "table", "the", "of", "L2", "backing", "zstd", "frame",
                "Huffman", "sequence", "offset", "literal", "\n", "biostack", "a", "block", "device"};
        StringBuilder t = new StringBuilder();
        while (t.length() < size) {
            t.append(words[(int) Math.abs(r.nextGaussian() * 5) % words.length]).append(' ');
            if (r.nextInt(9) == 0) {
                t.append(r.nextInt(100000));
            }
        }
        return Arrays.copyOf(t.toString().getBytes(StandardCharsets.US_ASCII), size);
    }

    /** Binary records: little-endian counters, a few flag bytes, and some noise (bytes above 128). */
    static byte[] records(long seed, int size) {
        Random r = new Random(seed);
        byte[] b = new byte[size];
        for (int i = 0; i + 16 <= size; i += 16) {
            long v = i * 37L + r.nextInt(4);
            for (int k = 0; k < 8; k++) {
                b[i + k] = (byte) (v >>> (8 * k));
            }
            b[i + 8] = (byte) (0x80 | r.nextInt(4));
            b[i + 9] = (byte) r.nextInt(256);
            b[i + 12] = (byte) 0xff;
        }
        return b;
    }

    @Test
    void theZstdCommandLineDecodesEveryFrameToItsInput() throws Exception {
        Tools.require("zstd");
        ZstdEncoder enc = new ZstdEncoder();
        int[] sizes = {0, 1, 7, 255, 256, 512, 4096, 65535, 65536, 65792, 131072, 200_000, 2 << 20};
        int k = 0;
        for (int size : sizes) {
            byte[] random = new byte[size];
            new Random(size).nextBytes(random);
            byte[] run = new byte[size];
            Arrays.fill(run, (byte) 'z');
            for (byte[] in : new byte[][] {text(size, size), records(size, size), random, run,
                    ZstdEncoderProperties.mixed(size, size, 4), ZstdEncoderProperties.skewed(size, size, 20),
                    ZstdEncoderProperties.skewed(size, size, 90)}) {
                byte[] frame = new byte[in.length + 1024];
                int n = enc.compress(in, in.length, frame, frame.length);
                Path f = dir.resolve("f" + k + ".zst");
                Path back = dir.resolve("f" + k);
                Files.write(f, Arrays.copyOf(frame, n));
                Tools.ok(60, "zstd", "-q", "-d", "-f", f.toString(), "-o", back.toString());
                assertThat(Files.readAllBytes(back)).as("input %d of %d bytes", k, size).isEqualTo(in);
                k++;
            }
        }
    }

    @Test
    void compressingAClusterAllocatesNothing() {
        var mx = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        ZstdEncoder enc = new ZstdEncoder();
        byte[][] in = {text(1, 65536), records(2, 65536), ZstdEncoderProperties.skewed(3, 65536, 20),
                ZstdEncoderProperties.mixed(4, 65536, 4)};
        byte[] frame = new byte[65536];
        for (int i = 0; i < 200; i++) { // warm up: the JIT compiles the hot paths first
            enc.compress(in[i % 4], 65536, frame, 65535);
        }
        long before = mx.getCurrentThreadAllocatedBytes();
        for (int i = 0; i < 100; i++) {
            enc.compress(in[i % 4], 65536, frame, 65535);
        }
        long allocated = mx.getCurrentThreadAllocatedBytes() - before;
        assertThat(allocated).as("bytes allocated by 100 clusters").isLessThan(4096);
    }

    @Test
    void compressibleClustersComeOutWithinAMarginOfZstdLevel3() throws Exception {
        Tools.require("zstd");
        ZstdEncoder enc = new ZstdEncoder();
        long ours = 0;
        long theirs = 0;
        for (int i = 0; i < 16; i++) {
            byte[] in = i % 2 == 0 ? text(i, 65536) : records(i, 65536);
            byte[] frame = new byte[in.length];
            int n = enc.compress(in, in.length, frame, in.length - 1);
            assertThat(n).as("cluster %d shrinks", i).isPositive();
            ours += n;
            Path p = dir.resolve("c" + i);
            Files.write(p, in);
            Tools.ok(60, "zstd", "-q", "-3", "-f", p.toString(), "-o", p + ".zst");
            theirs += Files.size(Path.of(p + ".zst"));
        }
        System.out.printf("16 clusters of 64 KiB: ours %d bytes, zstd -3 %d bytes%n", ours, theirs);
        assertThat(ours).as("zstd -3 makes %d bytes", theirs).isLessThanOrEqualTo(theirs * 11 / 10);
    }
}
