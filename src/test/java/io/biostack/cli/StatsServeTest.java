package io.biostack.cli;

import io.biostack.block.stats.Json;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Issue 11's acceptance: a known fio job through {@code biostack serve}, then the counters as
 * {@code dm stats --json} and {@code /metrics} show them, exact, for a layer and the leaf under
 * it; /metrics passes {@code promtool check metrics}.
 */
@Timeout(120)
class StatsServeTest {
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
    void aKnownFioJobIsCountedExactlyInDmStatsAndInMetrics() throws Exception {
        Tools.require("fio", "curl", "promtool");
        Path stack = dir.resolve("s.stack");
        Path sock = dir.resolve("nbd.sock");
        Path ctl = dir.resolve("ctl.sock");
        Files.writeString(stack, "r0: ram 64M\nl0: linear r0 0\n");
        List<String> lines = start("--stack", stack.toString(), "--export", "l0", "--listen", "none",
                "--socket", sock.toString(), "--control", ctl.toString(), "--metrics", "127.0.0.1:0");
        String metricsUrl = lines.stream().filter(l -> l.startsWith("metrics: ")).findFirst().orElseThrow().substring(9);
        String uri = "nbd+unix:///l0?socket=" + sock;
        // 1000 sequential 4 KiB writes, then 500 random 4 KiB reads: no flush, no discard.
        Tools.ok(60, "fio", "--name=w", "--ioengine=nbd", "--uri=" + uri, "--rw=write", "--bs=4k", "--size=4000k",
                "--iodepth=8", "--output-format=terse");
        Tools.ok(60, "fio", "--name=r", "--ioengine=nbd", "--uri=" + uri, "--rw=randread", "--bs=4k", "--size=2000k",
                "--iodepth=8", "--output-format=terse");

        String out = dm("--control", ctl.toString(), "stats", "--json");
        Map<String, Object> j = Json.object(out.strip());
        assertThat(j).containsEntry("since_start", true);
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> devices = (List<Map<String, Object>>) j.get("devices");
        assertThat(devices).extracting(d -> d.get("device")).containsExactly("r0", "l0");
        for (Map<String, Object> d : devices) {
            @SuppressWarnings("unchecked")
            Map<String, Object> st = (Map<String, Object>) d.get("stat");
            assertThat(st).as("%s", d.get("device"))
                    .containsEntry("read_ios", 500.0).containsEntry("read_sectors", 4000.0)
                    .containsEntry("write_ios", 1000.0).containsEntry("write_sectors", 8000.0)
                    .containsEntry("discard_ios", 0.0).containsEntry("flush_ios", 0.0)
                    .containsEntry("in_flight", 0.0).containsEntry("read_merges", 0.0);
            assertThat((Double) d.get("w/s")).isPositive();
            assertThat((Double) d.get("w_await")).isPositive();
            assertThat((Double) d.get("p99_ms")).isGreaterThanOrEqualTo((Double) d.get("p50_ms")).isPositive();
        }

        Path scraped = dir.resolve("metrics.txt");
        Tools.ok(30, "curl", "-sf", "-o", scraped.toString(), metricsUrl);
        Tools.Result check = Tools.run(30, "sh", "-c", "promtool check metrics < " + scraped);
        assertThat(check.exit()).as(check.all()).isZero();
        String m = Files.readString(scraped);
        for (String dev : List.of("r0", "l0")) {
            assertThat(m).contains("biostack_device_writes_completed_total{device=\"" + dev + "\"} 1000.0")
                    .contains("biostack_device_reads_completed_total{device=\"" + dev + "\"} 500.0")
                    .contains("biostack_device_written_bytes_total{device=\"" + dev + "\"} 4096000.0")
                    .contains("biostack_device_read_bytes_total{device=\"" + dev + "\"} 2048000.0")
                    .contains("biostack_device_in_flight{device=\"" + dev + "\"} 0.0")
                    .contains("biostack_device_io_latency_seconds_count{device=\"" + dev + "\",op=\"write\"} 1000")
                    .contains("biostack_device_io_latency_seconds_bucket{device=\"" + dev + "\",op=\"read\",le=\"+Inf\"} 500");
        }

        // The export counts the same job by NBD command: one WRITE per 4 KiB written, one READ per read.
        assertThat(m).contains("biostack_export_requests_total{command=\"write\",export=\"l0\"} 1000.0")
                .contains("biostack_export_requests_total{command=\"read\",export=\"l0\"} 500.0")
                .contains("biostack_export_open_connections{export=\"l0\"} 0.0")
                .doesNotContain("biostack_export_errors_total{");

        // Piped, --interval prints one JSON object per sample, --count of them.
        String iv = dm("--control", ctl.toString(), "stats", "l0", "--interval", "0.2", "--count", "2");
        String[] samples = iv.strip().split("\n");
        assertThat(samples).hasSize(2);
        for (String s : samples) {
            Map<String, Object> o = Json.object(s);
            assertThat(o).containsEntry("interval_s", 0.2);
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> ds = (List<Map<String, Object>>) o.get("devices");
            assertThat(ds).singleElement().satisfies(d -> {
                assertThat(d).containsEntry("device", "l0").containsEntry("r/s", 0.0).containsEntry("w/s", 0.0);
            });
        }
    }

