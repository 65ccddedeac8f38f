package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The qcow2 layer against images that qemu-img made, checked by qemu-img itself. */
class Qcow2DeviceTest {
    @TempDir
    Path dir;

    private static Qcow2Device open(Path img, boolean ro) throws Exception {
        LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults().withReadOnly(ro));
        try {
            return Qcow2Device.open("q", c, new Qcow2Device.Options(ro, -1, null, false, img, Qcow2DeviceTest::file,
                    img.toString()));
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
    }

    private static BlockDevice file(Path p, String fmt) throws java.io.IOException {
        return LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults().withReadOnly(fmt.equals("raw-ro")));
    }

    private static byte[] readAll(BlockDevice d) {
        try (Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate(d.size(), 4096);
            for (long off = 0; off < d.size(); off += 1 << 20) {
                long n = Math.min(1 << 20, d.size() - off);
                d.read(off, m.asSlice(off, n)).join();
            }
            return m.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    private byte[] qemuRaw(Path img) throws Exception {
        Path raw = dir.resolve(img.getFileName() + ".raw");
        Tools.ok(60, "qemu-img", "convert", "-O", "raw", img.toString(), raw.toString());
        return Files.readAllBytes(raw);
    }

    private Path image(String name, String opts, String size) throws Exception {
        Path img = dir.resolve(name);
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", opts, img.toString(), size);
        return img;
    }

    private static void qemuIo(Path img, String... cmds) throws Exception {
        String[] argv = new String[3 + cmds.length * 2];
        argv[0] = "qemu-io";
        argv[1] = "-f";
        argv[2] = "qcow2";
        for (int i = 0; i < cmds.length; i++) {
            argv[3 + 2 * i] = "-c";
            argv[4 + 2 * i] = cmds[i];
        }
        String[] full = Arrays.copyOf(argv, argv.length + 1);
        full[argv.length] = img.toString();
        Tools.ok(60, full);
    }

    @ParameterizedTest
    @ValueSource(strings = {"cluster_size=512,refcount_bits=1", "cluster_size=65536,refcount_bits=16",
            "cluster_size=2M,refcount_bits=64", "cluster_size=65536,extended_l2=on", "cluster_size=4096,compat=0.10"})
    void readsByteEqualToQemuImgConvert(String opts) throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image("r.qcow2", opts, "6M");
        qemuIo(img, "write -P 0x11 0 64k", "write -P 0x22 1000k 3k", "write -z 2M 1M", "write -P 0x33 5M 1M",
                "discard 5M 512k");
        byte[] want = qemuRaw(img);
        try (Qcow2Device q = open(img, true)) {
            assertArrayEquals(want, readAll(q));
        }
    }

    @Test
    void readsCompressedClustersAndABackingChain() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path base = dir.resolve("base.raw");
        byte[] b = new byte[3 << 20];
        new Random(1).nextBytes(b);
        Files.write(base, b); // 3 MiB: shorter than the overlay's 4 MiB, so the rest reads zero
        Path mid = dir.resolve("mid.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", mid.toString(), "4M");
        qemuIo(mid, "write -P 0x44 128k 128k");
        Path top = dir.resolve("top.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top.toString(), "4M");
        qemuIo(top, "write -P 0x55 0 8k", "write -z 1M 64k");
        byte[] want = qemuRaw(top);
        try (Qcow2Device q = open(top, true)) {
            assertArrayEquals(want, readAll(q));
            assertEquals(1, q.statusContexts().getFirst().extentAt(0, 4096).flags());
            assertEquals(2, q.statusContexts().getFirst().extentAt(128 << 10, 4096).flags());
            assertEquals(3, q.statusContexts().getFirst().extentAt(512 << 10, 4096).flags());
        }
        Path src = dir.resolve("plain.raw");
        byte[] p = new byte[2 << 20];
        for (int i = 0; i < p.length; i++) {
            p[i] = (byte) (i % 7 == 0 ? i : 0);
        }
        Files.write(src, p);
        Path comp = dir.resolve("comp.qcow2");
        Tools.ok(60, "qemu-img", "convert", "-c", "-O", "qcow2", src.toString(), comp.toString());
        // Read-write: qemu ends the file mid-sector, and the device grows it to the whole sector.
        try (Qcow2Device q = open(comp, false)) {
            assertArrayEquals(p, readAll(q));
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"cluster_size=65536", "cluster_size=65536,extended_l2=on"})
    void anExternalDataFileMapsTheFirstClusterAtOffsetZero(String opts) throws Exception {
        // qemu maps guest cluster N to data-file offset N * cluster size, so cluster 0's L2 entry
        // is offset 0 with COPIED set: allocated (qemu's qcow2_get_cluster_type), not a hole.
        Tools.require("qemu-img", "qemu-io");
        Path img = image("d.qcow2", opts + ",data_file=" + dir.resolve("d.raw"), "4M");
        qemuIo(img, "write -P 0x11 0 64k", "write -P 0x22 1M 4k");
        byte[] model = qemuRaw(img);
        try (Qcow2Device q = open(img, true)) {
            assertArrayEquals(model, readAll(q));
            assertEquals(0, q.extentAt(0, 65536).flags(), "cluster 0 is data");
            assertEquals(1, q.statusContexts().getFirst().extentAt(0, 65536).flags(), "depth 1: this image");
        }
        // A write to part of cluster 0 keeps the rest of it (it went in place, not as a copy of
        // what a hole would read).
        try (Qcow2Device q = open(img, false); Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate(4096, 4096);
            m.fill((byte) 0x33);
            q.write(8192, m).join();
            q.flush().join();
        }
        Arrays.fill(model, 8192, 8192 + 4096, (byte) 0x33);
        assertArrayEquals(model, qemuRaw(img));
        Tools.Result check = Tools.run(60, "qemu-img", "check", img.toString());
        assertEquals(0, check.exit(), check.all());
    }

    @Test
    void discardingClustersOfAnExternalDataFileLeavesTheImagesRefcountsAlone() throws Exception {
        // The data file has no refcounts (qemu's qcow2_free_any_cluster returns early with a data
        // file): a cluster at data-file offset X must not drop the refcount of the image's own
        // cluster X (here the refcount table and block, the L1 and the L2 table).
        Tools.require("qemu-img", "qemu-io");
        Path img = image("dd.qcow2", "data_file=" + dir.resolve("dd.raw"), "4M");
        qemuIo(img, "write -P 0x11 0 512k");
        try (Qcow2Device q = open(img, false)) {
            q.discard(64 << 10, 128 << 10).join();
            q.writeZeroes(192 << 10, 128 << 10, false).join();
            q.flush().join();
        }
        Tools.Result check = Tools.run(60, "qemu-img", "check", img.toString());
        assertEquals(0, check.exit(), check.all());
        byte[] model = new byte[4 << 20];
        Arrays.fill(model, 0, 64 << 10, (byte) 0x11);
        Arrays.fill(model, 320 << 10, 512 << 10, (byte) 0x11);
        assertArrayEquals(model, qemuRaw(img));
    }

    @ParameterizedTest
    @ValueSource(strings = {"compression_type=zlib", "compression_type=zstd"})
    void aCompressedClusterAtTheEndOfAFileThatEndsMidSectorReadsOnAReadOnlyOpen(String opts) throws Exception {
        // qemu-io write -c (as a compressing backup job) leaves the file ending inside its last
        // sector, which a loop device does not show; read-only (served with -r, or as a backing
        // file) the image cannot be grown to a whole sector first.
        Tools.require("qemu-img", "qemu-io");
        Path mid = image("cm.qcow2", opts, "1M");
        qemuIo(mid, "write -P 0x11 0 64k", "write -c -P 0x22 512k 64k");
        assertTrue(Files.size(mid) % 512 != 0, "qemu ended the file mid-sector: " + Files.size(mid));
        byte[] want = qemuRaw(mid);
        try (Qcow2Device q = open(mid, true)) {
            assertArrayEquals(want, readAll(q));
        }
        Path top = dir.resolve("ct.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-b", "cm.qcow2", "-F", "qcow2", top.toString(), "1M");
        try (Qcow2Device q = open(top, false)) {
            assertArrayEquals(want, readAll(q), "through the backing chain");
        }
    }

    @Test
    void aSecondQcow2DeviceOnAnOpenContainerIsRefusedUntilTheFirstCloses() throws Exception {
        // Each keeps the L1 table, refcounts and free clusters in memory: a second one would
        // allocate what the first allocates meanwhile and write its tables over the other's.
        Tools.require("qemu-img", "qemu-io");
        Path img = image("one.qcow2", "cluster_size=65536", "4M");
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults())) {
            Qcow2Device.Options o = new Qcow2Device.Options(false, -1, null, false, img, Qcow2DeviceTest::file, "one");
            try (Qcow2Device q = Qcow2Device.open("q", c, o); Arena a = Arena.ofShared()) {
                MemorySegment m = a.allocate(65536, 4096);
                q.write(0, m.fill((byte) 0x31)).join();
                q.flush().join();
                byte[] before = Files.readAllBytes(img);
                IllegalStateException e = assertThrows(IllegalStateException.class, () -> Qcow2Device.open("q2", c, o));
                assertTrue(e.getMessage().contains("the qcow2 image on c is open already in q"), e.getMessage());
                assertArrayEquals(before, Files.readAllBytes(img), "the refused open wrote to the image");
                q.write(1 << 20, m.fill((byte) 0x32)).join();
            }
            try (Qcow2Device again = Qcow2Device.open("q2", c, o)) {
                assertArrayEquals(filled(0x32, 65536), Arrays.copyOfRange(readAll(again), 1 << 20, (1 << 20) + 65536));
            }
        }
        qemuIo(img, "read -P 0x31 0 64k", "read -P 0x32 1M 64k");
    }

    @Test
    void aBackingFileWhoseHeaderIsBadIsNamedInTheRefusal() throws Exception {
        // The top image is fine; its backing_fmt says qcow2 of a file that is not: the refusal
        // must say which file, not only "not a qcow2 image" (qemu: "Could not open backing file").
        Tools.require("qemu-img");
        Path notQcow2 = dir.resolve("plain.img");
        Files.write(notQcow2, new byte[1 << 20]);
        Path top = dir.resolve("top.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-u", "-b", "plain.img", "-F", "qcow2", top.toString(), "1M");
        Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> open(top, true));
        assertTrue(e.getMessage().contains("backing file " + notQcow2) && e.getMessage().contains("not a qcow2 image"),
                e.getMessage());
    }

    @Test
    void aRawBackingFileThatEndsMidSectorReadsItsLastBytes() throws Exception {
        // qemu sizes a raw file in whole sectors, rounding up, and reads its last bytes; the loop
        // device under the backing file shows whole sectors only, rounding down.
        Tools.require("qemu-img", "qemu-io");
        byte[] b = new byte[1_000_000];
        new Random(3).nextBytes(b);
        Files.write(dir.resolve("odd.raw"), b);
        Path top = dir.resolve("odd.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-b", "odd.raw", "-F", "raw", top.toString(), "1200000");
        qemuIo(top, "write -P 0x11 512 512");
        byte[] want = qemuRaw(top);
        assertEquals(b[999_999], want[999_999], "qemu reads the backing file's last byte");
        try (Qcow2Device q = open(top, true)) {
            assertArrayEquals(want, readAll(q));
        }
    }

    @Test
    void writeZeroesOnARawDataFileKeepsItAStandaloneRawImage() throws Exception {
        // data_file_raw (qcow2.rst, autoclear bit 1): the data file reads as the guest's disk
        // without the qcow2 metadata, so zeros must land in it, not only in a zero flag.
        Tools.require("qemu-img", "qemu-io");
        Path data = dir.resolve("raw.data");
        Path img = image("raw.qcow2", "data_file=" + data + ",data_file_raw=on", "4M");
        qemuIo(img, "write -P 0x11 0 512k");
        try (Qcow2Device q = open(img, false)) {
            q.writeZeroes(64 << 10, 64 << 10, false).join();
            q.discard(128 << 10, 64 << 10).join();
            q.flush().join();
        }
        Tools.ok(60, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img.toString(), data.toString());
        byte[] d = Files.readAllBytes(data);
        assertEquals(0, d[(64 << 10) + 100], "the zeros are in the data file");
        Tools.Result check = Tools.run(60, "qemu-img", "check", img.toString());
        assertEquals(0, check.exit(), check.all());
    }

    @Test
    void aLoopInTheBackingChainIsRefused() throws Exception {
        Tools.require("qemu-img");
        Path a = dir.resolve("a.qcow2");
        Path b = dir.resolve("b.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", a.toString(), "1M");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b.toString(), "1M");
        Tools.ok(30, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a.toString());
        Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> open(b, true));
        assertTrue(e.getMessage().contains("loop in the backing chain"), e.getMessage());
    }

    @ParameterizedTest
    @ValueSource(strings = {"cluster_size=65536", "cluster_size=4096,refcount_bits=1",
            "cluster_size=512,refcount_bits=64", "cluster_size=4096,lazy_refcounts=on", "cluster_size=32768,refcount_bits=8"})
    void randomWritesDiscardsAndZeroesPassQemuImgCheckAndCompare(String opts) throws Exception {
        Tools.require("qemu-img", "qemu-io");
        long size = 4L << 20;
        Path base = dir.resolve("wbase.raw");
        byte[] model = new byte[(int) size];
        new Random(7).nextBytes(model);
        Arrays.fill(model, 3 << 20, model.length, (byte) 0);
        Files.write(base, Arrays.copyOf(model, 3 << 20));
        Path img = dir.resolve("w.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", opts, "-b", "wbase.raw", "-F", "raw", img.toString(), "4M");
        qemuIo(img, "write -P 0x66 256k 64k", "write -c -P 0x77 1M 64k");
        System.arraycopy(filled(0x66, 64 << 10), 0, model, 256 << 10, 64 << 10);
        System.arraycopy(filled(0x77, 64 << 10), 0, model, 1 << 20, 64 << 10);
        Random r = new Random(opts.hashCode());
        try (Qcow2Device q = open(img, false); Arena a = Arena.ofShared()) {
            assertArrayEquals(model, readAll(q));
            for (int i = 0; i < 150; i++) {
                long off = r.nextInt((int) (size / 512)) * 512L;
                int len = (int) Math.min(size - off, (1 + r.nextInt(256)) * 512L);
                int op = r.nextInt(10);
                if (op < 6) {
                    byte[] d = new byte[len];
                    r.nextBytes(d);
                    MemorySegment m = a.allocate(len, 4096);
                    m.copyFrom(MemorySegment.ofArray(d));
                    q.write(off, m).join();
                    System.arraycopy(d, 0, model, (int) off, len);
                } else if (op < 8) {
                    q.writeZeroes(off, len, r.nextBoolean()).join();
                    Arrays.fill(model, (int) off, (int) off + len, (byte) 0);
                } else if (op < 9) {
                    q.discard(off, len).join();
                    // Whole clusters read zero afterwards; parts of clusters keep their data.
                    MemorySegment m = a.allocate(len, 4096);
                    q.read(off, m).join();
                    System.arraycopy(m.toArray(ValueLayout.JAVA_BYTE), 0, model, (int) off, len);
                } else {
                    q.flush().join();
                }
            }
            assertArrayEquals(model, readAll(q));
        }
        Tools.Result check = Tools.run(60, "qemu-img", "check", img.toString());
        assertEquals(0, check.exit(), check.all());
        Path want = dir.resolve("model.raw");
        Files.write(want, model);
        Tools.ok(60, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img.toString(), want.toString());
    }

    private static byte[] filled(int v, int n) {
        byte[] b = new byte[n];
        Arrays.fill(b, (byte) v);
        return b;
    }
}
