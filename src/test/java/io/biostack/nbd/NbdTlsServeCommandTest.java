package io.biostack.nbd;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code biostack serve}'s TLS flags as a user runs them, in a child JVM: credentials alone mean
 * --tls require, the printed URIs are nbds://, the one-line warning for plain text on a
 * non-loopback address, and clear errors for flags that don't go together.
 */
@Timeout(60)
class NbdTlsServeCommandTest {
    @TempDir
    static Path keys;
    static TlsFixture tls;
    @TempDir
    Path dir;
    final List<Process> started = new ArrayList<>();

    @BeforeAll
    static void credentials() throws Exception {
        tls = TlsFixture.create(keys);
    }

    @AfterEach
    void kill() throws InterruptedException {
        for (Process p : started) {
            p.destroy();
            if (!p.waitFor(10, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
        }
    }

    /** Starts serve; returns its stdout lines up to "ready" (stderr merged), or all if it exits. */
    List<String> serve(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "io.biostack.cli.Main", "serve"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        started.add(p);
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        List<String> lines = new ArrayList<>();
        for (String l = r.readLine(); l != null; l = r.readLine()) {
            lines.add(l);
            if (l.equals("ready")) {
                Thread.ofVirtual().start(() -> {
                    try {
                        r.transferTo(java.io.Writer.nullWriter());
                    } catch (java.io.IOException e) {
                        // stopped
                    }
                });
                break;
            }
        }
        return lines;
    }

    @Test
    void pskAloneMeansRequireAndPrintsNbdsUris() throws Exception {
        Tools.require("nbdinfo");
        Path sock = dir.resolve("s.sock");
        List<String> out = serve("--ram", "16M", "--socket", sock.toString(), "--tls-psk", tls.psk.toString());
        assertThat(out).contains("ready");
        assertThat(String.join("\n", out)).contains("nbds+unix:///?socket=" + sock).contains("tls-psk-file=");
        Tools.ok(30, "nbdinfo", "nbds+unix://alice@/?socket=" + sock + "&tls-psk-file=" + tls.psk);
        assertThat(Tools.run(30, "nbdinfo", "nbd+unix:///?socket=" + sock).exit()).as("plain client").isNotZero();
    }

    @Test
    void plainTextOnANonLoopbackAddressWarnsInOneLine() throws Exception {
        List<String> out = serve("--ram", "16M", "--listen", "0.0.0.0:0");
        assertThat(out).contains("ready");
        assertThat(out.stream().filter(l -> l.contains("without TLS"))).singleElement().asString()
                .contains("warning").contains("0.0.0.0");
        List<String> loop = serve("--ram", "16M", "--listen", "127.0.0.1:0");
        assertThat(loop).noneMatch(l -> l.contains("without TLS"));
    }

    @Test
    void flagsThatDontGoTogetherAreRefusedClearly() throws Exception {
        assertThat(serve("--ram", "16M", "--listen", "127.0.0.1:0", "--tls", "require"))
                .anyMatch(l -> l.contains("needs --tls-certificates DIR or --tls-psk FILE"));
        assertThat(serve("--ram", "16M", "--listen", "127.0.0.1:0", "--tls-verify-peer"))
                .anyMatch(l -> l.contains("--tls-verify-peer needs --tls-certificates"));
        assertThat(serve("--ram", "16M", "--listen", "127.0.0.1:0", "--tls-certificates", dir.toString()))
                .anyMatch(l -> l.contains("server-cert.pem: no such file"));
        assertThat(serve("--ram", "16M", "--listen", "127.0.0.1:0", "--handshake-timeout", "soon"))
                .anyMatch(l -> l.contains("want a duration such as 10s or 500ms"));
    }
}