    @Test
    void metricsShowABackupViewWhileItLastsAsDmStatsDoes() throws Exception {
        // /metrics read the stack's devices once, at start: a backup view (a device made at run
        // time) was in dm stats and never in /metrics.
        Tools.require("qemu-io", "curl");
        Path stack = dir.resolve("s.stack");
        Path sock = dir.resolve("nbd.sock");
        Path ctl = dir.resolve("ctl.sock");
        Files.writeString(stack, "r0: ram 4M\n");
        List<String> lines = start("--stack", stack.toString(), "--export", "r0", "--listen", "none",
                "--socket", sock.toString(), "--control", ctl.toString(), "--metrics", "127.0.0.1:0");
        String metricsUrl = lines.stream().filter(l -> l.startsWith("metrics: ")).findFirst().orElseThrow().substring(9);
        var dm = (java.util.function.Function<String, io.biostack.stack.ControlServer.Reply>) w -> {
            try {
                return io.biostack.stack.ControlServer.send(ctl, List.of(w.split("\\|")));
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        };
        assertThat(dm.apply("message|r0|bitmap add b0").ok()).isTrue();
        io.biostack.stack.ControlServer.Reply begin = dm.apply("message|r0|backup-begin view bitmap=b0 cow-dir=" + dir);
        assertThat(begin.ok()).as(begin.text()).isTrue();
        Tools.ok(30, "qemu-io", "-f", "raw", "-r", "-c", "read 0 64k", "nbd+unix:///view?socket=" + sock);
        assertThat(dm.apply("stats|view").text()).startsWith("view ");
        assertThat(Tools.ok(30, "curl", "-sf", metricsUrl).out())
                .containsPattern("biostack_device_reads_completed_total\\{device=\"view\"} [1-9]");
        assertThat(dm.apply("message|r0|backup-end view").ok()).isTrue();
        assertThat(Tools.ok(30, "curl", "-sf", metricsUrl).out()).doesNotContain("device=\"view\"")
                .contains("device=\"r0\"");
    }

    @Test
    void withStatsOffDevicesAreServedUncountedAndDmStatsSaysSo() throws Exception {
        Tools.require("qemu-io");
        Path stack = dir.resolve("s.stack");
        Path sock = dir.resolve("nbd.sock");
        Path ctl = dir.resolve("ctl.sock");
        Files.writeString(stack, "r0: ram 4M\n");
        jvmOptions = List.of("-Dbiostack.stats=false");
        start("--stack", stack.toString(), "--export", "r0", "--listen", "none", "--socket", sock.toString(),
                "--control", ctl.toString());
        Tools.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 7 0 64k", "-c", "read -P 7 0 64k", "nbd+unix:///r0?socket=" + sock);
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        PrintStream oldErr = System.err;
        int code;
        try {
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            code = Main.run("dm", "--control", ctl.toString(), "stats");
        } finally {
            System.setErr(oldErr);
        }
        assertThat(code).isEqualTo(1);
        assertThat(err.toString(StandardCharsets.UTF_8)).contains("statistics are off").contains("-Dbiostack.stats=false");
    }

    List<String> jvmOptions = List.of();

    private List<String> start(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED"));
        cmd.addAll(jvmOptions);
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), "io.biostack.cli.Main", "serve"));
        cmd.addAll(List.of(args));
        serve = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        LinkedBlockingQueue<String> q = new LinkedBlockingQueue<>();
        Thread.ofPlatform().daemon(true).start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(serve.getInputStream(), StandardCharsets.UTF_8))) {
                String l;
                while ((l = r.readLine()) != null) {
                    q.add(l);
                }
            } catch (java.io.IOException e) {
                // gone
            }
            q.add("\u0000EOF");
        });
        List<String> lines = new ArrayList<>();
        while (true) {
            String l = q.poll(30, TimeUnit.SECONDS);
            assertThat(l).as("serve printed 'ready' (so far %s)", lines).isNotNull().isNotEqualTo("\u0000EOF");
            lines.add(l);
            if (l.equals("ready")) {
                return lines;
            }
        }
    }

    /** Runs {@code biostack dm ...} in-process; returns what it printed (fails on a non-zero exit). */
    static String dm(String... args) {
        String[] all = new String[args.length + 1];
        all[0] = "dm";
        System.arraycopy(args, 0, all, 1, args.length);
        CliRun r = CliRun.of(all);
        assertThat(r.code()).as("dm %s: %s", String.join(" ", args), r.err()).isZero();
        return r.out();
    }
}
