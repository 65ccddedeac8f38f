package io.biostack.cli;

import io.biostack.sys.SocketFiles;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Every unix socket {@code serve} makes (the NBD socket, the control socket) has mode 0600
 * whatever the umask it was started under, or the mode {@code --socket-mode} gives. Each case is
 * a child JVM started by {@code sh -c 'umask U; exec java ...'}; the modes are read with
 * {@code stat}, as an operator would. (serve --metrics listens on TCP only: no socket file.)
 */
@Timeout(120)
class SocketModeTest {
    @TempDir
    Path dir;
    private final List<Process> started = new ArrayList<>();

    @AfterEach
    void kill() throws InterruptedException {
        for (Process p : started) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void socketsAre0600UnderUmask000() throws Exception {
        assertThat(servedModes("000")).containsExactly("600", "600");
    }

    @Test
    void socketsAre0600UnderUmask022() throws Exception {
        assertThat(servedModes("022")).containsExactly("600", "600");
    }

    @Test
    void socketModeGivesTheGroupAccessEvenUnderUmask077() throws Exception {
        assertThat(servedModes("077", "--socket-mode", "0660")).containsExactly("660", "660");
    }

    @Test
    void aBadSocketModeIsRefusedBeforeAnySocketIsMade() {
        Path sock = dir.resolve("nbd.sock");
        for (String bad : List.of("rw", "0999", "1600", "0066")) {
            CliRun r = CliRun.of("serve", "--ram", "1M", "--listen", "none", "--socket", sock.toString(), "--socket-mode", bad);
            assertThat(r.code()).as(bad).isNotZero();
            assertThat(r.err()).as(bad).contains("socket mode '" + bad + "'");
            assertThat(sock).doesNotExist();
        }
    }

    @Test
    void theModeIsSetBeforeTheSocketAppearsAndNoHelperDirectoryIsLeft() throws Exception {
        Path p = dir.resolve("s.sock");
        try (ServerSocketChannel s = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            SocketFiles.bind(p, 0640, at -> {
                assertThat(at).isNotEqualTo(p);
                assertThat(stat(at.getParent())).as("the private directory it is bound in").isEqualTo("700");
                s.bind(UnixDomainSocketAddress.of(at));
            });
            assertThat(stat(p)).isEqualTo("640");
            try (SocketChannel c = SocketChannel.open(UnixDomainSocketAddress.of(p))) {
                assertThat(c.isConnected()).as("the renamed socket still answers").isTrue();
            }
        }
        try (var files = Files.list(dir)) {
            assertThat(files.map(f -> f.getFileName().toString())).containsExactly("s.sock");
        }
        assertThatThrownBy(() -> SocketFiles.parseMode("8")).hasMessageContaining("not an octal mode");
        assertThat(SocketFiles.parseMode("600")).isEqualTo(0600);
        assertThat(SocketFiles.format(0660)).isEqualTo("0660");
    }

    /** Starts serve under {@code umask}, returns the modes of its NBD and control sockets. */
    private List<String> servedModes(String umask, String... extra) throws Exception {
        Path stack = dir.resolve("s.conf");
        Files.writeString(stack, "d: ram 4M\n");
        Path nbd = dir.resolve("nbd.sock");
        Path ctl = dir.resolve("ctl.sock");
        List<String> cmd = new ArrayList<>(List.of("sh", "-c", "umask " + umask + " && exec \"$@\"", "sh",
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "io.biostack.cli.Main", "serve", "--stack", stack.toString(), "--export", "d",
                "--listen", "none", "--socket", nbd.toString(), "--control", ctl.toString()));
        cmd.addAll(List.of(extra));
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).start();
        started.add(p);
        LinkedBlockingQueue<String> out = new LinkedBlockingQueue<>();
        LinkedBlockingQueue<String> err = new LinkedBlockingQueue<>();
        ServeCommandTest.pump(p.getInputStream(), out);
        ServeCommandTest.pump(p.getErrorStream(), err);
        List<String> lines = new ArrayList<>();
        while (true) {
            String l = out.poll(60, TimeUnit.SECONDS);
            assertThat(l).as("serve printed 'ready' (so far: %s, stderr: %s)", lines, err).isNotNull();
            assertThat(l).as("serve exited before 'ready': %s %s", lines, err).isNotEqualTo("\u0000EOF");
            lines.add(l);
            if (l.equals("ready")) {
                break;
            }
        }
        List<String> modes = List.of(stat(nbd), stat(ctl));
        // the owner still reaches both
        assertThat(CliRun.dm(ctl, "ls").code()).isZero();
        try (SocketChannel c = SocketChannel.open(UnixDomainSocketAddress.of(nbd))) {
            ByteBuffer magic = ByteBuffer.allocate(8);
            while (magic.hasRemaining() && c.read(magic) >= 0) {
                // the server speaks first: NBDMAGIC
            }
            assertThat(new String(magic.array(), StandardCharsets.US_ASCII)).isEqualTo("NBDMAGIC");
        }
        p.toHandle().destroy();
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
        return modes;
    }

    /** The mode bits as stat(1) prints them (octal), from the file system, not from Java. */
    private static String stat(Path p) throws IOException {
        Process s = new ProcessBuilder("stat", "-c", "%a", p.toString()).redirectErrorStream(true).start();
        String out = new String(s.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        try {
            assertThat(s.waitFor(10, TimeUnit.SECONDS)).isTrue();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted waiting for stat", e);
        }
        assertThat(s.exitValue()).as(out).isZero();
        return out;
    }
}
