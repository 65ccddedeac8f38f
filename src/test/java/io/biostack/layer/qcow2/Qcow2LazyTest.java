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

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The dirty bit (lazy refcounts): qemu writes L2 entries without their refcounts and sets the
 * bit; if it dies, the refcounts on disk are stale. A read-write open rebuilds them from the
 * tables, as qemu's open does, and clears the bit; qemu-img check then finds nothing.
 */
class Qcow2LazyTest {
    @TempDir
    Path dir;

    private static Qcow2Device open(Path img, boolean ro) throws Exception {
        LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults().withReadOnly(ro));
        try {
            return Qcow2Device.open("q", c, new Qcow2Device.Options(ro, -1, null, false, img, Qcow2LazyTest::file,
                    img.toString())).closingContainer();
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
    }

    private static BlockDevice file(Path p, String fmt) throws java.io.IOException {
        return LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults().withReadOnly(fmt.equals("raw-ro")));
    }

    /** qemu-io writes on a lazy_refcounts image, then dies by SIGKILL (qemu's iotest 039). */
    private Path dirtyImage(String opts) throws Exception {
        Path img = dir.resolve("lazy.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", opts + ",lazy_refcounts=on", img.toString(), "8M");
        Tools.Result r = Tools.run(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M",
                "-c", "write -P 0x5b 3M 64k", "-c", "write -P 0x5c 7M 4k", "-c", "sigraise 9", img.toString());
        assertNotEquals(0, r.exit(), "qemu-io died: " + r.all());
        assertTrue(Qcow2Header.parse(Files.readAllBytes(img), Files.size(img)).isDirty(), "the dirty bit is set");
        return img;
    }

    @Test
    void aReadWriteOpenOfAnImageLeftDirtyByQemuRebuildsTheRefcountsAndClearsTheBit() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = dirtyImage("cluster_size=4096");
        Tools.Result before = Tools.run(30, "qemu-img", "check", "-f", "qcow2", img.toString());
        assertEquals(2, before.exit(), "the refcounts on disk are stale before the repair: " + before.all());
        Path want = dir.resolve("want.raw");
        Tools.ok(30, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img.toString(), want.toString());
        byte[] model = Files.readAllBytes(want);
        assertEquals(0x5a, model[4096]);
        try (Qcow2Device q = open(img, false); Arena a = Arena.ofShared()) {
            assertFalse(q.isReadOnly(), "the image opens read-write");
            assertFalse(q.header().isDirty());
            // new allocations after the rebuild must not land on clusters in use
            MemorySegment m = a.allocate(256 << 10, 4096);
            m.fill((byte) 0x61);
            q.write(5L << 20, m).join();
            Arrays.fill(model, 5 << 20, (5 << 20) + (256 << 10), (byte) 0x61);
            q.flush().join();
            MemorySegment all = a.allocate(q.size(), 4096);
            q.read(0, all).join();
            assertArrayEquals(model, all.toArray(ValueLayout.JAVA_BYTE));
        }
        assertFalse(Qcow2Header.parse(Files.readAllBytes(img), Files.size(img)).isDirty(), "the bit is cleared on disk");
        Tools.Result after = Tools.run(30, "qemu-img", "check", "-f", "qcow2", img.toString());
        assertEquals(0, after.exit(), after.all());
        Files.write(want, model);
        Tools.ok(30, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img.toString(), want.toString());
    }

    @Test
    void aDirtyImageWhoseSnapshotTableIsDamagedFailsToOpenWithAClearErrorAndChangesNothing() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = dir.resolve("snap.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=65536,lazy_refcounts=on", img.toString(), "4M");
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x41 0 128k", img.toString());
        Tools.ok(30, "qemu-img", "snapshot", "-c", "s1", img.toString());
        Tools.run(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 64k", "-c", "sigraise 9", img.toString());
        Qcow2Header h = Qcow2Header.parse(Files.readAllBytes(img), Files.size(img));
        assertTrue(h.isDirty() && h.nbSnapshots() == 1);
        try (var ch = java.nio.channels.FileChannel.open(img, java.nio.file.StandardOpenOption.WRITE)) {
            // the snapshot's l1_table_offset: cluster aligned, far past the end of the file
            ch.write(java.nio.ByteBuffer.allocate(8).putLong(0, 1L << 30), h.snapshotsOffset());
            long len = ch.size();
            ch.write(java.nio.ByteBuffer.allocate(1), ((len + 511) & ~511L) - 1); // whole sectors (Qcow2SnapshotTest)
        }
        byte[] before = Files.readAllBytes(img);
        Qcow2Exception e = org.junit.jupiter.api.Assertions.assertThrows(Qcow2Exception.class, () -> open(img, false));
        assertTrue(e.getMessage().contains("snapshot 0 has an invalid L1 table"), e.getMessage());
        assertArrayEquals(before, Files.readAllBytes(img), "nothing was written");
    }

    @Test
    void aReadOnlyOpenOfADirtyImageChangesNothing() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = dirtyImage("cluster_size=65536,refcount_bits=1");
        byte[] before = Files.readAllBytes(img);
        try (Qcow2Device q = open(img, true); Arena a = Arena.ofShared()) {
            assertTrue(q.isReadOnly());
            MemorySegment m = a.allocate(4096, 4096);
            q.read(0, m).join();
            assertEquals(0x5a, m.get(ValueLayout.JAVA_BYTE, 0));
        }
        assertArrayEquals(before, Files.readAllBytes(img));
    }

    @Test
    void aDirtyImageWithSmallClustersAndOneBitRefcountsIsRebuiltWithNewRefcountBlocks() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        // 512-byte clusters with 1-bit refcounts: one block covers 4096 clusters (2 MiB), so the
        // megabytes qemu wrote need refcount blocks that may not be on disk yet.
        Path img = dirtyImage("cluster_size=512,refcount_bits=1");
        Path want = dir.resolve("want.raw");
        Tools.ok(30, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img.toString(), want.toString());
        try (Qcow2Device q = open(img, false)) {
            assertFalse(q.header().isDirty());
        }
        Tools.Result after = Tools.run(30, "qemu-img", "check", "-f", "qcow2", img.toString());
        assertEquals(0, after.exit(), after.all());
        Tools.ok(30, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img.toString(), want.toString());
    }
}
