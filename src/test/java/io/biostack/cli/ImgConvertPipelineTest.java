package io.biostack.cli;

import io.biostack.TestEnv;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

/**
 * {@code img convert}'s copy (ConvertPipeline): a half-allocated image of random extents converts
 * both ways byte-equal to qemu-img's view, holes stay holes, and a device that fails in the middle
 * (an {@code error} segment of a served stack, a full file system) ends the job with the offset
 * and a non-zero exit, never a hang.
 */
class ImgConvertPipelineTest {
    @TempDir
    Path dir;

    private final List<Process> started = new ArrayList<>();
    private Path mounted;

    @AfterEach
    void cleanUp() throws Exception {
        for (Process p : started) {
            p.destroy();
            if (!p.waitFor(10, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
        }
        if (mounted != null) {
            Tools.run(30, "umount", mounted.toString());
        }
    }

    private String f(String name) {
        return dir.resolve(name).toString();
    }

    /**
     * A raw file of {@code size} bytes: extents of 64 KiB to 1 MiB, data (random bytes) or hole by
     * a coin toss, as bench/img's image. Returns the bytes of data written.
     */
    static long halfAllocated(Path file, long size, long seed) throws IOException {
        Random r = new Random(seed);
        long data = 0;
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
            raf.setLength(size);
            for (long off = 0; off < size; ) {
                int n = (int) Math.min((1 + r.nextInt(16)) * 65536L, size - off);
                if (r.nextBoolean()) {
                    byte[] b = new byte[n];
                    r.nextBytes(b);
                    raf.seek(off);
                    raf.write(b);
                    data += n;
                }
                off += n;
            }
        }
        return data;
    }

    /** Bytes the file system allocated for the file (st_blocks), as du counts them. */
    private static long allocated(Path file) throws Exception {
        String out = Tools.ok(10, "stat", "-c", "%b %B", file.toString()).out().trim();
        String[] p = out.split(" ");
        return Long.parseLong(p[0]) * Long.parseLong(p[1]);
    }

    @Test
    void aHalfAllocatedImageConvertsBothWaysByteEqualWithItsHolesLeftHoles() throws Exception {
        Tools.require("qemu-img", "stat");
        long data = halfAllocated(dir.resolve("src.raw"), 64L << 20, 15);
        assertThat(data).isBetween(20L << 20, 44L << 20);
        Tools.ok(60, "qemu-img", "convert", "-O", "qcow2", f("src.raw"), f("ref.qcow2"));

        CliRun toQ = CliRun.of("img", "convert", "-O", "qcow2", f("src.raw"), f("out.qcow2"));
        assertThat(toQ.code()).as(toQ.err()).isZero();
        Tools.ok(60, "qemu-img", "check", f("out.qcow2"));
        Tools.ok(60, "qemu-img", "compare", f("src.raw"), f("out.qcow2"));
        // No zeros were written: the image holds the data, its metadata and nothing else.
        assertThat(allocated(dir.resolve("out.qcow2"))).isLessThan(data + (2L << 20));

        // qcow2 -> raw, O_DIRECT both sides, 3 in flight, 1 MiB chunks are not asked: the defaults cut.
        CliRun toR = CliRun.of("img", "convert", "-m", "3", "-t", "none", "-T", "none", "-O", "raw",
                f("ref.qcow2"), f("back.raw"));
        assertThat(toR.code()).as(toR.err()).isZero();
        assertThat(Files.readAllBytes(dir.resolve("back.raw"))).isEqualTo(Files.readAllBytes(dir.resolve("src.raw")));
        assertThat(allocated(dir.resolve("back.raw"))).isLessThan(allocated(dir.resolve("src.raw")) + 65536);

        // raw -> raw through the page cache, one request at a time, with -W as qemu-img takes it.
        CliRun one = CliRun.of("img", "convert", "-m", "1", "-W", "-p", f("src.raw"), f("one.raw"));
        assertThat(one.code()).as(one.err()).isZero();
        assertThat(one.out()).contains("(100.00/100%)");
        Tools.ok(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", f("src.raw"), f("one.raw"));
        assertThat(allocated(dir.resolve("one.raw"))).isLessThan(allocated(dir.resolve("src.raw")) + 65536);
    }

    /**
     * In qemu-img's default cache modes the kernel copies file to file (copy_file_range); with
     * {@code -Dbiostack.img.copyRange=false} the bios of the pipeline do. Both must make the same
     * files byte for byte: a qcow2 destination is laid out before the copy, so the layout
     * cannot differ, only the bytes in it could. The source chain has a compressed cluster, a
     * zero cluster and a backing file, so every kind of run goes through both copies.
     */
    @Test
    void theKernelsCopyAndTheBioCopyMakeByteIdenticalFiles() throws Exception {
        Tools.require("qemu-img");
        halfAllocated(dir.resolve("base.raw"), 16L << 20, 21);
        try (RandomAccessFile raf = new RandomAccessFile(f("base.raw"), "rw")) {
            // Random bytes do not compress, and qemu-img stores such clusters uncompressed: give
            // it 2 MiB that do.
            byte[] text = "a cluster that compresses well. ".repeat(65536).getBytes(java.nio.charset.StandardCharsets.US_ASCII);
            raf.seek(10L << 20);
            raf.write(text);
        }
        Tools.ok(60, "qemu-img", "convert", "-c", "-O", "qcow2", f("base.raw"), f("base.qcow2"));
        assertThat(Tools.ok(60, "qemu-img", "check", f("base.qcow2")).out()).doesNotContain(" 0.00% compressed");
        Tools.ok(60, "qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", f("top.qcow2"));
        Tools.ok(60, "qemu-io", "-c", "write -P 0x5a 1M 3M", "-c", "write -z 6M 1M", "-c", "write -P 7 15M 64k",
                f("top.qcow2"));
        for (String[] c : List.of(new String[] {"raw", "top.qcow2"}, new String[] {"qcow2", "top.qcow2"},
                new String[] {"qcow2", "base.raw"}, new String[] {"raw", "base.raw"})) {
            String name = c[1] + "." + c[0];
            CliRun kernel = CliRun.of("img", "convert", "-O", c[0], f(c[1]), f("k." + name));
            assertThat(kernel.code()).as(name + ": " + kernel.err()).isZero();
            String was = System.setProperty("biostack.img.copyRange", "false");
            CliRun bios;
            try {
                bios = CliRun.of("img", "convert", "-O", c[0], f(c[1]), f("b." + name));
            } finally {
                if (was == null) {
                    System.clearProperty("biostack.img.copyRange");
                } else {
                    System.setProperty("biostack.img.copyRange", was);
                }
            }
            assertThat(bios.code()).as(name + ": " + bios.err()).isZero();
            assertThat(java.util.Arrays.mismatch(Files.readAllBytes(dir.resolve("k." + name)),
                    Files.readAllBytes(dir.resolve("b." + name)))).as(name + ": the first byte that differs").isEqualTo(-1);
            Tools.ok(60, "qemu-img", "compare", f(c[1]), f("k." + name));
        }
    }

    @Test
    void aParallelCountOutsideOneTo64IsRefusedAndNothingIsCreated() {
        for (String m : List.of("0", "65")) {
            CliRun r = CliRun.of("img", "convert", "-m", m, "-O", "qcow2", f("none.raw"), f("out.qcow2"));
            assertThat(r.code()).as(m).isNotZero();
            assertThat(r.err()).contains("between 1 and 64");
            assertThat(dir.resolve("out.qcow2")).doesNotExist();
        }
    }

    @Test
    void aReadErrorInTheMiddleStopsTheJobWithItsOffsetAndANonZeroExit() throws Exception {
        Tools.require("qemu-img");
        halfAllocated(dir.resolve("disk.raw"), 32L << 20, 7);
        // Every MiB holds data (so the map sends reads everywhere); MiB 8 fails every bio.
        try (RandomAccessFile raf = new RandomAccessFile(f("disk.raw"), "rw")) {
            for (long m = 0; m < 32; m++) {
                raf.seek(m << 20);
                raf.write(new byte[] {(byte) (m + 1)});
            }
        }
        Path stack = dir.resolve("s.stack");
        Files.writeString(stack, "disk: loop " + f("disk.raw") + "\n"
                + "d: 0 8M linear disk 0\n"
                + "d: 8M 1M error\n"
                + "d: 9M 23M linear disk 9M\n");
        Path sock = dir.resolve("n.sock");
        started.add(ServeProcess.startReady(dir, List.of("--stack", stack.toString(), "--export", "d",
                "--socket", sock.toString())));
        String uri = "nbd+unix:///d?socket=" + sock;
        for (String fmt : List.of("raw", "qcow2")) {
            CliRun r = assertTimeoutPreemptively(Duration.ofSeconds(60),
                    () -> CliRun.of("img", "convert", "-p", "-O", fmt, uri, f("out." + fmt)));
            assertThat(r.code()).as(fmt + ": " + r.err()).isEqualTo(1);
            assertThat(r.err()).as(fmt).contains("reading the source at guest offset 8388608")
                    .contains("I/O error");
        }
    }

    @Test
    void aFullFileSystemStopsTheJobWithNoSpaceAndANonZeroExit() throws Exception {
        Tools.require("mount", "umount");
        TestEnv.require("root".equals(System.getProperty("user.name")), "root (to mount a tmpfs)");
        Path small = dir.resolve("small");
        Files.createDirectories(small);
        Tools.ok(30, "mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small.toString());
        mounted = small;
        halfAllocated(dir.resolve("src.raw"), 32L << 20, 3);
        // Page cache both (tmpfs's O_DIRECT wants 4 KiB sectors, which a 512-byte loop refuses up front).
        for (String[] args : List.of(new String[] {"-O", "raw"}, new String[] {"-O", "qcow2"},
                new String[] {"-t", "writeback", "-O", "raw"})) {
            List<String> cmd = new ArrayList<>(List.of("img", "convert"));
            cmd.addAll(List.of(args));
            cmd.add(f("src.raw"));
            cmd.add(small.resolve("out").toString());
            CliRun r = assertTimeoutPreemptively(Duration.ofSeconds(60), () -> CliRun.of(cmd.toArray(String[]::new)));
            assertThat(r.code()).as(List.of(args) + ": " + r.err()).isEqualTo(1);
            // The bio path says "no space left on device"; the kernel's copy (page cache both
            // ends, the first two) gives strerror's "No space left on device".
            assertThat(r.err()).as(List.of(args).toString()).contains("writing the destination at guest offset")
                    .containsIgnoringCase("no space left");
            Files.deleteIfExists(small.resolve("out"));
        }
    }
}
