package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Model-based random workloads (issue 15): writes, write-zeroes, discards and flushes of random
 * sizes and offsets (sector-aligned, rarely cluster-aligned), some of them in flight together
 * (never overlapping, but often in the same new cluster), on several geometries. A plain byte
 * array is the model. After each run the device reads as the model, {@code qemu-img check} exits
 * 0 and {@code qemu-img compare} finds the image equal to the model.
 *
 * <p>Discard is exact in the model: the whole clusters it covers (whole subclusters on
 * extended-L2 images) read as zeros, the parts of clusters it covers keep their data (discard may
 * do nothing, and biostack does nothing there).
 */
class Qcow2ModelTest {
    static final int OPS = 160;

    @TempDir
    Path dir;

    @ParameterizedTest(name = "{0} backing={1} seed={2}")
    @CsvSource({
            "'cluster_size=512,refcount_bits=16', false, 1",
            "'cluster_size=65536,refcount_bits=1', true, 2",
            "'cluster_size=2M,refcount_bits=64', false, 3",
            "'cluster_size=65536,extended_l2=on', true, 4",
            "'cluster_size=16384,extended_l2=on,refcount_bits=4', false, 5",
            "'cluster_size=4096,lazy_refcounts=on', true, 6",
            "'cluster_size=4096,compat=0.10', true, 7",
    })
    void aRandomWorkloadLeavesAnImageThatQemuChecksCleanAndComparesEqualToTheModel(String opts, boolean withBacking,
                                                                                   long seed) throws Exception {
        Tools.require("qemu-img");
        int size = opts.contains("2M") ? 8 << 20 : 4 << 20;
        Random r = new Random(seed);
        byte[] model = new byte[size];
        Path img = dir.resolve("m.qcow2");
        List<String> create = new ArrayList<>(List.of("qemu-img", "create", "-f", "qcow2", "-o", opts));
        if (withBacking) {
            // shorter than the image: past its end the image reads zeros
            byte[] base = new byte[size - (size >> 2)];
            r.nextBytes(base);
            System.arraycopy(base, 0, model, 0, base.length);
            Path b = dir.resolve("base.raw");
            Files.write(b, base);
            create.addAll(List.of("-b", b.toString(), "-F", "raw"));
        }
        create.addAll(List.of(img.toString(), Integer.toString(size)));
        Tools.ok(30, create.toArray(String[]::new));
        Qcow2Header h = Qcow2Header.parse(Files.readAllBytes(img), Files.size(img));
        int cs = h.clusterSize();
        // what a discard zeroes: whole clusters, whole subclusters on extended L2; nothing on v2
        long unit = h.version() < 3 ? Long.MAX_VALUE : h.extendedL2() ? cs / 32 : cs;
        try (Qcow2Device q = open(img); Arena a = Arena.ofShared()) {
            for (int i = 0; i < OPS; ) {
                int batch = 1 + r.nextInt(r.nextInt(4) == 0 ? 8 : 2);
                List<long[]> ranges = new ArrayList<>();
                List<CompletableFuture<Void>> running = new ArrayList<>();
                for (int k = 0; k < batch && i < OPS; k++, i++) {
                    long[] rg = pick(r, size, cs, ranges);
                    if (rg == null) {
                        break;
                    }
                    ranges.add(rg);
                    long off = rg[0];
                    int len = (int) rg[1];
                    int op = r.nextInt(20);
                    if (op < 12) {
                        byte[] d = new byte[len];
                        r.nextBytes(d);
                        MemorySegment m = a.allocate(len, 4096);
                        m.copyFrom(MemorySegment.ofArray(d));
                        running.add(q.write(off, m));
                        System.arraycopy(d, 0, model, (int) off, len);
                    } else if (op < 16) {
                        running.add(q.writeZeroes(off, len, r.nextBoolean()));
                        Arrays.fill(model, (int) off, (int) off + len, (byte) 0);
                    } else if (op < 19) {
                        running.add(q.discard(off, len));
                        if (unit != Long.MAX_VALUE) {
                            long from = (off + unit - 1) / unit * unit;
                            long to = (off + len) / unit * unit;
                            if (to > from) {
                                Arrays.fill(model, (int) from, (int) to, (byte) 0);
                            }
                        }
                    } else {
                        running.add(q.flush());
                    }
                }
                CompletableFuture.allOf(running.toArray(CompletableFuture[]::new)).join();
            }
            MemorySegment all = a.allocate(size, 4096);
            q.read(0, all).join();
            assertArrayEquals(model, all.toArray(ValueLayout.JAVA_BYTE), "the device reads as the model");
        }
        Tools.Result check = Tools.run(60, "qemu-img", "check", "-f", "qcow2", img.toString());
        assertEquals(0, check.exit(), check.all());
        Path want = dir.resolve("model.raw");
        Files.write(want, model);
        Tools.ok(60, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img.toString(), want.toString());
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"'cluster_size=65536'", "'cluster_size=4096,extended_l2=off,refcount_bits=2'"})
    void discardAndWriteLoopsReuseFreedClustersInsteadOfGrowingTheFile(String opts) throws Exception {
        Tools.require("qemu-img");
        int size = 8 << 20;
        Path img = dir.resolve("loop.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", opts, img.toString(), Integer.toString(size));
        byte[] model = new byte[size];
        Random r = new Random(9);
        try (Qcow2Device q = open(img); Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate(1 << 20, 4096);
            for (int round = 0; round < 24; round++) {
                // 1 MiB written at a different place each round, then discarded: 24 MiB written in all
                long off = (long) (round % 7) << 20;
                byte[] d = new byte[1 << 20];
                r.nextBytes(d);
                m.copyFrom(MemorySegment.ofArray(d));
                q.write(off, m).join();
                q.flush().join();
                if (round < 23) {
                    q.discard(off, 1 << 20).join();
                    q.flush().join();
                } else {
                    System.arraycopy(d, 0, model, (int) off, d.length);
                }
            }
        }
        Tools.Result check = Tools.run(60, "qemu-img", "check", "--output=json", "-f", "qcow2", img.toString());
        assertEquals(0, check.exit(), check.all());
        java.util.regex.Matcher end = java.util.regex.Pattern.compile("\"image-end-offset\": (\\d+)").matcher(check.out());
        org.junit.jupiter.api.Assertions.assertTrue(end.find(), check.out());
        // without reuse the image would end past 24 MiB; with it, a few rounds' worth of data and tables
        org.junit.jupiter.api.Assertions.assertTrue(Long.parseLong(end.group(1)) < (5L << 20),
                "the image ends at " + end.group(1));
        Path want = dir.resolve("loop.raw");
        Files.write(want, model);
        Tools.ok(60, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img.toString(), want.toString());
    }

    /** A random range that overlaps none of {@code taken}: misaligned mostly, a cluster or more at times. */
    private static long[] pick(Random r, int size, int cs, List<long[]> taken) {
        for (int tries = 0; tries < 20; tries++) {
            long off;
            long len;
            if (r.nextInt(5) == 0) {
                off = (long) r.nextInt(size / cs) * cs;
                len = (long) cs * (1 + r.nextInt(3));
            } else {
                off = r.nextInt(size / 512) * 512L;
                len = 512L * (1 + r.nextInt(r.nextBoolean() ? 16 : 400));
            }
            len = Math.min(len, Math.min(size - off, 1 << 20));
            boolean free = true;
            for (long[] t : taken) {
                free &= off + len <= t[0] || t[0] + t[1] <= off;
            }
            if (free) {
                return new long[] {off, len};
            }
        }
        return null;
    }

    private static Qcow2Device open(Path img) throws Exception {
        LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
        try {
            return Qcow2Device.open("q", c, new Qcow2Device.Options(false, -1, null, false, img, Qcow2ModelTest::file,
                    img.toString())).closingContainer();
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
    }

    private static BlockDevice file(Path p, String fmt) throws java.io.IOException {
        return LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults().withReadOnly(fmt.equals("raw-ro")));
    }
}
