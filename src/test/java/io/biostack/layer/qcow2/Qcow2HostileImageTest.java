package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.cli.CliRun;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.CompletionException;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Hostile images, made as qemu's iotests 060 and 080 make them: {@code qemu-img create} and
 * {@code qemu-io}, then bytes poked into the file. Each must end in a clear error at open that
 * names the problem, or in EIO on the read it spoils, through both the qcow2 device (over a loop
 * device) and {@code biostack img info/check/map}: never another exception, a hang (every step
 * has a deadline), an OutOfMemoryError, or a write to the image (its sha256 is unchanged).
 *
 * <p>The base image is qemu-img's default layout for 64 MiB with 64 KiB clusters, after one
 * 64 KiB write at 0: header at 0, refcount table at 0x10000, refcount block at 0x20000, L1 table
 * at 0x30000, L2 table at 0x40000, data at 0x50000; the file ends at 0x60000.
 */
class Qcow2HostileImageTest {
    private static final long L1 = 0x30000, L2 = 0x40000;
    private static final Duration DEADLINE = Duration.ofSeconds(30);

    @TempDir
    Path dir;

    /** What a hostile image must end in. */
    enum Outcome {
        /** Every opener refuses it with a message containing the case's words. */
        OPEN,
        /** It opens; reading the first cluster fails with EIO; {@code img check} finds corruption. */
        READ
    }

    /** A hostile image: how to spoil the base image, and what that must end in. */
    record Case(String name, Outcome outcome, String words, Base base, Poke poke) {
        Case(String name, Outcome outcome, String words, Poke poke) {
            this(name, outcome, words, Base.PLAIN, poke);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    /** The image a case starts from, made once by qemu-img and copied for each case. */
    enum Base {
        /** 64 MiB, one 64 KiB write at 0. */
        PLAIN,
        /** PLAIN with an internal snapshot "s1". */
        SNAPSHOT,
        /**
         * PLAIN with a persistent bitmap "b0": qemu leaves the bitmap directory as the file's
         * last bytes, mid-sector, which the container shows as the qcow2 open asks it to.
         */
        BITMAP,
        /** PLAIN as a version 2 image ({@code compat=0.10}). */
        V2
    }

    @TempDir
    static Path bases;

    @BeforeAll
    static void makeBases() throws Exception {
        if (Tools.run(10, "sh", "-c", "command -v qemu-img && command -v qemu-io").exit() != 0) {
            return; // the tests say what is missing
        }
        Path plain = bases.resolve(Base.PLAIN.name());
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", plain.toString(), "64M");
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", plain.toString());
        Path snap = bases.resolve(Base.SNAPSHOT.name());
        Files.copy(plain, snap);
        Tools.ok(30, "qemu-img", "snapshot", "-c", "s1", snap.toString());
        Path bm = bases.resolve(Base.BITMAP.name());
        Files.copy(plain, bm);
        Tools.ok(30, "qemu-img", "bitmap", "--add", bm.toString(), "b0");
        Path v2 = bases.resolve(Base.V2.name());
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2.toString(), "64M");
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", v2.toString());
    }

    @FunctionalInterface
    interface Poke {
        void apply(Path img, Path dir) throws Exception;
    }

