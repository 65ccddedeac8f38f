package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * zstd compressed clusters (compression_type=1): the decoder against the {@code zstd} command
 * line on random, text and repetitive data at several levels, and images that
 * {@code qemu-img convert -c -o compression_type=zstd} made, read byte-equal to
 * {@code qemu-img convert -O raw} through the device and the offline reader, and written to
 * (the cluster is rewritten uncompressed, qemu-img check stays clean).
 */
class Qcow2ZstdTest {
    @TempDir
    Path dir;

    /** Inputs that reach every part of the format: raw, RLE and compressed blocks, both literal kinds. */
    private static byte[][] inputs;

    static synchronized byte[][] inputs() {
        if (inputs == null) {
            inputs = makeInputs();
        }
        return inputs;
    }

    private static byte[][] makeInputs() {
        Random r = new Random(8878);
        byte[] random = new byte[300_000];
        r.nextBytes(random);
        StringBuilder t = new StringBuilder();
        String[] words = {"qcow2", "cluster", "refcount", "table", "the", "of", "L2", "backing", "zstd", "frame",
                "Huffman", "sequence", "offset", "literal", "\n"};
        while (t.length() < 1_100_000) {
            t.append(words[(int) Math.abs(r.nextGaussian() * 4) % words.length]).append(' ');
        }
        byte[] text = t.toString().getBytes(StandardCharsets.UTF_8);
        byte[] mixed = new byte[2 << 20];
        for (int i = 0; i < mixed.length; i += 4096) {
            int kind = r.nextInt(4);
            for (int j = i; j < i + 4096; j++) {
                mixed[j] = switch (kind) {
                    case 0 -> 0;
                    case 1 -> (byte) r.nextInt(256);
                    case 2 -> (byte) (j % 251);
                    default -> text[j % text.length];
                };
            }
        }
        return new byte[][] {new byte[65536], random, text, mixed, Arrays.copyOf(text, 1), Arrays.copyOf(random, 700)};
    }

    @Test
    void decoderMatchesTheZstdCommandLine() throws Exception {
        Tools.require("zstd");
        ZstdDecoder d = new ZstdDecoder();
        byte[][] in = inputs();
        String[][] levels = {{"-1"}, {"-3"}, {"-9"}, {"-19"}, {"--fast=5"}, {"-3", "--no-check"}, {"-6", "--long"}};
        int n = 0;
        for (byte[] data : in) {
            for (String[] level : levels) {
                Path raw = dir.resolve("in" + n);
                Files.write(raw, data);
                byte[] z = zstd(raw, level);
                byte[] out = new byte[data.length];
                d.decompress(z, z.length, out);
                assertArrayEquals(data, out, "input " + n + " " + String.join(" ", level));
                // qemu pads the frame to the sector's end: the padding is ignored.
                byte[] padded = Arrays.copyOf(z, z.length + 511);
                Arrays.fill(padded, z.length, padded.length, (byte) 0x5a);
                Arrays.fill(out, (byte) 0);
                d.decompress(padded, padded.length, out);
                assertArrayEquals(data, out);
                n++;
            }
        }
    }

    @Test
    void framesWithoutAContentSizeAndSkippableFramesDecode() throws Exception {
        Tools.require("zstd");
        byte[] data = inputs()[3];
        Path raw = dir.resolve("stream");
        Files.write(raw, data);
        // From a pipe, zstd does not know the size and writes no Frame_Content_Size.
        byte[] piped = pipeBytes(raw);
        assertEquals(0, piped[4] & 0xc0, "the frame has no content size");
        byte[] skip = new byte[8 + 5];
        skip[0] = 0x50;
        skip[1] = 0x2a;
        skip[2] = 0x4d;
        skip[3] = 0x18;
        skip[4] = 5;
        byte[] both = new byte[skip.length + piped.length];
        System.arraycopy(skip, 0, both, 0, skip.length);
        System.arraycopy(piped, 0, both, skip.length, piped.length);
        byte[] out = new byte[data.length];
        new ZstdDecoder().decompress(both, both.length, out);
        assertArrayEquals(data, out);
    }

    @Test
    void corruptOrShortFramesEndInAQcow2Exception() throws Exception {
        Tools.require("zstd");
        byte[] data = inputs()[2];
        Path raw = dir.resolve("text");
        Files.write(raw, Arrays.copyOf(data, 200_000));
        byte[] z = zstd(raw, "-5");
        ZstdDecoder d = new ZstdDecoder();
        byte[] out = new byte[200_000];
        assertThrows(Qcow2Exception.class, () -> d.decompress(z, z.length / 2, out), "a short frame");
        assertThrows(Qcow2Exception.class, () -> d.decompress(z, z.length, new byte[199_999]), "a frame too large");
        assertThrows(Qcow2Exception.class, () -> d.decompress(z, z.length, new byte[200_001]), "a frame too short");
        assertThrows(Qcow2Exception.class, () -> d.decompress(new byte[64], 64, out), "no magic");
        Random r = new Random(1);
        int refused = 0;
        for (int i = 0; i < 2000; i++) {
            byte[] bad = z.clone();
            for (int k = 1 + r.nextInt(3); k > 0; k--) {
                bad[r.nextInt(bad.length)] ^= (byte) (1 << r.nextInt(8));
            }
            try {
                d.decompress(bad, bad.length, out);
            } catch (Qcow2Exception expected) {
                refused++;
            }
        }
        assertTrue(refused > 1000, refused + " of 2000 corrupt frames refused");
        // The decoder is still good after all those refusals.
        byte[] again = new byte[200_000];
        d.decompress(z, z.length, again);
        assertArrayEquals(Arrays.copyOf(data, 200_000), again);
    }

