package io.biostack.nbd;

import org.junit.jupiter.api.Assertions;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * Runs the real NBD clients (qemu-img, qemu-io, nbdinfo, nbdcopy, nbdfuse, fio) from tests. A
 * missing tool fails the test when {@code CI=true} (CI installs them all) and skips it elsewhere.
 */
public final class Tools {
    private Tools() {
    }

    /** Fails (CI=true) or skips the calling test unless every tool is on the PATH. */
    public static void require(String... tools) {
        for (String t : tools) {
            if (which(t) == null) {
                io.biostack.TestEnv.require(false, t + " (Debian: qemu-utils, libnbd-bin, nbdfuse, fio)");
            }
        }
    }

    static Path which(String tool) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(File.pathSeparator)) {
            Path p = Path.of(dir, tool);
            if (Files.isExecutable(p)) {
                return p;
            }
        }
        return null;
    }

    public record Result(int exit, String out, String err) {
        public String all() {
            return out + err;
        }
    }

    /** Runs a command to completion (killed after {@code seconds}); returns its exit code and output. */
    static Result run(int seconds, List<String> cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        CompletableFuture<String> out = CompletableFuture.supplyAsync(() -> slurp(p.getInputStream()));
        CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> slurp(p.getErrorStream()));
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            Assertions.fail(String.join(" ", cmd) + " did not finish in " + seconds + " s");
        }
        return new Result(p.exitValue(), out.join(), err.join());
    }

    public static Result run(int seconds, String... cmd) throws IOException, InterruptedException {
        return run(seconds, List.of(cmd));
    }

    /** Runs a command and fails the test, with its output, unless it exits 0. */
    public static Result ok(int seconds, String... cmd) throws IOException, InterruptedException {
        Result r = run(seconds, cmd);
        if (r.exit() != 0) {
            Assertions.fail(String.join(" ", cmd) + " exited " + r.exit() + ":\n" + r.all());
        }
        return r;
    }

    private static String slurp(java.io.InputStream in) {
        try (in) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }
}
