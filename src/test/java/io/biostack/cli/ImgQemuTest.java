package io.biostack.cli;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code biostack img} against qemu-img on the same files: images biostack creates pass
 * {@code qemu-img check} and show the options asked for; info, map and check print what qemu-img
 * prints (JSON compared as data, human text as text); convert round trips byte-equal.
 */
class ImgQemuTest {
    @TempDir
    Path dir;

    @BeforeEach
    void tools() {
        Tools.require("qemu-img", "qemu-io");
    }

    private String f(String name) {
        return dir.resolve(name).toString();
    }

    private static Tools.Result qemu(String... args) throws Exception {
        return Tools.run(60, args);
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "cluster_size=512", "cluster_size=2M", "refcount_bits=1", "refcount_bits=64",
            "lazy_refcounts=on", "extended_l2=on", "compression_type=zstd", "preallocation=metadata",
            "preallocation=falloc", "preallocation=full", "cluster_size=16k,refcount_bits=8,extended_l2=on"})
    void createdImagesPassQemuCheckAndShowTheOptionsAsked(String opts) throws Exception {
        String img = f("b.qcow2");
        CliRun r = opts.isEmpty() ? CliRun.of("img", "create", "-q", "-f", "qcow2", img, "3M")
                : CliRun.of("img", "create", "-q", "-f", "qcow2", "-o", opts, img, "3M");
        assertThat(r.code()).as(r.err()).isZero();
        Tools.ok(60, "qemu-img", "check", img);
        Map<String, Object> info = ImgJson.object(Tools.ok(60, "qemu-img", "info", "--output=json", img).out());
        assertThat(info.get("virtual-size")).isEqualTo(3L << 20);
        @SuppressWarnings("unchecked")
        Map<String, Object> data = (Map<String, Object>) ((Map<String, Object>) info.get("format-specific")).get("data");
        Map<String, String> o = ImgCommand.parseOptions(opts.isEmpty() ? java.util.List.of() : java.util.List.of(opts));
        assertThat(info.get("cluster-size")).isEqualTo(io.biostack.block.Sizes.parse(o.getOrDefault("cluster_size", "64k")));
        assertThat(data.get("refcount-bits")).isEqualTo(Long.parseLong(o.getOrDefault("refcount_bits", "16")));
        assertThat(data.get("lazy-refcounts")).isEqualTo(o.getOrDefault("lazy_refcounts", "off").equals("on"));
        assertThat(data.get("extended-l2")).isEqualTo(o.getOrDefault("extended_l2", "off").equals("on"));
        assertThat(data.get("compression-type")).isEqualTo(o.getOrDefault("compression_type", "zlib"));
        if (o.containsKey("preallocation")) {
            String map = Tools.ok(60, "qemu-img", "map", "--output=json", img).out();
            assertThat(map).as("every cluster is mapped").contains("\"data\": true").doesNotContain("\"present\": false");
        }
        // qemu-io writes and reads it back, and the image stays clean.
        Tools.ok(60, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1000k 300k", "-c", "read -P 0x5a 1000k 300k", img);
        Tools.ok(60, "qemu-img", "check", img);
    }

    @Test
    void defaultCreateIsByteIdenticalToQemuImgs() throws Exception {
        assertThat(CliRun.of("img", "create", "-q", "-f", "qcow2", f("b.qcow2"), "1G").code()).isZero();
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", f("q.qcow2"), "1G");
        assertThat(Files.readAllBytes(dir.resolve("b.qcow2"))).isEqualTo(Files.readAllBytes(dir.resolve("q.qcow2")));
    }

    @Test
    void createWithBackingTakesItsSizeAndNeedsItsFormat() throws Exception {
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", f("base.raw"), "5M");
        CliRun noFmt = CliRun.of("img", "create", "-f", "qcow2", "-b", "base.raw", f("top.qcow2"));
        assertThat(noFmt.code()).isNotZero();
        assertThat(noFmt.err()).contains("Backing file specified without backing format").contains("Detected format of raw");
        assertThat(dir.resolve("top.qcow2")).doesNotExist();
        CliRun ok = CliRun.of("img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", f("top.qcow2"));
        assertThat(ok.code()).as(ok.err()).isZero();
        Map<String, Object> info = ImgJson.object(Tools.ok(60, "qemu-img", "info", "--output=json", f("top.qcow2")).out());
        assertThat(info).containsEntry("virtual-size", 5L << 20).containsEntry("backing-filename", "base.raw")
                .containsEntry("backing-filename-format", "raw");
        Tools.ok(60, "qemu-img", "check", f("top.qcow2"));
    }

    @Test
    void anImageIsNotCreatedOverItsOwnBackingFileUnderAnyName() throws Exception {
        Path img = dir.resolve("a.qcow2");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "4M");
        Tools.ok(60, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", img.toString());
        Files.createSymbolicLink(dir.resolve("link.qcow2"), img);
        byte[] before = Files.readAllBytes(img);
        // qemu-img refuses the same name (bdrv_img_create's strcmp); under another one it empties the image
        Tools.Result q = qemu("qemu-img", "create", "-q", "-f", "qcow2", "-b", img.toString(), "-F", "qcow2", img.toString());
        assertThat(q.all()).contains("Trying to create an image with the same filename as the backing file");
        for (String b : new String[] {"a.qcow2", img.toString(), "link.qcow2"}) {
            CliRun r = CliRun.of("img", "create", "-q", "-f", "qcow2", "-b", b, "-F", "qcow2", img.toString());
            assertThat(r.code()).as(b).isNotZero();
            assertThat(r.err()).as(b).contains("Trying to create an image with the same filename as the backing file");
            assertThat(Files.readAllBytes(img)).as(b + ": the image and its data are still there").isEqualTo(before);
        }
    }

    @Test
    void aBackingFileThatCannotBeOpenedIsRefusedEvenWithASizeOrGivenByDashOAsQemuImgDoes() throws Exception {
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", f("base.raw"), "5M");
        String[][] refused = {
            {"-b", "nope.qcow2", "-F", "qcow2"},
            {"-b", "base.raw", "-F", "qcow2"},
            {"-o", "backing_file=nope.qcow2,backing_fmt=qcow2"},
            {"-o", "backing_file=base.raw"},
        };
        for (String[] args : refused) {
            java.util.List<String> tail = new java.util.ArrayList<>(java.util.List.of(args));
            tail.addAll(java.util.List.of(f("top.qcow2"), "1M"));
            java.util.List<String> ours = new java.util.ArrayList<>(java.util.List.of("img", "create", "-q", "-f", "qcow2"));
            ours.addAll(tail);
            java.util.List<String> theirs = new java.util.ArrayList<>(java.util.List.of("qemu-img", "create", "-q", "-f", "qcow2"));
            theirs.addAll(tail);
            assertThat(Tools.run(60, theirs.toArray(String[]::new)).exit()).as("qemu-img " + tail).isNotZero();
            assertThat(dir.resolve("top.qcow2")).as("qemu-img " + tail).doesNotExist();
            CliRun r = CliRun.of(ours.toArray(String[]::new));
            assertThat(r.code()).as(String.join(" ", tail)).isNotZero();
            assertThat(r.err()).as(String.join(" ", tail)).isNotBlank();
            assertThat(dir.resolve("top.qcow2")).as(String.join(" ", tail)).doesNotExist();
        }
        CliRun ok = CliRun.of("img", "create", "-q", "-f", "qcow2", "-o", "backing_file=base.raw,backing_fmt=raw",
                f("top.qcow2"));
        assertThat(ok.code()).as(ok.err()).isZero();
        Map<String, Object> info = ImgJson.object(Tools.ok(60, "qemu-img", "info", "--output=json", f("top.qcow2")).out());
        assertThat(info).containsEntry("virtual-size", 5L << 20).containsEntry("backing-filename-format", "raw");
    }

    @Test
    void badCreateOptionsAreRefusedAndCreateNothing() {
        for (String o : new String[] {"cluster_size=3000", "refcount_bits=3", "extended_l2=on,cluster_size=8k",
                "compression_type=lz4", "preallocation=some", "compat=0.10,lazy_refcounts=on", "compat=0.9", "nosuch=1"}) {
            CliRun r = CliRun.of("img", "create", "-f", "qcow2", "-o", o, f("bad.qcow2"), "1M");
            assertThat(r.code()).as(o).isNotZero();
            assertThat(r.err()).as(o).isNotBlank();
            assertThat(dir.resolve("bad.qcow2")).as(o).doesNotExist();
        }
    }

    /** A chain qemu made: raw base, qcow2 middle with a snapshot and a bitmap, extended-L2 zstd top. */
    private String chain() throws Exception {
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", f("base.raw"), "8M");
        Tools.ok(60, "qemu-io", "-f", "raw", "-c", "write -P 1 0 2M", f("base.raw"));
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-b", "base.raw", "-F", "raw",
                f("mid.qcow2"));
        Tools.ok(60, "qemu-io", "-c", "write -P 2 1M 1M", "-c", "write -z 3M 64k", f("mid.qcow2"));
        Tools.ok(60, "qemu-img", "snapshot", "-c", "s1", f("mid.qcow2"));
        Tools.ok(60, "qemu-img", "bitmap", "--add", f("mid.qcow2"), "b0");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on,compression_type=zstd,cluster_size=128k",
                "-b", "mid.qcow2", "-F", "qcow2", f("top.qcow2"), "10M");
        Tools.ok(60, "qemu-io", "-c", "write -P 3 1500k 20k", "-c", "write -z 6M 1M", f("top.qcow2"));
        return f("top.qcow2");
    }

    @Test
    void infoMatchesQemuImgInJsonAndText() throws Exception {
        String top = chain();
        for (String img : new String[] {top, f("mid.qcow2"), f("base.raw")}) {
            assertThat(ImgJson.parse(CliRun.of("img", "info", "--output=json", img).out()))
                    .as(img).isEqualTo(ImgJson.parse(qemu("qemu-img", "info", "--output=json", img).out()));
            assertThat(CliRun.of("img", "info", img).out()).as(img).isEqualTo(qemu("qemu-img", "info", img).out());
        }
        assertThat(ImgJson.parse(CliRun.of("img", "info", "--output=json", "--backing-chain", top).out()))
                .isEqualTo(ImgJson.parse(qemu("qemu-img", "info", "--output=json", "--backing-chain", top).out()));
        assertThat(CliRun.of("img", "info", "--backing-chain", top).out())
                .isEqualTo(qemu("qemu-img", "info", "--backing-chain", top).out());
    }

    @Test
    void mapMatchesQemuImgThroughTheChain() throws Exception {
        String top = chain();
        for (String img : new String[] {top, f("mid.qcow2"), f("base.raw")}) {
            assertThat(CliRun.of("img", "map", "--output=json", img).out()).as(img)
                    .isEqualTo(qemu("qemu-img", "map", "--output=json", img).out());
        }
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", f("plain.qcow2"), "4M");
        Tools.ok(60, "qemu-io", "-c", "write -P 9 64k 200k", "-c", "write -P 8 2M 64k", f("plain.qcow2"));
        assertThat(CliRun.of("img", "map", f("plain.qcow2")).out()).isEqualTo(qemu("qemu-img", "map", f("plain.qcow2")).out());
    }

    /** Sets the 16-bit refcount of {@code cluster} in the first refcount block. */
    private static void setRefcount(Path img, long cluster, int value) throws IOException {
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer h = ByteBuffer.allocate(64);
            ch.read(h, 0);
            ByteBuffer e = ByteBuffer.allocate(8);
            ch.read(e, h.getLong(48));
            ch.write(ByteBuffer.allocate(2).putShort(0, (short) value), e.getLong(0) + 2 * cluster);
        }
    }

    private Path damaged(String kind) throws Exception {
        Path p = dir.resolve(kind + ".qcow2");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", p.toString(), "64M");
        Tools.ok(60, "qemu-io", "-c", "write -P 7 0 1M", "-c", "write -P 8 10M 64k", p.toString());
        Tools.ok(60, "qemu-img", "snapshot", "-c", "s1", p.toString());
        Tools.ok(60, "qemu-io", "-c", "write -P 9 0 64k", p.toString());
        long clusters = Files.size(p) / 65536;
        switch (kind) {
            case "clean" -> { }
            case "leaky" -> {
                try (RandomAccessFile r = new RandomAccessFile(p.toFile(), "rw")) {
                    r.setLength((clusters + 2) * 65536);
                }
                setRefcount(p, clusters, 1);
                setRefcount(p, clusters + 1, 3);
            }
            case "corrupt" -> setRefcount(p, 5, 0);
            case "copied" -> setRefcount(p, clusters - 2, 2);
            default -> throw new IllegalArgumentException(kind);
        }
        return p;
    }

    @ParameterizedTest
    @ValueSource(strings = {"clean", "leaky", "corrupt", "copied"})
    void checkAgreesWithQemuImg(String kind) throws Exception {
        Path p = damaged(kind);
        Tools.Result q = qemu("qemu-img", "check", "--output=json", p.toString());
        CliRun b = CliRun.of("img", "check", "--output=json", p.toString());
        assertThat(b.code()).isEqualTo(q.exit()).isEqualTo(switch (kind) {
            case "clean" -> 0;
            case "leaky" -> 3;
            default -> 2;
        });
        assertThat(ImgJson.parse(b.out())).isEqualTo(ImgJson.parse(q.out()));
        assertThat(b.err()).isEqualTo(q.err());
        Tools.Result qh = qemu("qemu-img", "check", p.toString());
        assertThat(CliRun.of("img", "check", p.toString()).out()).isEqualTo(qh.out());
    }

    @ParameterizedTest
    @ValueSource(strings = {"leaky:leaks", "leaky:all", "corrupt:leaks", "corrupt:all", "copied:all"})
    void repairsAsQemuImgDoes(String kindAndMode) throws Exception {
        String[] km = kindAndMode.split(":");
        Path ours = damaged(km[0]);
        Path theirs = dir.resolve("q-" + ours.getFileName());
        Files.copy(ours, theirs);
        Tools.Result q = qemu("qemu-img", "check", "-r", km[1], theirs.toString());
        CliRun b = CliRun.of("img", "check", "-r", km[1], ours.toString());
        assertThat(b.code()).as(b.err()).isEqualTo(q.exit());
        assertThat(b.err().replace("biostack:", "qemu-img:")).isEqualTo(q.err());
        if (!kindAndMode.equals("corrupt:all")) {
            // A rebuilt refcount structure goes where each tool puts it; only its end offset differs.
            assertThat(b.out().replace(ours.toString(), "X")).isEqualTo(q.out().replace(theirs.toString(), "X"));
        }
        int after = qemu("qemu-img", "check", ours.toString()).exit();
        assertThat(after).isEqualTo(qemu("qemu-img", "check", theirs.toString()).exit());
        if (!kindAndMode.equals("corrupt:leaks")) {
            assertThat(after).isZero();
            Tools.ok(60, "qemu-img", "compare", ours.toString(), theirs.toString());
        }
    }

    @Test
    void checkOfARawFileIsRefusedAsQemuImgDoes() throws Exception {
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", f("r.raw"), "1M");
        CliRun b = CliRun.of("img", "check", f("r.raw"));
        assertThat(b.code()).isEqualTo(qemu("qemu-img", "check", f("r.raw")).exit());
        assertThat(b.err()).contains("does not support checks");
    }

    @Test
    void infoOfAMissingOrDamagedFileFailsClearly() throws Exception {
        CliRun missing = CliRun.of("img", "info", f("nope.qcow2"));
        assertThat(missing.code()).isEqualTo(1);
        assertThat(missing.err()).contains("nope.qcow2").contains("No such file");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", f("t.qcow2"), "1G");
        try (RandomAccessFile r = new RandomAccessFile(dir.resolve("t.qcow2").toFile(), "rw")) {
            r.setLength(100_000); // cuts the L1 table off
        }
        CliRun cut = CliRun.of("img", "info", f("t.qcow2"));
        assertThat(cut.code()).isEqualTo(1);
        assertThat(cut.err()).contains("t.qcow2").contains("L1 table").contains("past the end");
    }

    @Test
    void convertRoundTripsRawQcow2AndChainsByteEqual() throws Exception {
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", f("src.raw"), "32M");
        Tools.ok(60, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 3M", "-c", "write -P 0x22 10M 100k",
                "-c", "write -P 0x33 20M 5M", "-c", "write -P 0x44 31M 1M", f("src.raw"));
        CliRun toQ = CliRun.of("img", "convert", "-O", "qcow2", f("src.raw"), f("out.qcow2"));
        assertThat(toQ.code()).as(toQ.err()).isZero();
        Tools.ok(60, "qemu-img", "check", f("out.qcow2"));
        Tools.ok(60, "qemu-img", "compare", f("src.raw"), f("out.qcow2"));
        // Only the data was copied: the qcow2 maps about 9 MiB of the 32.
        assertThat(Files.size(dir.resolve("out.qcow2"))).isLessThan(12L << 20);
        CliRun toR = CliRun.of("img", "convert", "-p", "-t", "none", "-T", "none", f("out.qcow2"), f("back.raw"));
        assertThat(toR.code()).as(toR.err()).isZero();
        assertThat(toR.out()).contains("(100.00/100%)");
        assertThat(Files.readAllBytes(dir.resolve("back.raw"))).isEqualTo(Files.readAllBytes(dir.resolve("src.raw")));
        // A chain is flattened; a zlib-compressed image qemu made is inflated.
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "out.qcow2", "-F", "qcow2", f("top.qcow2"));
        Tools.ok(60, "qemu-io", "-c", "write -P 0x55 1M 64k", "-c", "write -z 21M 1M", f("top.qcow2"));
        assertThat(CliRun.of("img", "convert", "-O", "qcow2", f("top.qcow2"), f("flat.qcow2")).code()).isZero();
        Tools.ok(60, "qemu-img", "compare", f("top.qcow2"), f("flat.qcow2"));
        Tools.ok(60, "qemu-img", "check", f("flat.qcow2"));
        Tools.ok(60, "qemu-img", "convert", "-c", "-O", "qcow2", f("src.raw"), f("comp.qcow2"));
        assertThat(CliRun.of("img", "convert", f("comp.qcow2"), f("fromcomp.raw")).code()).isZero();
        Tools.ok(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", f("src.raw"), f("fromcomp.raw"));
    }

    @Test
    void convertRefusesABadCacheModeAndTheSameFileWritingNothing() throws Exception {
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", f("src.raw"), "1M");
        CliRun cache = CliRun.of("img", "convert", "-t", "bogus", f("src.raw"), f("t.raw"));
        assertThat(cache.code()).isEqualTo(1);
        assertThat(cache.err()).contains("-t takes none, writeback or unsafe");
        assertThat(dir.resolve("t.raw")).doesNotExist();
        CliRun same = CliRun.of("img", "convert", f("src.raw"), f("src.raw"));
        assertThat(same.code()).isEqualTo(1);
        assertThat(same.err()).contains("same file");
        assertThat(Files.size(dir.resolve("src.raw"))).isEqualTo(1L << 20);
    }

    /**
     * A raw file whose size is not a multiple of 512 (5000 bytes, alone and as the backing file
     * of a bigger qcow2) is, to qemu, a disk of whole sectors: its last sector holds the file's
     * last bytes and then zeros (virtual size 5120). Every convert, in every cache mode, writes
     * what qemu-img convert writes, byte for byte; the loop device that reads it ends at the last
     * whole sector, so the last bytes were once dropped (exit 0) or the copy failed.
     */
    @Test
    void aRawFileOfPartSectorsConvertsWholeInEveryCacheMode() throws Exception {
        byte[] bytes = new byte[5000];
        new java.util.Random(5000).nextBytes(bytes);
        Files.write(dir.resolve("odd.raw"), bytes);
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "odd.raw", "-F", "raw", f("top.qcow2"), "8k");
        Tools.ok(60, "qemu-io", "-c", "write -P 0x77 6k 1k", f("top.qcow2"));
        for (String src : new String[] {"odd.raw", "top.qcow2"}) {
            Tools.ok(60, "qemu-img", "convert", "-O", "raw", f(src), f("ref." + src + ".raw"));
            byte[] ref = Files.readAllBytes(dir.resolve("ref." + src + ".raw"));
            for (String[] mode : new String[][] {{}, {"-t", "none"}, {"-T", "none"}, {"-t", "none", "-T", "none"},
                    {"--engine", "threads"}, {"-O", "qcow2"}, {"-O", "qcow2", "-t", "none", "-T", "none"},
                    {"-O", "qcow2", "-c"}}) {
                String name = "out." + src + String.join("", mode);
                Files.deleteIfExists(dir.resolve(name));
                String[] args = new String[mode.length + 4];
                args[0] = "img";
                args[1] = "convert";
                System.arraycopy(mode, 0, args, 2, mode.length);
                args[mode.length + 2] = f(src);
                args[mode.length + 3] = f(name);
                CliRun r = CliRun.of(args);
                assertThat(r.code()).as(name + ": " + r.err()).isZero();
                Tools.ok(60, "qemu-img", "convert", "-O", "raw", f(name), f(name + ".back"));
                assertThat(java.util.Arrays.mismatch(Files.readAllBytes(dir.resolve(name + ".back")), ref))
                        .as(name + ": the first byte that differs from qemu-img convert's").isEqualTo(-1);
            }
        }
    }

    /** info and map of a raw file of part sectors say what qemu-img says: a size of whole sectors, the last one's tail zeros. */
    @Test
    void infoAndMapOfARawFileOfPartSectorsMatchQemuImg() throws Exception {
        Files.write(dir.resolve("odd.raw"), new byte[] {1, 2, 3});
        Files.write(dir.resolve("odd.raw"), "x".repeat(4997).getBytes(java.nio.charset.StandardCharsets.US_ASCII),
                StandardOpenOption.APPEND);
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "odd.raw", "-F", "raw", f("top.qcow2"), "8k");
        for (String img : new String[] {f("odd.raw"), f("top.qcow2")}) {
            assertThat(ImgJson.parse(CliRun.of("img", "info", "--output=json", img).out()))
                    .as(img).isEqualTo(ImgJson.parse(qemu("qemu-img", "info", "--output=json", img).out()));
            assertThat(CliRun.of("img", "map", "--output=json", img).out()).as(img)
                    .isEqualTo(qemu("qemu-img", "map", "--output=json", img).out());
        }
    }

    /**
     * A destination that is the source under another name (a symlink, a hard link) or one of the
     * source's backing files is refused before anything is written: qemu-img refuses it too (its
     * create cannot take the write lock the open source holds). Truncating it first would wipe
     * the source and then copy the zeros, with exit 0.
     */
    @Test
    void convertRefusesTheSourceOrItsBackingFileUnderAnotherNameWritingNothing() throws Exception {
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", f("src.raw"), "1M");
        Tools.ok(60, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1M", f("src.raw"));
        byte[] before = Files.readAllBytes(dir.resolve("src.raw"));
        Files.createSymbolicLink(dir.resolve("link.raw"), dir.resolve("src.raw"));
        Files.createLink(dir.resolve("hard.raw"), dir.resolve("src.raw"));
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "src.raw", "-F", "raw", f("top.qcow2"));
        String[][] cases = {
                {f("src.raw"), f("link.raw")},
                {f("link.raw"), f("src.raw")},
                {f("src.raw"), f("hard.raw")},
                {f("top.qcow2"), f("src.raw")},
                {f("top.qcow2"), f("link.raw")},
                {"-O", "qcow2", f("top.qcow2"), f("src.raw")},
                {"-t", "none", f("src.raw"), f("link.raw")},
        };
        for (String[] c : cases) {
            String[] args = new String[c.length + 2];
            args[0] = "img";
            args[1] = "convert";
            System.arraycopy(c, 0, args, 2, c.length);
            CliRun r = CliRun.of(args);
            assertThat(r.code()).as(String.join(" ", c) + ": " + r.err()).isEqualTo(1);
            assertThat(r.err()).as(String.join(" ", c)).contains("same file");
            assertThat(Files.readAllBytes(dir.resolve("src.raw"))).as(String.join(" ", c)).isEqualTo(before);
        }
    }

    /**
     * A raw block device (a loop device over a file) as a source and as a qcow2's backing file:
     * its size is the device's, not its st_size of 0, so info says it; it has no holes to tell
     * (SEEK_DATA fails with EINVAL), so map shows it all as data, as qemu-img's does; and a
     * convert (which leaves such a source to the loop device, not the kernel's file copy) copies
     * every byte.
     */
    @Test
    void aBlockDeviceSourceAndBackingFileHaveTheDevicesSizeAndConvertWhole() throws Exception {
        Tools.require("losetup");
        io.biostack.TestEnv.require("root".equals(System.getProperty("user.name")), "root (to attach a loop device)");
        Tools.ok(60, "qemu-img", "create", "-q", "-f", "raw", f("blk.img"), "8M");
        Tools.ok(60, "qemu-io", "-f", "raw", "-c", "write -P 0x5c 0 1M", "-c", "write -P 0x6d 7M 1M", f("blk.img"));
        String dev = Tools.ok(30, "losetup", "--find", "--show", f("blk.img")).out().trim();
        try {
            CliRun info = CliRun.of("img", "info", dev);
            assertThat(info.code()).as(info.err()).isZero();
            assertThat(info.out()).contains("virtual size: 8 MiB (8388608 bytes)");
            CliRun conv = CliRun.of("img", "convert", "-O", "raw", dev, f("copy.raw"));
            assertThat(conv.code()).as(conv.err()).isZero();
            assertThat(java.util.Arrays.mismatch(Files.readAllBytes(dir.resolve("copy.raw")),
                    Files.readAllBytes(dir.resolve("blk.img")))).as("first byte that differs").isEqualTo(-1);
            // A block device cannot tell its holes (SEEK_DATA: EINVAL): all of it is data, as qemu maps it.
            CliRun map = CliRun.of("img", "map", dev);
            assertThat(map.out()).as(map.err()).isEqualTo(Tools.ok(30, "qemu-img", "map", dev).out());
            Tools.ok(60, "qemu-img", "create", "-q", "-f", "qcow2", "-b", dev, "-F", "raw", f("over.qcow2"));
            CliRun flat = CliRun.of("img", "convert", "-O", "raw", f("over.qcow2"), f("flat.raw"));
            assertThat(flat.code()).as(flat.err()).isZero();
            assertThat(java.util.Arrays.mismatch(Files.readAllBytes(dir.resolve("flat.raw")),
                    Files.readAllBytes(dir.resolve("blk.img")))).as("first byte that differs").isEqualTo(-1);
        } finally {
            Tools.run(30, "losetup", "-d", dev);
        }
    }
}
