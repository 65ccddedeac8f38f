package io.biostack.replay;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * Runs the user's check command on a crash state: {@code sh -c CMD} with every {@code {}} replaced
 * by the (quoted) path of the state. Exit status 0 means consistent. The output (stdout and stderr
 * together) goes to a file, so a chatty checker never blocks on a full pipe; its last 4 KiB are
 * kept for the report. A checker still running after the timeout is killed with its children and
 * counts as a failure that says so.
 */
final class Checker {
    static final int KEEP = 4096;

    /** What one run said. */
    record Result(boolean ok, int exit, boolean timedOut, String output) {
        String reason() {
            return timedOut ? "checker timed out" : "checker exited " + exit;
        }
    }

    private final String command;
    private final Duration timeout;
    private final Path outFile;
    private int runs;

    Checker(String command, Duration timeout, Path dir) throws IOException {
        this.command = command;
        this.timeout = timeout;
        this.outFile = Files.createTempFile(dir, "replay-check", ".out");
    }

    int runs() {
        return runs;
    }

    Result run(Path state) throws IOException, InterruptedException {
        runs++;
        String cmd = command.replace("{}", quote(state.toString()));
        Process p = new ProcessBuilder("/bin/sh", "-c", cmd)
                .redirectErrorStream(true)
                .redirectOutput(outFile.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                .start();
        boolean done = p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
        if (!done) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
        String out = tail();
        if (!done) {
            return new Result(false, -1, true, out + (out.isEmpty() || out.endsWith("\n") ? "" : "\n")
                    + "(killed after " + timeout.toMillis() + " ms)");
        }
        return new Result(p.exitValue() == 0, p.exitValue(), false, out);
    }

    private String tail() throws IOException {
        long n = Files.size(outFile);
        byte[] all;
        try (var ch = java.nio.channels.FileChannel.open(outFile)) {
            int keep = (int) Math.min(n, KEEP);
            java.nio.ByteBuffer bb = java.nio.ByteBuffer.allocate(keep);
            ch.read(bb, n - keep);
            all = bb.array();
        }
        return new String(all, StandardCharsets.UTF_8);
    }

    /** Single quotes for sh: 'it'\''s'. */
    static String quote(String s) {
        return "'" + s.replace("'", "'\\''") + "'";
    }

    void close() throws IOException {
        Files.deleteIfExists(outFile);
    }
}
