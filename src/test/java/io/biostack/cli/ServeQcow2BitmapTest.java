package io.biostack.cli;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code biostack serve IMAGE.qcow2 -B BM}, as {@code qemu-nbd -B BM}: the image's own bitmap is
 * offered over NBD, records the writes made through the export, and is saved in the image at a
 * clean stop, where qemu finds it consistent and holding those writes.
 */
@Timeout(120)
class ServeQcow2BitmapTest {
    @TempDir
    Path dir;
    Process serve;

    @AfterEach
    void stop() throws InterruptedException {
        if (serve != null) {
            serve.destroyForcibly();
            serve.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void aBitmapOfTheImageIsOfferedUpdatedAndSavedForQemu() throws Exception {
        Tools.require("qemu-img", "qemu-io", "nbdinfo");
        Path img = dir.resolve("d.qcow2");
        Path sock = dir.resolve("nbd.sock");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "16M");
        Tools.ok(60, "qemu-img", "bitmap", "--add", img.toString(), "b0");
        serve = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "io.biostack.cli.Main", "serve", img.toString(), "--socket", sock.toString(), "-B", "b0")
                .redirectErrorStream(true).redirectOutput(dir.resolve("serve.log").toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!Files.exists(sock) && System.nanoTime() < deadline && serve.isAlive()) {
            Thread.sleep(20);
        }
        assertThat(sock).as(Files.readString(dir.resolve("serve.log"))).exists();
        String uri = "nbd+unix:///?socket=" + sock;
        Tools.ok(60, "qemu-io", "-f", "raw", "-c", "write -P 7 1M 64k", "-c", "write -P 8 5M 4k", uri);
        String map = Tools.ok(60, "nbdinfo", "--map=qemu:dirty-bitmap:b0", uri).out();
        assertThat(map.lines().map(String::trim).filter(l -> l.endsWith("dirty")).toList())
                .containsExactly("1048576       65536    1  dirty", "5242880       65536    1  dirty");

        serve.destroy(); // SIGTERM: a clean stop saves the bitmap
        assertThat(serve.waitFor(30, TimeUnit.SECONDS)).isTrue();
        serve = null;
        String info = Tools.ok(60, "qemu-img", "info", "--output=json", img.toString()).out();
        assertThat(info).contains("\"name\": \"b0\"").doesNotContain("in-use");
        Tools.ok(60, "qemu-img", "check", img.toString());
        // qemu's own reading of the saved bits: the same two ranges
        Path qsock = dir.resolve("q.sock");
        Process q = new ProcessBuilder("qemu-nbd", "-f", "qcow2", "-r", "-B", "b0", "-k", qsock.toString(), img.toString())
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        try {
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (!Files.exists(qsock) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            String qmap = Tools.ok(60, "nbdinfo", "--map=qemu:dirty-bitmap:b0", "nbd+unix:///?socket=" + qsock).out();
            assertThat(qmap.lines().map(String::trim).filter(l -> l.endsWith("dirty")).toList())
                    .containsExactly("1048576       65536    1  dirty", "5242880       65536    1  dirty");
        } finally {
            q.destroyForcibly();
            q.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void serveBOnAnImageBitmapLeftInUseSaysItIsInconsistentAsQemuNbdDoes() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = dir.resolve("d.qcow2");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "16M");
        Tools.ok(60, "qemu-img", "bitmap", "--add", img.toString(), "b0");
        // qemu killed with the image open: b0 stays in use (qemu-nbd -B b0 then refuses it,
        // "Bitmap 'b0' is inconsistent and cannot be used")
        new ProcessBuilder("qemu-io", "-f", "qcow2", "-c", "write 0 4k", "-c", "sigraise 9", img.toString())
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start().waitFor(60, TimeUnit.SECONDS);
        assertThat(Tools.ok(60, "qemu-img", "info", img.toString()).out()).contains("in-use");
        CliRun r = CliRun.of("serve", img.toString(), "--socket", dir.resolve("nbd.sock").toString(), "-B", "b0");
        assertThat(r.code()).isNotZero();
        assertThat(r.err()).contains("bitmap b0 of", "is inconsistent", "qemu-img bitmap --remove " + img + " b0", "full")
                .doesNotContain("it has none").doesNotContain("\tat ");
        assertThat(dir.resolve("nbd.sock")).doesNotExist();
        // the image as qemu left it: b0 still in use, nothing leaked
        Tools.ok(60, "qemu-img", "check", img.toString());
        assertThat(Tools.ok(60, "qemu-img", "info", img.toString()).out()).contains("in-use");
    }

    @Test
    void withStatisticsOffTheImageBitmapIsStillKeptAndNoClusterLeaks() throws Exception {
        Tools.require("qemu-img", "qemu-io", "nbdinfo");
        Path img = dir.resolve("d.qcow2");
        Path sock = dir.resolve("nbd.sock");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "16M");
        Tools.ok(60, "qemu-img", "bitmap", "--add", img.toString(), "b0");
        // -Dbiostack.stats=false only drops the I/O counters (docs/statistics.md): the image's
        // bitmaps must still be offered, record and be saved, not be left stale for qemu.
        servedWithStatisticsOffKeepsB0(img, sock, "nbd+unix:///?socket=" + sock,
                "serve", img.toString(), "--socket", sock.toString(), "-B", "b0");
    }

