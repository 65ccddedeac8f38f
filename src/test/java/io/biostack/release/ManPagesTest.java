package io.biostack.release;

import io.biostack.TestEnv;
import io.biostack.cli.CliRun;
import io.biostack.cli.Main;
import io.biostack.cli.ManPages;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The man pages and the completion script the release ships, generated from the command tree:
 * every command has its page, every option its --help lists is on the page, man renders the pages
 * without a warning, and bash parses the completion script.
 */
class ManPagesTest {
    private static final Pattern LONG_OPTION = Pattern.compile("(?<![\\w-])--[a-z][a-z0-9-]*");

    @TempDir
    Path dir;

    /** Every command of the tree (annotations only: the tree a new subcommand joins), depth first. */
    private static List<CommandLine> tree(CommandLine cl, List<CommandLine> out) {
        out.add(cl);
        for (CommandLine sub : cl.getSubcommands().values()) {
            if (!out.contains(sub)) {
                tree(sub, out);
            }
        }
        return out;
    }

    @Test
    void everyCommandHasAPageListingEveryOptionItsHelpLists() {
        Map<String, String> pages = ManPages.pages();
        List<CommandLine> commands = tree(new CommandLine(new Main()), new ArrayList<>());
        assertThat(commands.size()).isGreaterThanOrEqualTo(5);
        for (CommandLine cl : commands) {
            String name = cl.getCommandSpec().qualifiedName("-") + ".1";
            assertThat(pages).as("pages").containsKey(name);
            String page = pages.get(name).replace("\\-", "-");
            Matcher m = LONG_OPTION.matcher(cl.getUsageMessage(CommandLine.Help.Ansi.OFF));
            int options = 0;
            while (m.find()) {
                assertThat(page).as(name + " shows " + m.group()).contains(m.group());
                options++;
            }
            assertThat(options).as(name + ": options in --help").isPositive();
        }
        assertThat(pages).containsKeys("biostack.1", "biostack-serve.1", "biostack-dm.1",
                "biostack-completion.1", "biostack-completion-bash.1");
        assertThat(pages.get("biostack.1")).contains(".SH COMMANDS").contains("biostack\\-serve\\fR(1)");
    }

    @Test
    void manRendersEveryPageWithoutAWarning() throws Exception {
        TestEnv.require(onPath("man"), "man (man-db)");
        for (Map.Entry<String, String> page : ManPages.pages().entrySet()) {
            Path file = dir.resolve(page.getKey());
            Files.writeString(file, page.getValue());
            Result r = exec(List.of("man", "--warnings", "-l", "-P", "cat", file.toString()));
            assertThat(r.code).as(page.getKey() + ": " + r.err).isZero();
            assertThat(r.err).as(page.getKey()).isEmpty();
            assertThat(r.out).contains("NAME").contains("SYNOPSIS");
        }
    }

    @Test
    void completionBashPrintsAScriptBashParsesThatCompletesEveryCommand() throws Exception {
        CliRun run = CliRun.of("completion", "bash");
        assertThat(run.code()).isZero();
        Path script = dir.resolve("biostack");
        Files.writeString(script, run.out());
        Result parsed = exec(List.of("bash", "-n", script.toString()));
        assertThat(parsed.code).as(parsed.err).isZero();
        Result completed = exec(List.of("bash", "-c", ". " + script + "; COMP_WORDS=(biostack ''); COMP_CWORD=1; "
                + "COMP_LINE='biostack '; COMP_POINT=9; _complete_biostack; echo \"${COMPREPLY[@]}\""));
        assertThat(completed.out.split("\\s+")).contains("serve", "dm", "bench", "replay", "completion");
    }

    @Test
    void versionIsTheProjectVersion() throws IOException {
        CliRun run = CliRun.of("--version");
        assertThat(run.code()).isZero();
        String pom = Files.readString(Path.of("pom.xml"));
        Matcher m = Pattern.compile("<artifactId>biostack</artifactId>\\s*<version>([^<]+)</version>").matcher(pom);
        assertThat(m.find()).isTrue();
        assertThat(run.out().strip()).isEqualTo("biostack " + m.group(1));
    }

    private record Result(int code, String out, String err) {
    }

    private Result exec(List<String> cmd) throws Exception {
        Path out = dir.resolve("out.txt");
        Path err = dir.resolve("err.txt");
        Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("timed out: " + cmd);
        }
        return new Result(p.exitValue(), Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8));
    }

    private static boolean onPath(String tool) {
        for (String d : System.getenv().getOrDefault("PATH", "").split(":")) {
            if (Files.isExecutable(Path.of(d, tool))) {
                return true;
            }
        }
        return false;
    }
}
