package io.biostack.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code biostack} command: bench, serve, dm. */
@Command(name = "biostack", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "A block I/O stack for the JVM: loop devices on io_uring, layers, NBD.",
        subcommands = {BenchCommand.class, ServeCommand.class, DmCommand.class, ReplayCommand.class,
                ImgCommand.class, LuksCommand.class})
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
        return commandLine().execute(args);
    }

    /**
     * The whole command tree, as {@link #run} executes it: the man pages and the completion
     * script are generated from this one object, so they list what {@code --help} lists.
     */
    static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Main());
        // Added here rather than in the subcommands list above, which other commands extend.
        cl.addSubcommand(new CompletionCommand());
        cl.registerConverter(SizeArg.class, SizeArg::parse);
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            cmd.getErr().println("biostack: " + (ex.getMessage() == null ? ex.toString() : ex.getMessage()));
            if (System.getenv("BIOSTACK_DEBUG") != null) {
                ex.printStackTrace(cmd.getErr());
            }
            return 1;
        });
        return cl;
    }

    /** {@code biostack --version}: the project's version, filtered into a resource at build time. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"biostack " + version()};
        }

        /** The Maven project version, or "unknown" when the classes were built without resources. */
        static String version() {
            try (var in = Main.class.getResourceAsStream("version.properties")) {
                if (in == null) {
                    return "unknown";
                }
                var p = new java.util.Properties();
                p.load(in);
                return p.getProperty("version", "unknown");
            } catch (java.io.IOException e) {
                return "unknown";
            }
        }
    }

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }
}
