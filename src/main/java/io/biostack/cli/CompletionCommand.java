package io.biostack.cli;

import picocli.AutoComplete;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/**
 * {@code biostack completion bash}: prints the bash completion script picocli derives from the
 * command tree, so a new subcommand or option completes without anyone editing a script. It asks
 * {@link Main#commandLine()} for the whole tree: the tree this command runs in holds only itself
 * ({@link Main#run} builds the root with the one subcommand named).
 */
@Command(name = "completion", mixinStandardHelpOptions = true,
        description = {"Print a shell completion script.",
                "",
                "Load it in the current shell:  source <(biostack completion bash)",
                "Install it for every shell:    biostack completion bash > /usr/share/bash-completion/completions/biostack"})
final class CompletionCommand {
    @Spec
    CommandSpec spec;

    @Command(name = "bash", mixinStandardHelpOptions = true,
            description = "Print the bash completion script (bash 4 and zsh's bashcompinit read it).")
    void bash() {
        spec.commandLine().getOut().print(AutoComplete.bash("biostack", Main.commandLine()));
        spec.commandLine().getOut().flush();
    }
}
