package io.biostack.cli;

import java.io.OutputStream;
import java.io.PrintStream;

/**
 * The training run of the release's ahead-of-time cache (JEP 483/514/515): the release build runs
 * {@code java -XX:AOTCacheOutput=lib/biostack.aot -cp ... io.biostack.cli.AotTraining CONTROL},
 * with {@code biostack serve --control CONTROL} running in another process, and the JVM keeps the
 * classes this run loaded and linked, and the method profiles it gathered, for every later start
 * of {@code bin/biostack}.
 *
 * <p>It runs what scripts call in loops: {@code --version}, help, {@code dm ls}, {@code dm status}
 * and {@code dm table}. Not {@code serve} itself: the JVM loads every class of the cache when it
 * starts, so serve's classes (the NBD server, FFM, io_uring) would slow every short command down
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
     *     with a device named {@code lin}
     */
    public static void main(String[] args) {
        String ctl = args[0];
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
            for (int i = 0; i < 3; i++) {
                failed += Main.run("dm", "--control", ctl, "ls") == 0 ? 0 : 1;
                failed += Main.run("dm", "--control", ctl, "status", "lin") == 0 ? 0 : 1;
                failed += Main.run("dm", "--control", ctl, "table", "lin") == 0 ? 0 : 1;
            }
        } finally {
            System.setOut(out);
            System.setErr(err);
        }
        if (failed > 0) {
            err.println("biostack: AOT training: " + failed + " dm commands failed against " + ctl);
            System.exit(1);
        }
        out.println("biostack: AOT training run done");
    }
}
