package io.biostack.layer.qcow2;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Qcow2Check on images damaged by hand: leaks, corruptions, repairs, and hostile metadata. */
class Qcow2CheckTest {
    @TempDir
    Path dir;

    private final ByteArrayOutputStream msgs = new ByteArrayOutputStream();

    /** A 64 MiB image with clusters 0-3 and 200 mapped: header, reftable, refblock, L1, L2, 5 data = 10 clusters. */
    private Path image() throws IOException {
        Path p = dir.resolve("c.qcow2");
        Qcow2Create.create(p, 64L << 20, Qcow2Create.Options.defaults(), null, null, new long[] {0, 4, 200, 201});
        return p;
    }

    private Qcow2Check.Result check(Path p, int fix) throws IOException {
        try (Qcow2Image img = Qcow2Image.open(p, fix != 0)) {
            return Qcow2Check.check(img, new PrintStream(msgs, true), fix);
        }
    }

    private static void poke(Path p, long off, ByteBuffer b) throws IOException {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            ch.write(b, off);
        }
    }

    /** Refcount of {@code cluster}: 16-bit entries in the block at cluster 2 (Qcow2Create's layout). */
    private static void setRefcount(Path p, long cluster, int v) throws IOException {
        poke(p, 2 * 65536 + cluster * 2, ByteBuffer.allocate(2).putShort(0, (short) v));
    }

    @Test
    void aFreshImageIsClean() throws IOException {
        Qcow2Check.Result r = check(image(), 0);
        assertThat(r.exitCode()).isZero();
        assertThat(r.allocatedClusters()).isEqualTo(5);
        assertThat(r.imageEndOffset()).isEqualTo(10L * 65536);
        assertThat(r.totalClusters()).isEqualTo(1024);
        assertThat(msgs.toString()).isEmpty();
    }

    @Test
    void aRefcountWithoutAReferenceIsALeakThatRepairFrees() throws IOException {
        Path p = image();
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(12L * 65536);
        }
        setRefcount(p, 10, 1);
        setRefcount(p, 11, 1);
        Qcow2Check.Result r = check(p, 0);
        assertThat(r.leaks()).isEqualTo(2);
        assertThat(r.corruptions()).isZero();
        assertThat(r.exitCode()).isEqualTo(3);
        assertThat(msgs.toString()).contains("Leaked cluster 10 refcount=1 reference=0");
        Qcow2Check.Result fixed = check(p, Qcow2Check.REPAIR_LEAKS);
        assertThat(fixed.leaksFixed()).isEqualTo(2);
        assertThat(fixed.exitCode()).isZero();
        assertThat(check(p, 0).exitCode()).isZero();
    }

    @Test
    void aReferenceWithoutARefcountIsACorruptionThatOnlyRebuildingFixes() throws Exception {
        Path p = image();
        setRefcount(p, 4, 0); // the L2 table
        Qcow2Check.Result r = check(p, 0);
        assertThat(r.corruptions()).isGreaterThanOrEqualTo(1);
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(msgs.toString()).contains("ERROR cluster 4 refcount=0 reference=1");
        Qcow2Check.Result leaksOnly = check(p, Qcow2Check.REPAIR_LEAKS);
        assertThat(leaksOnly.exitCode()).isEqualTo(1);
        assertThat(leaksOnly.failure()).isNotNull();
        Qcow2Check.Result all = check(p, Qcow2Check.REPAIR_ALL);
        assertThat(all.corruptionsFixed()).isGreaterThanOrEqualTo(1);
        assertThat(all.exitCode()).isZero();
        assertThat(msgs.toString()).contains("Rebuilding refcount structure");
        Tools.require("qemu-img");
        Tools.ok(60, "qemu-img", "check", p.toString());
    }

    @Test
    void aWrongCopiedFlagIsACorruptionThatRepairClears() throws IOException {
        Path p = image();
        setRefcount(p, 5, 2); // a data cluster: refcount 2 but OFLAG_COPIED set (and one reference: a leak too)
        Qcow2Check.Result r = check(p, 0);
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(msgs.toString()).contains("ERROR OFLAG_COPIED data cluster");
        assertThat(check(p, Qcow2Check.REPAIR_ALL).exitCode()).isZero();
        assertThat(check(p, 0).exitCode()).isZero();
    }

    @Test
    void aRepairThatLeavesNoCorruptionClearsTheCorruptAndDirtyBitsAsQemuImgCheckDoes() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path p = image();
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(11L * 65536);
        }
        setRefcount(p, 10, 1); // a leak, as a crash leaves one
        long bits = Qcow2Header.INCOMPAT_DIRTY | Qcow2Header.INCOMPAT_CORRUPT;
        poke(p, 72, ByteBuffer.allocate(8).putLong(0, bits));
        assertThat(Tools.run(30, "qemu-io", "-c", "write 0 4k", p.toString()).all())
                .contains("Image is corrupt; cannot be opened read/write");
        Path leaksOnly = dir.resolve("l.qcow2");
        java.nio.file.Files.copy(p, leaksOnly);
        Qcow2Check.Result r = check(p, Qcow2Check.REPAIR_ALL);
        assertThat(r.leaksFixed()).isEqualTo(1);
        assertThat(r.exitCode()).isZero();
        try (Qcow2Image img = Qcow2Image.open(p, false)) {
            assertThat(img.incompat & bits).as("dirty and corrupt bits after -r all").isZero();
        }
        Tools.ok(30, "qemu-io", "-c", "write -P 7 0 4k", p.toString());
        Tools.ok(30, "qemu-img", "check", p.toString());
        assertThat(check(leaksOnly, Qcow2Check.REPAIR_LEAKS).exitCode()).isZero();
        try (Qcow2Image img = Qcow2Image.open(leaksOnly, false)) {
            assertThat(img.incompat & bits).as("dirty and corrupt bits after -r leaks").isZero();
        }
    }

    @Test
    void aRefcountBlockPastTheEndOfTheFileIsACorruptionThatRepairRebuildsAsQemuImgCheckSays() throws Exception {
        Tools.require("qemu-img");
        Path p = image();
        poke(p, 65536, ByteBuffer.allocate(8).putLong(0, 100L * 65536)); // reftable[0]: a block far past the end
        Path copy = dir.resolve("q.qcow2");
        java.nio.file.Files.copy(p, copy);
        assertThat(Tools.run(30, "qemu-img", "check", copy.toString()).exit()).as("qemu-img's verdict").isEqualTo(2);
        Qcow2Check.Result r = check(p, 0);
        assertThat(r.checkErrors()).isZero();
        assertThat(r.corruptions()).isGreaterThanOrEqualTo(10);
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(msgs.toString()).contains("ERROR cluster 4 refcount=0 reference=1");
        Qcow2Check.Result all = check(p, Qcow2Check.REPAIR_ALL);
        assertThat(all.failure()).isNull();
        assertThat(all.checkErrors()).isZero();
        assertThat(all.exitCode()).isZero();
        Tools.ok(60, "qemu-img", "check", p.toString());
        Tools.ok(60, "qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", p.toString(), copy.toString());
    }

    @Test
    void repairingLeaksAlsoFixesAWrongCopiedFlagWhenNothingElseIsWrongAsQemuImgCheckDoes() throws Exception {
        Tools.require("qemu-img");
        Path p = image();
        long l2e = 4L * 65536; // L2[0], the data cluster at 5 (refcount 1)
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate(8);
            ch.read(b, l2e);
            poke(p, l2e, ByteBuffer.allocate(8).putLong(0, b.getLong(0) & ~Qcow2Header.OFLAG_COPIED));
        }
        Path copy = dir.resolve("q.qcow2");
        java.nio.file.Files.copy(p, copy);
        assertThat(Tools.run(30, "qemu-img", "check", "-r", "leaks", copy.toString()).exit()).as("qemu-img's verdict")
                .isZero();
        Qcow2Check.Result r = check(p, Qcow2Check.REPAIR_LEAKS);
        assertThat(msgs.toString()).contains("Repairing OFLAG_COPIED data cluster");
        assertThat(r.corruptionsFixed()).isEqualTo(1);
        assertThat(r.exitCode()).isZero();
        Tools.ok(60, "qemu-img", "check", p.toString());
    }

    @Test
    void anUnallocatedExtendedL2EntryWithAllocatedSubclustersIsACorruptionAsQemuImgCheckSays() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path p = dir.resolve("x.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", p.toString(), "8M");
        Tools.ok(30, "qemu-io", "-c", "write -P 0x11 0 64k", p.toString());
        long l2;
        try (Qcow2Image img = Qcow2Image.open(p, false)) {
            l2 = img.l1[0] & Qcow2Header.OFFSET_MASK;
        }
        poke(p, l2 + 16 + 8, ByteBuffer.allocate(8).putLong(0, 0xfL)); // entry 1: no offset, subclusters 0-3 allocated
        assertThat(Tools.run(30, "qemu-img", "check", p.toString()).exit()).as("qemu-img's verdict").isEqualTo(2);
        assertThat(Tools.run(30, "qemu-io", "-c", "read 64k 4k", p.toString()).all()).contains("Input/output error");
        Qcow2Check.Result r = check(p, 0);
        assertThat(r.corruptions()).isEqualTo(1);
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(msgs.toString()).contains("ERROR: Unallocated cluster has non-zero subcluster allocation map");
    }

    @Test
    void aMisalignedRefcountBlockEndsTheCheckWithItsResultAsQemuImgCheckDoes() throws Exception {
        Path p = image();
        poke(p, 65536, ByteBuffer.allocate(8).putLong(0, 2L * 65536 + 512)); // reftable[0] misaligned
        Qcow2Check.Result r = check(p, 0);
        assertThat(r.checkErrors()).isGreaterThanOrEqualTo(10);
        assertThat(r.corruptions()).isEqualTo(1);
        assertThat(r.exitCode()).isEqualTo(1);
        assertThat(msgs.toString()).contains("refcount block 0 is not cluster aligned");
        Tools.require("qemu-img");
        Tools.Result q = Tools.run(30, "qemu-img", "check", "--output=json", p.toString());
        assertThat(q.exit()).isEqualTo(1);
        assertThat(q.out()).contains("\"check-errors\"").contains("\"corruptions\": 1");
    }

    @Test
    void theFirstClusterOfARawExternalDataFileIsCountedAllocatedAsQemuImgCheckCountsIt() throws Exception {
        Tools.require("qemu-img");
        Path p = dir.resolve("df.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", "-o",
                "data_file=" + dir.resolve("d.raw") + ",data_file_raw=on", p.toString(), "4M");
        assertThat(Tools.ok(30, "qemu-img", "check", "--output=json", p.toString()).out())
                .contains("\"allocated-clusters\": 64,");
        Qcow2Check.Result r = check(p, 0);
        assertThat(r.exitCode()).isZero();
        assertThat(r.allocatedClusters()).isEqualTo(64);
    }

    @Test
    void fragmentationIsCountedWithinEachL2TableAsQemuImgCheckCountsIt() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path p = dir.resolve("f.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", p.toString(), "8M");
        // An L2 table maps 2 MiB: the write at 3M allocates a second L2 table between the two runs of data.
        Tools.ok(30, "qemu-io", "-c", "write 0 64k", "-c", "write 3M 8k", p.toString());
        assertThat(Tools.ok(30, "qemu-img", "check", "--output=json", p.toString()).out())
                .doesNotContain("fragmented-clusters");
        Qcow2Check.Result r = check(p, 0);
        assertThat(r.allocatedClusters()).isEqualTo(18);
        assertThat(r.fragmentedClusters()).isZero();
    }

    @Test
    void aRepairRefusesAnImageQemuIsWritingAsQemuImgCheckDoes() throws Exception {
        Tools.require("qemu-img", "qemu-nbd");
        Path p = image();
        byte[] before = java.nio.file.Files.readAllBytes(p);
        Path sock = dir.resolve("nbd.sock");
        Process nbd = new ProcessBuilder("qemu-nbd", "-k", sock.toString(), "-f", "qcow2", p.toString())
                .redirectErrorStream(true).redirectOutput(dir.resolve("nbd.log").toFile()).start();
        try {
            for (int i = 0; i < 100 && !java.nio.file.Files.exists(sock); i++) {
                Thread.sleep(50);
            }
            assertThat(Tools.run(30, "qemu-img", "check", "-r", "all", p.toString()).all())
                    .contains("Failed to get \"write\" lock");
            assertThatThrownBy(() -> check(p, Qcow2Check.REPAIR_ALL)).isInstanceOf(IOException.class)
                    .hasMessageContaining("Failed to get \"write\" lock");
            assertThat(java.nio.file.Files.readAllBytes(p)).isEqualTo(before);
        } finally {
            nbd.destroy();
            nbd.waitFor();
        }
        assertThat(check(p, Qcow2Check.REPAIR_ALL).exitCode()).isZero();
    }

    @Test
    void aRepairKeepsItsWriteLockThroughTheReCheckUntilTheImageIsClosed() throws Exception {
        Tools.require("qemu-io");
        Path p = image();
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(11L * 65536);
        }
        setRefcount(p, 10, 1); // a leak: the repair writes, then checks again
        try (Qcow2Image img = Qcow2Image.open(p, true)) {
            Qcow2Check.Result r = Qcow2Check.check(img, new PrintStream(msgs, true), Qcow2Check.REPAIR_LEAKS);
            assertThat(r.leaksFixed()).isEqualTo(1);
            // The re-check is done and the image still open for writing: a POSIX lock is dropped
            // by any close of the file in this process, so a re-check on its own descriptor let
            // a qemu in here.
            Tools.Result q = Tools.run(30, "qemu-io", "-c", "write 0 4k", p.toString());
            assertThat(q.exit()).as(q.all()).isNotZero();
            // qemu-io takes its own lock on byte 201 first (raw_apply_lock_bytes) and fails there.
            assertThat(q.all()).containsAnyOf("Failed to lock byte 201", "Failed to get \"write\" lock");
        }
        assertThat(Tools.run(30, "qemu-io", "-c", "write 0 4k", p.toString()).exit()).isZero();
    }

    /** A JSON number of qemu-img check's output, 0 when absent (qemu leaves zero counts out). */
    private static long jsonNum(String json, String key) {
        var m = java.util.regex.Pattern.compile("\"" + key + "\": (\\d+)").matcher(json);
        return m.find() ? Long.parseLong(m.group(1)) : 0;
    }

    @Test
    void aMisalignedL1EntryGivesTheCountsQemuImgCheckGives() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path clean = dir.resolve("m.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", clean.toString(), "64M");
        // L1 at cluster 3, the L2 table at cluster 4, data at 5-7: the misaligned table runs into data.
        Tools.ok(30, "qemu-io", "-c", "write -P 1 0 128k", "-c", "write -P 2 32M 64k", clean.toString());
        // Inside the file (the table read there is data) and past its end (read as zeros).
        for (long l2 : new long[] {0x40200, 0x90200}) {
            Path p = dir.resolve("m" + Long.toHexString(l2) + ".qcow2");
            java.nio.file.Files.copy(clean, p);
            poke(p, 3L * 65536, ByteBuffer.allocate(8).putLong(0, l2 | Long.MIN_VALUE));
            Tools.Result q = Tools.run(30, "qemu-img", "check", "--output=json", p.toString());
            msgs.reset();
            Qcow2Check.Result r = check(p, 0);
            String what = "L2 at 0x" + Long.toHexString(l2) + ": " + q.out();
            assertThat(r.corruptions()).as(what).isEqualTo(jsonNum(q.out(), "corruptions"));
            assertThat(r.leaks()).as(what).isEqualTo(jsonNum(q.out(), "leaks"));
            assertThat(r.allocatedClusters()).as(what).isEqualTo(jsonNum(q.out(), "allocated-clusters"));
            assertThat(r.fragmentedClusters()).as(what).isEqualTo(jsonNum(q.out(), "fragmented-clusters"));
            assertThat(r.exitCode()).as(what).isEqualTo(q.exit());
            assertThat(msgs.toString()).contains("Table is not cluster aligned; L1 entry corrupted");
        }
    }

    @Test
    void anL1EntryWithReservedBitsOrNoOffsetGivesTheVerdictQemuImgCheckGives() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path clean = dir.resolve("r.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", clean.toString(), "64M");
        Tools.ok(30, "qemu-io", "-c", "write -P 1 0 128k", "-c", "write -P 2 32M 64k", clean.toString());
        // Bit 1 and bit 0 (both reserved in an L1 entry, qcow2.rst bits 0-8), and an entry with
        // only OFLAG_COPIED: qemu walks the header's cluster as its L2 table.
        for (long e : new long[] {0x8000000000040002L, 0x8000000000040001L, 0x8000000000000000L}) {
            Path p = dir.resolve("r" + Long.toHexString(e) + ".qcow2");
            java.nio.file.Files.copy(clean, p);
            poke(p, 3L * 65536, ByteBuffer.allocate(8).putLong(0, e));
            Tools.Result q = Tools.run(30, "qemu-img", "check", "--output=json", p.toString());
            msgs.reset();
            Qcow2Check.Result r = check(p, 0);
            String what = "L1[0] = 0x" + Long.toHexString(e) + ": " + q.out();
            assertThat(r.corruptions()).as(what).isEqualTo(jsonNum(q.out(), "corruptions"));
            assertThat(r.leaks()).as(what).isEqualTo(jsonNum(q.out(), "leaks"));
            assertThat(r.allocatedClusters()).as(what).isEqualTo(jsonNum(q.out(), "allocated-clusters"));
            assertThat(r.exitCode()).as(what).isEqualTo(q.exit()).isEqualTo(2);
        }
        assertThat(msgs.toString()).doesNotContain("reserved bits set: 8000000000000000");
        // -r all on that last one never writes into the header it walked as a table (qemu's
        // overlap check refuses that write; its check then fails).
        Path h = dir.resolve("r8000000000000000.qcow2");
        byte[] header = java.util.Arrays.copyOf(java.nio.file.Files.readAllBytes(h), 65536);
        check(h, Qcow2Check.REPAIR_ALL);
        assertThat(java.util.Arrays.copyOf(java.nio.file.Files.readAllBytes(h), 65536)).isEqualTo(header);
    }

    @Test
    void aMisalignedDataClusterIsCountedAndAMisalignedPreallocatedOneRepairedToZeroAsQemuImgCheckDoes() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path clean = dir.resolve("a.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", clean.toString(), "64M");
        Tools.ok(30, "qemu-io", "-c", "write -P 1 0 128k", clean.toString()); // L2 at cluster 4, data at 5 and 6
        for (long e : new long[] {0x8000000000050200L, 0x8000000000050201L}) { // data, then preallocated (zero flag)
            for (int fix : new int[] {0, Qcow2Check.REPAIR_ALL}) {
                Path p = dir.resolve("x" + Long.toHexString(e) + fix + ".qcow2");
                Path q = dir.resolve("y" + Long.toHexString(e) + fix + ".qcow2");
                java.nio.file.Files.copy(clean, p);
                poke(p, 4L * 65536, ByteBuffer.allocate(8).putLong(0, e));
                java.nio.file.Files.copy(p, q);
                Tools.Result qemu = fix == 0 ? Tools.run(30, "qemu-img", "check", "--output=json", q.toString())
                        : Tools.run(30, "qemu-img", "check", "-r", "all", "--output=json", q.toString());
                msgs.reset();
                Qcow2Check.Result r = check(p, fix);
                String what = "L2[0] = 0x" + Long.toHexString(e) + " fix " + fix + ": " + qemu.out() + msgs;
                assertThat(r.corruptions()).as(what).isEqualTo(jsonNum(qemu.out(), "corruptions"));
                assertThat(r.corruptionsFixed()).as(what).isEqualTo(jsonNum(qemu.out(), "corruptions-fixed"));
                assertThat(r.leaks()).as(what).isEqualTo(jsonNum(qemu.out(), "leaks"));
                assertThat(r.leaksFixed()).as(what).isEqualTo(jsonNum(qemu.out(), "leaks-fixed"));
                assertThat(r.allocatedClusters()).as(what).isEqualTo(jsonNum(qemu.out(), "allocated-clusters"));
                assertThat(r.exitCode()).as(what).isEqualTo(qemu.exit());
                // The L2 table as qemu left it (the preallocated entry a plain zero cluster after -r all).
                byte[] ours = java.nio.file.Files.readAllBytes(p);
                byte[] theirs = java.nio.file.Files.readAllBytes(q);
                assertThat(java.util.Arrays.copyOfRange(ours, 4 * 65536, 5 * 65536)).as(what)
                        .isEqualTo(java.util.Arrays.copyOfRange(theirs, 4 * 65536, 5 * 65536));
            }
        }
    }

    @Test
    void aCompressedEntryWithAnExternalDataFileIsACorruptionThatARepairLeavesAsQemuImgCheckDoes() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path p = dir.resolve("d.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file=" + dir.resolve("d.raw"), p.toString(), "64M");
        Tools.ok(30, "qemu-io", "-c", "write -P 7 0 64k", p.toString());
        // The L2 table is at cluster 4: entry 0 becomes compressed, 4 sectors at 0x200 (in the header's cluster).
        poke(p, 4L * 65536, ByteBuffer.allocate(8).putLong(0, (1L << 62) | (3L << 54) | 0x200));
        Path q = dir.resolve("q.qcow2");
        java.nio.file.Files.copy(p, q);
        Tools.Result qemu = Tools.run(30, "qemu-img", "check", "-r", "all", "--output=json", q.toString());
        assertThat(qemu.err()).contains("ERROR compressed cluster 0 with data file");
        byte[] refblock = java.nio.file.Files.readAllBytes(p);
        Qcow2Check.Result r = check(p, Qcow2Check.REPAIR_ALL);
        assertThat(msgs.toString()).contains("ERROR compressed cluster 0 with data file, entry=0x40c0000000000200");
        assertThat(r.corruptions()).as(qemu.out()).isEqualTo(jsonNum(qemu.out(), "corruptions")).isEqualTo(1);
        assertThat(r.corruptionsFixed()).isEqualTo(jsonNum(qemu.out(), "corruptions-fixed")).isZero();
        assertThat(r.allocatedClusters()).isEqualTo(jsonNum(qemu.out(), "allocated-clusters"));
        assertThat(r.exitCode()).isEqualTo(qemu.exit()).isEqualTo(2);
        // The header's refcount was not raised for a reference into the data file.
        assertThat(java.nio.file.Files.readAllBytes(p)).isEqualTo(refblock);
    }

    @Test
    void anL2TableOutsideTheFileIsReportedNotThrown() throws IOException {
        Path p = image();
        poke(p, 3L * 65536, ByteBuffer.allocate(8).putLong(0, (1L << 40) | Long.MIN_VALUE)); // L1[0] far away
        Qcow2Check.Result r = check(p, 0);
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(msgs.toString()).contains("exceeding the end of the file").contains("OFLAG_COPIED L2 cluster: l1_index=0");
    }

    @Test
    void hostileHeadersFailAtOpenNamingTheProblem() throws IOException {
        Path p = image();
        poke(p, 36, ByteBuffer.allocate(4).putInt(0, 0x7fffffff)); // a huge L1 size
        assertThatThrownBy(() -> Qcow2Image.open(p, false)).isInstanceOf(IOException.class)
                .hasMessageContaining("c.qcow2").hasMessageContaining("L1 table");
        Path q = image();
        poke(q, 72, ByteBuffer.allocate(8).putLong(0, 1L << 20)); // unknown incompatible bit 20
        assertThatThrownBy(() -> Qcow2Image.open(q, false)).hasMessageContaining("incompatible bit 20");
        Path t = image();
        try (RandomAccessFile f = new RandomAccessFile(t.toFile(), "rw")) {
            f.setLength(50);
        }
        assertThatThrownBy(() -> Qcow2Image.open(t, false)).isInstanceOf(IOException.class).hasMessageContaining("truncated");
    }
}
