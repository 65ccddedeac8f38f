package io.biostack;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

/**
 * The programs in examples/ run as a user runs them ({@code examples/run NAME ARGS}) and print
 * what they claim. They get this build's classes and dependencies without picocli: a library
 * user's class path.
 */
class ExamplesTest {
    @TempDir
    Path tmp;

    @Test
    void customDeviceServesReadsThroughALibraryLayerAndFailsAnOutOfRangeBioWithAClearStatus() throws Exception {
        LibraryConsumerTest.Proc p = runExample(60, "CustomDevice");
        assertThat(p.exit()).as(p.all()).isZero();
        assertThat(p.out().lines()).containsExactly(
                "read through linear: hello, block device",
                "window size: 1044480",
                "end-io: INVAL (READ of 512 bytes at offset 1048576 goes beyond the end of heapdisk (1048576 bytes))");
    }

    @Test
    void asyncDirectIoWritesFromAByteArrayAndAMemorySegmentAndTheBytesAreInTheFile() throws Exception {
        Path file = tmp.resolve("dio.img");
        LibraryConsumerTest.Proc p = runExample(60, "AsyncDirectIo", file.toString());
        assertThat(p.exit()).as(p.all()).isZero();
        assertThat(p.out().lines()).filteredOn(l -> !l.startsWith("no O_DIRECT here")).containsExactly(
                "byte[] zero copy: false",
                "MemorySegment zero copy: true",
                "wrote 131072 bytes in two writes in flight together",
                "read back: byte[] true, MemorySegment true",
                "loop device loop0: copied block 0 to 131072: true");
        byte[] disk = Files.readAllBytes(file);
        assertThat(disk).hasSize(1 << 20);
        assertThat(range(disk, 0, 65536)).containsOnly('A');
        assertThat(range(disk, 65536, 131072)).containsOnly('B');
        assertThat(range(disk, 131072, 196608)).containsOnly('A');
        assertThat(range(disk, 196608, 1 << 20)).containsOnly((char) 0);
    }

    @Test
    void checksumLayerIsServedOverNbdAndABlockChangedBehindItReadsAsAnIoError() throws Exception {
        Tools.require("nbdinfo", "qemu-io");
        Path image = tmp.resolve("checked.img");
        Path socket = tmp.resolve("checked.sock");
        String uri = "nbd+unix:///checked?socket=" + socket;
        Process p = start("ChecksumLayer", image.toString(), socket.toString());
        BlockingQueue<String> out = lines(p);
        StringBuffer err = new StringBuffer();
        // Own threads, not the common pool: Tools.run needs that pool while these readers block.
        Thread errReader = Thread.ofPlatform().daemon().name("example-stderr").start(() -> err.append(slurp(p)));
        try {
            assertThat(next(out, 60, err)).isEqualTo("checksummed 4096 blocks of " + image);
            assertThat(next(out, 10, err)).isEqualTo("serving " + uri);

            assertThat(Tools.ok(30, "nbdinfo", "--size", uri).out().strip()).isEqualTo("16777216");
            Tools.ok(30, "qemu-io", "-f", "raw", uri, "-c", "write -P 0xab 0 64k", "-c", "read -P 0xab 0 64k");

            // Block 3 changes behind the layer's back (in the file under the loop device).
            try (RandomAccessFile raf = new RandomAccessFile(image.toFile(), "rw")) {
                raf.seek(3 * 4096 + 100);
                raf.write(new byte[] {1, 2, 3, 4});
                raf.getFD().sync();
            }
            Tools.Result bad = Tools.run(30, "qemu-io", "-f", "raw", uri, "-c", "read 0 64k");
            assertThat(bad.all()).contains("read failed: Input/output error");
            // The blocks around it still read, with what was written.
            Tools.ok(30, "qemu-io", "-f", "raw", uri, "-c", "read -P 0xab 0 12k", "-c", "read -P 0xab 16k 48k");

            p.getOutputStream().close();        // end of input: the example stops and sums up
            assertThat(next(out, 30, err)).isEqualTo("corrupted reads: 1, last in block 3");
            assertThat(p.waitFor(30, TimeUnit.SECONDS)).as("example exits").isTrue();
            assertThat(p.exitValue()).as(err.toString()).isZero();
        } finally {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
            errReader.join(10_000);
        }
    }

    // ---- helpers -----------------------------------------------------------------------------

    /** This build's classes and runtime dependencies, as a library user has them: no picocli, no test jars. */
    static String libraryClassPath() {
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        return Arrays.stream(cp.split(File.pathSeparator))
                .filter(e -> !e.contains("picocli") && !e.contains("test-classes") && !e.contains("junit")
                        && !e.contains("jqwik") && !e.contains("assertj") && !e.contains("opentest4j")
                        && !e.contains("apiguardian") && !e.contains("byte-buddy") && !e.contains("surefire"))
                .collect(Collectors.joining(File.pathSeparator));
    }

    private Process start(String example, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of("bash", Path.of("examples", "run").toAbsolutePath().toString(), example));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(tmp.toFile());
        pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
        pb.environment().put("BIOSTACK_CLASSPATH", libraryClassPath());
        return pb.start();
    }

    private LibraryConsumerTest.Proc runExample(int seconds, String example, String... args) throws Exception {
        Process p = start(example, args);
        p.getOutputStream().close();
        CompletableFuture<String> out = new CompletableFuture<>();
        CompletableFuture<String> err = new CompletableFuture<>();
        Thread.ofPlatform().daemon().start(() -> out.complete(slurpOut(p)));
        Thread.ofPlatform().daemon().start(() -> err.complete(slurp(p)));
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail("examples/run " + example + " did not finish in " + seconds + " s");
        }
        return new LibraryConsumerTest.Proc(p.exitValue(), out.join(), err.join());
    }

    private static BlockingQueue<String> lines(Process p) {
        BlockingQueue<String> q = new LinkedBlockingQueue<>();
        Thread.ofPlatform().daemon().name("example-stdout").start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                for (String l; (l = r.readLine()) != null; ) {
                    q.add(l);
                }
            } catch (IOException e) {
                // the process went away; next() times out with what it said
            }
        });
        return q;
    }

    private static String next(BlockingQueue<String> q, int seconds, StringBuffer err) throws InterruptedException {
        String l = q.poll(seconds, TimeUnit.SECONDS);
        if (l == null) {
            fail("no line from the example in " + seconds + " s; its stderr so far:\n" + err);
        }
        return l;
    }

    private static String slurp(Process p) {
        try (var in = p.getErrorStream()) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }

    private static String slurpOut(Process p) {
        try (var in = p.getInputStream()) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }

    private static char[] range(byte[] b, int from, int to) {
        char[] c = new char[to - from];
        for (int i = from; i < to; i++) {
            c[i - from] = (char) b[i];
        }
        return c;
    }
}
