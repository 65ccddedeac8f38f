package io.biostack.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code biostack} command itself, without its subcommands: its name, {@code --help},
 * {@code --version} and description. {@link Main} adds the subcommands; a short command builds
 * this root with only the one subcommand it runs (see {@link Main#run}), so that it does not pay
 * for the reflection over every other command's options.
 */
@Command(name = "biostack", mixinStandardHelpOptions = true, versionProvider = RootCommand.Version.class,
        description = "A block I/O stack for the JVM: loop devices on io_uring, layers, NBD.")
class RootCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** {@code biostack} alone prints the usage, with the subcommands this tree holds. */
    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    /** {@code biostack --version}: the project's version, filtered into a resource at build time. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"biostack " + version()};
        }

        /** The Maven project version, or "unknown" when the classes were built without resources. */
        static String version() {
            return FastPath.version();
        }
    }
}