    /**
     * Runs {@code args} with -Dbiostack.stats=false, writes 4 KiB at 3 MiB through {@code uri},
     * checks that bitmap b0 shows it dirty, stops the server, and checks that qemu-img finds the
     * image clean with b0 kept (auto, not in use).
     */
    private void servedWithStatisticsOffKeepsB0(Path img, Path sock, String uri, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Dbiostack.stats=false", "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), "io.biostack.cli.Main"));
        cmd.addAll(List.of(args));
        serve = new ProcessBuilder(cmd)
                .redirectErrorStream(true).redirectOutput(dir.resolve("serve.log").toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!Files.exists(sock) && System.nanoTime() < deadline && serve.isAlive()) {
            Thread.sleep(20);
        }
        assertThat(sock).as(Files.readString(dir.resolve("serve.log"))).exists();
        Tools.ok(60, "qemu-io", "-f", "raw", "-c", "write -P 7 3M 4k", uri);
        assertThat(Tools.ok(60, "nbdinfo", "--map=qemu:dirty-bitmap:b0", uri).out().lines().map(String::trim)
                .filter(l -> l.endsWith("dirty")).toList()).containsExactly("3145728       65536    1  dirty");
        serve.destroy();
        assertThat(serve.waitFor(30, TimeUnit.SECONDS)).isTrue();
        serve = null;
        Tools.Result check = Tools.run(60, "qemu-img", "check", img.toString());
        assertThat(check.exit()).as(check.out() + check.err()).isZero();
        assertThat(check.err()).doesNotContain("lacking bitmap support");
        String info = Tools.ok(60, "qemu-img", "info", "--output=json", img.toString()).out().replaceAll("\\s+", "");
        assertThat(info).contains("{\"flags\":[\"auto\"],\"name\":\"b0\",\"granularity\":65536}");
    }

    @Test
    void aStackQcow2DeviceWithStatisticsOffKeepsTheImageBitmap() throws Exception {
        Tools.require("qemu-img", "qemu-io", "nbdinfo");
        Path img = dir.resolve("d.qcow2");
        Path sock = dir.resolve("nbd.sock");
        Path stack = dir.resolve("s.stack");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "16M");
        Tools.ok(60, "qemu-img", "bitmap", "--add", img.toString(), "b0");
        Files.writeString(stack, "c: loop " + img + " direct-io=off\nq: qcow2 c\n");
        servedWithStatisticsOffKeepsB0(img, sock, "nbd+unix:///q?socket=" + sock,
                "serve", "--stack", stack.toString(), "--export", "q", "--listen", "none", "--socket", sock.toString());
    }
}