    @Test
    void qemuZstdImageReadsByteEqualThroughTheDeviceAndTheOfflineReader() throws Exception {
        Tools.require("qemu-img", "zstd");
        for (String cluster : new String[] {"65536", "4096", "2M"}) {
            Path src = dir.resolve("src-" + cluster + ".raw");
            Files.write(src, Arrays.copyOf(inputs()[3], 2 << 20));
            Path img = dir.resolve("z-" + cluster + ".qcow2");
            Tools.ok(120, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o",
                    "compression_type=zstd,cluster_size=" + cluster, src.toString(), img.toString());
            byte[] want = qemuRaw(img);
            try (Qcow2Device q = open(img, true)) {
                assertArrayEquals(want, readAll(q), "device, cluster " + cluster);
            }
            try (Qcow2Image q = Qcow2Image.open(img, false)) {
                assertEquals(Qcow2Header.COMPRESSION_ZSTD, q.compressionType);
                assertArrayEquals(want, offlineRead(q), "offline, cluster " + cluster);
            }
        }
    }

    @Test
    void aWriteIntoAZstdClusterRewritesItUncompressed() throws Exception {
        Tools.require("qemu-img", "zstd");
        Path src = dir.resolve("src.raw");
        byte[] model = Arrays.copyOf(inputs()[2], 2 << 20);
        Files.write(src, model);
        Path img = dir.resolve("w.qcow2");
        Tools.ok(120, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=zstd", src.toString(),
                img.toString());
        byte[] patch = new byte[4096];
        new Random(3).nextBytes(patch);
        long at = 65536 * 5 + 8192;
        try (Qcow2Device q = open(img, false); Arena a = Arena.ofShared()) { // shared: completions run on the ring thread
            MemorySegment m = a.allocate(4096, 4096);
            MemorySegment.copy(patch, 0, m, ValueLayout.JAVA_BYTE, 0, 4096);
            q.write(at, m).get(60, java.util.concurrent.TimeUnit.SECONDS);
            q.flush().get(60, java.util.concurrent.TimeUnit.SECONDS);
        }
        System.arraycopy(patch, 0, model, (int) at, patch.length);
        Path want = dir.resolve("model.raw");
        Files.write(want, model);
        Tools.ok(60, "qemu-img", "check", img.toString());
        Tools.ok(60, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img.toString(), want.toString());
        try (Qcow2Image q = Qcow2Image.open(img, false)) {
            long[] l2 = q.readL2(q.l1[0] & Qcow2Header.OFFSET_MASK);
            assertEquals(0, l2[5] & Qcow2Header.OFLAG_COMPRESSED, "the written cluster is no longer compressed");
            assertTrue((l2[6] & Qcow2Header.OFLAG_COMPRESSED) != 0, "its neighbour still is");
        }
        try (Qcow2Device q = open(img, true)) {
            assertArrayEquals(model, readAll(q));
        }
    }

    // ---- helpers ------------------------------------------------------------------------------------

    private byte[] zstd(Path raw, String... level) throws Exception {
        Path z = raw.resolveSibling(raw.getFileName() + ".zst");
        String[] cmd = new String[level.length + 6];
        cmd[0] = "zstd";
        cmd[1] = "-q";
        cmd[2] = "-f";
        System.arraycopy(level, 0, cmd, 3, level.length);
        cmd[3 + level.length] = raw.toString();
        cmd[4 + level.length] = "-o";
        cmd[5 + level.length] = z.toString();
        Tools.ok(120, cmd);
        return Files.readAllBytes(z);
    }

    private byte[] pipeBytes(Path raw) throws Exception {
        Path z = raw.resolveSibling(raw.getFileName() + ".piped.zst");
        Tools.ok(60, "sh", "-c", "zstd -q -c -3 < '" + raw + "' > '" + z + "'");
        return Files.readAllBytes(z);
    }

    private byte[] qemuRaw(Path img) throws Exception {
        Path raw = dir.resolve(img.getFileName() + ".raw");
        Tools.ok(60, "qemu-img", "convert", "-O", "raw", img.toString(), raw.toString());
        return Files.readAllBytes(raw);
    }

    /** The guest disk as the offline reader (img convert's) sees it: data, zeros, compressed clusters. */
    private static byte[] offlineRead(Qcow2Image q) throws IOException {
        byte[] out = new byte[(int) q.size];
        int cs = q.clusterSize();
        for (int i = 0; i < q.l1.length; i++) {
            long l2off = q.l1[i] & Qcow2Header.OFFSET_MASK;
            if (l2off == 0) {
                continue;
            }
            long[] l2 = q.readL2(l2off);
            for (int j = 0; j < l2.length; j++) {
                long guest = ((long) i * l2.length + j) * cs;
                if (guest >= out.length) {
                    break;
                }
                long e = l2[j];
                int n = (int) Math.min(cs, out.length - guest);
                if ((e & Qcow2Header.OFLAG_COMPRESSED) != 0) {
                    System.arraycopy(q.readCompressed(e), 0, out, (int) guest, n);
                } else if ((e & Qcow2Header.OFFSET_MASK) != 0 && (e & Qcow2Header.OFLAG_ZERO) == 0) {
                    q.read(e & Qcow2Header.OFFSET_MASK, n).get(out, (int) guest, n);
                }
            }
        }
        return out;
    }

    private static Qcow2Device open(Path img, boolean ro) throws IOException {
        LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults().withReadOnly(ro));
        try {
            return Qcow2Device.open("q", c, new Qcow2Device.Options(ro, -1, null, false, img, Qcow2ZstdTest::file,
                    img.toString()));
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        }
    }

    private static BlockDevice file(Path p, String fmt) throws IOException {
        return LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults().withReadOnly(true));
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
}
