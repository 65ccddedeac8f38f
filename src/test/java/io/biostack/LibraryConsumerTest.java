package io.biostack;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.tools.DiagnosticCollector;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.ToolProvider;
import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.module.ModuleDescriptor;
import java.lang.module.ModuleFinder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

/**
 * biostack as a library, seen from a user's Maven project (src/test/consumer): the artifact this
 * build makes is installed into a private local repository, the consumer project is built against
 * it with Maven and run on the class path and on the module path.
 *
 * <p>The suite runs as {@code mvn test}, so no jar is installed yet: the test packs
 * target/classes (module-info.class included) and the project's pom.xml into the local
 * repository layout, which is what {@code mvn install} writes. The consumer's Maven reads every
 * other artifact from this machine's ~/.m2 (declared as a file:// repository) and writes only in
 * the private repository; what ~/.m2 lacks comes from Maven Central as in any Maven build.
 */
class LibraryConsumerTest {
    private static final Path CLASSES = Path.of("target", "classes");
    /** Packages that stay inside the module; every other package of io.biostack must be exported. */
    private static final Set<String> INTERNAL = Set.of("io.biostack.sys", "io.biostack.uring", "io.biostack.cli", "io.biostack.nbd.proto",
            "io.biostack.file.reactor");

    @TempDir
    static Path tmp;
    static String version;
    static Path jar;
    static Path consumer;
    static Proc build;

    record Proc(int exit, String out, String err) {
        String all() {
            return out + err;
        }
    }

    @BeforeAll
    static void installBiostackAndBuildTheConsumer() throws Exception {
        assertThat(CLASSES.resolve("module-info.class"))
                .as("compiled classes of this build (run through Maven)").exists();
        version = projectVersion(Files.readString(Path.of("pom.xml")));
        Path repo = tmp.resolve("repo");
        Path dir = repo.resolve("io/biostack/biostack/" + version);
        Files.createDirectories(dir);
        jar = dir.resolve("biostack-" + version + ".jar");
        packJar(CLASSES, jar);
        Files.copy(Path.of("pom.xml"), dir.resolve("biostack-" + version + ".pom"));

        Path settings = tmp.resolve("settings.xml");
        Files.writeString(settings, settingsWithHomeRepository(Path.of(System.getProperty("user.home"), ".m2", "repository")));

        consumer = tmp.resolve("consumer");
        copyTree(Path.of("src", "test", "consumer"), consumer);
        Path pom = consumer.resolve("pom.xml");
        Files.writeString(pom, Files.readString(pom).replace("@BIOSTACK_VERSION@", version));

        build = run(consumer, 300, "mvn", "-B", "-q", "-Dstyle.color=never", "-s", settings.toString(),
                "-Dmaven.repo.local=" + repo, "package");
        if (build.exit() != 0) {
            fail("the consumer project did not build (mvn package exited " + build.exit() + "):\n" + build.all());
        }
    }

    @Test
    void consumersDependencyTreeHoldsBiostackAndItsCoreDependenciesButNotTheCommandLines() throws IOException {
        String tree = Files.readString(consumer.resolve("target/tree.txt"));
        assertThat(tree).contains("io.biostack:biostack:jar:" + version + ":compile")
                .contains("org.hdrhistogram:HdrHistogram:jar")
                .contains("org.bouncycastle:bctls-jdk18on:jar")
                .doesNotContain("picocli")
                .doesNotContain("io.prometheus");
        assertThat(classPath()).noneMatch(p -> p.contains("picocli")).anyMatch(p -> p.endsWith(jar.getFileName().toString()));
    }

    @Test
    void consumerRunsOnTheClassPathWithoutPicocli() throws Exception {
        Proc p = java("--enable-native-access=ALL-UNNAMED", "-cp",
                join(consumer.resolve("target/consumer-1.jar").toString(), classPath()),
                "demo.Consumer", tmp.resolve("cp.img").toString());
        assertThat(p.exit()).as(p.all()).isZero();
        assertThat(p.out().lines()).containsExactly(
                "loop size=1048576 same=true",
                "directio bytes=4096 same=true",
                "module null uses null",
                "picocli absent");
        assertThat(p.err()).doesNotContain("restricted method");
    }

