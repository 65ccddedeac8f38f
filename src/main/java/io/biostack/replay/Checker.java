package io.biostack.replay;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/**
 * Runs the user's check command on a crash state, with every {@code {}} replaced by the (quoted)
 * path of the state. Exit status 0 means consistent. The output (stdout and stderr together) goes
 * to a file, so a chatty checker never blocks on a full pipe; its last 4 KiB are kept for the
 * report. A checker still running after the timeout is killed with its children and counts as a
 * failure that says so.
 *
 * <h2>Started by a shell that stays</h2>
 * Each run is a subshell of a long-lived {@code /bin/sh} (one per checker running at once): the
 * shell reads {@code ( eval 'CMD' ) >OUT 2>&1 </dev/null &}, says the subshell's pid, waits for it
 * and says its exit status. That costs one fork of a small shell, where starting {@code sh -c CMD}
 * from the JVM costs a posix_spawn of the JDK's jspawnhelper, its exec of {@code sh}, and that
 * shell's start (measured here: 0.5-1.2 ms against 2.7-9 ms a run, on a loaded 2-core VM; the
 * whole check, two e2fsck runs, is 10-12 ms). It is also what the loop a script would write
 * costs. The command runs as under {@code sh -c} (a syntax error is its own exit status 2, and
 * changes nothing in the shell that started it), except that {@code $$} is that shell's pid.
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
    /** Shells with no run under way. */
    private final java.util.ArrayDeque<Shell> idle = new java.util.ArrayDeque<>();
    private final java.util.List<Shell> shells = new java.util.ArrayList<>();
    /** Kills a run at its deadline: one daemon thread, started on first use. */
    private java.util.concurrent.ScheduledThreadPoolExecutor killer;

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

    /** A {@code /bin/sh} that starts runs for us: commands on its stdin, pid and exit status on its stdout. */
    private static final class Shell {
        final Process process;
        final java.io.Writer in;
        final java.io.BufferedReader out;

        Shell() throws IOException {
            process = new ProcessBuilder("/bin/sh")
                    .redirectError(ProcessBuilder.Redirect.DISCARD)
                    .start();
            in = new java.io.OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8);
            out = new java.io.BufferedReader(new java.io.InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
        }

        String line() throws IOException {
            String l = out.readLine();
            if (l == null) {
                throw new IOException("the shell that starts checkers exited (" + (process.isAlive() ? "closed its output" : "status " + process.exitValue()) + ")");
            }
            return l;
        }

        void close() {
            try {
                in.close();
            } catch (IOException e) {
                // it is going anyway
            }
            process.destroy();
        }
    }

    /** A checker started and not yet waited for; each one writes its own output file. */
    final class Running {
        final Shell shell;
        /** The subshell running the command. */
        final ProcessHandle process;
        final long deadline;
        final Path out;

        Running(Shell shell, ProcessHandle process, long deadline, Path out) {
            this.shell = shell;
            this.process = process;
            this.deadline = deadline;
            this.out = out;
        }

        /** Kills the command and everything it started. */
        void kill() {
            if (process == null) {
                return; // gone before we looked it up: nothing to kill
            }
            process.descendants().forEach(ProcessHandle::destroyForcibly);
            process.destroyForcibly();
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
        Shell sh = idle.pollFirst();
        if (sh == null) {
            sh = new Shell();
            shells.add(sh);
        }
        sh.in.write("( eval " + quote(cmd) + "\n) >" + quote(out.toString()) + " 2>&1 </dev/null &\necho $!\nwait $!\necho $?\n");
        sh.in.flush();
        String pid = sh.line();
        ProcessHandle p;
        try {
            p = ProcessHandle.of(Long.parseLong(pid.trim())).orElse(null);
        } catch (NumberFormatException e) {
            throw new IOException("the shell that starts checkers said '" + pid + "' for a pid");
        }
        return new Running(sh, p, System.nanoTime() + timeout.toNanos(), out);
    }

    /** Waits for a started checker until its deadline; kills it and its children past that. */
    Result finish(Running r) throws IOException, InterruptedException {
        java.util.concurrent.atomic.AtomicBoolean killed = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.ScheduledFuture<?> k = null;
        if (r.process != null) {
            if (killer == null) {
                killer = new java.util.concurrent.ScheduledThreadPoolExecutor(1, t -> {
                    Thread th = new Thread(t, "replay-checker-timeout");
                    th.setDaemon(true);
                    return th;
                });
                killer.setRemoveOnCancelPolicy(true);
            }
            k = killer.schedule(() -> {
                killed.set(true);
                r.kill();
            }, Math.max(0, r.deadline - System.nanoTime()), java.util.concurrent.TimeUnit.NANOSECONDS);
        }
        String status = r.shell.line();
        if (k != null) {
            k.cancel(false);
        }
        idle.addFirst(r.shell);
        boolean timedOut = killed.get();
        int exit;
        try {
            exit = Integer.parseInt(status.trim());
        } catch (NumberFormatException e) {
            throw new IOException("the shell that starts checkers said '" + status + "' for an exit status");
        }
        String out = tail(r.out);
        if (timedOut) {
            return new Result(false, -1, true, out + (out.isEmpty() || out.endsWith("\n") ? "" : "\n")
                    + "(killed after " + timeout.toMillis() + " ms)");
        }
        return new Result(exit == 0, exit, false, out);
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
        for (Shell sh : shells) {
            sh.close();
        }
        if (killer != null) {
            killer.shutdownNow();
        }
        Files.deleteIfExists(outFile);
        for (Path p : extra) {
            Files.deleteIfExists(p);
        }
    }
}
