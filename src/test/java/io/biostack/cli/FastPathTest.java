package io.biostack.cli;

import io.biostack.stack.ControlServer;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The fast path (FastPath, what {@code bin/biostack} runs for --version, dm and img info without
 * building picocli's model) prints what picocli's path prints, byte for byte, with the same exit
 * code; what it does not recognise it leaves to picocli untouched, having printed nothing.
 */
class FastPathTest {
    @TempDir
    Path dir;
    Stack stack;
    ControlServer server;
    Path sock;

    @BeforeEach
    void start() throws Exception {
        stack = Stack.open("a: ram 1M\nb: ram 1M\nlin: 0 1M linear a 0\nd: dust b 0 4096\n", "t");
        sock = dir.resolve("ctl.sock");
        server = ControlServer.start(stack, sock);
    }

    @AfterEach
    void stop() throws Exception {
        server.close();
        stack.close();
    }

    private static CliRun fast(String... args) {
        return CliRun.capture(() -> FastPath.run(args));
    }

    /** The fast path handles {@code args}, and prints and returns what picocli's path does. */
    private static CliRun assertSameAsPicocli(String... args) {
        CliRun fast = fast(args);
        CliRun picocli = CliRun.of(args);
        String what = String.join(" ", args);
        assertThat(fast.code()).as(what).isNotEqualTo(FastPath.NOT_HANDLED).isEqualTo(picocli.code());
        assertThat(fast.out()).as(what).isEqualTo(picocli.out());
        assertThat(fast.err()).as(what).isEqualTo(picocli.err());
        return fast;
    }

    private String[] dm(String... words) {
        List<String> all = new ArrayList<>(List.of("dm", "--control", sock.toString()));
        all.addAll(List.of(words));
        return all.toArray(String[]::new);
    }

    @Test
    void versionPrintsWhatPicocliPrints() {
        assertThat(assertSameAsPicocli("--version").out()).isEqualTo("biostack " + FastPath.version()
                + System.lineSeparator());
        assertSameAsPicocli("-V");
        assertThat(FastPath.version()).isNotEqualTo("unknown");
    }

    @Test
    void dmAnswersAndRefusalsAreWhatPicocliPrints() {
        assertThat(assertSameAsPicocli(dm("ls")).out()).contains("lin\t1048576\t1 MiB\tmapped running");
        assertThat(assertSameAsPicocli(dm("table", "lin")).out()).isEqualTo("0 2048 linear a 0\n");
        assertSameAsPicocli(dm("status", "d"));
        assertThat(assertSameAsPicocli(dm("status", "d", "--json")).out()).startsWith("{");
        assertSameAsPicocli(dm("status", "--json", "d"));
        assertSameAsPicocli(dm("message", "d", "0", "listbadblocks"));
        assertSameAsPicocli("dm", "--control=" + sock, "ls");
        // refusals: exit 1 and the server's words on stderr
        CliRun nosuch = assertSameAsPicocli(dm("table", "nosuch"));
        assertThat(nosuch.code()).isEqualTo(1);
        assertThat(nosuch.err()).contains("no device 'nosuch'");
        assertThat(assertSameAsPicocli(dm("reload", "lin", "0 1024 linear nosuch 0")).code()).isEqualTo(1);
        assertThat(assertSameAsPicocli(dm("table", "lin")).out()).isEqualTo("0 2048 linear a 0\n");
        CliRun absent = assertSameAsPicocli("dm", "--control", dir.resolve("absent.sock").toString(), "ls");
        assertThat(absent.code()).isEqualTo(1);
        assertThat(absent.err()).contains("can't reach the control socket");
    }

    @Test
    void aDmCommandThatChangesTheStackRunsOnceOnTheFastPath() {
        assertThat(fast(dm("suspend", "lin")).code()).isZero();
        assertThat(CliRun.of(dm("ls")).out()).contains("lin\t1048576\t1 MiB\tmapped suspended");
        assertThat(fast(dm("resume", "lin")).code()).isZero();
        assertThat(CliRun.of(dm("ls")).out()).contains("lin\t1048576\t1 MiB\tmapped running");
    }

    @Test
    void dmStatsOneSampleIsWhatPicocliPrintsBesidesTheTime() {
        for (String[] args : new String[][] {dm("stats"), dm("stats", "lin"), dm("stats", "--json")}) {
            CliRun fast = fast(args);
            CliRun picocli = CliRun.of(args);
            String what = String.join(" ", args);
            assertThat(fast.code()).as(what).isZero().isEqualTo(picocli.code());
            assertThat(fast.out()).as(what).contains("lin");
            // the sample's time stamp (an Instant, first thing printed) and its seconds since the
            // stack started differ between the runs
            String stamp = "\\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z|\"seconds\":[0-9.]+";
            assertThat(fast.out().replaceAll(stamp, "T")).as(what).isEqualTo(picocli.out().replaceAll(stamp, "T"));
            assertThat(fast.err()).as(what).isEqualTo(picocli.err()).isEmpty();
        }
        assertSameAsPicocli(dm("stats", "nosuch"));
    }

    @Test
    void imgInfoPrintsWhatPicocliPrints() throws IOException {
        String img = dir.resolve("small.qcow2").toString();
        String top = dir.resolve("top.qcow2").toString();
        String raw = dir.resolve("disk.raw").toString();
        assertThat(CliRun.of("img", "create", "-q", "-f", "qcow2", img, "64M").code()).isZero();
        assertThat(CliRun.of("img", "create", "-q", "-f", "qcow2", "-b", img, "-F", "qcow2", top).code()).isZero();
        Files.write(Path.of(raw), new byte[8192]);
        assertThat(assertSameAsPicocli("img", "info", img).out()).contains("file format: qcow2")
                .contains("virtual size: 64 MiB (67108864 bytes)");
        assertThat(assertSameAsPicocli("img", "info", "--output", "json", img).out()).contains("\"virtual-size\": 67108864");
        assertSameAsPicocli("img", "info", "--output=json", img);
        assertSameAsPicocli("img", "info", "--output=human", "-f", "qcow2", img);
        assertThat(assertSameAsPicocli("img", "info", "--backing-chain", top).out()).contains("backing file: ");
        assertSameAsPicocli("img", "info", top, "--backing-chain", "--output", "json");
        assertThat(assertSameAsPicocli("img", "info", raw).out()).contains("file format: raw");
    }

    @Test
    void aFailingImgInfoPrintsNothingAndIsLeftToPicocli() {
        String absent = dir.resolve("absent.qcow2").toString();
        CliRun fast = fast("img", "info", absent);
        assertThat(fast.code()).isEqualTo(FastPath.NOT_HANDLED);
        assertThat(fast.out() + fast.err()).isEmpty();
        CliRun picocli = CliRun.of("img", "info", absent);
        assertThat(picocli.code()).isEqualTo(1);
        assertThat(picocli.err()).contains("Could not open '" + absent + "'");
    }

    @Test
    void whatTheFastPathDoesNotKnowIsLeftToPicocliWithNothingPrinted() {
        String s = sock.toString();
        for (String[] args : new String[][] {{}, {"--help"}, {"-h"}, {"--version", "dm"}, {"dmx"},
                {"dm"}, {"dm", "--control"}, {"dm", "--control", s}, {"dm", "--control=", "ls", "lin"},
                {"dm", "--control", s, "ls", "-x"}, {"dm", "--control", s, "--json", "status", "d"},
                {"dm", "--control", s, "ls", "--json"}, {"dm", "--control", s, "stats", "--interval", "1"},
                {"dm", "--control", s, "stats", "--count", "1"}, {"dm", "--control", s, "status", "d", "--json", "--json"},
                {"dm", "--control", s, "table", "@args"}, {"dm", "--control", s, ""}, {"dm", "-h"},
                {"dm", "--bogus", s, "ls"}, {"img", "info"}, {"img", "info", "-h"}, {"img", "info", "a", "b"},
                {"img", "info", "--output", "xml", "a"}, {"img", "info", "--output"}, {"img", "info", "-f"},
                {"img", "info", "-fqcow2", "a"}, {"img", "info", "@args"}, {"img", "info", "-f", "raw", "-f", "raw", "a"},
                {"img", "info", "--output=json", "--output", "json", "a"}, {"img", "check", "a"}, {"luks", "dump", "a"}}) {
            CliRun r = fast(args);
            assertThat(r.code()).as(String.join(" ", args)).isEqualTo(FastPath.NOT_HANDLED);
            assertThat(r.out() + r.err()).as(String.join(" ", args)).isEmpty();
        }
    }

    /**
     * {@code biostack --version} and {@code dm ls} in a JVM of their own, as bin/biostack runs
     * them: the output and exit code of the command, and not one picocli class loaded.
     */
    @Test
    void mainRunsTheFastPathWithoutLoadingPicocli() throws Exception {
        String java = ProcessHandle.current().info().command().orElseThrow();
        for (String[] args : new String[][] {{"--version"}, dm("ls"), {"img", "info", "--output=json", "absent-is-fine-too"}}) {
            List<String> cmd = new ArrayList<>(List.of(java, "-Xlog:class+load=info:file=" + dir.resolve("classes.log"),
                    "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                    "io.biostack.cli.Main"));
            cmd.addAll(List.of(args));
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
            String what = String.join(" ", args);
            String log = Files.readString(dir.resolve("classes.log"));
            assertThat(log).as(what).contains("io.biostack.cli.FastPath");
            if (args[0].equals("img")) {
                // the failing img info goes on to picocli, which says what is wrong, exit 1
                assertThat(p.exitValue()).as(what).isEqualTo(1);
                assertThat(out).as(what).contains("Could not open 'absent-is-fine-too'");
                assertThat(log).as(what).contains("picocli.CommandLine ");
            } else {
                assertThat(p.exitValue()).as(what).isZero();
                assertThat(out).as(what).isEqualTo(CliRun.of(args).out());
                assertThat(log).as(what).doesNotContain("picocli");
            }
        }
    }
}
