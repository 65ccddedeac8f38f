package io.biostack.layer.qcow2;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class Qcow2HeaderTest {
    @TempDir
    Path dir;

    private byte[] firstCluster(Path p, int bytes) throws Exception {
        byte[] all = Files.readAllBytes(p);
        return Arrays.copyOf(all, Math.min(all.length, bytes));
    }

    @Test
    void parsesWhatQemuImgWritesAndEncodesItBackByteForByte() throws Exception {
        Tools.require("qemu-img");
        Path base = dir.resolve("base.raw");
        Tools.ok(30, "qemu-img", "create", "-f", "raw", base.toString(), "1M");
        Path img = dir.resolve("a.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o",
                "cluster_size=16384,refcount_bits=16,lazy_refcounts=on,extended_l2=on,compression_type=zstd",
                "-b", "base.raw", "-F", "raw", img.toString(), "8M");
        long fileSize = Files.size(img);
        Qcow2Header h = Qcow2Header.parse(firstCluster(img, 16384), fileSize);
        assertEquals(3, h.version());
        assertEquals(16384, h.clusterSize());
        assertEquals(8L << 20, h.size());
        assertEquals(16, h.refcountBits());
        assertTrue(h.lazyRefcounts());
        assertTrue(h.extendedL2());
        assertEquals(Qcow2Header.COMPRESSION_ZSTD, h.compressionType());
        assertEquals("base.raw", h.backingFile());
        assertEquals("raw", h.backingFormat());
        assertTrue(h.featureNames().stream().anyMatch(f -> f.name().equals("extended L2 entries")));
        byte[] enc = h.encode();
        assertArrayEquals(Arrays.copyOf(firstCluster(img, 16384), enc.length), enc);
    }

    @Test
    void refusesAnUnknownIncompatibleBitNamingIt() throws Exception {
        Tools.require("qemu-img");
        Path img = dir.resolve("b.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), "1M");
        byte[] c = firstCluster(img, 65536);
        ByteBuffer.wrap(c).putLong(72, 1L << 9);
        Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> Qcow2Header.parse(c, Files.size(img)));
        assertTrue(e.getMessage().contains("incompatible bit 9"), e.getMessage());
    }

    @Test
    void createdHeaderRoundTrips() {
        Qcow2Header h = Qcow2Header.create(16, 1L << 30, 4).withL1(2, 3 * 65536).withRefcountTable(65536, 1)
                .withBacking("base.qcow2", "qcow2");
        byte[] c = Arrays.copyOf(h.encode(), 4 * 65536);
        Qcow2Header back = Qcow2Header.parse(c, c.length);
        assertEquals("base.qcow2", back.backingFile());
        assertEquals("qcow2", back.backingFormat());
        assertEquals(2, back.l1Size());
        assertNull(back.dataFileName());
        assertArrayEquals(h.encode(), back.encode());
    }

    @Test
    void rejectsHostileFields() {
        byte[] good = Arrays.copyOf(Qcow2Header.create(16, 1L << 30, 4).withL1(2, 3 * 65536)
                .withRefcountTable(65536, 1).encode(), 4 * 65536);
        assertThrows(Qcow2Exception.class, () -> Qcow2Header.parse(Arrays.copyOf(good, 40), 40));
        byte[] c = good.clone();
        ByteBuffer.wrap(c).putInt(36, 0x7fffffff);
        assertTrue(assertThrows(Qcow2Exception.class, () -> Qcow2Header.parse(c, c.length)).getMessage()
                .contains("L1 table is too large"));
        byte[] d = good.clone();
        ByteBuffer.wrap(d).putLong(48, 0);
        assertThrows(Qcow2Exception.class, () -> Qcow2Header.parse(d, d.length));
        byte[] e = good.clone();
        ByteBuffer.wrap(e).putLong(8, 65530).putInt(16, 100);
        assertTrue(assertThrows(Qcow2Exception.class, () -> Qcow2Header.parse(e, e.length)).getMessage()
                .contains("outside the first cluster"));
    }
}
