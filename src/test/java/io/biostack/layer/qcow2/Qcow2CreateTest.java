package io.biostack.layer.qcow2;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Qcow2Create: the images it lays out are consistent (by biostack's check and by qemu-img's) and map what was asked. */
class Qcow2CreateTest {
    @TempDir
    Path dir;

    private static Qcow2Check.Result check(Path p) throws Exception {
        try (Qcow2Image img = Qcow2Image.open(p, false)) {
            ByteArrayOutputStream msgs = new ByteArrayOutputStream();
            Qcow2Check.Result r = Qcow2Check.check(img, new PrintStream(msgs, true), 0);
            assertThat(msgs.toString()).isEmpty();
            return r;
        }
    }

    @Test
    void mappedClustersAreAllocatedWhereTheLayoutSays() throws Exception {
        Path p = dir.resolve("m.qcow2");
        long[] runs = {0, 3, 100, 102, 8191, 8193}; // the last run crosses an L2 table boundary
        Qcow2Create.Layout l = Qcow2Create.create(p, 1L << 30, Qcow2Create.Options.defaults(), null, null, runs);
        Qcow2Check.Result r = check(p);
        assertThat(r.exitCode()).isZero();
        assertThat(r.allocatedClusters()).isEqualTo(7);
        assertThat(l.host(100L * 65536 + 5)[1]).as("bytes contiguous to the end of the run").isEqualTo(2L * 65536 - 5);
        assertThat(l.host(3L * 65536)).as("an unmapped cluster").isNull();
        // Bytes written at the layout's host offsets read back through qemu at the guest offsets.
        byte[] data = new byte[4096];
        new Random(7).nextBytes(data);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(data), l.host(8192L * 65536 + 512)[0]);
        }
        Tools.require("qemu-img");
        Path raw = dir.resolve("m.raw");
        Tools.ok(60, "qemu-img", "convert", "-O", "raw", p.toString(), raw.toString());
        try (FileChannel ch = FileChannel.open(raw)) {
            ByteBuffer b = ByteBuffer.allocate(4096);
            ch.read(b, 8192L * 65536 + 512);
            assertThat(b.array()).isEqualTo(data);
        }
        Tools.ok(60, "qemu-img", "check", p.toString());
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 2, 3, 4, 5, 6})
    void everyRefcountWidthPassesBothChecks(int order) throws Exception {
        Path p = dir.resolve("r" + order + ".qcow2");
        // 512-byte clusters and a 1 GiB disk: 4 MiB of L1, so several refcount blocks at narrow widths.
        Qcow2Create.create(p, 1L << 30, new Qcow2Create.Options(512, 1 << order, false, false, "zlib", "off", "1.1"),
                null, null, new long[] {10, 5000});
        assertThat(check(p).exitCode()).isZero();
        Tools.require("qemu-img");
        Tools.ok(60, "qemu-img", "check", p.toString());
    }

    @Test
    void refcountEntriesRoundTripAtEveryWidth() {
        Random rnd = new Random(1);
        for (int order = 0; order <= 6; order++) {
            byte[] block = new byte[512];
            long[] model = new long[512 * 8 >> order];
            long max = order == 6 ? Long.MAX_VALUE : (1L << (1 << order)) - 1;
            for (int k = 0; k < 2000; k++) {
                int i = rnd.nextInt(model.length);
                long v = order == 6 ? rnd.nextLong() & Long.MAX_VALUE : rnd.nextLong(max + 1);
                model[i] = v;
                Qcow2Image.setRefcountIn(block, i, order, v);
            }
            for (int i = 0; i < model.length; i++) {
                assertThat(Qcow2Image.refcountIn(block, i, order)).as("order %d entry %d", order, i).isEqualTo(model[i]);
            }
        }
    }

    @Test
    void preallocationMetadataMapsEveryClusterAndFullWritesThem() throws Exception {
        Path meta = dir.resolve("meta.qcow2");
        Path full = dir.resolve("full.qcow2");
        Qcow2Create.create(meta, 8L << 20, new Qcow2Create.Options(65536, 16, false, false, "zlib", "metadata", "1.1"),
                null, null, null);
        Qcow2Create.create(full, 8L << 20, new Qcow2Create.Options(65536, 16, false, false, "zlib", "full", "1.1"),
                null, null, null);
        assertThat(check(meta).allocatedClusters()).isEqualTo(128);
        assertThat(check(full).allocatedClusters()).isEqualTo(128);
        assertThat(Files.size(meta)).isGreaterThan(8L << 20);
    }

    @Test
    void badOptionsAreRefusedWithQemusWords() {
        assertThatThrownBy(() -> new Qcow2Create.Options(3000, 16, false, false, "zlib", "off", "1.1"))
                .hasMessageContaining("power of two between 512 and 2048k");
        assertThatThrownBy(() -> new Qcow2Create.Options(65536, 128, false, false, "zlib", "off", "1.1"))
                .hasMessageContaining("may not exceed 64 bits");
        assertThatThrownBy(() -> new Qcow2Create.Options(8192, 16, false, true, "zlib", "off", "1.1"))
                .hasMessageContaining("at least 16384 bytes");
        assertThatThrownBy(() -> new Qcow2Create.Options(65536, 16, false, false, "lz4", "off", "1.1"))
                .hasMessageContaining("compression_type");
        assertThatThrownBy(() -> new Qcow2Create.Options(65536, 16, true, false, "zlib", "off", "0.10"))
                .hasMessageContaining("Lazy refcounts only supported with compatibility level 1.1");
        assertThatThrownBy(() -> new Qcow2Create.Options(65536, 16, false, false, "zlib", "off", "1.0"))
                .hasMessageContaining("Parameter 'version' does not accept value '1.0'");
    }

    @Test
    void aBackingNameThatDoesNotFitTheFirstClusterIsRefusedAndWritesNothing() {
        Path p = dir.resolve("long.qcow2");
        assertThatThrownBy(() -> Qcow2Create.create(p, 1 << 20,
                new Qcow2Create.Options(512, 16, false, false, "zlib", "off", "1.1"), "x".repeat(600), "raw", null))
                .isInstanceOf(IllegalArgumentException.class);
        assertThat(p).doesNotExist();
    }
}
