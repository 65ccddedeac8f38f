package io.biostack.cli;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code biostack serve} as a user runs it: a child JVM, its printed URIs and "ready" line, real
 * clients, SIGTERM to stop it.
 */
@Timeout(90)
class ServeCommandTest {
    @TempDir
    Path dir;
    final List<Process> started = new ArrayList<>();

    @AfterEach
    void kill() throws InterruptedException {
        for (Process p : started) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** A running {@code biostack serve} and the lines it printed up to "ready". */
    record Served(Process process, List<String> lines, LinkedBlockingQueue<String> err) {
        String uri(String prefix) {
            return lines.stream().map(String::strip).filter(l -> l.startsWith(prefix)).findFirst().orElseThrow();
        }

        /** Everything the process wrote to stderr, once it has exited. */
        String stderrUntilExit() throws InterruptedException {
            StringBuilder b = new StringBuilder();
            while (true) {
                String l = err.poll(10, TimeUnit.SECONDS);
                if (l == null || l.equals("\u0000EOF")) {
                    return b.toString();
                }
                b.append(l).append('\n');
            }
        }

        /** SIGTERM, then waits; returns the exit code. */
        int stop() throws InterruptedException {
            process.toHandle().destroy(); // SIGTERM; Process.destroy() would also close our pipes
            assertThat(process.waitFor(30, TimeUnit.SECONDS)).as("serve stops on SIGTERM").isTrue();
            return process.exitValue();
        }
    }

    Process launch(String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "io.biostack.cli.Main", "serve"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).start();
        started.add(p);
        return p;
    }

    Served serve(String... args) throws Exception {
        Process p = launch(args);
        LinkedBlockingQueue<String> out = new LinkedBlockingQueue<>();
        LinkedBlockingQueue<String> err = new LinkedBlockingQueue<>();
        pump(p.getInputStream(), out);
        pump(p.getErrorStream(), err);
        List<String> lines = new ArrayList<>();
        while (true) {
            String l = out.poll(30, TimeUnit.SECONDS);
            assertThat(l).as("serve printed 'ready' (so far: %s, stderr: %s)", lines, err).isNotNull();
            if (l.equals("\u0000EOF")) {
                throw new AssertionError("serve exited before 'ready': " + lines + " " + err);
            }
            lines.add(l);
            if (l.equals("ready")) {
                return new Served(p, lines, err);
            }
        }
    }

