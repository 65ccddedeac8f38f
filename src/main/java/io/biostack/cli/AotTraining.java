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
 * The training run of the release's ahead-of-time cache (JEP 483/514/515): the release build runs
 * {@code java -XX:AOTCacheOutput=lib/biostack.aot -cp ... io.biostack.cli.AotTraining CONTROL},
 * with {@code biostack serve --control CONTROL} running in another process, and the JVM keeps the
 * classes this run loaded and linked, and the method profiles it gathered, for every later start
 * of {@code bin/biostack}.
 *
 * <p>It runs what scripts call in loops: {@code --version}, help, {@code dm ls}, {@code dm status}
 * and {@code dm table}, {@code img info} on a small qcow2 image and {@code luks dump} on a small
 * LUKS2 volume (both made here, in the control socket's folder). Not {@code serve} itself: the
 * JVM loads every class of the cache when it starts, so serve's classes (the NBD server, FFM, io_uring) would slow every short command down
 * by more than they save serve, which starts once. A command missing here still runs, only its
 * classes load from the jars.
 */
final class AotTraining {
    private AotTraining() {
    }

    /**
     * Runs the training commands and exits.
     *
     * @param args one argument: the control socket of a running {@code biostack serve --stack}
     *     with a device named {@code lin}, in a folder this run may write its images in
     * @throws IOException when the training images cannot be written
     */
    public static void main(String[] args) throws IOException {
        String ctl = args[0];
        Path dir = Path.of(ctl).toAbsolutePath().getParent();
        String img = dir.resolve("train.qcow2").toString();
        String luks = dir.resolve("train.luks").toString();
        String key = dir.resolve("train.key").toString();
        Files.writeString(Path.of(key), "training");
        // A sparse 32 MiB file: room for a LUKS2 header (16 MiB) and some data.
        try (FileChannel f = FileChannel.open(Path.of(luks), StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            f.truncate(0);
            f.write(ByteBuffer.wrap(new byte[1]), (32L << 20) - 1);
        }
        PrintStream out = System.out;
        PrintStream err = System.err;
        PrintStream quiet = new PrintStream(OutputStream.nullOutputStream());
        System.setOut(quiet);
        System.setErr(quiet);
        int failed = 0;
        try {
            for (String[] cmd : new String[][] {
                    {"--version"}, {"--help"}, {"bench", "--help"}, {"serve", "--help"}, {"dm", "--help"},
                    {"completion", "bash"}}) {
                Main.run(cmd);
            }
            // The images img info and luks dump read (a cheap pbkdf2 keyslot: dump reads no keyslot).
            failed += Main.run("img", "create", "-q", "-f", "qcow2", img, "64M") == 0 ? 0 : 1;
            failed += Main.run("luks", "format", luks, "--key-file", key, "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000") == 0 ? 0 : 1;
            for (int i = 0; i < 3; i++) {
                failed += Main.run("img", "info", img) == 0 ? 0 : 1;
                failed += Main.run("luks", "dump", luks) == 0 ? 0 : 1;
                failed += Main.run("dm", "--control", ctl, "ls") == 0 ? 0 : 1;
                failed += Main.run("dm", "--control", ctl, "status", "lin") == 0 ? 0 : 1;
                failed += Main.run("dm", "--control", ctl, "table", "lin") == 0 ? 0 : 1;
            }
        } finally {
            System.setOut(out);
            System.setErr(err);
        }
        if (failed > 0) {
            err.println("biostack: AOT training: " + failed + " commands failed (dm against " + ctl + ")");
            System.exit(1);
        }
        out.println("biostack: AOT training run done");
    }
}
