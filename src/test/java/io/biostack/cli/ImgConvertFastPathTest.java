package io.biostack.cli;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code img convert} without picocli ({@link ImgConvert#fastPath}): the command lines it knows
 * make the same image, print the same words and return the same code as picocli's path; what it
 * does not know it leaves to picocli, having done and printed nothing; and in a JVM of its own
 * it loads no picocli class.
 */
class ImgConvertFastPathTest {
    @TempDir
    Path dir;

    private String f(String name) {
        return dir.resolve(name).toString();
    }

    /** 8 MiB, every other 256 KiB random data, the rest holes. */
    private Path source() throws Exception {
        Path p = dir.resolve("src.raw");
        Random r = new Random(15);
        byte[] b = new byte[256 << 10];
        try (RandomAccessFile raf = new RandomAccessFile(p.toFile(), "rw")) {
            raf.setLength(8L << 20);
            for (long off = 0; off < (8L << 20); off += 512 << 10) {
                r.nextBytes(b);
                raf.seek(off);
                raf.write(b);
            }
        }
        return p;
    }

    private static CliRun fast(String... args) {
        return CliRun.capture(() -> ImgConvert.fastPath(args));
    }

    @Test
    void theOptionsItKnowsMakeTheImagePicocliMakesWithTheSameOutput() throws Exception {
        Tools.require("qemu-img");
        String src = source().toString();
        String[][] shapes = {
            {"-O", "qcow2"},
            {"-p", "-W", "-m", "4", "-o", "cluster_size=65536", "-o", "compat=1.1", "-O", "qcow2", "--engine=threads"},
            {"-t", "none", "-T", "none", "-f", "raw", "-O", "raw", "--engine", "auto"},
        };
        for (String[] opts : shapes) {
            String what = String.join(" ", opts);
            String fmt = List.of(opts).contains("qcow2") ? "qcow2" : "raw";
            Files.deleteIfExists(dir.resolve("fast.out"));
            Files.deleteIfExists(dir.resolve("picocli.out"));
            List<String> a = new ArrayList<>(List.of("img", "convert"));
            a.addAll(List.of(opts));
            CliRun fast = fast(concat(a, src, f("fast.out")));
            CliRun picocli = CliRun.of(concat(a, src, f("picocli.out")));
            assertThat(fast.code()).as(what + ": " + fast.err()).isZero().isEqualTo(picocli.code());
            // -p's line depends on when the copy looked: compare what it always shows, first and last
            assertThat(progressEnds(fast.out())).as(what).isEqualTo(progressEnds(picocli.out()));
            assertThat(fast.err()).as(what).isEqualTo(picocli.err());
            Tools.ok(60, "qemu-img", "compare", "-f", "raw", "-F", fmt, src, f("fast.out"));
            Tools.ok(60, "qemu-img", "compare", "-f", fmt, "-F", fmt, f("picocli.out"), f("fast.out"));
        }
    }

    /** Progress output reduced to its first and last state ("" without -p). */
    private static String progressEnds(String out) {
        String[] p = out.split("\r");
        return p.length < 2 ? out : p[0] + "\r" + p[p.length - 2] + "\r" + p[p.length - 1];
    }

    private static String[] concat(List<String> head, String... tail) {
        List<String> all = new ArrayList<>(head);
        all.addAll(List.of(tail));
        return all.toArray(String[]::new);
    }

    @Test
    void aFailingConvertSaysWhatPicocliSaysWithExitOne() throws Exception {
        String src = source().toString();
        String[][] bad = {
            {"img", "convert", "-O", "raw", f("absent.raw"), f("x.out")},
            {"img", "convert", "-O", "vmdk", src, f("x.out")},
            {"img", "convert", "-m", "99", src, f("x.out")},
            {"img", "convert", "-t", "sometimes", src, f("x.out")},
            {"img", "convert", "-O", "raw", src, src},
        };
        for (String[] args : bad) {
            String what = String.join(" ", args);
            CliRun fast = fast(args);
            CliRun picocli = CliRun.of(args);
            assertThat(fast.code()).as(what).isEqualTo(1).isEqualTo(picocli.code());
            assertThat(fast.err()).as(what).startsWith("biostack: ").isEqualTo(picocli.err());
            assertThat(fast.out()).as(what).isEqualTo(picocli.out());
            assertThat(dir.resolve("x.out")).as(what).doesNotExist();
        }
    }

    @Test
    void whatItDoesNotKnowIsLeftToPicocliWithNothingDoneOrPrinted() throws Exception {
        String src = source().toString();
        String out = f("never.out");
        String[][] others = {
            {"img", "convert", "--help"},
            {"img", "convert", "-h", src, out},
            {"img", "convert", "-pW", src, out},
            {"img", "convert", "-X", src, out},
            {"img", "convert", src},
            {"img", "convert", src, out, out},
            {"img", "convert", "-m", "many", src, out},
            {"img", "convert", "-O", "raw", "-O", "qcow2", src, out},
            {"img", "convert", "-O", src, out},
            {"img", "convert", "-O", "-p", src, out},
            {"img", "convert", "--", src, out},
            {"img", "convert", "@args", src, out},
            {"img", "convert", src, "-O"},
            {"img", "info", src, out},
            {"convert", "img", src, out},
        };
        for (String[] args : others) {
            String what = String.join(" ", args);
            CliRun r = fast(args);
            assertThat(r.code()).as(what).isEqualTo(ImgConvert.NOT_HANDLED);
            assertThat(r.out() + r.err()).as(what).isEmpty();
            assertThat(Path.of(out)).as(what).doesNotExist();
        }
    }

    @Test
    void mainRunsConvertWithoutLoadingPicocli() throws Exception {
        Tools.require("qemu-img");
        String src = source().toString();
        String java = ProcessHandle.current().info().command().orElseThrow();
        List<String> cmd = new ArrayList<>(List.of(java, "-Xlog:class+load=info:file=" + dir.resolve("classes.log"),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "io.biostack.cli.Main", "img", "convert", "-O", "qcow2", src, f("main.qcow2")));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as(out).isZero();
        assertThat(out).isEmpty();
        String log = Files.readString(dir.resolve("classes.log"));
        assertThat(log).contains("io.biostack.cli.ImgConvert ");
        assertThat(log).doesNotContain("picocli");
        Tools.ok(60, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", src, f("main.qcow2"));
    }

    @Test
    void secondsAreWrittenWithThreeDecimals() {
        assertThat(ImgConvert.seconds(0)).isEqualTo("0.000");
        assertThat(ImgConvert.seconds(1_234_400_000L)).isEqualTo("1.234");
        assertThat(ImgConvert.seconds(12_005_600_000L)).isEqualTo("12.006");
        assertThat(ImgConvert.seconds(999_600_000L)).isEqualTo("1.000");
    }
}
