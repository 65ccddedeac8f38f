package io.biostack.cli;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code biostack img convert -c}, zlib and zstd: qemu-img checks the image, compares it with its
 * source and maps its clusters as compressed; biostack reads it back byte-exact; what it refuses
 * leaves no file.
 */
class ImgConvertCompressTest {
    static final int SIZE = 8 << 20;

    @TempDir
    Path dir;

    @BeforeEach
    void tools() {
        Tools.require("qemu-img");
    }

    /**
     * Text, a random 8 KiB pattern repeated (matches past 4 KiB, which qemu's 4 KiB inflate
     * window refuses if the writer ever makes one), random bytes (stored whole), a hole and a
     * tail in the last, partial, cluster region.
     */
    Path source() throws IOException {
        Path p = dir.resolve("src.raw");
        Random r = new Random(3);
        byte[] pat = new byte[8192];
        r.nextBytes(pat);
        byte[] noise = new byte[1 << 20];
        r.nextBytes(noise);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap("biostack writes zlib clusters ".repeat(40000).getBytes()), 0);
            long off = 2 << 20;
            for (int i = 0; i < 256; i++) {
                ch.write(ByteBuffer.wrap(pat), off + i * 8192L);
            }
            ch.write(ByteBuffer.wrap(noise), 5 << 20);
            ch.write(ByteBuffer.wrap("the end".getBytes()), SIZE - 7);
        }
        return p;
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "cluster_size=512", "cluster_size=2M", "refcount_bits=1,extended_l2=on",
            "cluster_size=4k,refcount_bits=2", "compat=0.10"})
    void compressedImagesPassQemuCheckCompareEqualAndReadBackInBiostack(String opts) throws Exception {
        Path src = source();
        String img = dir.resolve("c.qcow2").toString();
        CliRun r = opts.isEmpty() ? CliRun.of("img", "convert", "-c", "-O", "qcow2", src.toString(), img)
                : CliRun.of("img", "convert", "-c", "-O", "qcow2", "-o", opts, src.toString(), img);
        assertThat(r.code()).as(r.err()).isZero();
        Tools.ok(60, "qemu-img", "check", img);
        assertThat(Tools.ok(60, "qemu-img", "compare", src.toString(), img).out()).contains("Images are identical");
        String map = Tools.ok(60, "qemu-img", "map", "--output=json", img).out();
        assertThat(map).as("data without a host offset: compressed clusters (qemu-img 7.2 has no compressed key)")
                .contains("\"data\": true}");
        String theirs = dir.resolve("q.qcow2").toString();
        if (opts.isEmpty()) {
            Tools.ok(60, "qemu-img", "convert", "-c", "-O", "qcow2", src.toString(), theirs);
        } else {
            Tools.ok(60, "qemu-img", "convert", "-c", "-O", "qcow2", "-o", opts, src.toString(), theirs);
        }
        assertThat(Files.size(Path.of(img))).as("about as small as qemu-img convert -c makes it (%d bytes)",
                Files.size(Path.of(theirs))).isLessThanOrEqualTo(Files.size(Path.of(theirs)) * 11 / 10);
        Path back = dir.resolve("back.raw");
        CliRun b = CliRun.of("img", "convert", "-O", "raw", img, back.toString());
        assertThat(b.code()).as(b.err()).isZero();
        assertThat(Files.mismatch(src, back)).isEqualTo(-1);
    }

    @Test
    void aZstdImageThatQemuImgCompressedConvertsBackByteExact() throws Exception {
        Tools.require("qemu-img");
        Path src = source();
        Path img = dir.resolve("z.qcow2");
        Tools.ok(60, "qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", src.toString(), img.toString());
        Path back = dir.resolve("back.raw");
        CliRun b = CliRun.of("img", "convert", "-O", "raw", img.toString(), back.toString());
        assertThat(b.code()).as(b.err()).isZero();
        assertThat(Files.mismatch(src, back)).isEqualTo(-1);
    }

    @ParameterizedTest
    @ValueSource(strings = {"", ",cluster_size=512", ",cluster_size=2M", ",refcount_bits=1,extended_l2=on"})
    void zstdImagesPassQemuCheckCompareEqualSayZstdAndComeNearQemuImgsSize(String opts) throws Exception {
        Path src = source();
        String img = dir.resolve("z.qcow2").toString();
        CliRun r = CliRun.of("img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd" + opts,
                src.toString(), img);
        assertThat(r.code()).as(r.err()).isZero();
        Tools.ok(60, "qemu-img", "check", img);
        assertThat(Tools.ok(60, "qemu-img", "compare", src.toString(), img).out()).contains("Images are identical");
        assertThat(Tools.ok(60, "qemu-img", "info", img).out()).contains("compression type: zstd");
        assertThat(Tools.ok(60, "qemu-img", "map", "--output=json", img).out())
                .as("data without a host offset: compressed clusters").contains("\"data\": true}");
        String theirs = dir.resolve("q.qcow2").toString();
        Tools.ok(60, "qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd" + opts,
                src.toString(), theirs);
        long ours = Files.size(Path.of(img));
        long qemu = Files.size(Path.of(theirs));
        System.out.printf("zstd%s: biostack %d bytes, qemu-img %d bytes%n", opts, ours, qemu);
        assertThat(ours).as("near qemu-img's %d bytes", qemu).isLessThanOrEqualTo(qemu * 3 / 2);
        Path back = dir.resolve("back.raw");
        CliRun b = CliRun.of("img", "convert", "-O", "raw", img, back.toString());
        assertThat(b.code()).as(b.err()).isZero();
        assertThat(Files.mismatch(src, back)).isEqualTo(-1);
    }

    /**
     * Clusters that compress and clusters of noise (stored whole) in turn: the compressed ones
     * keep packing into the partial cluster of the ones before, as qemu's do, so the image is
     * no larger than qemu-img's.
     */
    @ParameterizedTest
    @ValueSource(strings = {"zlib", "zstd"})
    void clustersStoredWholeDoNotBreakThePackingOfCompressedOnes(String type) throws Exception {
        Path src = dir.resolve("mix.raw");
        Random r = new Random(5);
        byte[] b = new byte[4 << 20];
        for (int c = 0; c < b.length / 65536; c++) {
            if (c % 4 == 3) {
                for (int i = c * 65536; i < (c + 1) * 65536; i++) {
                    b[i] = (byte) r.nextInt(256);
                }
            } else {
                for (int i = c * 65536; i < (c + 1) * 65536; i++) {
                    b[i] = (byte) ("abcdefgh".charAt(r.nextInt(8)));
                }
            }
        }
        Files.write(src, b);
        String img = dir.resolve("m.qcow2").toString();
        String theirs = dir.resolve("mq.qcow2").toString();
        CliRun run = CliRun.of("img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=" + type, src.toString(), img);
        assertThat(run.code()).as(run.err()).isZero();
        Tools.ok(60, "qemu-img", "check", img);
        assertThat(Tools.ok(60, "qemu-img", "compare", src.toString(), img).out()).contains("Images are identical");
        Tools.ok(60, "qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=" + type, src.toString(), theirs);
        System.out.printf("%s mix: biostack %d bytes, qemu-img %d bytes%n", type, Files.size(Path.of(img)),
                Files.size(Path.of(theirs)));
        assertThat(Files.size(Path.of(img))).isLessThanOrEqualTo(Files.size(Path.of(theirs)) * 101 / 100);
    }

    @Test
    void compressionIsRefusedForRawOutputAndNoFileIsLeft() throws Exception {
        Path src = source();
        CliRun raw = CliRun.of("img", "convert", "-c", src.toString(), dir.resolve("o.raw").toString());
        assertThat(raw.code()).isNotZero();
        assertThat(raw.err()).contains("Compression not supported for this file format");
        assertThat(dir.resolve("o.raw")).doesNotExist();
    }
}
