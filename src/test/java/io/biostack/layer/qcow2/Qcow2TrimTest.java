package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.block.Resizable;
import io.biostack.block.stats.CountedDevice;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The container is trimmed at a clean close (issue 15): qcow2 grows its file ahead in steps,
 * and a clean close gives back what it did not use, so the file ends where qemu-img check's
 * "Image end offset" says, as qemu's own files do.
 */
class Qcow2TrimTest {
    static final long SIZE = 64L << 20;

    @TempDir
    Path dir;

    private static Qcow2Device open(Path img, boolean ro) throws Exception {
        LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults().withReadOnly(ro));
        try {
            return Qcow2Device.open("q", c, new Qcow2Device.Options(ro, -1, null, false, img, null, img.toString()))
                    .closingContainer();
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
    }

    /** Writes {@code n} random 64 KiB pieces at random 4 KiB-aligned offsets, into the model too. */
    private static void scatter(BlockDevice q, byte[] model, int n, long seed) {
        Random r = new Random(seed);
        try (Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate(64 << 10, 4096);
            byte[] d = new byte[64 << 10];
            for (int i = 0; i < n; i++) {
                long off = (long) r.nextInt((int) ((model.length - d.length) / 4096)) * 4096;
                r.nextBytes(d);
                m.copyFrom(MemorySegment.ofArray(d));
                q.write(off, m).join();
                System.arraycopy(d, 0, model, (int) off, d.length);
            }
        }
    }

    private static long imageEnd(Path img) throws Exception {
        Tools.Result check = Tools.run(60, "qemu-img", "check", "--output=json", "-f", "qcow2", img.toString());
        assertThat(check.exit()).as(check.out() + check.err()).isZero();
        java.util.regex.Matcher end = java.util.regex.Pattern.compile("\"image-end-offset\": (\\d+)").matcher(check.out());
        assertThat(end.find()).as(check.out()).isTrue();
        return Long.parseLong(end.group(1));
    }

    private void sameData(Path img, byte[] model) throws Exception {
        Path want = dir.resolve("want.raw");
        Files.write(want, model);
        Tools.ok(60, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img.toString(), want.toString());
    }

    @ParameterizedTest
    @ValueSource(strings = {"cluster_size=65536", "cluster_size=512,refcount_bits=1", "cluster_size=2M,refcount_bits=64"})
    void aCleanCloseTrimsTheFileToTheImageEndOffsetQemuImgCheckReports(String opts) throws Exception {
        Tools.require("qemu-img");
        Path img = dir.resolve("t.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", opts, img.toString(), String.valueOf(SIZE));
        byte[] model = new byte[(int) SIZE];
        long grownTo;
        try (Qcow2Device q = open(img, false)) {
            scatter(q, model, 40, 1);
            q.flush().join();
            grownTo = Files.size(img);
        }
        long end = imageEnd(img);
        assertThat(grownTo).as("the container was grown ahead of its use").isGreaterThan(end);
        assertThat(Files.size(img)).isEqualTo((end + 511) & ~511L);
        sameData(img, model);
        // and again: a second run allocates from the trimmed end, grows, and trims again
        try (Qcow2Device q = open(img, false)) {
            scatter(q, model, 20, 2);
        }
        assertThat(Files.size(img)).isEqualTo((imageEnd(img) + 511) & ~511L);
        sameData(img, model);
    }

    @Test
    void aReadOnlyOpenNeverTruncates() throws Exception {
        Tools.require("qemu-img");
        Path img = dir.resolve("ro.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), String.valueOf(SIZE));
        byte[] model = new byte[(int) SIZE];
        try (Qcow2Device q = open(img, false)) {
            scatter(q, model, 8, 3);
        }
        long trimmed = Files.size(img);
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(trimmed + (3L << 20)); // a tail the refcounts do not count: trimmed only read-write
        }
        try (Qcow2Device q = open(img, true); Arena a = Arena.ofShared()) {
            q.read(0, a.allocate(1 << 20, 4096)).join();
        }
        assertThat(Files.size(img)).isEqualTo(trimmed + (3L << 20));
        sameData(img, model);
    }

    /** A file container whose writes fail once {@code broken} is set (a disk that went bad). */
    private static final class Breaking implements BlockDevice, Resizable {
        final LoopDevice inner;
        volatile boolean broken;

        Breaking(LoopDevice inner) {
            this.inner = inner;
        }

        @Override public String name() { return inner.name(); }
        @Override public long size() { return inner.size(); }
        @Override public io.biostack.block.QueueLimits limits() { return inner.limits(); }
        @Override public boolean isReadOnly() { return inner.isReadOnly(); }
        @Override public long growTo(long minSize) throws java.io.IOException { return inner.growTo(minSize); }
        @Override public boolean shrinkTo(long size) throws java.io.IOException { return inner.shrinkTo(size); }
        @Override public void close() { inner.close(); }