    static void pump(java.io.InputStream in, LinkedBlockingQueue<String> q) {
        Thread.ofPlatform().daemon(true).start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                String l;
                while ((l = r.readLine()) != null) {
                    q.add(l);
                }
            } catch (IOException e) {
                // process gone
            }
            q.add("\u0000EOF");
        });
    }

    @Test
    void serveRamOnAUnixSocketPrintsTheUriAndStopsCleanlyOnSigterm() throws Exception {
        Tools.require("qemu-io");
        Path sock = dir.resolve("s.sock");
        Served s = serve("--ram", "64M", "--socket", sock.toString());
        String uri = s.uri("nbd+unix://");
        assertThat(uri).isEqualTo("nbd+unix:///?socket=" + sock);
        assertThat(s.lines()).anyMatch(l -> l.startsWith("try: "));
        Tools.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 0x42 0 1M", "-c", "read -P 0x42 0 1M", uri);
        assertThat(Files.exists(sock)).isTrue();
        int exit = s.stop();
        assertThat(Files.exists(sock)).as("socket file removed").isFalse();
        assertThat(s.stderrUntilExit()).as("exit %d", exit).contains("stopped").doesNotContain("Exception");
    }

    @Test
    void theUrisPrintedForAnExportNameWithASpaceAndAHashConnect() throws Exception {
        // They were printed as typed ("nbd+unix:///my disk#1?socket=..."), which libnbd refuses:
        // "unable to parse URI".
        Tools.require("nbdinfo");
        Path sock = dir.resolve("s.sock");
        Served s = serve("--ram", "1M", "--export", "my disk#1", "--socket", sock.toString());
        String uri = s.uri("nbd+unix://");
        assertThat(uri).isEqualTo("nbd+unix:///my%20disk%231?socket=" + sock);
        assertThat(Tools.ok(30, "nbdinfo", "--size", uri).out().strip()).isEqualTo(String.valueOf(1 << 20));
        assertThat(Tools.ok(30, "nbdinfo", uri).out()).contains("export=\"my disk#1\"");
        s.stop();
    }

    @Test
    void serveWithNoFileCreatesASparseDiskImgOfOneGib() throws Exception {
        Served s = serve("--listen", "127.0.0.1:0");
        Path img = dir.resolve("disk.img");
        assertThat(Files.size(img)).isEqualTo(1L << 30);
        String uri = s.uri("nbd://");
        Matcher m = Pattern.compile("nbd://127\\.0\\.0\\.1:(\\d+)").matcher(uri);
        assertThat(m.matches()).as(uri).isTrue();
        try (Socket c = new Socket()) {
            c.connect(new InetSocketAddress("127.0.0.1", Integer.parseInt(m.group(1))), 5000);
            byte[] hello = c.getInputStream().readNBytes(16);
            assertThat(ByteBuffer.wrap(hello).getLong()).isEqualTo(0x4e42444d41474943L); // NBDMAGIC
        }
        s.stop();
    }

    @Test
    void writesThroughServeReachTheFileAndReadOnlyRefusesThem() throws Exception {
        Tools.require("qemu-io");
        Path img = dir.resolve("data.img");
        Path sock = dir.resolve("d.sock");
        Served s = serve(img.toString(), "--size", "8M", "--socket", sock.toString(), "--export", "d",
                "--direct-io", "on");
        String uri = s.uri("nbd+unix://");
        assertThat(uri).isEqualTo("nbd+unix:///d?socket=" + sock);
        Tools.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 0x5c 4096 8192", uri);
        s.stop();
        try (FileChannel ch = FileChannel.open(img)) {
            ByteBuffer b = ByteBuffer.allocate(8192);
            ch.read(b, 4096);
            assertThat(b.array()).containsOnly((byte) 0x5c);
        }
        Served ro = serve(img.toString(), "--socket", sock.toString(), "--read-only");
        Tools.ok(30, "qemu-io", "-r", "-f", "raw", "-c", "read -P 0x5c 4096 8192", ro.uri("nbd+unix://"));
        Tools.Result w = Tools.run(30, "qemu-io", "-f", "raw", "-c", "write -P 1 0 4096", ro.uri("nbd+unix://"));
        assertThat(w.all()).as("qemu sees NBD_FLAG_READ_ONLY").contains("Permission denied").doesNotContain("wrote");
        ro.stop();
    }

    @Test
    void aFileWithFourKibSectorsIsServedWithoutAFormatGiven() throws Exception {
        // Probing for the qcow2 magic read 512 bytes, which a 4096-byte-sector device refuses:
        // serve then stopped before it started, unless -f raw skipped the probe.
        Tools.require("qemu-io", "nbdinfo");
        Path img = dir.resolve("4k.img");
        Path sock = dir.resolve("4k.sock");
        Served s = serve(img.toString(), "--size", "8M", "--sector-size", "4096", "--socket", sock.toString());
        String uri = s.uri("nbd+unix://");
        Tools.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 0x4b 8192 4096", "-c", "read -P 0x4b 8192 4096", uri);
        assertThat(Tools.ok(30, "nbdinfo", uri).out()).contains("block_size_minimum: 4096");
        s.stop();
        try (FileChannel ch = FileChannel.open(img)) {
            ByteBuffer b = ByteBuffer.allocate(4096);
            ch.read(b, 8192);
            assertThat(b.array()).containsOnly((byte) 0x4b);
        }
    }

    @Test
    void aTakenPortGetsAClearMessageAndNoStackTrace() throws Exception {
        try (ServerSocket taken = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            Process p = launch("--ram", "1M", "--listen", "127.0.0.1:" + taken.getLocalPort());
            assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
            String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
            assertThat(p.exitValue()).isEqualTo(1);
            assertThat(err).contains("127.0.0.1:" + taken.getLocalPort()).contains("address already in use")
                    .doesNotContain("\tat ").doesNotContain("Exception");
        }
    }

    @Test
    void aQcow2ImageOnFourKibSectorsIsRefusedAtStartAndLeftAsItWas() throws Exception {
        // qcow2 reads and writes its metadata in 512-byte sectors: on a 4096-byte-sector loop
        // device serve printed 'ready', then every write failed its metadata writeback (EIO on
        // the wire) and the image was left with leaked clusters.
        Tools.require("qemu-img");
        Path img = dir.resolve("q.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "8M");
        byte[] before = Files.readAllBytes(img);
        Process p = launch(img.toString(), "--sector-size", "4096", "--listen", "127.0.0.1:0");
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).as("serve exits instead of running").isTrue();
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.exitValue()).isEqualTo(1);
        assertThat(err).contains("a qcow2 container must take 512-byte I/O").contains("4096-byte logical blocks")
                .doesNotContain("\tat ");
        assertThat(Files.readAllBytes(img)).isEqualTo(before);
        assertThat(Tools.ok(30, "qemu-img", "check", img.toString()).out()).contains("No errors");
    }

    @Test
    void zeroMaxConnectionsIsRefusedAtStartInsteadOfServingNobody() throws Exception {
        Process p = launch("--ram", "1M", "--listen", "127.0.0.1:0", "--max-connections", "0");
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).as("serve exits instead of running").isTrue();
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.exitValue()).isEqualTo(1);
        assertThat(err).contains("max connections must be at least 1, not 0").doesNotContain("\tat ");
    }

    @Test
    void aFileThatCannotBeWrittenIsRefusedWithTheReadOnlyOptionNamedAndServedWithIt() throws Exception {
        // The message named O_DIRECT ("cannot open F with O_DIRECT: Operation not permitted"),
        // which has nothing to do with it, and not the read-only option that serves the file.
        Tools.require("chattr", "nbdinfo");
        io.biostack.TestEnv.require("root".equals(System.getProperty("user.name")), "root (chattr +i)");
        Path img = dir.resolve("locked.img");
        Files.write(img, new byte[1 << 20]);
        Tools.ok(30, "chattr", "+i", img.toString()); // not writable, even by root
        try {
            Process p = launch(img.toString(), "--listen", "127.0.0.1:0");
            assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
            String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
            assertThat(p.exitValue()).isEqualTo(1);
            assertThat(err).contains("cannot open " + img + " for writing").contains("--read-only")
                    .doesNotContain("O_DIRECT").doesNotContain("\tat ");
            Served ro = serve(img.toString(), "--socket", dir.resolve("ro.sock").toString(), "--read-only");
            assertThat(Tools.ok(30, "nbdinfo", "--size", ro.uri("nbd+unix://")).out().strip())
                    .isEqualTo(String.valueOf(1 << 20));
            ro.stop();
        } finally {
            Tools.run(30, "chattr", "-i", img.toString());
        }
    }

    @Test
    void aMissingFileWithoutSizeIsRefusedClearly() throws Exception {
        Process p = launch(dir.resolve("nope.img").toString(), "--listen", "127.0.0.1:0");
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.exitValue()).isNotZero();
        assertThat(err).contains("nope.img").contains("--size").doesNotContain("\tat ");
    }

    @Test
    @Timeout(120)
    void stackDevicesAreServedByNameAndAReloadUnderFioLoadLosesNothing() throws Exception {
        Tools.require("fio", "nbdinfo");
        Path a = dir.resolve("a.img");
        Path stack = dir.resolve("live.stack");
        Path sock = dir.resolve("live.sock");
        Path ctl = dir.resolve("live.ctl");
        // vol's two tables map the same bytes (whole vs two halves), so whatever the reloads
        // interleave with, fio's verify must read back exactly what it wrote.
        Files.writeString(stack, "disk0: loop " + a + " size=64M\n"
                + "vol: 0 32M linear disk0 0\n"
                + "tail: linear disk0 32M\n");
        Served s = serve("--stack", stack.toString(), "--export", "vol", "--export", "tail",
                "--socket", sock.toString(), "--control", ctl.toString());
        assertThat(s.lines()).anyMatch(l -> l.contains("nbd+unix:///vol?socket="))
                .anyMatch(l -> l.contains("nbd+unix:///tail?socket="));
        String vol = "nbd+unix:///vol?socket=" + sock;
        assertThat(Tools.ok(30, "nbdinfo", "--size", vol).out().strip()).isEqualTo(String.valueOf(32L << 20));
        assertThat(Tools.ok(30, "nbdinfo", "--size", "nbd+unix:///tail?socket=" + sock).out().strip())
                .isEqualTo(String.valueOf(32L << 20));

        Process fio = new ProcessBuilder("fio", "--name=live", "--ioengine=nbd", "--uri=" + vol, "--rw=randwrite",
                "--bs=4k", "--iodepth=16", "--size=32M", "--time_based", "--runtime=6", "--verify=crc32c",
                "--do_verify=1", "--verify_fatal=1", "--verify_backlog=256", "--verify_state_save=0",
                "--output-format=terse").directory(dir.toFile()).redirectErrorStream(true).start();
        String[] tables = {"0 16M linear disk0 0\n16M 16M linear disk0 16M", "0 32M linear disk0 0"};
        int reloads = 0;
        while (fio.isAlive() && reloads < 200) {
            String table = tables[reloads % 2];
            assertThat(Main.run("dm", "--control", ctl.toString(), "reload", "vol", table)).isZero();
            assertThat(Main.run("dm", "--control", ctl.toString(), "suspend", "vol")).isZero();
            assertThat(Main.run("dm", "--control", ctl.toString(), "resume", "vol")).isZero();
            reloads++;
            Thread.sleep(50);
        }
        assertThat(fio.waitFor(60, TimeUnit.SECONDS)).isTrue();
        String fioOut = new String(fio.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(fio.exitValue()).as(fioOut).isZero();
        assertThat(fioOut).doesNotContain("verify: bad").doesNotContainIgnoringCase("error=");
        assertThat(reloads).as("reloads done while fio ran").isGreaterThan(5);
        int exit = s.stop();
        assertThat(sock).doesNotExist();
        assertThat(ctl).as("control socket removed").doesNotExist();
        assertThat(s.stderrUntilExit()).as("exit %d", exit).contains("stopped").doesNotContain("Exception");
    }
}
