package io.biostack.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code biostack} command with all its subcommands: bench, serve, dm, replay, img, luks
 * (and completion). The root's own options and description are {@link RootCommand}'s; picocli
 * reads a class's {@code @Command} together with its superclass's.
 */
@Command(subcommands = {BenchCommand.class, ServeCommand.class, DmCommand.class, ReplayCommand.class,
        ImgCommand.class, LuksCommand.class})
public final class Main extends RootCommand {
    /**
     * Runs the command line in this JVM and exits with its code.
     *
     * @param args the command line, as {@code bin/biostack} passes it
     */
    public static void main(String[] args) {
        // One line per log record, "biostack: message" (java.util.logging's default takes two).
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", "biostack: %5$s%6$s%n");
        }
        int fast = FastPath.run(args);
        if (fast == FastPath.NOT_HANDLED) {
            // img convert's own fast path. The bio copy's engine threads end with the JVM, hence
            // exit; the kernel's copy leaves only daemon threads, so a success returns, as below.
            int convert = ImgConvert.fastPath(args);
            if (convert == 0 && ImgConvert.endsByReturn()) {
                return;
            }
            if (convert != ImgConvert.NOT_HANDLED) {
                System.exit(convert);
            }
        }
        if (fast == 0) {
            // Returning ends the JVM as System.exit(0) does (the fast path starts no thread),
            // without what System.exit costs first: Runtime.exit asks System.Logger whether to
            // log the exit, which boots java.util.logging (13 ms of CPU on the reference machine).
            return;
        }
        System.exit(fast != FastPath.NOT_HANDLED ? fast : run(args));
    }

    /**
     * Runs the command line and returns the exit code (tests call this).
     *
     * <p>A command that names a subcommand first ({@code biostack dm --control S ls}) runs on a
     * tree of the root and that one subcommand: picocli builds a command's model by reflection
     * over every option of every class in the tree, and for the short commands that scripts call
     * in loops, building the six others cost more than the command itself. The parse and the
     * messages are those of the whole tree, since nothing of the root but its name and its
     * {@code --help}/{@code --version} takes part in them. {@code biostack --version} alone needs
     * no subcommand. Everything else ({@code --help}, no argument, a misspelt command, which picocli
     * answers with the list of commands) gets the whole tree.
     *
     * @param args the command line
     * @return the exit code: 0 on success, 1 when the command failed, 2 on a usage error
     */
    public static int run(String... args) {
        return commandLineFor(args).execute(args);
    }

    /**
     * The tree that runs {@code args}: the root and the one subcommand {@code args[0]} names, the
     * root alone for a bare {@code --version}, or the whole tree.
     */
    static CommandLine commandLineFor(String... args) {
        if (args.length > 0) {
            Class<?> sub = subcommandNamed(args[0]);
            if (sub != null) {
                return configure(new CommandLine(new RootCommand()).addSubcommand(sub));
            }
            if (args.length == 1 && (args[0].equals("--version") || args[0].equals("-V"))) {
                return configure(new CommandLine(new RootCommand()));
            }
        }
        return commandLine();
    }

    /**
     * The whole command tree: the man pages and the completion script are generated from this
     * one object, so they list what {@code --help} lists.
     */
    static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Main());
        // Added here rather than in the subcommands list above, which other commands extend.
        cl.addSubcommand(CompletionCommand.class);
        return configure(cl);
    }

    /** The subcommand classes of the whole tree, in the order {@code --help} lists them. */
    static Class<?>[] subcommands() {
        Class<?>[] listed = Main.class.getAnnotation(Command.class).subcommands();
        Class<?>[] all = java.util.Arrays.copyOf(listed, listed.length + 1);
        all[listed.length] = CompletionCommand.class;
        return all;
    }

    /** The subcommand class whose name or alias is {@code name}, or null. */
    private static Class<?> subcommandNamed(String name) {
        for (Class<?> c : subcommands()) {
            Command cmd = c.getAnnotation(Command.class);
            if (cmd.name().equals(name) || java.util.Arrays.asList(cmd.aliases()).contains(name)) {
                return c;
            }
        }
        return null;
    }

    /** What every tree shares: the size converter and the one-line error handler. */
    private static CommandLine configure(CommandLine cl) {
        cl.registerConverter(SizeArg.class, SizeArg::parse);
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            cmd.getErr().println("biostack: " + message(ex));
            if (System.getenv("BIOSTACK_DEBUG") != null) {
                ex.printStackTrace(cmd.getErr());
            }
            return 1;
        });
        return cl;
    }

    /**
     * What went wrong, in one line. The JDK's file exceptions often carry the path alone
     * ({@code Files.readString} of a missing stack file said "biostack: my.stack"): their kind
     * is said after it.
     */
    static String message(Exception ex) {
        if (ex instanceof java.nio.file.FileSystemException f && f.getReason() == null && f.getFile() != null) {
            String what = switch (f) {
                case java.nio.file.NoSuchFileException n -> "no such file or directory";
                case java.nio.file.AccessDeniedException a -> "permission denied";
                case java.nio.file.FileAlreadyExistsException e -> "already exists";
                case java.nio.file.NotDirectoryException d -> "not a directory";
                default -> f.getClass().getSimpleName();
            };
            return f.getFile() + (f.getOtherFile() == null ? "" : " -> " + f.getOtherFile()) + ": " + what;
        }
        return ex.getMessage() == null ? ex.toString() : ex.getMessage();
    }
}
