package io.biostack.cli;

import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code --help} of every command and subcommand, found by walking the same picocli tree that
 * {@code biostack} runs, so a command added later is covered without touching this test.
 */
class HelpTest {
    /** Every command's path below {@code biostack}, root first ({@code []}, {@code [dm]}, {@code [luks, dump]}...). */
    private static List<List<String>> commandPaths() {
        List<List<String>> paths = new ArrayList<>();
        walk(Main.commandLine(), new ArrayList<>(), paths, 0);
        return paths;
    }

    private static void walk(CommandLine cl, List<String> path, List<List<String>> into, int depth) {
        // picocli trees are finite, but a cycle (a command listing itself) must not hang the test.
        assertThat(depth).as("command tree depth at %s", path).isLessThan(8);
        into.add(List.copyOf(path));
        for (var e : cl.getSubcommands().entrySet()) {
            // Aliases map to the same CommandLine: walk each command once, by its own name.
            if (!e.getKey().equals(e.getValue().getCommandName())) {
                continue;
            }
            path.add(e.getKey());
            walk(e.getValue(), path, into, depth + 1);
            path.removeLast();
        }
    }

    @Test
    void theWalkFindsTheCommandsAndTheirSubcommands() {
        List<List<String>> paths = commandPaths();
        // A test that walked nothing could not fail: pin a few that must be there.
        assertThat(paths).contains(List.of(), List.of("dm"), List.of("serve"), List.of("replay"),
                List.of("luks", "dump"), List.of("img", "info"), List.of("completion", "bash"));
    }

    @Test
    void helpOfEveryCommandPrintsItsUsageAndNoPicocliWarning() {
        // Which commands have a --help option, from one tree (building a tree per command is slow).
        CommandLine tree = Main.commandLine();
        List<List<String>> paths = commandPaths();
        Map<List<String>, Boolean> helpOptions = new HashMap<>();
        for (List<String> path : paths) {
            CommandLine cl = tree;
            for (String name : path) {
                cl = cl.getSubcommands().get(name);
            }
            helpOptions.put(path, cl.getCommandSpec().options().stream()
                    .anyMatch(CommandLine.Model.OptionSpec::usageHelp));
        }
        for (List<String> path : paths) {
            List<String> args = new ArrayList<>(path);
            args.add("--help");
            CliRun run = CliRun.of(args.toArray(String[]::new));
            String line = "biostack " + String.join(" ", args);
            // picocli's tracer writes "[picocli WARN] Could not format ..." to System.err when a
            // description holds a lone '%' (it formats descriptions with String.format).
            assertThat(run.err()).as("stderr of %s", line).doesNotContain("WARN");
            // Commands with a help option print the usage on stdout and exit 0; the others (their
            // required parameters missing) print it on stderr after the error. Either way the
            // text a user reads must be the whole usage, with its own command line in it.
            String usage = "Usage: biostack" + (path.isEmpty() ? "" : " " + String.join(" ", path));
            assertThat(run.out() + run.err()).as("output of %s", line).contains(usage);
            if (helpOptions.get(path)) {
                assertThat(run.code()).as("exit code of %s", line).isZero();
                assertThat(run.out()).as("stdout of %s", line).contains(usage);
            }
        }
    }

    @Test
    void dmHelpShowsThePercentUtilColumnLiterally() {
        CliRun run = CliRun.of("dm", "--help");
        // "%util" in the description must reach the user as "%util", not as a raw "%%util".
        assertThat(run.out() + run.err()).contains(" %util, p50 and p99").doesNotContain("%%util");
    }
}
