package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
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
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Internal snapshots survive writes through biostack: clusters and L2 tables a snapshot shares
 * (refcount above one, OFLAG_COPIED clear) are copied on write, discard or write-zeroes drops
 * only the active image's reference, and the COPIED flags stay right in L1 and L2; so
 * {@code qemu-img check} passes, the active image reads as the model, and
 * {@code qemu-img snapshot -a} gives back each snapshot's bytes.
 */
class Qcow2SnapshotTest {
    static final int SIZE = 4 << 20;

    @TempDir
    Path dir;

    private static Qcow2Device open(Path img) throws Exception {
        LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
        try {
            return Qcow2Device.open("q", c, new Qcow2Device.Options(false, -1, null, false, img,
                    Qcow2SnapshotTest::file, img.toString())).closingContainer();
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
    }

    private static BlockDevice file(Path p, String fmt) throws java.io.IOException {
        return LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults().withReadOnly(fmt.equals("raw-ro")));
    }

    private byte[] raw(Path img, String name) throws Exception {
        Path r = dir.resolve(name);
        Tools.ok(60, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img.toString(), r.toString());
        return Files.readAllBytes(r);
    }

    // refcount_bits=4 at least: with 2, two snapshots and the active image already hold the
    // largest refcount (3), and qemu itself then fails snapshot -a (it adds one before it drops one).
    @ParameterizedTest
    @ValueSource(strings = {"cluster_size=65536", "cluster_size=4096,refcount_bits=4", "cluster_size=512,refcount_bits=64"})
    void writesDiscardsAndZeroesAfterSnapshotsKeepEverySnapshotRestorable(String opts) throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = dir.resolve("s.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", opts, img.toString(), Integer.toString(SIZE));
        Tools.ok(60, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x12 2M 512k",
                "-c", "write -z 3M 64k", img.toString());
        Tools.ok(30, "qemu-img", "snapshot", "-c", "s1", img.toString());
        byte[] s1 = raw(img, "s1.raw");
        Tools.ok(60, "qemu-io", "-f", "qcow2", "-c", "write -P 0x21 512k 1M", img.toString());
        Tools.ok(30, "qemu-img", "snapshot", "-c", "s2", img.toString());
        byte[] s2 = raw(img, "s2.raw");
        byte[] model = s2.clone();
        // qemu-img snapshot -c ends the file mid-sector (but with 512-byte clusters): the snapshot
        // table is written to its exact length, in the part sector the loop device shows when the
        // qcow2 open asks it to.
        Random r = new Random(opts.hashCode());
        try (Qcow2Device q = open(img); Arena a = Arena.ofShared()) {
            for (int i = 0; i < 120; i++) {
                long off = r.nextInt(SIZE / 512) * 512L;
                int len = (int) Math.min(SIZE - off, (1 + r.nextInt(300)) * 512L);
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
                    MemorySegment m = a.allocate(len, 4096);
                    q.read(off, m).join();
                    System.arraycopy(m.toArray(ValueLayout.JAVA_BYTE), 0, model, (int) off, len);
                } else {
                    q.flush().join();
                }
            }
        }
        Tools.Result check = Tools.run(60, "qemu-img", "check", "-f", "qcow2", img.toString());
        assertEquals(0, check.exit(), check.all());
        assertArrayEquals(model, raw(img, "active.raw"), "the active image reads as the model");
        String list = Tools.ok(30, "qemu-img", "snapshot", "-l", img.toString()).out();
        assertTrue(list.contains("s1") && list.contains("s2"), list);
        Tools.ok(60, "qemu-img", "snapshot", "-a", "s1", img.toString());
        assertArrayEquals(s1, raw(img, "s1-again.raw"), "snapshot s1 restores its bytes");
        Tools.ok(60, "qemu-img", "snapshot", "-a", "s2", img.toString());
        assertArrayEquals(s2, raw(img, "s2-again.raw"), "snapshot s2 restores its bytes");
        Tools.ok(30, "qemu-img", "snapshot", "-d", "s1", img.toString());
        Tools.Result again = Tools.run(60, "qemu-img", "check", "-f", "qcow2", img.toString());
        assertEquals(0, again.exit(), again.all());
    }
}