        @Override
        public void submit(io.biostack.block.Bio bio) {
            if (broken && bio.op() != io.biostack.block.Op.READ) {
                bio.fail(io.biostack.block.Status.IOERR, "the disk went bad");
            } else {
                inner.submit(bio);
            }
        }
    }

    @Test
    void aCloseWhoseMetadataWritebackFailedDoesNotTrim() throws Exception {
        Tools.require("qemu-img");
        Path img = dir.resolve("f.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), String.valueOf(SIZE));
        long grownTo;
        try (Breaking c = new Breaking(LoopDevice.open("c", img, LoopConfig.defaults()))) {
            Qcow2Device q = Qcow2Device.open("q", c, new Qcow2Device.Options(false, -1, null, false, img, null, "f"));
            scatter(q, new byte[(int) SIZE], 4, 4); // new clusters: the L2 table and refcounts are dirty
            grownTo = Files.size(img);
            c.broken = true;
            q.close();
        }
        assertThat(Files.size(img)).as("not a clean close: the file keeps its size").isEqualTo(grownTo);
    }

    @Test
    void bitmapsWrittenAtCloseAtTheImagesEndStayIntact() throws Exception {
        Tools.require("qemu-img");
        Path img = dir.resolve("b.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), String.valueOf(SIZE));
        Tools.ok(30, "qemu-img", "bitmap", "--add", "-g", "64k", img.toString(), "b0");
        byte[] model = new byte[(int) SIZE];
        try (Stack s = Stack.open("c: loop " + img + " direct-io=off\nq: qcow2 c\n", "t")) {
            scatter(s.device("q"), model, 16, 5);
        }
        long end = imageEnd(img);
        assertThat(Files.size(img)).isEqualTo((end + 511) & ~511L);
        String info = Tools.ok(30, "qemu-img", "info", "--output=json", img.toString()).out().replaceAll("\\s", "");
        assertThat(info).contains("\"flags\":[\"auto\"],\"name\":\"b0\",\"granularity\":65536");
        sameData(img, model);
    }

    @Test
    void anImageWithADataFileTrimsOnlyItsMetadataAndKeepsTheData() throws Exception {
        Tools.require("qemu-img");
        Path img = dir.resolve("m.qcow2");
        Path data = dir.resolve("m.data");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", "data_file=" + data, img.toString(), String.valueOf(SIZE));
        byte[] model = new byte[(int) SIZE];
        long dataBefore;
        try (Stack s = Stack.open("c: loop " + img + " direct-io=off\nq: qcow2 c\n", "t")) {
            scatter(s.device("q"), model, 16, 6);
            s.device("q").flush().join();
            dataBefore = Files.size(data);
        }
        assertThat(Files.size(img)).isEqualTo((imageEnd(img) + 511) & ~511L);
        assertThat(Files.size(data)).isEqualTo(dataBefore);
        sameData(img, model);
    }

    @Test
    void onlyAFileShrinksAndNeverBelowTheSizeAsked() throws Exception {
        Path f = dir.resolve("f.img");
        try (LoopDevice l = LoopDevice.open("l", f, LoopConfig.defaults().withCreateSize(8L << 20))) {
            CountedDevice counted = new CountedDevice(l); // passes the shrink on
            assertThat(Resizable.shrink(counted, 1000)).isTrue();
            assertThat(Files.size(f)).as("rounded up to the logical block size").isEqualTo(1024);
            assertThat(l.size()).isEqualTo(1024);
            assertThat(Resizable.shrink(l, 4096)).as("never grows").isTrue();
            assertThat(Files.size(f)).isEqualTo(1024);
        }
        try (LoopDevice ro = LoopDevice.open("ro", f, LoopConfig.defaults().withReadOnly(true));
             io.biostack.block.RamDisk ram = new io.biostack.block.RamDisk("ram", 1 << 20)) {
            assertThat(Resizable.shrink(ro, 512)).as("read-only").isFalse();
            assertThat(Files.size(f)).isEqualTo(1024);
            assertThat(Resizable.shrink(ram, 512)).as("not Resizable").isFalse();
            assertThat(ram.size()).isEqualTo(1 << 20);
        }
        try (LoopDevice limited = LoopDevice.open("lim", f, LoopConfig.defaults().withSizeLimit(1024))) {
            assertThat(Resizable.shrink(limited, 512)).as("a size limit").isFalse();
            assertThat(Files.size(f)).isEqualTo(1024);
        }
    }
}
