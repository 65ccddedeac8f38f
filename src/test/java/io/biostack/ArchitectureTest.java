package io.biostack;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The layering of DESIGN.md ("Where things live"), checked on the sources: every reference from
 * one part of {@code src/main/java} to another (an import, or a fully qualified name in code;
 * comments and string literals are not code) must follow an arrow of the drawing, or be one of
 * the named {@link #EXCEPTIONS} below, each with its reason. A new reference that does neither
 * fails the test, naming the file and what it reaches.
 *
 * <p>A part is a top-level package with its subpackages ({@code layer} is {@code layer},
 * {@code layer.crypt}, {@code layer.qcow2}, ...; {@code nbd} holds {@code nbd.proto},
 * {@code nbd.tls} and {@code nbd.client}); references inside a part are free. The arrows are
 * direct: {@code stack} may use {@code loop}, which uses {@code file}, but {@code stack} may not
 * use {@code file} without an arrow of its own, because each arrow is a decision the drawing
 * records.
 */
class ArchitectureTest {
    private static final Path SOURCES = Path.of("src/main/java");
    private static final String ROOT = "io.biostack.";

    /**
     * The drawing of DESIGN.md, part by part: what each part may use besides itself and the JDK.
     * Where this map and DESIGN.md's drawing differ, the reason is written beside the arrow, and
     * DESIGN.md's drawing is to follow.
     */
    static final Map<String, Set<String>> ALLOWED = Map.ofEntries(
            // the command line sits on everything; nothing sits on it
            Map.entry("cli", Set.of("bench", "stack", "nbd", "rbd", "layer", "replay", "loop", "file", "uring", "sys", "block")),
            // bench's jobs are reactors, as the NBD server's are (DESIGN "Reactors"): each job
            // thread is a RingLoop with its own file ring (file.reactor's FileRings), so that the
            // in-process figures are those of the per-core shape and not of a hop to the file
            // worker. The drawing's "bench -> block" leaves that out; it should read
            // "bench -> block, file, uring".
            Map.entry("bench", Set.of("block", "file", "uring")),
            Map.entry("stack", Set.of("layer", "loop", "nbd", "rbd", "block")),
            // The drawing says "nbd -> block, uring, file". The reactors accept, receive and send
            // on their own rings (socket(2), setsockopt, close, the iovecs of SENDMSG), and those
            // are syscalls, which live in sys alone; so nbd -> sys is part of the design, as
            // uring -> sys is, and the drawing should add it.
            Map.entry("nbd", Set.of("block", "uring", "file", "sys")),
            Map.entry("rbd", Set.of("block", "sys")),
            Map.entry("layer", Set.of("block")),
            // The drawing says "replay -> layer, block". Replaying onto an image clones and
            // copies files (FICLONE, hole punching, extents): file-level work, which belongs in
            // file (file's FileClone), not in sys calls from replay.
            // The drawing should read "replay -> layer, file, block".
            Map.entry("replay", Set.of("layer", "file", "block")),
            Map.entry("loop", Set.of("file", "block")),
            Map.entry("file", Set.of("uring", "sys", "block")),
            Map.entry("uring", Set.of("sys")),
            Map.entry("sys", Set.of()),
            Map.entry("block", Set.of()));

    /** A reference that breaks the drawing today, kept on purpose until its fix lands. */
    record KnownBreak(String fromPackage, String fromFile, String toPrefix, String why) {
        boolean covers(Ref r) {
            return r.fromPackage().equals(fromPackage) && (fromFile == null || r.file().equals(fromFile))
                    && (r.to().equals(toPrefix) || r.to().startsWith(toPrefix + "."));
        }
    }

    /**
     * The known breaks of the drawing, each named as narrowly as it occurs (the file, the class it
     * reaches), so that it cannot widen unseen. Remove a line when its fix lands.
     */
    static final List<KnownBreak> EXCEPTIONS = List.of(
            new KnownBreak("io.biostack.stack", "ControlServer.java", "io.biostack.sys.SocketFiles",
                    "the control socket is bound 0600 whatever the umask by SocketFiles, which the NBD"
                    + " server's unix sockets and serve --socket-mode share. SocketFiles is plain JDK"
                    + " code (no FFM) and is in sys only because sys is the one non-exported package all"
                    + " three may reach; it has no better home until a small internal package for OS"
                    + " helpers without FFM exists"),
            new KnownBreak("io.biostack.layer.crypt", "Luks.java", "io.biostack.loop",
                    "the luks table's header=FILE option opens the detached header itself, as a loop"
                    + " device. The fix: TableSpec.Resolver offers a way to open a file leaf"
                    + " (implemented by stack, which may use loop), and Luks asks it"),
            new KnownBreak("io.biostack.layer.crypt", "Argon2Memory.java", "io.biostack.sys",
                    "Argon2's memory-hard KDF maps its lanes with mmap/madvise (MADV_DONTDUMP, so"
                    + " the derived key's working memory never lands in a core dump); syscalls live in"
                    + " sys alone, so the one class that needs them may call sys.Libc and sys.Mman"
                    + " rather than repeat their downcalls (helper luks makes it do so)"),
            new KnownBreak("io.biostack.block", "RamDisk.java", "io.biostack.sys.AnonymousMemory",
                    "a ramdisk's memory is one anonymous mapping the kernel fills on first write, as"
                    + " brd takes pages; the JDK's own native allocations count against"
                    + " MaxDirectMemorySize (the heap's size), zero every byte and stall the writing"
                    + " reactor in a GC near that limit (228 us per 64 KiB chunk measured). mmap is a"
                    + " syscall and lives in sys; RamDisk falls back to arena chunks where native"
                    + " access is off"));

    /** One reference from a source file to a class or package of another part. */
    record Ref(String fromPackage, String file, String to) {
        @Override
        public String toString() {
            return fromPackage.replace('.', '/') + "/" + file + " -> " + to;
        }
    }

    @Test
    void everyReferenceBetweenPartsFollowsTheDrawingOrANamedException() throws IOException {
        List<Ref> refs = scan(SOURCES);
        // The scan must have found the stack's everyday arrows, or it checked nothing.
        assertThat(refs).extracting(r -> part(r.fromPackage()) + "->" + part(r.to()))
                .contains("layer->block", "loop->file", "file->uring", "uring->sys", "cli->stack");
        List<String> broken = violations(refs).stream().map(Ref::toString).distinct().toList();
        assertThat(broken)
                .as("references against DESIGN.md's layering (follow an arrow, move the code, or add a"
                        + " named exception with its reason to ArchitectureTest.EXCEPTIONS)")
                .isEmpty();
    }

    @Test
    void nothingOutsideTheCommandLineReachesIt() throws IOException {
        assertThat(scan(SOURCES)).filteredOn(r -> part(r.to()).equals("cli"))
                .allSatisfy(r -> assertThat(part(r.fromPackage())).isEqualTo("cli"));
    }

    @Test
    void aLayerThatReachesUpIntoTheStackIsCaught() {
        // The checker itself, on sources that break the drawing in each way a scan can meet.
        String layerOnStack = """
                package io.biostack.layer;
                import io.biostack.stack.Stack;
                class Bad {}
                """;
        String qualified = """
                package io.biostack.block;
                class Bad { Object o = io.biostack.uring.RingLoop.class; }
                """;
        String wildcard = """
                package io.biostack.layer.snapshot;
                import static io.biostack.cli.Main.*;
                class Bad {}
                """;
        List<Ref> refs = new ArrayList<>();
        refs.addAll(refsOf("Bad.java", layerOnStack));
        refs.addAll(refsOf("Bad.java", qualified));
        refs.addAll(refsOf("Bad.java", wildcard));
        assertThat(violations(refs)).extracting(Ref::toString).containsExactly(
                "io/biostack/layer/Bad.java -> io.biostack.stack.Stack",
                "io/biostack/block/Bad.java -> io.biostack.uring.RingLoop",
                "io/biostack/layer/snapshot/Bad.java -> io.biostack.cli.Main");
    }

    @Test
    void commentsAndStringsAreNotReferences() {
        String src = """
                package io.biostack.block;
                /** See {@link io.biostack.stack.Stack}. */
                class Fine {
                    // io.biostack.cli.Main is the command line
                    String s = "io.biostack.sys.Libc \\" io.biostack.uring.Sqe";
                    char c = '"';
                    String t = \"""
                        io.biostack.nbd.NbdServer
                        \""";
                    /* io.biostack.layer.Linear */ Object o = io.biostack.block.Bio.class;
                }
                """;
        assertThat(refsOf("Fine.java", src)).extracting(Ref::to).containsExactly("io.biostack.block.Bio");
    }

    @Test
    void anExceptionCoversOnlyTheFileAndTheClassItNames() {
        assertThat(violations(List.of(
                new Ref("io.biostack.stack", "ControlServer.java", "io.biostack.sys.SocketFiles"),
                new Ref("io.biostack.stack", "ControlServer.java", "io.biostack.sys.Libc"),
                new Ref("io.biostack.stack", "Stack.java", "io.biostack.sys.SocketFiles"))))
                .extracting(Ref::toString).containsExactly(
                        "io/biostack/stack/ControlServer.java -> io.biostack.sys.Libc",
                        "io/biostack/stack/Stack.java -> io.biostack.sys.SocketFiles");
    }

    // ---- the checker ---------------------------------------------------------------------------

    /** The references that neither follow an arrow nor fall under an exception. */
    static List<Ref> violations(List<Ref> refs) {
        List<Ref> out = new ArrayList<>();
        for (Ref r : refs) {
            String from = part(r.fromPackage());
            String to = part(r.to());
            if (from.equals(to)) {
                continue;
            }
            Set<String> allowed = ALLOWED.get(from);
            assertThat(allowed).as("part %s (of %s) is missing from ALLOWED: draw it in DESIGN.md and here",
                    from, r).isNotNull();
            if (allowed.contains(to) || EXCEPTIONS.stream().anyMatch(e -> e.covers(r))) {
                continue;
            }
            out.add(r);
        }
        return out;
    }

    /** {@code io.biostack.layer.crypt.Luks} -> {@code layer}. */
    static String part(String name) {
        String rest = name.startsWith(ROOT) ? name.substring(ROOT.length()) : name;
        int dot = rest.indexOf('.');
        return dot < 0 ? rest : rest.substring(0, dot);
    }

    static List<Ref> scan(Path root) throws IOException {
        List<Ref> refs = new ArrayList<>();
        List<Path> files;
        try (Stream<Path> s = Files.walk(root.resolve("io/biostack"))) {
            files = s.filter(p -> p.toString().endsWith(".java")).sorted().toList();
        }
        // every class of the tree, so that the scan can be checked to have read them all
        assertThat(files.size()).as("java files under %s", root).isGreaterThan(100);
        for (Path f : files) {
            String name = f.getFileName().toString();
            if (name.equals("package-info.java")) {
                continue;
            }
            refs.addAll(refsOf(name, Files.readString(f, StandardCharsets.UTF_8)));
        }
        return refs;
    }

    private static final Pattern PACKAGE = Pattern.compile("\\bpackage\\s+([\\w.]+)\\s*;");
    /** A qualified name into biostack: its packages (lower case) and, if named, the first class. */
    private static final Pattern NAME = Pattern.compile(
            "\\bio\\s*\\.\\s*biostack((?:\\s*\\.\\s*[a-z_][a-z0-9_]*)+)(?:\\s*\\.\\s*([A-Z]\\w*))?");

    static List<Ref> refsOf(String file, String source) {
        String code = codeOnly(source);
        Matcher pm = PACKAGE.matcher(code);
        assertThat(pm.find()).as("package declaration of %s", file).isTrue();
        String pkg = pm.group(1);
        Set<String> seen = new TreeSet<>();
        Matcher m = NAME.matcher(code);
        m.region(pm.end(), code.length());
        while (m.find()) {
            String to = "io.biostack" + m.group(1).replaceAll("\\s", "") + (m.group(2) == null ? "" : "." + m.group(2));
            seen.add(to);
        }
        List<Ref> out = new ArrayList<>();
        for (String to : seen) {
            out.add(new Ref(pkg, file, to));
        }
        return out;
    }

    /**
     * The source with comments, string and char literals and text blocks blanked out (their
     * line breaks kept), so that only code is left for the name scan.
     */
    static String codeOnly(String s) {
        StringBuilder out = new StringBuilder(s.length());
        int i = 0;
        int n = s.length();
        while (i < n) {
            char c = s.charAt(i);
            if (c == '/' && i + 1 < n && s.charAt(i + 1) == '/') {
                int end = s.indexOf('\n', i);
                i = blank(s, out, i, end < 0 ? n : end);
            } else if (c == '/' && i + 1 < n && s.charAt(i + 1) == '*') {
                int end = s.indexOf("*/", i + 2);
                i = blank(s, out, i, end < 0 ? n : end + 2);
            } else if (s.startsWith("\"\"\"", i)) {
                int j = i + 3;
                while (j < n && !s.startsWith("\"\"\"", j)) {
                    j += s.charAt(j) == '\\' ? 2 : 1;
                }
                i = blank(s, out, i, Math.min(n, j + 3));
            } else if (c == '"' || c == '\'') {
                int j = i + 1;
                while (j < n && s.charAt(j) != c && s.charAt(j) != '\n') {
                    j += s.charAt(j) == '\\' ? 2 : 1;
                }
                i = blank(s, out, i, Math.min(n, j + 1));
            } else {
                out.append(c);
                i++;
            }
        }
        return out.toString();
    }

    private static int blank(String s, StringBuilder out, int from, int to) {
        for (int k = from; k < to; k++) {
            out.append(s.charAt(k) == '\n' ? '\n' : ' ');
        }
        return to;
    }

    @Test
    void theExceptionsNameRealPartsAndSayWhy() {
        for (KnownBreak e : EXCEPTIONS) {
            assertThat(ALLOWED).containsKey(part(e.fromPackage()));
            assertThat(ALLOWED).containsKey(part(e.toPrefix()));
            assertThat(ALLOWED.get(part(e.fromPackage()))).as("%s is an arrow already", e).doesNotContain(part(e.toPrefix()));
            assertThat(e.why()).hasSizeGreaterThan(80);
        }
        // every part of the tree is drawn: a new top-level package must be placed on purpose
        Set<String> parts = new TreeSet<>();
        try (Stream<Path> s = Files.list(SOURCES.resolve("io/biostack"))) {
            s.filter(Files::isDirectory).forEach(p -> parts.add(p.getFileName().toString()));
        } catch (IOException x) {
            throw new java.io.UncheckedIOException(x);
        }
        assertThat(ALLOWED.keySet()).containsExactlyInAnyOrderElementsOf(parts);
        Map<String, Set<String>> sorted = new TreeMap<>(ALLOWED);
        sorted.values().forEach(v -> assertThat(parts).containsAll(v));
    }
}
