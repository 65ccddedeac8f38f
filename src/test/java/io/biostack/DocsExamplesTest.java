package io.biostack;

import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Runs every shell example in {@code docs/} marked runnable (a fenced block whose info string is
 * {@code sh runnable}, see docs/README.md), each in an empty folder of its own with
 * {@code biostack} on the PATH running this build, so the docs cannot rot. A block passes when
 * bash ({@code -e -u -o pipefail}) runs it to exit 0 within a minute; whatever it left running
 * is killed with its process group.
 */
class DocsExamplesTest {
    static final String MARKER = "```sh runnable";
    static final int TIMEOUT_S = 60;

    @TempDir
    static Path tmp;

    record Example(Path file, int line, String script) {
    }

    /** The runnable blocks of every page under docs/, in file order. */
    static List<Example> examples() throws IOException {
        List<Example> out = new ArrayList<>();
        List<Path> pages;
        try (Stream<Path> s = Files.walk(Path.of("docs"))) {
            pages = s.filter(p -> p.toString().endsWith(".md")).sorted().toList();
        }
        for (Path page : pages) {
            List<String> lines = Files.readAllLines(page);
            boolean quoted = false;
            for (int i = 0; i < lines.size(); i++) {
                // A four-backtick fence shows a block as text (docs/README.md shows the marker so).
                if (lines.get(i).strip().startsWith("````")) {
                    quoted = !quoted;
                }
                if (quoted || !lines.get(i).strip().equals(MARKER)) {
                    continue;
                }
                int start = i + 1;
                StringBuilder script = new StringBuilder();
                for (i = start; i < lines.size() && !lines.get(i).strip().equals("```"); i++) {
                    script.append(lines.get(i)).append('\n');
                }
                assertThat(i).as(page + ":" + start + ": unclosed runnable block").isLessThan(lines.size());
                out.add(new Example(page, start, script.toString()));
            }
        }
        return out;
    }

    @TestFactory
    List<DynamicTest> everyRunnableDocsExampleRuns() throws IOException {
        List<Example> examples = examples();
        // The pages this suite was written with hold seven; none found means the marker broke.
        assertThat(examples).as("runnable examples in docs/").hasSizeGreaterThanOrEqualTo(7);
        Path bin = Files.createDirectories(tmp.resolve("bin"));
        Path launcher = bin.resolve("biostack");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Files.writeString(launcher, "#!/bin/sh\nexec '" + java + "' -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "
                + "--enable-native-access=ALL-UNNAMED -cp '" + System.getProperty("java.class.path")
                + "' io.biostack.cli.Main \"$@\"\n");
        Files.setPosixFilePermissions(launcher, PosixFilePermissions.fromString("rwxr-xr-x"));
        List<DynamicTest> tests = new ArrayList<>();
        for (Example ex : examples) {
            tests.add(DynamicTest.dynamicTest(ex.file() + ":" + ex.line(), () -> run(ex, bin)));
        }
        return tests;
    }

    private static void run(Example ex, Path bin) throws Exception {
        for (String tool : List.of("nbdinfo", "psktool", "setsid")) {
            if (ex.script().contains(tool + " ") || tool.equals("setsid")) {
                TestEnv.require(onPath(tool), tool);
            }
        }
        Path dir = Files.createTempDirectory(tmp, "ex");
        Path log = dir.resolve(".output");
        // setsid: the example and what it starts in the background share one process group.
        ProcessBuilder pb = new ProcessBuilder("setsid", "bash", "-euo", "pipefail", "-c", ex.script())
                .directory(dir.toFile()).redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().put("PATH", bin + ":" + System.getenv("PATH"));
        Process p = pb.start();
        boolean done;
        try {
            done = p.waitFor(TIMEOUT_S, TimeUnit.SECONDS);
        } finally {
            new ProcessBuilder("kill", "-KILL", "--", "-" + p.pid()).start().waitFor(10, TimeUnit.SECONDS);
        }
        String output = Files.readString(log, StandardCharsets.UTF_8);
        assertThat(done).as(ex.file() + ":" + ex.line() + " finished within " + TIMEOUT_S + " s; output:\n" + output).isTrue();
        assertThat(p.exitValue()).as(ex.file() + ":" + ex.line() + " exit code; output:\n" + output).isZero();
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
