package io.biostack.cli;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/** Runs the command line in this JVM, as a user would type it, and keeps what it printed. */
public record CliRun(int code, String out, String err) {
    /**
     * {@code biostack ARGS...}; System.out and System.err are captured for the call (one call at a
     * time: the streams are the JVM's).
     */
    public static CliRun of(String... args) {
        return capture(() -> Main.run(args));
    }

    /**
     * What {@code supplier} printed and returned, with System.out and System.err captured (one
     * call at a time: the streams are the JVM's).
     */
    public static synchronized CliRun capture(java.util.function.IntSupplier supplier) {
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            int code = supplier.getAsInt();
            return new CliRun(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    /** {@code biostack dm --control SOCK ARGS...}. */
    static CliRun dm(java.nio.file.Path sock, String... args) {
        String[] all = new String[args.length + 3];
        all[0] = "dm";
        all[1] = "--control";
        all[2] = sock.toString();
        System.arraycopy(args, 0, all, 3, args.length);
        return of(all);
    }
}