    static List<Case> cases() {
        return List.of(
                // 080 "Invalid L1 table": l1_size 0xffffffff, then 0x7fffffff.
                new Case("huge L1 size", Outcome.OPEN, "L1 table", (p, d) -> u32(p, 36, 0xffffffff)),
                new Case("huge positive L1 size", Outcome.OPEN, "L1 table", (p, d) -> u32(p, 36, 0x7fffffff)),
                new Case("L1 table at a huge offset", Outcome.OPEN, "L1 table", (p, d) -> {
                    u64(p, 40, 0x7fffffffffff0000L);
                    u32(p, 36, 0xffff);
                }),
                new Case("misaligned L1 table", Outcome.OPEN, "L1 table", (p, d) -> u64(p, 40, 0x1234567890abcdefL)),
                new Case("L1 table past the end of the file", Outcome.OPEN, "L1 table", (p, d) -> u64(p, 40, 0x7fff0000L)),
                // 080 "Huge refcount table size", "Misaligned refcount table", 060 "refcount table over the header".
                new Case("refcount table over the header", Outcome.OPEN, "refcount table", (p, d) -> u64(p, 48, 0)),
                new Case("huge refcount table", Outcome.OPEN, "refcount table", (p, d) -> u32(p, 56, 0xffffffff)),
                new Case("misaligned refcount table", Outcome.OPEN, "refcount table",
                        (p, d) -> u64(p, 48, 0x1234567890abcdefL)),
                new Case("refcount table at a huge offset", Outcome.OPEN, "refcount table", (p, d) -> {
                    u64(p, 48, 0xffffffffffff0000L);
                    u32(p, 56, 0x7f);
                }),
                // 080 "Huge header size", "Huge unknown header extension".
                new Case("huge header length", Outcome.OPEN, "header_length", (p, d) -> u32(p, 100, 0xffffffff)),
                new Case("header extension past the first cluster", Outcome.OPEN, "header extension",
                        (p, d) -> u32(p, 112 + 4, 0x7fffffff)),
                new Case("unknown incompatible bit", Outcome.OPEN, "incompatible bit 60",
                        (p, d) -> u64(p, 72, 1L << 60)),
                // 080 "Invalid backing file size"; a backing name past the first cluster.
                new Case("backing name past the first cluster", Outcome.OPEN, "backing file name", (p, d) -> {
                    u64(p, 8, 0xfff0);
                    u32(p, 16, 0x100);
                }),
                new Case("huge backing name", Outcome.OPEN, "backing file name", (p, d) -> {
                    u64(p, 8, 0x1000);
                    u32(p, 16, 0xffffffff);
                }),
                // 080 "Invalid snapshot table".
                new Case("too many snapshots", Outcome.OPEN, "snapshots", (p, d) -> u32(p, 60, 0xffffffff)),
                new Case("snapshot table past the end", Outcome.OPEN, "snapshot table", (p, d) -> {
                    u64(p, 64, 0x7fff0000L);
                    u32(p, 60, 1);
                }),
                new Case("snapshot extra data past the end", Outcome.OPEN, "snapshot", Base.SNAPSHOT, (p, d) -> {
                    u32(p, snapshotsOffset(p) + 36, 0x7fffffff);
                }),
                new Case("snapshot name past the end", Outcome.OPEN, "snapshot", Base.SNAPSHOT, (p, d) -> {
                    long s = snapshotsOffset(p);
                    u32(p, 0x24 + s, 0x400); // 1 KiB of extra data, then a name that runs past the end
                    u16(p, s + 14, 0xffff);
                    truncate(p, s + 0x200);
                }),
                new Case("snapshot with a huge L1 table", Outcome.OPEN, "snapshot", Base.SNAPSHOT, (p, d) -> {
                    u32(p, snapshotsOffset(p) + 8, 0x10000000);
                }),
                // Bitmap directory and extension lengths past the end.
                new Case("bitmap directory past the end", Outcome.OPEN, "bitmap directory", Base.BITMAP, (p, d) -> {
                    u64(p, extension(p, Qcow2Header.EXT_BITMAPS) + 16, 0x7fff0000L);
                }),
                new Case("huge bitmap directory", Outcome.OPEN, "bitmap directory", Base.BITMAP, (p, d) -> {
                    u64(p, extension(p, Qcow2Header.EXT_BITMAPS) + 8, 0x7fffffffffff0000L);
                }),
                new Case("bitmap entry past its directory", Outcome.OPEN, "bitmap", Base.BITMAP, (p, d) -> {
                    long dirOff = ByteBuffer.wrap(read(p, extension(p, Qcow2Header.EXT_BITMAPS) + 16, 8)).getLong();
                    u32(p, dirOff + 20, 0x7ffffff0); // extra_data_size
                }),
                // Truncated files.
                new Case("file truncated inside the header", Outcome.OPEN, "truncated", (p, d) -> truncate(p, 50)),
                new Case("file truncated inside the version 3 header", Outcome.OPEN, "truncated",
                        (p, d) -> truncate(p, 80)),
                new Case("file truncated inside the data", Outcome.READ, "", (p, d) -> truncate(p, 0x58000)),
                // 060 and 080: L2 tables and data clusters past the end, misaligned.
                new Case("L2 table past the end", Outcome.READ, "", (p, d) -> u64(p, L1, 0x800000007fff0000L)),
                new Case("misaligned L2 table", Outcome.READ, "", (p, d) -> u64(p, L1, 0x8000000000040200L)),
                new Case("data cluster at a huge offset", Outcome.READ, "", (p, d) -> u64(p, L2, 0x800000ffffff0000L)),
                new Case("misaligned data cluster", Outcome.READ, "", (p, d) -> u64(p, L2, 0x8000000000050200L)),
                new Case("reserved bits in an L2 entry", Outcome.READ, "", (p, d) -> u64(p, L2, 0x8000000000050002L)),
                // qcow2.rst: the zero flag (bit 0) is version 3 only; qemu-io fails the read.
                new Case("zero flag in a version 2 image", Outcome.READ, "", Base.V2,
                        (p, d) -> u64(p, L2, 0x8000000000050001L)),
                // Compressed runs past the end: the whole run, and a run that starts in the last sector.
                new Case("compressed cluster past the end", Outcome.READ, "",
                        (p, d) -> u64(p, L2, (1L << 62) | (3L << 54) | 0x7fff0000L)),
                new Case("compressed run past the end", Outcome.READ, "",
                        (p, d) -> u64(p, L2, (1L << 62) | (255L << 54) | 0x5fe00L)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void hostileImageEndsInAClearErrorAndIsNeverWritten(Case c) throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = dir.resolve("h.qcow2");
        Files.copy(bases.resolve(c.base().name()), img);
        c.poke().apply(img, dir);
        String sha = sha256(img);
        assertTimeoutPreemptively(DEADLINE, () -> {
            switch (c.outcome()) {
                case OPEN -> expectOpenRefused(img, c.words());
                case READ -> expectReadFails(img);
            }
        }, c.name() + " did not finish in time");
        assertEquals(sha, sha256(img), "the image was written");
    }

    @Test
    void aWriteToAVersion2ClusterWithTheZeroFlagFailsAndWritesNothing() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = dir.resolve("v2.qcow2");
        Files.copy(bases.resolve(Base.V2.name()), img);
        u64(img, L2, 0x8000000000050001L);
        byte[] cluster = read(img, 0x50000, 65536);
        try (Qcow2Device q = openDevice(img, false); Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate(4096, 4096);
            m.fill((byte) 0x77);
            CompletionException e = assertThrows(CompletionException.class, () -> q.write(0, m).join());
            assertTrue(e.getCause() instanceof io.biostack.block.BioException be
                    && be.status() == io.biostack.block.Status.IOERR && be.getMessage().contains("version 2"),
                    String.valueOf(e.getCause()));
        }
        assertArrayEquals(cluster, read(img, 0x50000, 65536), "the data cluster was written");
        assertEquals(0x8000000000050001L, ByteBuffer.wrap(read(img, L2, 8)).getLong(), "the L2 entry changed");
    }

    @Test
    void aLoopInTheBackingChainIsAnErrorEverywhere() throws Exception {
        Tools.require("qemu-img");
        Path a = dir.resolve("a.qcow2");
        Path b = dir.resolve("b.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", a.toString(), "1M");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b.toString(), "1M");
        Tools.ok(30, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a.toString());
        String shaA = sha256(a);
        String shaB = sha256(b);
        assertTimeoutPreemptively(DEADLINE, () -> {
            for (boolean ro : new boolean[] {true, false}) {
                Exception e = assertThrows(Exception.class, () -> openDevice(b, ro).close());
                assertClear(e, "loop in the backing chain");
            }
            CliRun info = CliRun.of("img", "info", "--backing-chain", b.toString());
            assertEquals(1, info.code(), info.out() + info.err());
            assertTrue(info.err().contains("loop") || info.err().contains("deeper"), info.err());
            CliRun map = CliRun.of("img", "map", b.toString());
            assertEquals(1, map.code(), map.out() + map.err());
            assertTrue(map.err().contains("loop") || map.err().contains("deeper"), map.err());
        });
        assertEquals(shaA, sha256(a));
        assertEquals(shaB, sha256(b));
    }

