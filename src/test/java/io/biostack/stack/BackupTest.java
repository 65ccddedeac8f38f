package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.StatusContext;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static io.biostack.stack.StackBitmapsTest.ctl;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class BackupTest {
    static final int SIZE = 8 << 20;

    static byte[] readAll(BlockDevice d) throws Exception {
        MemorySegment m = Arena.ofAuto().allocate(SIZE, 4096);
        d.read(0, m).get(10, TimeUnit.SECONDS);
        return m.toArray(ValueLayout.JAVA_BYTE);
    }

    static void write(BlockDevice d, long off, byte[] data) throws Exception {
        MemorySegment m = Arena.ofAuto().allocate(data.length, 4096);
        m.copyFrom(MemorySegment.ofArray(data));
        d.write(off, m).get(10, TimeUnit.SECONDS);
    }

    /** Random 4k writes to the live device until stopped; what an application does meanwhile. */
    static CompletableFuture<Integer> writer(BlockDevice d, AtomicBoolean stop, long seed) {
        return CompletableFuture.supplyAsync(() -> {
            Random r = new Random(seed);
            int n = 0;
            try {
                while (!stop.get() && n < 40) {
                    byte[] b = new byte[4096];
                    r.nextBytes(b);
                    write(d, (long) r.nextInt(SIZE / 4096) * 4096, b);
                    n++;
                }
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
            return n;
        });
    }

    /** The dirty ranges of the view's bitmap context, as a client would ask for them. */
    static List<long[]> dirtyRanges(BlockDevice view, String bitmap) {
        StatusContext ctx = view.statusContexts().stream().filter(c -> c.name().equals("qemu:dirty-bitmap:" + bitmap))
                .findFirst().orElseThrow();
        List<long[]> out = new ArrayList<>();
        long pos = 0;
        while (pos < view.size()) {
            Extent e = ctx.extentAt(pos, view.size() - pos);
            if (e.flags() == 1) {
                out.add(new long[]{pos, e.length()});
            }
            pos += e.length();
        }
        return out;
    }

    @Test
    void aBackupViewOffersItsBitmapOnAServerWhoseDashBNamedOthers(@TempDir Path dir) throws Exception {
        // serve --stack -B b0: the filter was applied to the views added later too, so the view's
        // qemu:dirty-bitmap:b1 was not offered, and a script reading the map copied nothing.
        io.biostack.nbd.Tools.require("nbdinfo");
        try (Stack s = Stack.open("d: ram 8M\n", "t")) {
            ctl(s, "message", "d", "bitmap add b0");
            ctl(s, "message", "d", "bitmap add b1");
            write(s.device("d"), 1 << 20, new byte[65536]);
            Path sock = dir.resolve("nbd.sock");
            try (io.biostack.nbd.NbdServer srv = io.biostack.nbd.NbdServer.builder()
                    .export(new io.biostack.nbd.NbdExport("d", null, s.device("d"), false))
                    .bitmaps(List.of("b0")).unixSocket(sock).start()) {
                s.setExportListener((n, dev) -> srv.addExport(new io.biostack.nbd.NbdExport(n, "backup view", dev, true)),
                        srv::removeExport);
                ctl(s, "message", "d", "backup-begin inc bitmap=b1 cow-dir=" + dir);
                String map = io.biostack.nbd.Tools.ok(30, "nbdinfo", "--map=qemu:dirty-bitmap:b1",
                        "nbd+unix:///inc?socket=" + sock).out();
                assertThat(map).containsPattern("1048576\\s+65536\\s+1");
                io.biostack.nbd.Tools.Result d = io.biostack.nbd.Tools.run(30, "nbdinfo", "--map=qemu:dirty-bitmap:b1",
                        "nbd+unix:///d?socket=" + sock);
                assertThat(d.exit()).as("the device itself offers what -B named only: %s", d.all()).isNotZero();
                ctl(s, "message", "d", "backup-end inc");
            }
        }
    }

    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"ram 8M", "loop FILE size=8M direct-io=off", "loop FILE size=8M direct-io=on"})
    void aFullBackupAndIncrementalsGiveEachPointInTimeWhileWritesGoOn(String leaf, @TempDir Path dir) throws Exception {
        try (Stack s = Stack.open("d: " + leaf.replace("FILE", dir.resolve("d.img").toString()) + "\n", "t")) {
            BlockDevice d = s.device("d");
            byte[] init = new byte[SIZE];
            new Random(1).nextBytes(init);
            write(d, 0, init);
            ctl(s, "message", "d", "bitmap add b0");
            // full backup: copy the whole view while writes go on
            byte[] image;
            long copied;
            {
                AtomicBoolean stop = new AtomicBoolean();
                ctl(s, "message", "d", "backup-begin full bitmap=b0 new=b1 cow-dir=" + dir);
                byte[] atInstant = init;
                CompletableFuture<Integer> w = writer(d, stop, 2);
                Thread.sleep(20);
                image = readAll(s.device("full"));
                stop.set(true);
                assertThat(w.get(30, TimeUnit.SECONDS)).isPositive();
                assertThat(java.util.Arrays.mismatch(image, atInstant)).as("first differing byte").isEqualTo(-1);
                assertThat(ctl(s, "status", "d")).contains("bitmap b0 granularity=65536 dirty=").contains("busy=full");
                ctl(s, "message", "d", "backup-end full");
                assertThat(s.names()).doesNotContain("full");
            }
            // three incrementals: copy only what the bitmap says, writes going on during each
            for (int i = 1; i <= 3; i++) {
                Random r = new Random(10 + i);
                for (int k = 0; k < 20; k++) {
                    byte[] b = new byte[4096 * (1 + r.nextInt(4))];
                    r.nextBytes(b);
                    write(d, (long) r.nextInt(SIZE / 4096 - 4) * 4096, b);
                }
                // the instant: no writes in flight here, so the live content now is the point in time
                byte[] expected = readAll(d);
                String bm = "b" + i;
                String export = "inc" + i;
                ctl(s, "message", "d", "backup-begin " + export + " bitmap=" + bm + " new=b" + (i + 1) + " cow-dir=" + dir);
                AtomicBoolean stop = new AtomicBoolean();
                CompletableFuture<Integer> w = writer(d, stop, 100 + i);
                BlockDevice view = s.device(export);
                copied = 0;
                for (long[] range : dirtyRanges(view, bm)) {
                    MemorySegment m = Arena.ofAuto().allocate(range[1], 4096);
                    view.read(range[0], m).get(10, TimeUnit.SECONDS);
                    MemorySegment.copy(m, 0, MemorySegment.ofArray(image), range[0], range[1]);
                    copied += range[1];
                }
                stop.set(true);
                w.get(30, TimeUnit.SECONDS);
                ctl(s, "message", "d", "backup-end " + export);
                assertThat(java.util.Arrays.mismatch(image, expected)).as("incremental %d: first differing byte", i).isEqualTo(-1);
                assertThat(copied).isLessThan(SIZE);
            }
        }
    }

    @Test
    void writesToTheViewAreRefusedAndTheViewGoesAwayAtBackupEnd(@TempDir Path dir) throws Exception {
        try (Stack s = Stack.open("d: ram 8M\n", "t")) {
            ctl(s, "message", "d", "bitmap add b");
            List<String> seen = new ArrayList<>();
            s.setExportListener((n, dev) -> seen.add("+" + n + " " + dev.isReadOnly()), n -> seen.add("-" + n));
            ctl(s, "message", "d", "backup-begin v bitmap=b cow-dir=" + dir);
            assertThatThrownBy(() -> write(s.device("v"), 0, new byte[4096])).hasMessageContaining("read-only");
            assertThat(s.device("v").statusContexts()).extracting(StatusContext::name).containsExactly("qemu:dirty-bitmap:b");
            assertThatThrownBy(() -> ctl(s, "message", "d", "bitmap clear b")).hasMessageContaining("in use by backup v");
            assertThatThrownBy(() -> ctl(s, "message", "d", "backup-begin w bitmap=b")).hasMessageContaining("backup running already");
            ctl(s, "message", "d", "backup-end v");
            assertThat(seen).containsExactly("+v true", "-v");
            assertThat(ctl(s, "status", "d")).doesNotContain("busy=");
            assertThat(Files.list(dir).filter(f -> f.toString().endsWith(".cow")).count()).as("the COW file is deleted as soon as it is open").isZero();
        }
    }

    @Test
    void badBackupRequestsAreRefusedClearly(@TempDir Path dir) throws Exception {
        Path bm = dir.resolve("bm");
        try (Stack s = onSideFile(bm)) {
            ctl(s, "message", "d", "bitmap add p persistent");
            assertThatThrownBy(() -> ctl(s, "message", "d", "backup-begin v")).hasMessageContaining("needs bitmap=BM");
            assertThatThrownBy(() -> ctl(s, "message", "d", "backup-begin v bitmap=zz")).hasMessageContaining("no bitmap 'zz'");
            assertThatThrownBy(() -> ctl(s, "message", "d", "backup-begin d bitmap=p")).hasMessageContaining("already");
            assertThatThrownBy(() -> ctl(s, "message", "d", "backup-end nope")).hasMessageContaining("no backup named 'nope'");
            // the name becomes a device of the stack and an export: a device name's rule, said as
            // such (a '/' came back as the JDK's "Invalid prefix or suffix" of the COW file's name)
            for (String bad : List.of("a/b", "x:y")) {
                assertThatThrownBy(() -> ctl(s, "message", "d", "backup-begin " + bad + " bitmap=p cow-dir=" + dir))
                        .hasMessageContaining("backup name '" + bad + "' may hold only letters, digits, '_', '-' and '.'");
            }
            assertThat(s.names()).containsExactly("d");
            // the control socket shows the message alone: a bare path said nothing of what was wrong
            assertThatThrownBy(() -> ctl(s, "message", "d", "backup-begin v bitmap=p cow-dir=" + dir.resolve("missing")))
                    .hasMessageContaining("cow-dir " + dir.resolve("missing")).hasMessageContaining("not a directory");
            assertThat(s.names()).doesNotContain("v");
            Files.copy(bm, dir.resolve("crashed"));
        }
        try (Stack s = onSideFile(dir.resolve("crashed"))) {
            assertThatThrownBy(() -> ctl(s, "message", "d", "backup-begin v bitmap=p cow-dir=" + dir))
                    .hasMessageContaining("inconsistent").hasMessageContaining("the next backup must be a full one");
            assertThat(s.names()).doesNotContain("v");
        }
    }

    @Test
    void aBackupBeginThatCantSaveTheBitmapChangesNothingAndWritesStayRecorded(@TempDir Path dir) throws Exception {
        Path bm = dir.resolve("bm");
        try (Stack s = onSideFile(bm)) {
            BlockDevice d = s.device("d");
            ctl(s, "message", "d", "bitmap add p persistent");
            // the side file can't be rewritten now (its file system fills up, say): the next save fails
            Files.createDirectory(dir.resolve("bm.new"));
            assertThatThrownBy(() -> ctl(s, "message", "d", "backup-begin v bitmap=p cow-dir=" + dir))
                    .hasMessageContaining("bm.new");
            assertThat(s.names()).doesNotContain("v");
            assertThat(StackBitmapsTest.bitmapLine(s, "d", "p")).as("as it was before the backup-begin")
                    .isEqualTo("bitmap p granularity=65536 dirty=0 recording persistent consistent");
            write(d, 1 << 20, new byte[4096]);
            assertThat(StackBitmapsTest.bitmapLine(s, "d", "p")).as("a write after the failed backup-begin is recorded")
                    .startsWith("bitmap p granularity=65536 dirty=65536 recording");
            Files.delete(dir.resolve("bm.new"));
            ctl(s, "message", "d", "backup-begin v bitmap=p cow-dir=" + dir);
            assertThat(dirtyRanges(s.device("v"), "p")).containsExactly(new long[]{1 << 20, 65536});
            ctl(s, "message", "d", "backup-end v");
        }
    }

    /** Device d, an 8 MiB ram disk whose bitmaps persist in {@code sideFile}. */
    static Stack onSideFile(Path sideFile) throws java.io.IOException {
        return Stack.open("d: ram 8M bitmap-file=" + sideFile + "\n", "t");
    }

    /** An incremental backup from {@code bm} is refused as inconsistent, and no view is made. */
    static void assertIncrementalRefused(Stack s, String bm, Path dir) {
        assertThatThrownBy(() -> ctl(s, "message", "d", "backup-begin again bitmap=" + bm + " cow-dir=" + dir))
                .as(bm).hasMessageContaining("inconsistent").hasMessageContaining("the next backup must be a full one");
        assertThat(s.names()).doesNotContain("again");
    }

    @Test
    void aCrashMidBackupLeavesNoBitmapAnIncrementalCanBeTakenFrom(@TempDir Path dir) throws Exception {
        Path bm = dir.resolve("bm");
        Path crashed = dir.resolve("crashed");
        try (Stack s = onSideFile(bm)) {
            BlockDevice d = s.device("d");
            ctl(s, "message", "d", "bitmap add b1 persistent");
            write(d, 0, new byte[4096]);
            ctl(s, "message", "d", "backup-begin inc1 bitmap=b1 new=b2 cow-dir=" + dir);
            // a write during the backup: b2's, not b1's
            write(d, 4 << 20, new byte[4096]);
            Files.copy(bm, crashed); // kill -9 now: the side file as the stopped process left it
        }
        try (Stack s = onSideFile(crashed)) {
            // b1 holds only the changes up to the first backup-begin: an incremental from it now
            // would miss the write at 4 MiB (b2 had it, and b2 was recording at the crash)
            for (String b : List.of("b1", "b2")) {
                assertIncrementalRefused(s, b, dir);
            }
        }
    }

    @Test
    void aBitmapLeftFrozenAfterBackupEndStaysInUseOnDiskUntilRemoved(@TempDir Path dir) throws Exception {
        // docs/backup.md: after backup-end, remove BM, or merge it into BM2 if the backup failed.
        // Until it is removed its bits end at the backup's instant and the writes since are in
        // BM2 alone: another save of the side file (here the merge) must not mark it clean.
        Path bm = dir.resolve("bm");
        Path crashed = dir.resolve("crashed");
        try (Stack s = onSideFile(bm)) {
            BlockDevice d = s.device("d");
            ctl(s, "message", "d", "bitmap add b1 persistent");
            write(d, 0, new byte[4096]);
            ctl(s, "message", "d", "backup-begin inc1 bitmap=b1 new=b2 cow-dir=" + dir);
            ctl(s, "message", "d", "backup-end inc1"); // the copy failed
            ctl(s, "message", "d", "bitmap merge b1 b2");
            write(d, 4 << 20, new byte[4096]); // b2's alone
            Files.copy(bm, crashed); // kill -9 now
        }
        try (Stack s = onSideFile(crashed)) {
            // b1 loaded consistent would give an incremental without the write at 4 MiB
            assertIncrementalRefused(s, "b1", dir);
            ctl(s, "message", "d", "bitmap remove b1");
        }
        try (Stack s = onSideFile(bm)) {
            // a clean stop: b1 saved consistent (frozen, its bits up to the backup's instant)...
            assertThat(StackBitmapsTest.bitmapLine(s, "d", "b1"))
                    .isEqualTo("bitmap b1 granularity=65536 dirty=65536 disabled persistent consistent");
            Files.copy(bm, crashed, java.nio.file.StandardCopyOption.REPLACE_EXISTING); // ...and a kill -9 in this run
        }
        try (Stack s = onSideFile(crashed)) {
            assertThat(StackBitmapsTest.bitmapLine(s, "d", "b1")).as("still not removed: in use across the restart")
                    .isEqualTo("bitmap b1 granularity=65536 dirty=0 disabled persistent inconsistent");
        }
    }

    /**
     * A device whose size ends in a partial chunk (of the bitmap and of the view's COW), written
     * there and at odd 512-byte offsets during the backups: the view is the point in time and the
     * incrementals restore it.
     */
    @Test
    void writesToAPartialLastChunkDuringBackupsAreCopiedOutAndInTheNextIncremental(@TempDir Path dir) throws Exception {
        int size = (8 << 20) + 20 * 1024 + 512;
        try (Stack s = Stack.open("d: ram " + size + "\n", "t")) {
            BlockDevice d = s.device("d");
            byte[] init = new byte[size];
            new Random(1).nextBytes(init);
            write(d, 0, init);
            ctl(s, "message", "d", "bitmap add b0");
            ctl(s, "message", "d", "backup-begin full bitmap=b0 new=b1 chunk=64k cow-dir=" + dir);
            Random r = new Random(3);
            byte[] b = new byte[512];
            r.nextBytes(b);
            write(d, size - 512, b);
            write(d, 7 * 65536 + 3 * 512, b);
            byte[] image = readAll(s.device("full"), size);
            assertThat(java.util.Arrays.mismatch(image, init)).as("the full view: first differing byte").isEqualTo(-1);
            ctl(s, "message", "d", "backup-end full");
            for (int i = 1; i <= 2; i++) {
                for (int k = 0; k < 10; k++) {
                    r.nextBytes(b);
                    write(d, (long) r.nextInt(size / 512) * 512, b);
                }
                r.nextBytes(b);
                write(d, size - 1024, b);
                byte[] expected = readAll(d, size);
                ctl(s, "message", "d", "backup-begin inc" + i + " bitmap=b" + i + " new=b" + (i + 1) + " chunk=64k cow-dir=" + dir);
                r.nextBytes(b);
                write(d, size - 512, b); // during the backup: the next incremental's
                BlockDevice view = s.device("inc" + i);
                for (long[] range : dirtyRanges(view, "b" + i)) {
                    MemorySegment m = Arena.ofAuto().allocate(range[1], 4096);
                    view.read(range[0], m).get(10, TimeUnit.SECONDS);
                    MemorySegment.copy(m, 0, MemorySegment.ofArray(image), range[0], range[1]);
                }
                ctl(s, "message", "d", "backup-end inc" + i);
                assertThat(java.util.Arrays.mismatch(image, expected)).as("incremental %d: first differing byte", i).isEqualTo(-1);
            }
        }
    }

    static byte[] readAll(BlockDevice d, int size) throws Exception {
        MemorySegment m = Arena.ofAuto().allocate(size, 4096);
        d.read(0, m).get(10, TimeUnit.SECONDS);
        return m.toArray(ValueLayout.JAVA_BYTE);
    }

    /**
     * A client still reading the view at backup-end (an nbdcopy the script did not wait for, a
     * connection the server keeps): its reads must fail, never give the live device's bytes as
     * the backup's.
     */
    @Test
    void readsOfAViewAfterBackupEndFailInsteadOfGivingTheLiveDevice(@TempDir Path dir) throws Exception {
        try (Stack s = Stack.open("d: ram 8M\n", "t")) {
            BlockDevice d = s.device("d");
            ctl(s, "message", "d", "bitmap add b");
            ctl(s, "message", "d", "backup-begin v bitmap=b cow-dir=" + dir);
            BlockDevice view = s.device("v"); // what a connected NBD client keeps
            ctl(s, "message", "d", "backup-end v");
            byte[] live = new byte[65536];
            java.util.Arrays.fill(live, (byte) 0x5a);
            write(d, 0, live);
            MemorySegment m = Arena.ofAuto().allocate(65536, 4096);
            assertThatThrownBy(() -> view.read(0, m).get(10, TimeUnit.SECONDS))
                    .hasMessageContaining("backup v").hasMessageContaining("ended");
            assertThat(m.get(ValueLayout.JAVA_BYTE, 0)).as("no live byte passed for the backup's").isZero();
        }
    }

    /**
     * A write-zeroes to the live device during a backup (a guest's fallocate ZERO_RANGE, mkfs, an
     * NBD client's WRITE_ZEROES) is a write: it succeeds, the view keeps the instant's bytes and
     * the next bitmap has it. (The kernel's NBD client turns a failed one into EIO for the guest.)
     */
    @Test
    void writeZeroesAndDiscardDuringABackupSucceedAndTheViewKeepsTheInstant(@TempDir Path dir) throws Exception {
        try (Stack s = Stack.open("d: ram 8M\n", "t")) {
            BlockDevice d = s.device("d");
            byte[] init = new byte[SIZE];
            new Random(5).nextBytes(init);
            write(d, 0, init);
            ctl(s, "message", "d", "bitmap add b0");
            ctl(s, "message", "d", "backup-begin v bitmap=b0 new=b1 cow-dir=" + dir);
            d.writeZeroes((1 << 20) + 4096, 3 * 65536, false).get(10, TimeUnit.SECONDS);
            assertThat(java.util.Arrays.mismatch(readAll(s.device("v")), init)).as("the view: first differing byte").isEqualTo(-1);
            byte[] live = readAll(d);
            assertThat(java.util.Arrays.copyOfRange(live, (1 << 20) + 4096, (1 << 20) + 4096 + 3 * 65536)).containsOnly(0);
            assertThat(StackBitmapsTest.bitmapLine(s, "d", "b1")).contains("dirty=262144");
            // a guest's fstrim or a delete with -o discard: done (a trim may leave the data, NBD's
            // TRIM says so), not an EIO for the guest; the view keeps the instant
            d.discard(4 << 20, 1 << 20).get(10, TimeUnit.SECONDS);
            assertThat(java.util.Arrays.mismatch(readAll(s.device("v")), init)).as("the view after a trim").isEqualTo(-1);
            ctl(s, "message", "d", "backup-end v");
        }
    }

    /**
     * A read of the view in flight when backup-end comes (reads of the device are slow: a delay
     * target of 300 ms for reads, none for writes): backup-end waits for it while the device still
     * copies out, so a write right after backup-end can't reach it.
     */
    @Test
    void aViewReadInFlightAtBackupEndStillGetsThePointInTime(@TempDir Path dir) throws Exception {
        try (Stack s = Stack.open("r: ram 8M\nd: delay r 0 300 r 0 0\n", "t")) {
            BlockDevice d = s.device("d");
            ctl(s, "message", "d", "bitmap add b");
            ctl(s, "message", "d", "backup-begin v bitmap=b cow-dir=" + dir);
            MemorySegment m = Arena.ofAuto().allocate(65536, 4096);
            CompletableFuture<Void> read = s.device("v").read(0, m); // the 300 ms starts now
            ctl(s, "message", "d", "backup-end v");
            byte[] live = new byte[65536];
            java.util.Arrays.fill(live, (byte) 0x5a);
            write(d, 0, live);
            read.get(10, TimeUnit.SECONDS);
            assertThat(m.toArray(ValueLayout.JAVA_BYTE)).as("the instant's bytes, not the write after backup-end").containsOnly(0);
        }
    }

    /**
     * Two devices each with a backup: {@code message b backup-end va} (va is a's) must not end
     * a's backup. Driven on Backups itself: Stack.control's {@code message NAME backup-end EXPORT}
     * is to call {@code end(NAME, EXPORT)} (it calls {@code end(EXPORT)} still).
     */
    @Test
    void aBackupEndSentToAnotherDeviceIsRefusedAndEndsNothing(@TempDir Path dir) throws Exception {
        try (Stack s = Stack.open("a: ram 8M\nb: ram 8M\n", "t")) {
            ctl(s, "message", "a", "bitmap add p");
            ctl(s, "message", "b", "bitmap add q");
            ctl(s, "message", "a", "backup-begin va bitmap=p cow-dir=" + dir);
            ctl(s, "message", "b", "backup-begin vb bitmap=q cow-dir=" + dir);
            byte[] x = new byte[4096];
            java.util.Arrays.fill(x, (byte) 9);
            assertThatThrownBy(() -> ctl(s, "message", "b", "backup-end va")).hasMessageContaining("backup va is of a, not of b")
                    .hasMessageContaining("send backup-end va to a");
            assertThat(s.names()).contains("va", "vb");
            write(s.device("a"), 0, x);
            assertThat(readAll(s.device("va"))[0]).as("va still the point in time").isZero();
            assertThat(StackBitmapsTest.bitmapLine(s, "a", "p")).endsWith("busy=va");
            ctl(s, "message", "a", "backup-end va");
            ctl(s, "message", "b", "backup-end vb");
            assertThat(s.names()).doesNotContain("va", "vb");
        }
    }

    /** A table loaded into the device backed up (now, or before and resumed now) would change the view's instant. */
    @Test
    void aReloadOfTheDeviceDuringABackupIsRefusedAndTheViewKeepsTheInstant(@TempDir Path dir) throws Exception {
        try (Stack s = Stack.open("a: ram 8M\nb: ram 8M\nd: linear a 0\n", "t")) {
            byte[] x = new byte[4096];
            java.util.Arrays.fill(x, (byte) 7);
            write(s.device("b"), 0, x);
            ctl(s, "message", "d", "bitmap add bm");
            ctl(s, "reload", "d", "0 16384 linear b 0"); // loaded before the backup, not yet live
            ctl(s, "message", "d", "backup-begin v bitmap=bm cow-dir=" + dir);
            assertThatThrownBy(() -> ctl(s, "reload", "d", "0 16384 linear b 0")).hasMessageContaining("backup-end v");
            ctl(s, "suspend", "d");
            assertThatThrownBy(() -> ctl(s, "resume", "d")).hasMessageContaining("'clear' the loaded table");
            ctl(s, "clear", "d");
            ctl(s, "resume", "d");
            assertThat(readAll(s.device("v"))[0]).as("the instant's byte, from a").isZero();
            ctl(s, "message", "d", "backup-end v");
            ctl(s, "reload", "d", "0 16384 linear b 0");
        }
    }
}
