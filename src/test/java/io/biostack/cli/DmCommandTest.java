package io.biostack.cli;

import io.biostack.stack.ControlServer;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
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

    record Run(int code, String out, String err) {
    }

    private Run dm(String... args) {
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            String[] all = new String[args.length + 3];
            all[0] = "dm";
            all[1] = "--control";
            all[2] = sock.toString();
            System.arraycopy(args, 0, all, 3, args.length);
            int code = Main.run(all);
            return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    @Test
    void lsTableAndStatusPrintWhatDmsetupWould() {
        Run ls = dm("ls");
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
    }

    @Test
    void errorsExitNonZeroAndSayWhy() {
        Run r = dm("table", "nosuch");
        assertThat(r.code()).isEqualTo(1);
        assertThat(r.err()).contains("no device 'nosuch'");
        Run bad = dm("reload", "lin", "0 1024 linear nosuch 0");
        assertThat(bad.code()).isEqualTo(1);
        assertThat(bad.err()).contains("'nosuch' is not in the stack");
        Run noServer = dmAt(dir.resolve("absent.sock"), "ls");
        assertThat(noServer.code()).isEqualTo(1);
        assertThat(noServer.err()).contains("can't reach the control socket");
    }

    private Run dmAt(Path other, String... args) {
        Path keep = sock;
        sock = other;
        try {
            return dm(args);
        } finally {
            sock = keep;
        }
    }
}
