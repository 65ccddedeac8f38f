package io.biostack.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** {@code biostack serve} as a child process of the test's JVM, as a user starts it. */
public final class ServeProcess {
    private ServeProcess() {
    }

    /**
     * Starts {@code biostack serve ARGS...} in {@code dir} with this JVM's class path and waits up
     * to 60 s for its "ready" line (a stack serve prints it); the rest of its output is drained.
     *
     * @param dir  the working directory
     * @param args the arguments after {@code serve}
     * @return the running process (the caller stops it)
     * @throws IOException when it can't start
     */
    public static Process startReady(Path dir, List<String> args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "io.biostack.cli.Main", "serve"));
        cmd.addAll(args);
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        StringBuilder seen = new StringBuilder();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        String l;
        while ((l = r.readLine()) != null && System.nanoTime() < deadline) {
            seen.append(l).append('\n');
            if (l.equals("ready")) {
                Thread.ofPlatform().daemon().start(() -> {
                    try {
                        r.transferTo(java.io.Writer.nullWriter());
                    } catch (IOException e) {
                        // gone
                    }
                });
                return p;
            }
        }
        p.destroyForcibly();
        throw new AssertionError("serve did not get ready: " + seen);
    }
}
