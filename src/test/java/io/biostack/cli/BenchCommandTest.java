package io.biostack.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code biostack bench} as a user runs it: sizes with suffixes, JSON and fio-like text. */
class BenchCommandTest {
    @TempDir
    Path dir;

    @Test
    void jsonHasTheFieldsScriptsRead() throws Exception {
        Path f = dir.resolve("b.img");
        CliRun r = CliRun.of("bench", f.toString(), "--rw", "randrw", "--bs", "4k", "--iodepth", "8", "--runtime", "1",
                "--size", "8M", "--engine", "uring", "--json");
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(Files.size(f)).isEqualTo(8L << 20);
        String json = r.out().trim();
        assertThat(json).startsWith("{").endsWith("}");
        for (String key : new String[]{"\"iops\":", "\"bw_bytes\":", "\"lat_ns\":", "\"p50\":", "\"p99\":", "\"p999\":",
                "\"ios\":", "\"errors\":0", "\"engine\":\"uring\"", "\"direct_io\":true"}) {
            assertThat(json).contains(key);
        }
        Matcher m = Pattern.compile("\"ios\":(\\d+)").matcher(json);
        assertThat(m.find()).isTrue();
        assertThat(Long.parseLong(m.group(1))).isPositive();
    }

    @Test
    void textOutputReadsLikeFios() {
        Path f = dir.resolve("t.img");
        CliRun r = CliRun.of("bench", f.toString(), "--rw", "read", "--bs", "64k", "--iodepth", "4", "--runtime", "0.5",
                "--size", "4M", "--engine", "threads", "--direct-io", "off");
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("read: IOPS=", "BW=", "lat (usec):", "50.00th=", "errors=0", "direct-io=off", "threads");
    }

    @Test
    void badOptionsGetAClearMessageAndANonZeroExit() {
        CliRun r = CliRun.of("bench", dir.resolve("x.img").toString(), "--bs", "4q", "--runtime", "1");
        assertThat(r.code()).isNotZero();
        assertThat(r.err()).contains("4q");
        CliRun r2 = CliRun.of("bench", dir.resolve("y.img").toString(), "--size", "1M", "--sector-size", "3000", "--runtime", "1");
        assertThat(r2.code()).isNotZero();
        assertThat(r2.err()).contains("512, 1024, 2048 or 4096");
        CliRun r3 = CliRun.of("bench", dir.resolve("z.img").toString(), "--size", "1M", "--rw", "diagonal", "--runtime", "1");
        assertThat(r3.code()).isNotZero();
        assertThat(r3.err()).contains("--rw");
        CliRun r4 = CliRun.of("bench", dir.resolve("w.img").toString(), "--size", "1M", "--bs", "4G", "--runtime", "1");
        assertThat(r4.code()).isNotZero();
        assertThat(r4.err()).contains("--bs 4 GiB is too large");
    }

    @Test
    void aLoopDeviceOfFourKibSectorsIsMeasured() {
        Path f = dir.resolve("4k.img");
        CliRun r = CliRun.of("bench", f.toString(), "--rw", "randread", "--bs", "4k", "--iodepth", "4", "--runtime", "0.3",
                "--size", "8M", "--sector-size", "4096", "--json");
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("\"errors\":0");
    }

    @Test
    void stackDeviceIsMeasuredByName() throws Exception {
        Path img = dir.resolve("s.img");
        Path stack = dir.resolve("s.stack");
        Files.writeString(stack, "disk0: loop " + img + " size=8M\nlin: linear disk0 1M\n");
        CliRun r = CliRun.of("bench", "--stack", stack.toString(), "--device", "lin", "--rw", "randwrite", "--runtime", "0.5",
                "--iodepth", "4", "--json");
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("\"device\":\"lin\"", "\"errors\":0");
        // A missing stack file was answered with its path alone: "biostack: /tmp/.../absent.stack".
        CliRun absent = CliRun.of("bench", "--stack", dir.resolve("absent.stack").toString(), "--device", "lin");
        assertThat(absent.code()).isEqualTo(1);
        assertThat(absent.err()).isEqualTo("biostack: " + dir.resolve("absent.stack") + ": no such file or directory\n");
        CliRun missing = CliRun.of("bench", "--stack", stack.toString(), "--device", "nope", "--runtime", "0.5");
        assertThat(missing.code()).isNotZero();
        assertThat(missing.err()).contains("nope");
    }

    @Test
    void randomOffsetsFollowTheRandomMapByDefaultAsFiosDoAndNorandommapTurnsItOff() throws Exception {
        Path f = dir.resolve("m.img");
        CliRun byDefault = CliRun.of("bench", f.toString(), "--rw", "randwrite", "--runtime", "0.3", "--size", "8M", "--json");
        assertThat(byDefault.code()).as(byDefault.err()).isZero();
        assertThat(byDefault.out()).contains("\"randommap\":true", "\"errors\":0");
        CliRun off = CliRun.of("bench", f.toString(), "--rw", "randread", "--runtime", "0.3", "--size", "8M",
                "--norandommap");
        assertThat(off.code()).as(off.err()).isZero();
        assertThat(off.out()).contains("norandommap");
        CliRun sequential = CliRun.of("bench", f.toString(), "--rw", "write", "--runtime", "0.3", "--size", "8M", "--json");
        assertThat(sequential.out()).contains("\"randommap\":false");
        CliRun both = CliRun.of("bench", f.toString(), "--runtime", "0.3", "--size", "8M", "--randommap", "--norandommap");
        assertThat(both.code()).isNotZero();
        assertThat(both.err()).contains("--randommap and --norandommap exclude each other");
    }

    @Test
    void iopsLogWritesOneLinePerIntervalWithItsEndAndItsIops() throws Exception {
        Path f = dir.resolve("l.img");
        Path log = dir.resolve("l.iops");
        CliRun r = CliRun.of("bench", f.toString(), "--rw", "randwrite", "--runtime", "1", "--size", "8M",
                "--randommap", "--iops-log", log.toString(), "--log-msec", "200", "--json");
        assertThat(r.code()).as(r.err()).isZero();
        java.util.List<String> lines = Files.readAllLines(log);
        assertThat(lines).hasSizeBetween(4, 6);
        long sum = 0;
        for (int i = 0; i < lines.size(); i++) {
            String[] p = lines.get(i).split(", ");
            assertThat(Long.parseLong(p[0])).isEqualTo(200L * (i + 1));
            sum += Long.parseLong(p[1]) / 5; // IOPS over 200 ms: a fifth of it completed in the interval
        }
        assertThat(sum).isPositive();
        CliRun bad = CliRun.of("bench", f.toString(), "--runtime", "1", "--size", "8M", "--iops-log", log.toString(),
                "--log-msec", "0");
        assertThat(bad.code()).isNotZero();
        assertThat(bad.err()).contains("--log-msec");
    }
}