    @Test
    void consumerRunsOnTheModulePathAsModuleIoBiostackWithNativeAccessGrantedToIt() throws Exception {
        Proc p = java("--enable-native-access=io.biostack", "--module-path",
                join(consumer.resolve("target/consumer-1.jar").toString(), classPath()),
                "--module", "consumer/demo.Consumer", tmp.resolve("mp.img").toString());
        assertThat(p.exit()).as(p.all()).isZero();
        assertThat(p.out().lines()).containsExactly(
                "loop size=1048576 same=true",
                "directio bytes=4096 same=true",
                "module consumer uses io.biostack",
                "picocli absent");
        // Granted to io.biostack, the FFM calls make the JDK print no "restricted method" warning.
        assertThat(p.err()).doesNotContain("restricted method").doesNotContain("WARNING");
    }

    @Test
    void moduleExportsEveryApiPackageAndNoInternalOne() throws IOException {
        ModuleDescriptor d = ModuleFinder.of(jar).findAll().iterator().next().descriptor();
        assertThat(d.name()).isEqualTo("io.biostack");
        Set<String> exported = d.exports().stream().filter(e -> !e.isQualified())
                .map(ModuleDescriptor.Exports::source).collect(Collectors.toCollection(TreeSet::new));
        Set<String> api = new TreeSet<>(d.packages());
        api.removeAll(INTERNAL);
        assertThat(exported).as("a new package is API (export it in module-info.java) or internal (list it here)")
                .isEqualTo(api);
        assertThat(d.opens()).singleElement().satisfies(o -> {
            assertThat(o.source()).isEqualTo("io.biostack.cli");
            assertThat(o.targets()).containsExactly("info.picocli");
        });
        assertThat(d.requires()).filteredOn(r -> r.name().equals("info.picocli")).singleElement()
                .satisfies(r -> assertThat(r.modifiers()).contains(ModuleDescriptor.Requires.Modifier.STATIC));
    }

    @Test
    void internalPackagesDoNotCompileInAModuleThatRequiresIoBiostack() throws IOException {
        Path src = tmp.resolve("intruder/src");
        Files.createDirectories(src.resolve("intruder"));
        Files.writeString(src.resolve("module-info.java"), "module intruder { requires io.biostack; }\n");
        Files.writeString(src.resolve("intruder/Intruder.java"), """
                package intruder;

                import io.biostack.loop.LoopDevice;
                import io.biostack.sys.Libc;
                import io.biostack.uring.IoUring;

                class Intruder {
                    LoopDevice device;
                    Libc libc;
                    IoUring ring;
                }
                """);
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        DiagnosticCollector<JavaFileObject> diagnostics = new DiagnosticCollector<>();
        try (StandardJavaFileManager files = javac.getStandardFileManager(diagnostics, null, StandardCharsets.UTF_8)) {
            List<String> options = List.of("--module-path", join(jar.toString(), classPath()),
                    "-d", tmp.resolve("intruder/out").toString());
            boolean ok = javac.getTask(null, files, diagnostics, options, null,
                    files.getJavaFileObjects(src.resolve("module-info.java"), src.resolve("intruder/Intruder.java"))).call();
            List<String> messages = diagnostics.getDiagnostics().stream()
                    .map(d -> "line " + d.getLineNumber() + ": " + d.getMessage(null)).toList();
            assertThat(ok).as(messages.toString()).isFalse();
            assertThat(messages).anyMatch(m -> m.startsWith("line 4: ") && m.contains("package io.biostack.sys is not visible"))
                    .anyMatch(m -> m.startsWith("line 5: ") && m.contains("package io.biostack.uring is not visible"))
                    .noneMatch(m -> m.startsWith("line 3: "));
        }
    }

