package io.biostack.rbd;

import io.biostack.TestEnv;
import org.junit.jupiter.api.Assertions;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;

/**
 * A throw-away single-node Ceph for the RBD tests, from Debian's ceph-mon, ceph-osd and
 * ceph-common: one monitor and one OSD on memstore, no manager, pool size 1, auth none, the
 * monitor at v2:127.0.0.1:3300. Everything (data, run dir, admin sockets, logs) lives in one
 * private temp folder; the daemons run in the foreground ({@code -f}) as children of the test
 * JVM. The facts behind each setting are in shared/notes/test-services.md; bench/rbd/ceph-single.sh
 * is the same recipe in shell.
 *
 * <p>It starts once per test JVM ({@link #shared()}, about 10 s) and is torn down (daemons
 * killed, folder deleted) when the JVM exits, whatever the tests did. The monitor's port is fixed,
 * so two clusters can't run at once: test classes that use it carry
 * {@code @ResourceLock(CephCluster.LOCK)} and never run in parallel with each other.
 *
 * <p>Where the Ceph packages or librbd are missing, {@link #shared()} skips the calling test
 * locally and fails it under {@code CI=true} ({@link TestEnv#require}). A cluster that does not
 * come up fails the test with the daemons' log tails.
 */
public final class CephCluster {
    /** The JUnit resource lock of every test class that uses the cluster. */
    public static final String LOCK = "ceph-cluster";

    private static CephCluster shared;
    private static Throwable failed;

    private final Path dir;
    private final Path conf;
    private final List<Process> daemons = new ArrayList<>();
    private final AtomicInteger names = new AtomicInteger();

    private CephCluster(Path dir) {
        this.dir = dir;
        this.conf = dir.resolve("ceph.conf");
    }

    /** The cluster of this JVM, started on first use; skips or fails the test when Ceph is missing. */
    public static synchronized CephCluster shared() throws Exception {
        for (String tool : List.of("ceph-mon", "ceph-osd", "ceph", "rbd", "ceph-authtool")) {
            TestEnv.require(which(tool) != null, tool + " (Debian: ceph-mon ceph-osd ceph-common)");
        }
        TestEnv.require(Librbd.available(), "librbd.so.1 (Debian: librbd1)");
        if (failed != null) {
            Assertions.fail("the single-node Ceph did not start (in an earlier test class)", failed);
        }
        if (shared == null) {
            CephCluster c = new CephCluster(Files.createTempDirectory("biostack-ceph-"));
            Runtime.getRuntime().addShutdownHook(new Thread(c::destroy, "ceph-teardown"));
            try {
                c.start();
            } catch (Throwable t) {
                c.destroy();
                failed = t;
                throw t;
            }
            shared = c;
        }
        return shared;
    }

    /** The cluster's ceph.conf, for {@code conf=} and the tools' {@code -c}. */
    public Path conf() {
        return conf;
    }

    /** A fresh image name in pool {@code rbd}, unique in this JVM. */
    public String newImage(String prefix) {
        return prefix + "-" + names.incrementAndGet();
    }

    private void start() throws Exception {
        for (String d : List.of("mon", "osd", "run", "log")) {
            Files.createDirectories(dir.resolve(d));
        }
        Files.writeString(conf, String.join("\n",
                "[global]",
                "fsid = " + UUID.randomUUID(),
                "mon host = v2:127.0.0.1:3300",
                "public addr = 127.0.0.1",
                "auth cluster required = none",
                "auth service required = none",
                "auth client required = none",
                "osd pool default size = 1",
                "osd pool default min size = 1",
                "osd crush chooseleaf type = 0",
                "mon allow pool size one = true",
                "mon warn on pool no redundancy = false",
                // A nearly full test disk must not stop the monitor.
                "mon data avail warn = 1",
                "mon data avail crit = 0",
                "osd objectstore = memstore",
                "memstore device bytes = " + (2L << 30),
                "run dir = " + dir.resolve("run"),
                "admin socket = " + dir.resolve("run") + "/$name.$pid.asok", // clients too: one each
                "log file = " + dir.resolve("log") + "/$name.log",
                "mon cluster log file = " + dir.resolve("log") + "/cluster.log",
                "mon data = " + dir.resolve("mon") + "/$id",
                "osd data = " + dir.resolve("osd") + "/$id",
                "keyring = " + dir.resolve("keyring"),
                // librbd's default cache policy, writearound, completes a write only once the OSD
                // has it, which would make FLUSH and FUA untestable. Writeback with a long dirty
                // age is the case they exist for.
                "[client]",
                "rbd cache policy = writeback",
                "rbd cache writethrough until flush = false",
                "rbd cache max dirty age = 30",
                ""));
        String keyring = dir.resolve("keyring").toString();
        ok(30, "ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *");
        ok(60, "ceph-mon", "--mkfs", "-i", "a", "-c", conf.toString(), "--keyring", keyring);
        if (portInUse(3300)) {
            throw new IllegalStateException("127.0.0.1:3300 is taken: another Ceph monitor (a test run killed earlier?) "
                    + "is running; stop it first");
        }
        daemon("mon", "ceph-mon", "-f", "-i", "a", "-c", conf.toString());
        poll(30, "ceph-mon answering", () -> run(5, "ceph", "-c", conf.toString(), "--connect-timeout", "5", "-s").exit() == 0);
        String id = ok(30, "ceph", "-c", conf.toString(), "osd", "create").out().strip();
        ok(30, "ceph", "-c", conf.toString(), "osd", "crush", "add", "osd." + id, "1", "root=default");
        Files.createDirectories(dir.resolve("osd").resolve(id));
        ok(60, "ceph-osd", "-i", id, "--mkfs", "--no-mon-config", "-c", conf.toString());
        daemon("osd", "ceph-osd", "-f", "-i", id, "-c", conf.toString());
        poll(60, "osd." + id + " up", () -> run(10, "ceph", "-c", conf.toString(), "osd", "dump").out()
                .lines().anyMatch(l -> l.startsWith("osd." + id + " up")));
        ok(60, "ceph", "-c", conf.toString(), "osd", "pool", "create", "rbd", "32", "32");
        ok(60, "rbd", "-c", conf.toString(), "pool", "init", "rbd");
    }

