package io.biostack.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code biostack} command: bench, serve, dm. */
@Command(name = "biostack", mixinStandardHelpOptions = true, version = "biostack 0.1",
        description = "A block I/O stack for the JVM: loop devices on io_uring, layers, NBD.",
        subcommands = {BenchCommand.class, ServeCommand.class, DmCommand.class, ReplayCommand.class,
            LuksCommand.class})
public final class Main implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    public static void main(String[] args) {
        // One line per log record, "biostack: message" (java.util.logging's default takes two).
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", "biostack: %5$s%6$s%n");
        }
        System.exit(run(args));
    }

    /** Runs the command line and returns the exit code (tests call this). */
    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.registerConverter(SizeArg.class, SizeArg::parse);
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            cmd.getErr().println("biostack: " + (ex.getMessage() == null ? ex.toString() : ex.getMessage()));
            if (System.getenv("BIOSTACK_DEBUG") != null) {
                ex.printStackTrace(cmd.getErr());
            }
            return 1;
        });
        return cl.execute(args);
    }

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }
}
