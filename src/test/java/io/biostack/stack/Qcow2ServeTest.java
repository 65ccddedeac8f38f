package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.layer.qcow2.Qcow2Device;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.NbdExport;
import io.biostack.nbd.NbdServer;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A qcow2 chain served over NBD the way {@code serve IMAGE} serves it (probed by its magic,
 * backing files opened from the header), judged by qemu's and libnbd's own tools: the data,
 * {@code base:allocation}, {@code qemu:allocation-depth} (as qemu-nbd -A answers it), and a write
 * through the server that {@code qemu-img check} then finds clean.
 */
class Qcow2ServeTest {
    @TempDir
    Path dir;

    @Test
    void aChainServedOverNbdReadsMapsAndWritesAsQemuSeesIt() throws Exception {
        Tools.require("qemu-img", "qemu-io", "nbdinfo");
        Path base = dir.resolve("base.raw");
        Path top = dir.resolve("top.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "raw", base.toString(), "8M");
        Tools.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 0x33 0 8M", base.toString());
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", top.toString(), "8M");
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x44 1M 1M", "-c", "write -z 4M 1M", top.toString());

        Path sock = dir.resolve("nbd.sock");
        String uri = "nbd+unix:///?socket=" + sock;
        LoopDevice raw = LoopDevice.open(top, LoopConfig.defaults());
        assertThat(Qcow2Target.probe(raw)).as("the qcow2 magic is found").isTrue();
        LoopDevice plain = LoopDevice.open(base, LoopConfig.defaults().withReadOnly(true));
        try {
            assertThat(Qcow2Target.probe(plain)).as("a raw file is not taken for qcow2").isFalse();
        } finally {
            plain.close();
        }
        Qcow2Device q = Qcow2Target.open("top", raw, false);
        try (NbdServer server = NbdServer.builder().export(NbdExport.of("", (BlockDevice) q)).unixSocket(sock).start()) {
            // the image is open for writing here, as under qemu-nbd: -U (force share) reads it without its locks
            Tools.ok(60, "qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", uri, top.toString());
            String depth = Tools.ok(30, "nbdinfo", "--map=qemu:allocation-depth", uri).out();
            assertThat(depth.lines().map(String::trim).map(l -> l.replaceAll("\\s+", " ")).toList()).containsExactly(
                    "0 1048576 2 backing depth 2",
                    "1048576 1048576 1 local",
                    "2097152 2097152 2 backing depth 2",
                    "4194304 1048576 1 local",
                    "5242880 3145728 2 backing depth 2");
            String alloc = Tools.ok(30, "nbdinfo", "--map", uri).out();
            assertThat(alloc).as("the zero cluster is a hole that reads as zero, as qemu-nbd says")
                    .containsPattern("4194304\\s+1048576\\s+3\\s+hole,zero");
            Tools.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 0x55 6M 64k", "-c", "flush", uri);
        } finally {
            q.close();
        }
        Tools.Result check = Tools.run(60, "qemu-img", "check", top.toString());
        assertThat(check.exit()).as(check.all()).isZero();
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "read -P 0x55 6M 64k", "-c", "read -P 0x44 1M 1M",
                "-c", "read -P 0x33 0 64k", "-c", "read -P 0 4M 1M", top.toString());
    }

    /**
     * base.raw is shorter than the chain; mid.qcow2 holds data, a compressed and a zero
     * cluster; top.qcow2 data, zero clusters (one over mid's data, one over the short end) and
     * a discarded one. Returns top.qcow2.
     */
    private Path chain() throws Exception {
        Path base = dir.resolve("base.raw");
        Tools.ok(30, "qemu-img", "create", "-f", "raw", base.toString(), "3M");
        Tools.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 0x33 0 3M", base.toString());
        Path mid = dir.resolve("mid.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", mid.toString(), "4M");
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x44 128k 128k", "-c", "write -z 1M 64k",
                "-c", "write -c -P 0x45 512k 64k", mid.toString());
        Path top = dir.resolve("top.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top.toString(), "4M");
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x55 0 8k", "-c", "write -z 128k 64k",
                "-c", "write -z 2M 128k", "-c", "write -z 3M 64k", "-c", "discard 200k 64k", top.toString());
        return top;
    }

    /** {@code dev} served, and {@code qemu-nbd -A} on {@code top}: the same maps, byte for byte. */
    private void assertMapsAsQemuNbd(BlockDevice dev, Path top) throws Exception {
        Path sock = dir.resolve("b.sock");
        Path qsock = dir.resolve("q.sock");
        Process qemu = new ProcessBuilder("qemu-nbd", "-r", "-A", "-t", "-f", "qcow2", "-k", qsock.toString(), top.toString())
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        try (NbdServer server = NbdServer.builder().export(NbdExport.of("", dev)).unixSocket(sock).start()) {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (!Files.exists(qsock) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            for (String context : List.of("base:allocation", "qemu:allocation-depth")) {
                String ours = Tools.ok(30, "nbdinfo", "--map=" + context, "nbd+unix:///?socket=" + sock).out();
                String qemus = Tools.ok(30, "nbdinfo", "--map=" + context, "nbd+unix:///?socket=" + qsock).out();
                assertThat(ours).as(context).isEqualTo(qemus);
            }
        } finally {
            qemu.destroyForcibly();
            qemu.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void blockStatusOfAChainIsQemuNbdsByteForByte() throws Exception {
        Tools.require("qemu-img", "qemu-io", "qemu-nbd", "nbdinfo");
        Path top = chain();
        Qcow2Device q = Qcow2Target.open("top", LoopDevice.open(top, LoopConfig.defaults().withReadOnly(true)), true);
        try {
            assertMapsAsQemuNbd(q, top);
        } finally {
            q.close();
        }
    }

    @Test
    void aBackingDeviceOfTheStackCountsItsOwnDepth() throws Exception {
        // backing=NAME hands the qcow2 line the stack's device, wrapped for counting: its
        // allocation depth is still asked through it, down to the raw file under mid.qcow2.
        Tools.require("qemu-img", "qemu-io", "qemu-nbd", "nbdinfo");
        Path top = chain();
        try (Stack s = Stack.open("mc: loop " + dir.resolve("mid.qcow2") + " read-only\nmid: qcow2 mc read-only\n"
                + "tc: loop " + top + " read-only\ntop: qcow2 tc read-only backing=mid\n", "t")) {
            assertMapsAsQemuNbd(s.device("top"), top);
        }
    }
}
