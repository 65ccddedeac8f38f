package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.cli.CliRun;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code img create -f qcow2 -o compat=0.10} (version 2, issue 15): the file is byte for byte the
 * one qemu-img creates, qemu-img sees {@code compat: 0.10} and a clean image, biostack and
 * qemu-io write and read it each other's way, and what version 2 cannot hold is refused with
 * qemu's words before any file exists.
 */
class Qcow2CreateV2Test {
    @TempDir
    Path dir;

    @BeforeEach
    void tools() {
        Tools.require("qemu-img", "qemu-io");
    }

    private static void ok(String... args) {
        CliRun r = CliRun.of(args);
        assertThat(r.code()).as(r.err()).isZero();
    }

    private String f(String name) {
        return dir.resolve(name).toString();
    }

    @ParameterizedTest
    @ValueSource(strings = {"compat=0.10", "compat=v2", "compat=0.10,cluster_size=4096",
            "compat=0.10,cluster_size=2M,preallocation=metadata"})
    void aVersion2ImageIsQemuImgsByteForByteAndChecksClean(String opts) throws Exception {
        ok("img", "create", "-q", "-f", "qcow2", "-o", opts, f("ours.qcow2"), "64M");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, f("theirs.qcow2"), "64M");
        assertThat(Files.mismatch(dir.resolve("ours.qcow2"), dir.resolve("theirs.qcow2"))).isEqualTo(-1);
        assertThat(Tools.ok(60, "qemu-img", "info", f("ours.qcow2")).out()).contains("compat: 0.10");
        Tools.ok(60, "qemu-img", "check", f("ours.qcow2"));
    }

    @Test
    void aVersion2OverlayKeepsItsBackingFormatAsQemuWritesIt() throws Exception {
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", f("base.raw"), "4M");
        Tools.ok(60, "qemu-io", "-f", "raw", "-c", "write -P 7 0 1M", f("base.raw"));
        ok("img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.raw", "-F", "raw",
                f("ours.qcow2"));
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.raw", "-F", "raw",
                f("theirs.qcow2"));
        assertThat(Files.mismatch(dir.resolve("ours.qcow2"), dir.resolve("theirs.qcow2"))).isEqualTo(-1);
        String info = Tools.ok(60, "qemu-img", "info", f("ours.qcow2")).out();
        assertThat(info).contains("compat: 0.10").contains("backing file format: raw");
        Tools.ok(60, "qemu-io", "-c", "read -P 7 0 1M", "-c", "read -P 0 1M 3M", f("ours.qcow2"));
        Qcow2Header h = Qcow2Header.parse(Files.readAllBytes(dir.resolve("ours.qcow2")), Files.size(dir.resolve("ours.qcow2")));
        assertThat(h.version()).isEqualTo(2);
        assertThat(h.backingFormat()).isEqualTo("raw");
        assertThat(h.backingFile()).isEqualTo("base.raw");
    }

    @Test
    void biostackAndQemuIoWriteAndReadAVersion2ImageBothWays() throws Exception {
        Path img = dir.resolve("v2.qcow2");
        ok("img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4096", img.toString(), "8M");
        Tools.ok(60, "qemu-io", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 8k", img.toString());
        try (Qcow2Device q = open(img); Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate(64 << 10, 4096);
            m.fill((byte) 0x33);
            q.write(2 << 20, m).join();
            q.writeZeroes(1 << 20, 8 << 10, false).join(); // no zero flag in version 2: must not set one
            q.writeZeroes(0, 4096, false).join();
            q.read(16 << 10, m.asSlice(0, 4096)).join();
            assertThat(m.asSlice(0, 4096).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).containsOnly(0x11);
            q.flush().join();
        }
        Tools.ok(60, "qemu-img", "check", img.toString());
        Tools.ok(60, "qemu-io", "-c", "read -P 0 0 4k", "-c", "read -P 0x11 4k 60k", "-c", "read -P 0 1M 8k",
                "-c", "read -P 0x33 2M 64k", "-c", "read -P 0 3M 1M", img.toString());
        assertThat(Tools.ok(60, "qemu-img", "info", img.toString()).out()).contains("compat: 0.10");
    }

    private static Qcow2Device open(Path img) throws Exception {
        LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
        try {
            return Qcow2Device.open("q", c, new Qcow2Device.Options(false, -1, null, false, img,
                    (p, fmt) -> (BlockDevice) LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults()),
                    img.toString()));
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
    }

    @Test
    void aVersion2HeaderWithFeatureBitsIsNotWritten() {
        Qcow2Header h = Qcow2Header.createV2(16, 1 << 20).withFeatures(Qcow2Header.INCOMPAT_EXTL2, 0, 0);
        org.assertj.core.api.Assertions.assertThatThrownBy(h::encode).isInstanceOf(Qcow2Exception.class)
                .hasMessageContaining("version 2 header has no feature bits");
        assertThat(Qcow2Header.createV2(16, 1 << 20).encode()).hasSize(80); // 72 + the end marker
    }

    @ParameterizedTest
    @ValueSource(strings = {"compat=0.10,lazy_refcounts=on|Lazy refcounts only supported with compatibility level 1.1",
            "compat=0.10,refcount_bits=8|Different refcount widths than 16 bits require compatibility level 1.1",
            "compat=0.10,compression_type=zstd|Non-zlib compression type is only supported with compatibility level 1.1",
            "compat=v2,extended_l2=on|Extended L2 entries are only supported with compatibility level 1.1",
            "compat=0.9|Parameter 'version' does not accept value '0.9'"})
    void whatVersion2CannotHoldIsRefusedWithQemusWordsAndNoFile(String caseLine) {
        String[] c = caseLine.split("\\|");
        CliRun r = CliRun.of("img", "create", "-f", "qcow2", "-o", c[0], f("bad.qcow2"), "1M");
        assertThat(r.code()).as(c[0]).isNotZero();
        assertThat(r.err()).as(c[0]).contains(c[1]);
        assertThat(dir.resolve("bad.qcow2")).as(c[0]).doesNotExist();
    }
}
