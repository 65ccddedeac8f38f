package io.biostack.cli;

import io.biostack.block.stats.Json;
import io.biostack.stack.ControlServer;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code biostack dm stats} against a control server on a stack in this JVM. */
@Timeout(60)
class DmStatsTest {
    @TempDir
    Path dir;
    Stack stack;
    ControlServer server;
    Path sock;

    @BeforeEach
    void start() throws Exception {
        stack = Stack.open("a: ram 1M\nlin: linear a 0\n", "t");
        sock = dir.resolve("ctl.sock");
        server = ControlServer.start(stack, sock);
    }

    @AfterEach
    void stop() throws Exception {
        server.close();
        stack.close();
    }

    private CliRun dm(String... args) {
        return CliRun.dm(sock, args);
    }

    @Test
    void theTableHasIostatColumnsAndOneLinePerDevice() {
        try (Arena a = Arena.ofConfined()) {
            stack.device("lin").write(0, a.allocate(8192, 4096)).join();
        }
        CliRun r = dm("stats");
        assertThat(r.code()).as(r.err()).isZero();
        List<String> lines = r.out().lines().toList();
        assertThat(lines.get(1)).contains("Device", "r/s", "w/s", "rkB/s", "wkB/s", "r_await", "w_await", "aqu-sz", "%util", "p50", "p99");
        assertThat(lines.get(2)).startsWith("a ");
        assertThat(lines.get(3)).startsWith("lin ");
    }

    @Test
    void jsonForOneDeviceCarriesTheStatFields() {
        try (Arena a = Arena.ofConfined()) {
            stack.device("lin").write(0, a.allocate(8192, 4096)).join();
            stack.device("lin").read(0, a.allocate(4096, 4096)).join();
        }
        CliRun r = dm("stats", "lin", "--json");
        assertThat(r.code()).as(r.err()).isZero();
        Map<String, Object> j = Json.object(r.out().strip());
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> ds = (List<Map<String, Object>>) j.get("devices");
        assertThat(ds).singleElement().satisfies(d -> {
            assertThat(d).containsEntry("device", "lin").containsKeys("r/s", "w/s", "rkB/s", "wkB/s", "r_await",
                    "w_await", "aqu-sz", "util", "p50_ms", "p99_ms");
            @SuppressWarnings("unchecked")
            Map<String, Object> st = (Map<String, Object>) d.get("stat");
            assertThat(st).containsEntry("write_ios", 1.0).containsEntry("write_sectors", 16.0)
                    .containsEntry("read_ios", 1.0).containsEntry("read_sectors", 8.0);
            assertThat(st.keySet()).hasSize(17);
        });
    }

    @Test
    void intervalSamplesCoverOnlyTheirInterval() throws Exception {
        try (Arena a = Arena.ofConfined()) {
            stack.device("a").write(0, a.allocate(4096, 4096)).join(); // before the first sample: not in any interval
        }
        CliRun r = dm("stats", "a", "--interval", "0.1", "--count", "3");
        assertThat(r.code()).as(r.err()).isZero();
        List<String> lines = r.out().lines().toList();
        assertThat(lines).hasSize(3);
        for (String l : lines) {
            Map<String, Object> o = Json.object(l);
            @SuppressWarnings("unchecked")
            Map<String, Object> d = ((List<Map<String, Object>>) o.get("devices")).getFirst();
            assertThat(d).containsEntry("w/s", 0.0);
            assertThat((Double) d.get("seconds")).isBetween(0.05, 5.0);
        }
    }

    @Test
    void onATerminalTheIntervalTableRefreshesInPlace() throws Exception {
        io.biostack.nbd.Tools.require("script"); // util-linux: runs the command on a pseudo-terminal
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cmd = java + " -cp " + System.getProperty("java.class.path") + " io.biostack.cli.Main dm --control " + sock
                + " stats --interval 0.1 --count 2";
        io.biostack.nbd.Tools.Result r = io.biostack.nbd.Tools.ok(60, "script", "-qec", cmd, "/dev/null");
        String out = r.out();
        assertThat(out).as(out).contains("\033[H\033[2J").contains("r_await").doesNotContain("{\"time\"");
        assertThat(out.split("\033\\[H\033\\[2J", -1)).as("cleared once per sample").hasSize(3);
    }

    @Test
    void mistakesAreRefusedWithAReason() {
        CliRun unknown = dm("stats", "nosuch");
        assertThat(unknown.code()).isEqualTo(1);
        assertThat(unknown.err()).contains("no device 'nosuch'").contains("a, lin");
        CliRun misplaced = dm("ls", "--json");
        assertThat(misplaced.code()).isEqualTo(2);
        assertThat(misplaced.err()).contains("go with 'stats'");
        CliRun badInterval = dm("stats", "--interval", "0");
        assertThat(badInterval.code()).isEqualTo(2);
        assertThat(badInterval.err()).contains("positive");
        CliRun twoNames = dm("stats", "a", "lin");
        assertThat(twoNames.code()).isEqualTo(1);
        assertThat(twoNames.err()).contains("at most one device");
    }
}
