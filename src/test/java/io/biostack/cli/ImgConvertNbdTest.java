package io.biostack.cli;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code img convert} with an NBD export (qemu-nbd) as destination and as source. */
class ImgConvertNbdTest {
    @TempDir
    Path dir;

    private Process server;

    @AfterEach
    void stop() throws Exception {
        if (server != null) {
            server.destroy();
            if (!server.waitFor(10, TimeUnit.SECONDS)) {
                server.destroyForcibly();
            }
        }
    }

    private String serve(Path file, String format) throws Exception {
        Path sock = dir.resolve("s.sock");
        server = new ProcessBuilder("qemu-nbd", "-f", format, "--socket=" + sock, "--persistent", "--shared=4",
                file.toString()).redirectErrorStream(true).redirectOutput(dir.resolve("nbd.log").toFile()).start();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!Files.exists(sock) && server.isAlive() && System.nanoTime() < end) {
            Thread.sleep(20);
        }
        assertThat(sock).as("qemu-nbd's socket").exists();
        return "nbd+unix:///?socket=" + sock;
    }

    @Test
    void convertsToAndFromAnNbdExport() throws Exception {
        Tools.require("qemu-img", "qemu-io", "qemu-nbd");
        String src = dir.resolve("src.qcow2").toString();
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", src, "16M");
        Tools.ok(60, "qemu-io", "-c", "write -P 0x61 0 1M", "-c", "write -P 0x62 9M 300k", src);
        // The export's file holds old bytes where the source has none: convert must zero them.
        Path target = dir.resolve("target.raw");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", target.toString(), "16M");
        Tools.ok(60, "qemu-io", "-f", "raw", "-c", "write -P 0x7f 4M 2M", target.toString());
        String uri = serve(target, "raw");
        CliRun to = CliRun.of("img", "convert", src, uri);
        assertThat(to.code()).as(to.err()).isZero();
        CliRun back = CliRun.of("img", "convert", "-O", "qcow2", uri, dir.resolve("back.qcow2").toString());
        assertThat(back.code()).as(back.err()).isZero();
        stop();
        server = null;
        Tools.ok(60, "qemu-img", "compare", "-F", "raw", src, target.toString());
        Tools.ok(60, "qemu-img", "compare", src, dir.resolve("back.qcow2").toString());
        Tools.ok(60, "qemu-img", "check", dir.resolve("back.qcow2").toString());
    }

    @Test
    void aDestinationExportSmallerThanTheSourceIsRefused() throws Exception {
        Tools.require("qemu-img", "qemu-nbd");
        String src = dir.resolve("src.raw").toString();
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", src, "8M");
        Path small = dir.resolve("small.raw");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", small.toString(), "4M");
        CliRun r = CliRun.of("img", "convert", src, serve(small, "raw"));
        assertThat(r.code()).isEqualTo(1);
        assertThat(r.err()).contains("smaller than the source");
    }
}
