package io.biostack.cli;

import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A short command runs on a tree of the root and the one subcommand it names (Main#run), for a
 * fast start; what a user sees must be what the whole tree (the one --help, the man pages and the
 * completion come from) would show: the same output, messages and exit codes.
 */
class MainTreeTest {
    private static List<String> names() {
        List<String> names = new ArrayList<>();
        for (Class<?> c : Main.subcommands()) {
            names.add(c.getAnnotation(Command.class).name());
        }
        return names;
    }

    @Test
    void aCommandNamingASubcommandRunsOnTheRootAndThatSubcommandOnly() {
        CommandLine cl = Main.commandLineFor("dm", "--control", "/nonexistent", "ls");
        assertThat(cl.getCommandName()).isEqualTo("biostack");
        assertThat(cl.getSubcommands().keySet()).containsExactly("dm");
        assertThat(Main.commandLineFor("--version").getSubcommands()).isEmpty();
    }

    @Test
    void helpNoArgumentsAndUnknownCommandsGetTheWholeTree() {
        List<String> all = names();
        assertThat(all).contains("bench", "serve", "dm", "replay", "img", "luks", "completion");
        for (String[] args : new String[][] {{}, {"--help"}, {"-h"}, {"dmx"}, {"--version", "dm"}}) {
            assertThat(Main.commandLineFor(args).getSubcommands().keySet()).as(String.join(" ", args))
                    .containsExactlyElementsOf(all);
        }
        CliRun r = CliRun.of("dmx");
        assertThat(r.code()).isEqualTo(2);
        assertThat(r.err()).contains("Unmatched argument at index 0: 'dmx'").contains("Did you mean: biostack dm?");
    }

    @Test
    void everySubcommandsHelpIsTheSameAsOnTheWholeTree() {
        for (String name : names()) {
            CliRun alone = CliRun.of(name, "--help");
            CliRun whole = CliRun.capture(() -> Main.commandLine().execute(name, "--help"));
            // dm has no --help option: it answers with its usage on stderr and exit code 2, on both.
            assertThat(alone.code()).as(name).isEqualTo(whole.code());
            assertThat(alone.out() + alone.err()).as(name).contains("Usage: biostack " + name);
            assertThat(alone.out()).as(name).isEqualTo(whole.out());
            assertThat(alone.err()).as(name).isEqualTo(whole.err());
        }
    }

    @Test
    void usageErrorsInASubcommandAreTheSameAsOnTheWholeTree() {
        for (String[] args : new String[][] {{"dm"}, {"dm", "--bogus"}, {"img", "info"}, {"serve", "--ram"},
                {"luks", "nope"}}) {
            CliRun alone = CliRun.of(args);
            CliRun whole = CliRun.capture(() -> Main.commandLine().execute(args));
            assertThat(alone.code()).as(String.join(" ", args)).isEqualTo(2).isEqualTo(whole.code());
            assertThat(alone.err()).as(String.join(" ", args)).isNotEmpty().isEqualTo(whole.err());
        }
    }

    @Test
    void versionAloneAndOnTheWholeTreePrintTheSameLine() {
        CliRun alone = CliRun.of("--version");
        CliRun whole = CliRun.capture(() -> Main.commandLine().execute("--version"));
        assertThat(alone.code()).isZero();
        assertThat(alone.out()).startsWith("biostack ").isEqualTo(whole.out());
        assertThat(CliRun.of("-V").out()).isEqualTo(alone.out());
    }

    @Test
    void theCompletionScriptCompletesEveryCommandThoughCompletionRunsOnItsOwnTree() {
        CliRun r = CliRun.of("completion", "bash");
        assertThat(r.code()).isZero();
        String script = r.out();
        for (String name : names()) {
            assertThat(script).as(name).contains("biostack_" + name);
        }
        assertThat(script).isEqualTo(picocli.AutoComplete.bash("biostack", Main.commandLine()));
    }
}
