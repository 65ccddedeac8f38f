package io.biostack.layer.qcow2;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.biostack.block.BlockDevice;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A qcow2 image takes qemu's image locks on its file (block/file-posix.c): while biostack writes
 * an image, qemu-io and qemu-img are refused as qemu-nbd would refuse them, and biostack refuses
 * an image that qemu-nbd writes. Two writers of one image's metadata corrupt it silently.
 */
@Timeout(60)
class Qcow2LockTest {
    @TempDir
    Path dir;

    private Path image() throws Exception {
        Path img = dir.resolve("d.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), "16M");
        return img;
    }

    private static Qcow2Device open(BlockDevice c, Path img, boolean ro) throws IOException {
        return Qcow2Device.open("q", c, new Qcow2Device.Options(ro, -1, null, false, img, null, img.toString()));
    }

    @Test
    void qemuToolsAreRefusedAnImageBiostackWritesAndGetItBackAtItsClose() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image();
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults())) {
            try (Qcow2Device q = open(c, img, false); Arena a = Arena.ofShared()) {
                q.write(0, a.allocate(65536, 4096).fill((byte) 0x31)).get(10, TimeUnit.SECONDS);
                q.flush().get(10, TimeUnit.SECONDS);
                Tools.Result w = Tools.run(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x66 0 64k", img.toString());
                assertThat(w.exit()).as(w.all()).isNotZero();
                assertThat(w.all()).contains("Failed to get \"write\" lock");
                Tools.Result info = Tools.run(30, "qemu-img", "info", img.toString());
                assertThat(info.exit()).as(info.all()).isNotZero();
                assertThat(info.all()).contains("Failed to get shared \"write\" lock");
                Tools.ok(30, "qemu-img", "info", "-U", img.toString()); // force share, as with qemu-nbd
            }
            // the qcow2 device closed, its container still open (a reload swapped it out): the locks are back
            Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "read -P 0x31 0 64k", "-c", "write -P 0x32 64k 64k",
                    img.toString());
        }
    }

    @Test
    void biostackRefusesAnImageQemuNbdWritesAndOpensItOnceQemuNbdIsGone() throws Exception {
        Tools.require("qemu-img", "qemu-nbd");
        Path img = image();
        Path sock = dir.resolve("q.sock");
        Process p = new ProcessBuilder("qemu-nbd", "-f", "qcow2", "-k", sock.toString(), img.toString())
                .redirectErrorStream(true).start();
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults())) {
            for (int i = 0; i < 400 && !Files.exists(sock); i++) {
                assertThat(p.isAlive()).as("qemu-nbd is running").isTrue();
                Thread.sleep(10);
            }
            byte[] before = Files.readAllBytes(img);
            assertThatThrownBy(() -> open(c, img, false)).isInstanceOf(IOException.class)
                    .hasMessageContaining(img + ": Failed to get \"write\" lock");
            assertThatThrownBy(() -> open(c, img, true)).isInstanceOf(IOException.class)
                    .hasMessageContaining("Failed to get shared \"write\" lock");
            assertThat(Files.readAllBytes(img)).as("the refused opens wrote nothing").isEqualTo(before);
            // gone as after a crash: the kernel drops a dead process's locks (a SIGTERM once took
            // qemu-nbd over 10 s to act on inside the suite, unexplained; its exit is not the point)
            p.destroyForcibly();
            assertThat(p.waitFor(10, TimeUnit.SECONDS)).isTrue();
            open(c, img, false).close();
        } finally {
            p.destroyForcibly();
        }
    }

    @Test
    void twoFilesOpenOnOneImageInOneProcessShareReadingButNotWriting() throws Exception {
        Tools.require("qemu-img");
        Path img = image();
        // two loop devices: two open files, as two stacks in one JVM, or a stack and an img command
        try (LoopDevice a = LoopDevice.open("a", img, LoopConfig.defaults());
             LoopDevice b = LoopDevice.open("b", img, LoopConfig.defaults())) {
            try (Qcow2Device ra = open(a, img, true); Qcow2Device rb = open(b, img, true)) {
                assertThat(ra.size()).isEqualTo(rb.size());
            }
            try (Qcow2Device w = open(a, img, false)) {
                assertThatThrownBy(() -> open(b, img, true)).hasMessageContaining("Failed to get shared \"write\" lock");
                assertThatThrownBy(() -> open(b, img, false)).hasMessageContaining("Failed to get \"write\" lock");
            }
            open(b, img, false).close();
        }
    }

    @Test
    void imgCommandsOfThisProcessAreRefusedAnImageAStackWritesAndChangeNothing() throws Exception {
        Tools.require("qemu-img");
        Path img = image();
        String f = img.toString();
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults()); Qcow2Device q = open(c, img, false)) {
            byte[] before = Files.readAllBytes(img);
            // check -r's lock is the JDK's (a POSIX lock on byte 201): it conflicts with the
            // stack's open file description locks although both are this process's
            io.biostack.cli.CliRun r = io.biostack.cli.CliRun.of("img", "check", "-r", "all", f);
            assertThat(r.code()).as(r.err()).isNotZero();
            assertThat(r.err()).contains("Failed to get \"write\" lock");
            r = io.biostack.cli.CliRun.of("img", "create", "-q", "-f", "qcow2", f, "1M");
            assertThat(r.err()).contains(f + ": Failed to get \"write\" lock");
            r = io.biostack.cli.CliRun.of("img", "info", f);
            assertThat(r.err()).contains(f + ": Failed to get shared \"write\" lock");
            r = io.biostack.cli.CliRun.of("img", "info", "-U", f);
            assertThat(r.code()).as(r.err()).isZero();
            assertThat(Files.readAllBytes(img)).as("the refused commands wrote nothing").isEqualTo(before);
        }
        io.biostack.cli.CliRun r = io.biostack.cli.CliRun.of("img", "check", "-r", "all", f);
        assertThat(r.code()).as(r.err()).isZero();
    }
}
