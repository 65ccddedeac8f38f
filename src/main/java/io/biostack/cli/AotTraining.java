package io.biostack.cli;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * The training runs of the release's two ahead-of-time caches (JEP 483/514/515). The release
 * build runs {@code java -XX:AOTCacheOutput=CACHE -cp CLASSPATH io.biostack.cli.AotTraining MODE
 * CONTROL} with {@code biostack serve --control CONTROL} running in another process (a stack with a
 * device named {@code lin}), and the JVM keeps the classes the run loaded and linked, and the
 * method profiles it gathered, for every later start of {@code bin/biostack} with that cache.
 *
 * <ul>
 * <li>{@code fast} (lib/short.aot, on the launcher's short class path): what {@link FastPath}
 *     runs, {@code --version}, {@code dm} ls, status, table, stats and a refusal, {@code img info}
 *     on a qcow2 and a raw image, human and JSON. Nothing of picocli: the JVM loads every class of
 *     a cache when it starts, so what the fast path never needs would slow it down.</li>
 * <li>{@code full} (lib/biostack.aot, on the whole class path): the other short commands through
 *     picocli, help, {@code completion bash}, {@code luks dump} on a small LUKS2 volume (made here,
 *     with a cheap pbkdf2 keyslot). Not {@code serve} itself: serve's classes (the NBD server, FFM,
 *     io_uring) would slow every short command down by more than they save serve, which starts
 *     once.</li>
 * </ul>
 *
 * A command missing here still runs; only its classes load from the jars.
 */
final class AotTraining {
    private AotTraining() {
    }

    /**
     * Runs the training commands and exits.
     *
     * @param args {@code fast} or {@code full}, then the control socket of a running
     *     {@code biostack serve --stack} with a device named {@code lin}, in a folder this run may
     *     write its images in; {@code fast} reads {@code train.qcow2} there, which the release
     *     script makes first
     * @throws IOException when the training images cannot be written
     */
    public static void main(String[] args) throws IOException {
        String mode = args[0];
        String ctl = args[1];
        Path dir = Path.of(ctl).toAbsolutePath().getParent();
        PrintStream out = System.out;
        PrintStream err = System.err;
        PrintStream quiet = new PrintStream(OutputStream.nullOutputStream());
        System.setOut(quiet);
        System.setErr(quiet);
        int failed;
        try {
            failed = switch (mode) {
                case "fast" -> fast(dir, ctl);
                case "full" -> full(dir, ctl);
                default -> throw new IllegalArgumentException("mode is fast or full, not " + mode);
            };
        } finally {
            System.setOut(out);
            System.setErr(err);
        }
        if (failed > 0) {
            err.println("biostack: AOT training (" + mode + "): " + failed + " commands failed (dm against " + ctl + ")");
            System.exit(1);
        }
        out.println("biostack: AOT training run (" + mode + ") done");
    }

    /** The fast path's commands; returns how many failed. */
    private static int fast(Path dir, String ctl) throws IOException {
        String img = dir.resolve("train.qcow2").toString();
        Path raw = dir.resolve("train.raw");
        try (FileChannel f = FileChannel.open(raw, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            f.truncate(0);
            f.write(ByteBuffer.wrap(new byte[4096]), 0);
        }
        int failed = 0;
        try {
            // bin/biostack starts Main, which calls FastPath: Main and RootCommand belong in the cache
            Class.forName(Main.class.getName());
        } catch (ClassNotFoundException e) {
            throw new AssertionError(e);
        }
        for (int i = 0; i < 3; i++) {
            failed += fastOk("--version");
            failed += fastOk("img", "info", img);
            failed += fastOk("img", "info", "--output=json", img);
            failed += fastOk("img", "info", raw.toString());
            failed += fastOk("dm", "--control", ctl, "ls");
            failed += fastOk("dm", "--control", ctl, "status", "lin");
            failed += fastOk("dm", "--control", ctl, "status", "lin", "--json");
            failed += fastOk("dm", "--control", ctl, "table", "lin");
            failed += fastOk("dm", "--control", ctl, "stats");
            failed += fastOk("dm", "--control", ctl, "stats", "--json");
            // a refusal (no such device): exit 1, said on stderr
            failed += FastPath.run(new String[] {"dm", "--control", ctl, "table", "nosuch"}) == 1 ? 0 : 1;
        }
        return failed;
    }

    private static int fastOk(String... args) {
        return FastPath.run(args) == 0 ? 0 : 1;
    }

    /** The commands that go through picocli; returns how many failed. */
    private static int full(Path dir, String ctl) throws IOException {
        String luks = dir.resolve("train.luks").toString();
        String key = dir.resolve("train.key").toString();
        Files.writeString(Path.of(key), "training");
        // A sparse 32 MiB file: room for a LUKS2 header (16 MiB) and some data.
        try (FileChannel f = FileChannel.open(Path.of(luks), StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            f.truncate(0);
            f.write(ByteBuffer.wrap(new byte[1]), (32L << 20) - 1);
        }
        for (String[] cmd : new String[][] {
                {"--help"}, {"bench", "--help"}, {"serve", "--help"}, {"dm", "--help"}, {"completion", "bash"}}) {
            Main.run(cmd);
        }
        int failed = 0;
        // a cheap pbkdf2 keyslot: dump reads no keyslot
        failed += Main.run("luks", "format", luks, "--key-file", key, "--pbkdf", "pbkdf2",
                "--pbkdf-force-iterations", "1000") == 0 ? 0 : 1;
        for (int i = 0; i < 3; i++) {
            failed += Main.run("luks", "dump", luks) == 0 ? 0 : 1;
        }
        return failed;
    }
}
