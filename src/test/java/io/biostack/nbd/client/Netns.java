package io.biostack.nbd.client;

import io.biostack.TestEnv;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * A network namespace joined to this one by a veth pair, made for one test and deleted after it
 * (even when the test fails): the remote side of a "real network path" without leaving loopback
 * for any other address. Private addresses 10.251.N.1 (here) and 10.251.N.2 (inside) on a /30,
 * N random per run; names unique per run. Faults: {@link #linkDown()} takes the inside end down
 * (packets vanish, as with a pulled cable; no netem on this kernel).
 */
final class Netns implements AutoCloseable {
    final String ns;
    final String hostDev;
    final String nsDev;
    final String hostAddr;
    final String nsAddr;
    private final List<Process> processes = new ArrayList<>();

    private Netns(String ns, String hostDev, String nsDev, String hostAddr, String nsAddr) {
        this.ns = ns;
        this.hostDev = hostDev;
        this.nsDev = nsDev;
        this.hostAddr = hostAddr;
        this.nsAddr = nsAddr;
    }

    /** Skips (or fails under CI) without root and iproute2. */
    static void require() {
        boolean root = "root".equals(System.getProperty("user.name"));
        TestEnv.require(root, "root (to make network namespaces)");
        TestEnv.require(new File("/usr/sbin/ip").canExecute() || new File("/sbin/ip").canExecute()
                || new File("/usr/bin/ip").canExecute(), "ip (Debian: iproute2)");
    }

    static Netns create() throws Exception {
        int tag = ThreadLocalRandom.current().nextInt(1 << 20);
        int n = ThreadLocalRandom.current().nextInt(256);
        String id = Long.toString(ProcessHandle.current().pid() % 100000, 36) + Integer.toString(tag, 36);
        Netns x = new Netns("bsn" + id, "bsh" + id, "bsp" + id, "10.251." + n + ".1", "10.251." + n + ".2");
        try {
            ip("netns", "add", x.ns);
            ip("link", "add", x.hostDev, "type", "veth", "peer", "name", x.nsDev);
            ip("link", "set", x.nsDev, "netns", x.ns);
            ip("addr", "add", x.hostAddr + "/30", "dev", x.hostDev);
            ip("link", "set", x.hostDev, "up");
            x.inside("ip", "addr", "add", x.nsAddr + "/30", "dev", x.nsDev);
            x.inside("ip", "link", "set", x.nsDev, "up");
            x.inside("ip", "link", "set", "lo", "up");
        } catch (Exception | Error e) {
            x.close();
            throw e;
        }
        return x;
    }

    /** Takes the namespace's end of the link down: packets both ways are dropped. */
    void linkDown() throws Exception {
        inside("ip", "link", "set", nsDev, "down");
    }

    void linkUp() throws Exception {
        inside("ip", "link", "set", nsDev, "up");
    }

    /** Runs a command inside the namespace to completion (10 s at most); fails on a non-zero exit. */
    void inside(String... cmd) throws Exception {
        List<String> c = new ArrayList<>(List.of("ip", "netns", "exec", ns));
        c.addAll(List.of(cmd));
        run(c);
    }

    /**
     * Starts {@code biostack serve ARGS} inside the namespace (this JVM's class path) and waits up
     * to 30 s for its "ready" line. The process is killed at {@link #close} at the latest.
     */
    Process serve(Path log, String... args) throws Exception {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> c = new ArrayList<>(List.of("ip", "netns", "exec", ns, java, "--enable-native-access=ALL-UNNAMED",
                "-cp", System.getProperty("java.class.path"), "io.biostack.cli.Main", "serve"));
        c.addAll(List.of(args));
        Process p = new ProcessBuilder(c).redirectError(log.toFile()).start();
        processes.add(p);
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        StringBuilder said = new StringBuilder();
        Thread reader = Thread.ofPlatform().daemon().start(() -> {
            try {
                for (String l; (l = r.readLine()) != null; ) {
                    synchronized (said) {
                        said.append(l).append('\n');
                    }
                }
            } catch (IOException e) {
                // the process ended
            }
        });
        while (System.nanoTime() < end && p.isAlive()) {
            synchronized (said) {
                if (said.indexOf("ready") >= 0) {
                    return p;
                }
            }
            Thread.sleep(20);
        }
        reader.interrupt();
        p.destroyForcibly();
        throw new AssertionError("biostack serve in " + ns + " did not get ready: " + said);
    }

    /** Kills a server process at once (SIGKILL): a remote host that dies. */
    static void kill(Process p) throws InterruptedException {
        p.destroyForcibly();
        p.waitFor(10, TimeUnit.SECONDS);
    }

    private static void ip(String... args) throws Exception {
        List<String> c = new ArrayList<>();
        c.add("ip");
        c.addAll(List.of(args));
        run(c);
    }

    private static void run(List<String> cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(10, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError(String.join(" ", cmd) + " did not finish");
        }
        if (p.exitValue() != 0) {
            throw new AssertionError(String.join(" ", cmd) + " failed: " + out);
        }
    }

    /** Kills what runs inside, deletes the namespace (its veth end goes with it, and so the pair). */
    @Override
    public void close() {
        for (Process p : processes) {
            p.destroyForcibly();
            try {
                p.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        quiet("ip", "netns", "del", ns);
        quiet("ip", "link", "del", hostDev);
    }

    private static void quiet(String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            p.waitFor(10, TimeUnit.SECONDS);
        } catch (IOException | InterruptedException e) {
            // best effort: the namespace may already be gone
        }
    }
}