    // ---- outcomes ---------------------------------------------------------------------------------

    private void expectOpenRefused(Path img, String words) throws Exception {
        for (boolean ro : new boolean[] {true, false}) {
            Exception e = assertThrows(Exception.class, () -> openDevice(img, ro).close(),
                    "the device opened " + (ro ? "read-only" : "read-write"));
            assertClear(e, words);
        }
        IOException e = assertThrows(IOException.class, () -> Qcow2Image.open(img, false).close());
        assertClear(e, words);
        for (String[] cmd : List.of(new String[] {"img", "info", img.toString()},
                new String[] {"img", "info", "--output=json", img.toString()},
                new String[] {"img", "check", img.toString()}, new String[] {"img", "map", img.toString()})) {
            CliRun r = CliRun.of(cmd);
            assertEquals(1, r.code(), String.join(" ", cmd) + ": " + r.out() + r.err());
            assertTrue(r.err().contains(words), String.join(" ", cmd) + " says: " + r.err());
        }
    }

    private void expectReadFails(Path img) throws Exception {
        try (Qcow2Device q = openDevice(img, true); Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate(65536, 4096);
            CompletionException e = assertThrows(CompletionException.class, () -> q.read(0, m).join());
            assertTrue(e.getCause() instanceof io.biostack.block.BioException be
                    && be.status() == io.biostack.block.Status.IOERR, String.valueOf(e.getCause()));
        }
        // qemu-img check is the oracle: the same verdict (0 clean, 2 corrupt) from biostack's.
        int qemu = Tools.run(60, "qemu-img", "check", img.toString()).exit();
        try (Qcow2Image q = Qcow2Image.open(img, false)) {
            Qcow2Check.Result r = Qcow2Check.check(q, new java.io.PrintStream(java.io.OutputStream.nullOutputStream()), 0);
            assertEquals(qemu, r.exitCode(), "check: " + r);
        }
        CliRun check = CliRun.of("img", "check", img.toString());
        assertEquals(qemu, check.code(), check.out() + check.err());
        assertNoJavaError(check.err());
        CliRun info = CliRun.of("img", "info", img.toString());
        assertEquals(0, info.code(), info.err());
        CliRun map = CliRun.of("img", "map", "--output=json", img.toString());
        assertTrue(map.code() == 0 || map.code() == 1, map.out() + map.err());
        assertNoJavaError(map.err());
    }