    // ---- helpers -----------------------------------------------------------------------------

    private static List<String> classPath() throws IOException {
        String cp = Files.readString(consumer.resolve("target/classpath.txt")).strip();
        return List.of(cp.split(File.pathSeparator));
    }

    private static String join(String first, List<String> rest) {
        List<String> all = new ArrayList<>();
        all.add(first);
        all.addAll(rest);
        return String.join(File.pathSeparator, all);
    }

    /** The project's own version: the first {@code <version>} after {@code <artifactId>biostack}. */
    static String projectVersion(String pom) {
        Matcher m = Pattern.compile("<artifactId>biostack</artifactId>\\s*<version>([^<]+)</version>").matcher(pom);
        if (!m.find()) {
            throw new IllegalStateException("no <artifactId>biostack</artifactId><version> in pom.xml");
        }
        return m.group(1);
    }

    private static void packJar(Path classes, Path jarFile) throws IOException {
        Manifest mf = new Manifest();
        mf.getMainAttributes().put(Attributes.Name.MANIFEST_VERSION, "1.0");
        List<Path> files;
        try (Stream<Path> s = Files.walk(classes)) {
            files = s.filter(Files::isRegularFile).sorted().toList();
        }
        try (OutputStream out = Files.newOutputStream(jarFile); JarOutputStream jos = new JarOutputStream(out, mf)) {
            for (Path f : files) {
                jos.putNextEntry(new JarEntry(classes.relativize(f).toString().replace(File.separatorChar, '/')));
                Files.copy(f, jos);
                jos.closeEntry();
            }
        }
    }

    /**
     * Maven settings that read artifacts from {@code home} (this machine's ~/.m2, untouched:
     * a file:// repository is only read) before Maven Central.
     */
    private static String settingsWithHomeRepository(Path home) {
        String repo = """
                <id>home</id><url>%s</url>
                <releases><enabled>true</enabled><checksumPolicy>ignore</checksumPolicy></releases>
                <snapshots><enabled>false</enabled></snapshots>
                """.formatted(home.toUri());
        return """
                <settings>
                  <profiles><profile><id>home</id>
                    <repositories><repository>%s</repository></repositories>
                    <pluginRepositories><pluginRepository>%s</pluginRepository></pluginRepositories>
                  </profile></profiles>
                  <activeProfiles><activeProfile>home</activeProfile></activeProfiles>
                </settings>
                """.formatted(repo, repo);
    }

    private static void copyTree(Path from, Path to) throws IOException {
        try (Stream<Path> s = Files.walk(from)) {
            for (Path p : s.toList()) {
                Path t = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(t);
                } else {
                    Files.copy(p, t);
                }
            }
        }
    }

    private static Proc java(String... args) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(List.of(args));
        return run(tmp, 60, cmd.toArray(String[]::new));
    }

    /** Runs {@code cmd} in {@code dir} with this JVM's JDK as JAVA_HOME; killed after {@code seconds}. */
    static Proc run(Path dir, int seconds, String... cmd) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        Map<String, String> env = pb.environment();
        env.put("JAVA_HOME", System.getProperty("java.home"));
        Process p = pb.start();
        // Own threads: on a small machine the common pool may have one worker, and both pipes must drain.
        CompletableFuture<String> out = new CompletableFuture<>();
        CompletableFuture<String> err = new CompletableFuture<>();
        Thread.ofPlatform().daemon().start(() -> out.complete(slurp(p.getInputStream())));
        Thread.ofPlatform().daemon().start(() -> err.complete(slurp(p.getErrorStream())));
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail(String.join(" ", cmd) + " did not finish in " + seconds + " s");
        }
        return new Proc(p.exitValue(), out.join(), err.join());
    }

    private static String slurp(java.io.InputStream in) {
        try (in) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }
}
