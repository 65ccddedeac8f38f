package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Writes to extended-L2 images (qcow2.rst, "Extended L2 Entries"): only the subclusters written
 * are allocated, the rest still read from the backing file; a cluster that held data elsewhere
 * (compressed, or shared with a snapshot) is copied whole, so no subcluster loses its data; and
 * qemu-img check, compare and map agree.
 */
class Qcow2ExtL2Test {
    static final int SIZE = 1 << 20;
    static final int CS = 64 << 10;

    @TempDir
    Path dir;

    private byte[] base;

    private Path overlay() throws Exception {
        base = new byte[SIZE];
        new Random(5).nextBytes(base);
        Path b = dir.resolve("base.raw");
        Files.write(b, base);
        Path img = dir.resolve("x.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=65536,extended_l2=on", "-b", b.toString(),
                "-F", "raw", img.toString(), Integer.toString(SIZE));
        return img;
    }

    @Test
    void aSmallWriteAllocatesOnlyTheSubclustersItTouches() throws Exception {
        Tools.require("qemu-img");
        Path img = overlay();
        long before = Files.size(img);
        byte[] model = base.clone();
        try (Qcow2Device q = open(img); Arena a = Arena.ofShared()) {
            assertFalse(q.isReadOnly(), "extended-L2 images open read-write");
            // 3 KiB at 9 KiB: subclusters 4 and 5 (2 KiB each) of cluster 2; the rest of them from the backing file
            MemorySegment m = a.allocate(3072, 4096);
            m.fill((byte) 0x42);
            q.write(2L * CS + 9216, m).join();
            Arrays.fill(model, 2 * CS + 9216, 2 * CS + 9216 + 3072, (byte) 0x42);
        }
        String info = Tools.ok(30, "qemu-img", "check", "--output=json", "-f", "qcow2", img.toString()).out();
        java.util.regex.Matcher end = java.util.regex.Pattern.compile("\"image-end-offset\": (\\d+)").matcher(info);
        assertTrue(end.find(), info);
        // from the first whole cluster past the old end: an L2 table and one data cluster
        long firstFree = (before + CS - 1) / CS * CS;
        assertTrue(Long.parseLong(end.group(1)) - firstFree <= 2L * CS, "one data cluster and a table: " + before
                + " -> " + end.group(1));
        String map = Tools.ok(30, "qemu-img", "map", "--output=json", "-f", "qcow2", img.toString()).out();
        // the image itself (depth 0) holds exactly subclusters 4 and 5 of cluster 2
        assertTrue(map.contains("\"start\": " + (2L * CS + 8192) + ", \"length\": 4096, \"depth\": 0"), map);
        assertEquals(1, map.split("\"depth\": 0").length - 1, map);
        check(img, model);
    }

    @Test
    void writesAndZeroesInCompressedAndSnapshotSharedClustersKeepEveryOtherSubcluster() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = overlay();
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -c -P 0x11 0 64k", "-c", "write -P 0x22 128k 64k",
                "-c", "write -P 0x23 256k 8k", img.toString());
        byte[] model = base.clone();
        Arrays.fill(model, 0, CS, (byte) 0x11);
        Arrays.fill(model, 2 * CS, 3 * CS, (byte) 0x22);
        Arrays.fill(model, 4 * CS, 4 * CS + 8192, (byte) 0x23);
        Tools.ok(30, "qemu-img", "snapshot", "-c", "s1", img.toString());
        long fileLen = Files.size(img);
        try (var ch = java.nio.channels.FileChannel.open(img, java.nio.file.StandardOpenOption.WRITE)) {
            // the snapshot table ends mid-sector; a loop device shows whole sectors (see Qcow2SnapshotTest)
            ch.write(java.nio.ByteBuffer.allocate(1), ((fileLen + 511) & ~511L) - 1);
        }
        Path s1 = dir.resolve("s1.raw");
        Files.write(s1, model);
        try (Qcow2Device q = open(img); Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate(2048, 4096);
            m.fill((byte) 0x55);
            q.write(4096, m).join();                 // a subcluster of the compressed cluster
            Arrays.fill(model, 4096, 4096 + 2048, (byte) 0x55);
            q.write(2L * CS + 10240, m).join();      // a subcluster of a cluster the snapshot shares
            Arrays.fill(model, 2 * CS + 10240, 2 * CS + 10240 + 2048, (byte) 0x55);
            q.writeZeroes(4L * CS + 2048, 4096, false).join(); // subclusters 1-2 of a shared cluster
            Arrays.fill(model, 4 * CS + 2048, 4 * CS + 6144, (byte) 0);
            q.write(4L * CS + 20480, m).join();      // and then a write into it, past its data
            Arrays.fill(model, 4 * CS + 20480, 4 * CS + 22528, (byte) 0x55);
            q.discard(4L * CS + 30720, 4096).join(); // subclusters 15-16 of it: they read zero
            Arrays.fill(model, 4 * CS + 30720, 4 * CS + 34816, (byte) 0);
            q.flush().join();
            MemorySegment all = a.allocate(SIZE, 4096);
            q.read(0, all).join();
            assertArrayEquals(model, all.toArray(ValueLayout.JAVA_BYTE));
        }
        check(img, model);
        Tools.ok(30, "qemu-img", "snapshot", "-a", "s1", img.toString());
        Tools.ok(30, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img.toString(), s1.toString());
    }

    @Test
    void writeZeroesOfPartOfACompressedClusterWritesZeros() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = overlay();
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -c -P 0x31 64k 64k", img.toString());
        byte[] model = base.clone();
        Arrays.fill(model, CS, 2 * CS, (byte) 0x31);
        try (Qcow2Device q = open(img)) {
            q.writeZeroes(CS + 8192, 8192, false).join();
            Arrays.fill(model, CS + 8192, CS + 16384, (byte) 0);
        }
        check(img, model);
    }

    private void check(Path img, byte[] model) throws Exception {
        Tools.Result c = Tools.run(30, "qemu-img", "check", "-f", "qcow2", img.toString());
        assertEquals(0, c.exit(), c.all());
        Path want = dir.resolve("model.raw");
        Files.write(want, model);
        Tools.ok(30, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img.toString(), want.toString());
    }

    private static Qcow2Device open(Path img) throws Exception {
        LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
        try {
            return Qcow2Device.open("q", c, new Qcow2Device.Options(false, -1, null, false, img, Qcow2ExtL2Test::file,
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