    private static void assertClear(Throwable e, String words) {
        Throwable t = e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
        assertTrue(t instanceof Qcow2Exception || t instanceof IOException, "not a clear error: " + t);
        assertNotNull(t.getMessage());
        assertTrue(t.getMessage().contains(words), "'" + t.getMessage() + "' does not name " + words);
    }

    /** A Java exception's own text (rather than words about the image) reaching the user. */
    private static void assertNoJavaError(String err) {
        for (String s : new String[] {"Exception", "out of bounds", "Cannot invoke", "java.", "null"}) {
            if (err.contains(s)) {
                fail("a Java error reached the user: " + err);
            }
        }
    }

    // ---- images -----------------------------------------------------------------------------------

    private static Qcow2Device openDevice(Path img, boolean ro) throws IOException {
        LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults().withReadOnly(ro));
        try {
            return Qcow2Device.open("q", c, new Qcow2Device.Options(ro, -1, null, false, img,
                    Qcow2HostileImageTest::file, img.toString()));
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        }
    }

    private static BlockDevice file(Path p, String fmt) throws IOException {
        return LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults().withReadOnly(true));
    }

    static void u16(Path p, long off, int v) throws IOException {
        poke(p, off, ByteBuffer.allocate(2).putShort(0, (short) v).array());
    }

    static void u32(Path p, long off, int v) throws IOException {
        poke(p, off, ByteBuffer.allocate(4).putInt(0, v).array());
    }

    static void u64(Path p, long off, long v) throws IOException {
        poke(p, off, ByteBuffer.allocate(8).putLong(0, v).array());
    }

    static void poke(Path p, long off, byte[] b) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.seek(off);
            f.write(b);
        }
    }

    static byte[] read(Path p, long off, int len) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "r")) {
            byte[] b = new byte[len];
            f.seek(off);
            f.readFully(b);
            return b;
        }
    }

    static void truncate(Path p, long size) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(size);
        }
    }

    static long snapshotsOffset(Path p) throws IOException {
        return ByteBuffer.wrap(read(p, 64, 8)).getLong();
    }

    /** Where the data of the first header extension of {@code type} starts in the file. */
    static long extension(Path p, int type) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(read(p, 0, 4096));
        int pos = (b.getInt(100) + 7) & ~7;
        for (int i = 0; i < 64 && pos + 8 <= 4096; i++) {
            int t = b.getInt(pos);
            int len = b.getInt(pos + 4);
            if (t == type) {
                return pos + 8;
            }
            if (t == 0) {
                break;
            }
            pos += 8 + ((len + 7) & ~7);
        }
        throw new IOException("no extension 0x" + Integer.toHexString(type) + " in " + p);
    }

    static String sha256(Path p) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p)));
    }
}