    private void daemon(String what, String... cmd) throws IOException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(dir.resolve("log").resolve(what + ".out").toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        daemons.add(p);
    }

    private static boolean portInUse(int port) {
        try (java.net.Socket s = new java.net.Socket()) {
            s.connect(new java.net.InetSocketAddress("127.0.0.1", port), 200);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    @FunctionalInterface
    private interface Check {
        boolean ok() throws Exception;
    }

    /** Polls every 250 ms, at most {@code seconds}; fails with the daemons' logs. */
    private void poll(int seconds, String what, Check check) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (System.nanoTime() < deadline) {
            for (Process p : daemons) {
                if (!p.isAlive()) {
                    throw new IllegalStateException("a Ceph daemon exited (" + p.exitValue() + ") while waiting for "
                            + what + ":\n" + logs());
                }
            }
            if (check.ok()) {
                return;
            }
            Thread.sleep(250);
        }
        throw new IllegalStateException("no " + what + " after " + seconds + " s:\n" + logs());
    }

    private String logs() {
        StringBuilder b = new StringBuilder();
        try (Stream<Path> s = Files.list(dir.resolve("log"))) {
            for (Path p : s.sorted().toList()) {
                List<String> lines = Files.readAllLines(p, StandardCharsets.ISO_8859_1);
                b.append("--- ").append(p.getFileName()).append('\n');
                lines.subList(Math.max(0, lines.size() - 15), lines.size()).forEach(l -> b.append(l).append('\n'));
            }
        } catch (IOException e) {
            b.append("(logs unreadable: ").append(e.getMessage()).append(")");
        }
        return b.toString();
    }

    /** Kills the daemons and deletes the folder; idempotent. */
    void destroy() {
        for (Process p : daemons) {
            p.destroy();
        }
        for (Process p : daemons) {
            try {
                if (!p.waitFor(5, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                    p.waitFor(5, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        daemons.clear();
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // already gone
        }
    }

    /**
     * Freezes the OSD (SIGSTOP): the cluster stops answering I/O while every connection stays
     * up, as a hung or partitioned OSD looks to a client. Undo with {@link #resumeOsd()} in a
     * finally block: the cluster is shared by every RBD test.
     */
    public void pauseOsd() throws Exception {
        ok(10, "kill", "-STOP", Long.toString(daemons.get(1).pid()));
    }

    public void resumeOsd() throws Exception {
        ok(10, "kill", "-CONT", Long.toString(daemons.get(1).pid()));
    }

    // ---- the Ceph tools ----------------------------------------------------------------------

    /** The result of a command. */
    public record Result(int exit, String out, String err) {
    }

    /** {@code rbd -c CONF ARGS...}; fails the test unless it exits 0. */
    public Result rbd(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("rbd", "-c", conf.toString()));
        cmd.addAll(List.of(args));
        return ok(60, cmd.toArray(String[]::new));
    }

    /** Runs a command to completion, killed after {@code seconds}. */
    public static Result run(int seconds, String... cmd) throws Exception {
        Path out = Files.createTempFile("cmd", ".out");
        Path err = Files.createTempFile("cmd", ".err");
        try {
            Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
            if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                p.waitFor(5, TimeUnit.SECONDS);
                return new Result(-1, Files.readString(out), "timed out after " + seconds + " s\n" + Files.readString(err));
            }
            return new Result(p.exitValue(), Files.readString(out), Files.readString(err));
        } finally {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }

    /** As {@link #run}, failing the test unless it exits 0. */
    public static Result ok(int seconds, String... cmd) throws Exception {
        Result r = run(seconds, cmd);
        if (r.exit() != 0) {
            Assertions.fail(String.join(" ", cmd) + " exited " + r.exit() + ":\n" + r.out() + r.err());
        }
        return r;
    }

    static Path which(String tool) {
        for (String d : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(File.pathSeparator)) {
            Path p = Path.of(d, tool);
            if (Files.isExecutable(p)) {
                return p;
            }
        }
        return null;
    }
}
