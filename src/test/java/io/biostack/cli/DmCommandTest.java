package io.biostack.cli;

import io.biostack.stack.ControlServer;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code biostack dm} against a control server on a running stack. */
class DmCommandTest {
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

    private CliRun dm(String... args) {
        return CliRun.dm(sock, args);
    }

    @Test
    void lsTableAndStatusPrintWhatDmsetupWould() {
        CliRun ls = dm("ls");
        assertThat(ls.code()).isZero();
        assertThat(ls.out()).contains("lin\t1048576\t1 MiB\tmapped running").contains("a\t1048576");
        assertThat(dm("table", "lin").out()).isEqualTo("0 2048 linear a 0\n");
        assertThat(dm("status", "d").out()).isEqualTo("0 2048 dust b bypass verbose\n");
    }

    @Test
    void suspendReloadResumeSwapTheTable() {
        assertThat(dm("suspend", "lin").code()).isZero();
        assertThat(dm("ls").out()).contains("lin\t1048576\t1 MiB\tmapped suspended");
        assertThat(dm("reload", "lin", "0 1024 linear b 0; 1024 1024 zero").code()).isZero();
        assertThat(dm("table", "lin").out()).isEqualTo("0 2048 linear a 0\n");
        assertThat(dm("resume", "lin").code()).isZero();
        assertThat(dm("table", "lin").out()).isEqualTo("0 1024 linear b 0\n1024 1024 zero \n");
    }

    @Test
    void messagesGoToTheTarget() {
        assertThat(dm("message", "d", "addbadblock 7").code()).isZero();
        assertThat(dm("message", "d", "0", "listbadblocks").out()).isEqualTo("7\n");
        // A sector too large for a long was answered 'For input string: "..."' (the JDK's words).
        CliRun huge = dm("message", "d", "99999999999999999999", "listbadblocks");
        assertThat(huge.code()).isEqualTo(1);
        assertThat(huge.err()).isEqualTo("biostack dm: d: no target at sector 99999999999999999999\n");
    }

    @Test
    void aRequestOverTheLimitIsAnsweredAndTheServerGoesOn() {
        // The server closed the socket on the client still writing: 'can't reach the control
        // socket ...: Broken pipe (is `biostack serve --control` running?)', while it ran.
        CliRun big = dm("reload", "lin", "0 1024 linear b 0;".repeat(70_000));
        assertThat(big.code()).isEqualTo(1);
        assertThat(big.err()).isEqualTo("biostack dm: request of more than 1048576 bytes refused\n");
        assertThat(dm("table", "lin").out()).isEqualTo("0 2048 linear a 0\n");
    }

    @Test
    void errorsExitNonZeroAndSayWhy() {
        CliRun r = dm("table", "nosuch");
        assertThat(r.code()).isEqualTo(1);
        assertThat(r.err()).contains("no device 'nosuch'");
        CliRun bad = dm("reload", "lin", "0 1024 linear nosuch 0");
        assertThat(bad.code()).isEqualTo(1);
        assertThat(bad.err()).contains("'nosuch' is not in the stack");
        CliRun noServer = CliRun.dm(dir.resolve("absent.sock"), "ls");
        assertThat(noServer.code()).isEqualTo(1);
        assertThat(noServer.err()).contains("can't reach the control socket");
    }

    @Test
    void aControlPathThatHoldsAFileOrALiveSocketIsRefusedAndLeftAsItIs() throws Exception {
        // The path was deleted whatever it held: a mistyped --control took the user's file with it,
        // and a second serve took over the first one's control socket.
        Path precious = dir.resolve("my.stack");
        java.nio.file.Files.writeString(precious, "a: ram 1M\n");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> ControlServer.start(stack, precious))
                .isInstanceOf(java.io.IOException.class).hasMessageContaining("not a socket");
        assertThat(java.nio.file.Files.readString(precious)).isEqualTo("a: ram 1M\n");

        org.assertj.core.api.Assertions.assertThatThrownBy(() -> ControlServer.start(stack, sock))
                .isInstanceOf(java.io.IOException.class).hasMessageContaining("another server is listening");
        assertThat(dm("table", "lin").out()).as("the first server still answers").isEqualTo("0 2048 linear a 0\n");

        // A socket whose server died is stale: it is replaced.
        Path stale = dir.resolve("stale.sock");
        try (var ch = java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            ch.bind(java.net.UnixDomainSocketAddress.of(stale));
        }
        try (ControlServer second = ControlServer.start(stack, stale)) {
            assertThat(CliRun.dm(stale, "table", "lin").out()).isEqualTo("0 2048 linear a 0\n");
        }
    }
}
