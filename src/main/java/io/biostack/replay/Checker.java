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
    private final String recover;
    private final Duration timeout;
    private final Path outFile;
    private int runs;
    private final java.util.List<Path> extra = new java.util.ArrayList<>();

    /** {@code recover}: run before {@code command} on the states that ask for it (null: none). */
    Checker(String command, String recover, Duration timeout, Path dir) throws IOException {
        this.command = command;
        this.recover = recover;
        this.timeout = timeout;
        this.outFile = Files.createTempFile(dir, "replay-check", ".out");
    }

    int runs() {
        return runs;
    }

    /** A checker started and not yet waited for; each one writes its own output file. */
    final class Running {
        final Process process;
        final long deadline;
        final Path out;

        Running(Process process, long deadline, Path out) {
            this.process = process;
            this.deadline = deadline;
            this.out = out;
        }
    }

    /** Runs the checker on {@code state} and waits for it; with the recovery first when {@code recovering}. */
    Result run(Path state, boolean recovering) throws IOException, InterruptedException {
        return finish(start(state, outFile, recovering));
    }

    /**
     * Starts the checker on {@code state}, its output going to {@code out}; see {@link #finish}.
     * With {@code recovering} (and a recovery command), the recovery runs first, its exit status
     * ignored: the check judges what it left.
     */
    Running start(Path state, Path out, boolean recovering) throws IOException {
        runs++;
        String q = quote(state.toString());
        String cmd = recovering && recover != null
                ? "{ " + recover.replace("{}", q) + "\n}; " + command.replace("{}", q)
                : command.replace("{}", q);
        Process p = new ProcessBuilder("/bin/sh", "-c", cmd)
                .redirectErrorStream(true)
                .redirectOutput(out.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                .start();
        return new Running(p, System.nanoTime() + timeout.toNanos(), out);
    }

    /** Waits for a started checker until its deadline; kills it and its children past that. */
    Result finish(Running r) throws IOException, InterruptedException {
        Process p = r.process;
        boolean done = p.waitFor(Math.max(0, r.deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
        if (!done) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
        String out = tail(r.out);
        if (!done) {
            return new Result(false, -1, true, out + (out.isEmpty() || out.endsWith("\n") ? "" : "\n")
                    + "(killed after " + timeout.toMillis() + " ms)");
        }
        return new Result(p.exitValue() == 0, p.exitValue(), false, out);
    }

    /** A fresh output file for a parallel slot, deleted by {@link #close()}. */
    Path newOutFile() throws IOException {
        Path p = Files.createTempFile(outFile.getParent(), "replay-check", ".out");
        extra.add(p);
        return p;
    }

    private static String tail(Path outFile) throws IOException {
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
        for (Path p : extra) {
            Files.deleteIfExists(p);
        }
    }
}
