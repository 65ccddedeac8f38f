package io.biostack.layer.snapshot;

import static io.biostack.TestData.random;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.biostack.block.Bio;
import io.biostack.block.BioException;
import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;
import io.biostack.block.QueueLimits;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class SnapshotTest {
    private static final int MiB = 1 << 20;
    private static final int CHUNK = 16 * 1024;

    private static byte[] read(BlockDevice d, long off, int len) {
        byte[] b = new byte[len];
        d.read(off, IoIter.of(b)).join();
        return b;
    }

    private static void write(BlockDevice d, long off, byte[] data) {
        d.write(off, MemorySegment.ofArray(data)).join();
    }

    private static RamDisk originWith(byte[] content) {
        RamDisk o = new RamDisk("origin", content.length);
        write(o, 0, content);
        return o;
    }

    @Test
    void snapshotReadsLikeTheOriginUntilWritten() {
        byte[] base = random(2 * MiB, 1);
        RamDisk origin = originWith(base);
        Snapshot snap = Snapshot.create("snap", origin, new RamDisk("cow", MiB), true, CHUNK);
        assertThat(read(snap, 0, 2 * MiB)).isEqualTo(base);
        assertThat(snap.size()).isEqualTo(origin.size());
        assertThat(snap.table()).isEqualTo("origin cow P 32");
        snap.close();
    }

    @Test
    void snapshotWritesGoToTheCowAndKeepTheRestOfTheChunk() {
        byte[] base = random(MiB, 2);
        RamDisk origin = originWith(base);
        Snapshot snap = Snapshot.create("snap", origin, new RamDisk("cow", MiB), true, CHUNK);
        byte[] data = random(4096, 3);
        write(snap, CHUNK * 3 + 8192, data); // inside chunk 3: copy-out first
        byte[] expect = base.clone();
        System.arraycopy(data, 0, expect, CHUNK * 3 + 8192, 4096);
        assertThat(read(snap, 0, MiB)).isEqualTo(expect);
        assertThat(read(origin, 0, MiB)).isEqualTo(base);
        assertThat(snap.exceptionCount()).isEqualTo(1);
        write(snap, CHUNK * 3, random(4096, 4)); // same chunk again: no new exception
        assertThat(snap.exceptionCount()).isEqualTo(1);
        snap.close();
    }

    @Test
    void originWritesThroughTheHandlerCopyOutFirst() {
        byte[] base = random(MiB, 5);
        RamDisk origin = originWith(base);
        Snapshot a = Snapshot.create("a", origin, new RamDisk("cowa", MiB), true, CHUNK);
        Snapshot b = Snapshot.create("b", origin, new RamDisk("cowb", MiB), false, 2 * CHUNK);
        SnapshotOrigin handler = SnapshotOrigin.of("origin-h", origin);
        byte[] data = random(3 * CHUNK, 6);
        write(handler, CHUNK / 2 + 512, Arrays.copyOf(data, 3 * CHUNK - 1024)); // spans 4 chunks
        assertThat(read(a, 0, MiB)).isEqualTo(base);
        assertThat(read(b, 0, MiB)).isEqualTo(base);
        assertThat(read(handler, CHUNK / 2 + 512, 3 * CHUNK - 1024)).isEqualTo(Arrays.copyOf(data, 3 * CHUNK - 1024));
        assertThat(a.exceptionCount()).isEqualTo(4);
        assertThat(b.exceptionCount()).isEqualTo(2);
        a.close();
        b.close();
        assertThat(handler.status()).isEqualTo("0 snapshots");
    }

    @Test
    void persistentStoreUsesDmsFormatAndReloads() {
        byte[] base = random(MiB, 7);
        RamDisk origin = originWith(base);
        RamDisk cow = new RamDisk("cow", MiB);
        Snapshot snap = Snapshot.create("snap", origin, cow, true, CHUNK);
        byte[] data = random(CHUNK, 8);
        write(snap, 5L * CHUNK, data);                      // whole chunk: no copy
        write(SnapshotOrigin.of("h", origin), 0, random(512, 9));
        snap.close();

        ByteBuffer h = ByteBuffer.wrap(read(cow, 0, 512)).order(ByteOrder.LITTLE_ENDIAN);
        assertThat(h.getInt(0)).isEqualTo(0x70416e53);           // "SnAp"
        assertThat(h.getInt(4)).isEqualTo(1);                    // valid
        assertThat(h.getInt(8)).isEqualTo(1);                    // version
        assertThat(h.getInt(12)).isEqualTo(CHUNK / 512);         // chunk size in sectors
        ByteBuffer area = ByteBuffer.wrap(read(cow, CHUNK, 512)).order(ByteOrder.LITTLE_ENDIAN);
        assertThat(area.getLong(0)).isEqualTo(5);                // old chunk
        assertThat(area.getLong(8)).isEqualTo(2);                // first data chunk after header and area
        assertThat(area.getLong(16)).isEqualTo(0);
        assertThat(area.getLong(24)).isEqualTo(3);
        assertThat(area.getLong(40)).isEqualTo(0);               // end of table

        Snapshot again = Snapshot.create("snap2", origin, cow, true, 4096); // chunk size from disk wins
        assertThat(again.chunkBytes()).isEqualTo(CHUNK);
        assertThat(again.exceptionCount()).isEqualTo(2);
        byte[] expect = base.clone();
        System.arraycopy(data, 0, expect, 5 * CHUNK, CHUNK);
        assertThat(read(again, 0, MiB)).isEqualTo(expect);
        again.close();
    }

    @Test
    void persistentTableSpansSeveralAreas() {
        int chunk = 512; // 32 exceptions per area
        byte[] base = random(256 * 1024, 10);
        RamDisk origin = originWith(base);
        RamDisk cow = new RamDisk("cow", 512 * 1024);
        Snapshot snap = Snapshot.create("snap", origin, cow, true, chunk);
        byte[] expect = base.clone();
        for (int i = 0; i < 100; i++) {
            byte[] d = random(512, 100 + i);
            int c = (i * 37) % 500;
            write(snap, (long) c * chunk, d);
            System.arraycopy(d, 0, expect, c * chunk, chunk);
        }
        snap.close();
        Snapshot again = Snapshot.create("snap", origin, cow, true, chunk);
        assertThat(again.exceptionCount()).isEqualTo(100);
        assertThat(read(again, 0, base.length)).isEqualTo(expect);
        again.close();
    }

    @Test
    void fullCowStoreInvalidatesTheSnapshotAndTheOriginGoesOn() {
        byte[] base = random(MiB, 11);
        RamDisk origin = originWith(base);
        RamDisk cow = new RamDisk("cow", 5L * CHUNK);   // header, area, 3 data chunks
        Snapshot snap = Snapshot.create("snap", origin, cow, true, CHUNK);
        for (int c = 0; c < 3; c++) {
            write(snap, (long) c * CHUNK, random(512, c));
        }
        assertThatThrownBy(() -> write(snap, 10L * CHUNK, random(512, 12))).cause()
                .isInstanceOfSatisfying(BioException.class, e -> assertThat(e.status()).isEqualTo(Status.NOSPC))
                .hasMessageContaining("cow is full");
        assertThat(snap.state()).isEqualTo(Snapshot.State.INVALID);
        assertThat(snap.status()).isEqualTo("Invalid");
        assertThatThrownBy(() -> read(snap, 0, 512)).cause()
                .isInstanceOfSatisfying(BioException.class, e -> assertThat(e.status()).isEqualTo(Status.IOERR))
                .hasMessageContaining("invalid");
        SnapshotOrigin h = SnapshotOrigin.of("h", origin);
        byte[] d = random(4096, 13);
        write(h, 20L * CHUNK, d);
        assertThat(read(origin, 20L * CHUNK, 4096)).isEqualTo(d);
        snap.close();
        assertThat(ByteBuffer.wrap(read(cow, 0, 512)).order(ByteOrder.LITTLE_ENDIAN).getInt(4)).isZero();
        try (Snapshot again = Snapshot.create("again", origin, cow, true, CHUNK)) {
            assertThat(again.state()).isEqualTo(Snapshot.State.INVALID);
            assertThatThrownBy(() -> Snapshot.merge(again, p -> { }).join()).hasMessageContaining("invalid");
        }
    }

    @Test
    void badArgumentsAreRefused() {
        RamDisk origin = new RamDisk("origin", MiB);
        assertThatThrownBy(() -> Snapshot.create("s", origin, new RamDisk("cow", MiB), true, 3000))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("power of two");
        RamDisk junk = new RamDisk("junk", MiB);
        write(junk, 0, random(512, 14));
        assertThatThrownBy(() -> Snapshot.create("s", origin, junk, true, CHUNK))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("junk");
        assertThatThrownBy(() -> Snapshot.create("s", origin, new RamDisk("tiny", 2L * CHUNK), true, CHUNK))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("too small");
        Snapshot s = Snapshot.create("s", origin, new RamDisk("cow", MiB), false, CHUNK);
        assertThatThrownBy(() -> s.discard(0, 4096).join()).cause()
                .isInstanceOfSatisfying(BioException.class, e -> assertThat(e.status()).isEqualTo(Status.NOTSUPP));
        assertThatThrownBy(() -> s.message(List.of("frobnicate"))).isInstanceOf(IllegalArgumentException.class);
        s.close();
    }

    @Test
    void mergeCopiesTheSnapshotBackIntoTheOriginWithProgress() {
        byte[] base = random(MiB, 15);
        RamDisk origin = originWith(base);
        Snapshot snap = Snapshot.create("snap", origin, new RamDisk("cow", MiB), true, CHUNK);
        SnapshotOrigin h = SnapshotOrigin.of("h", origin);
        write(snap, 0, random(3 * CHUNK, 16));
        write(h, 10L * CHUNK, random(CHUNK, 17));        // origin changes after the snapshot
        write(snap, 40L * CHUNK + 512, random(1024, 18));
        byte[] view = read(snap, 0, MiB);
        List<Snapshot.MergeProgress> seen = new ArrayList<>();
        Snapshot.merge(snap, seen::add).join();
        assertThat(read(origin, 0, MiB)).isEqualTo(view);
        assertThat(seen).last().isEqualTo(new Snapshot.MergeProgress(5, 5));
        assertThat(snap.state()).isEqualTo(Snapshot.State.MERGED);
        assertThat(snap.exceptionCount()).isZero();
        // afterwards the snapshot is the origin
        byte[] d = random(4096, 19);
        write(snap, 0, d);
        assertThat(read(origin, 0, 4096)).isEqualTo(d);
        assertThat(SnapshotOrigin.snapshotsOf(origin)).isEmpty();
    }

    @Test
    void aFinishedMergeIsRecordedAsAJfrEventWithItsChunksAndBytes() throws Exception {
        RamDisk origin = originWith(random(MiB, 21));
        Snapshot snap = Snapshot.create("snapj", origin, new RamDisk("cow", MiB), true, CHUNK);
        write(snap, 0, random(2 * CHUNK, 22));
        java.nio.file.Path jfr = java.nio.file.Files.createTempFile("merge", ".jfr");
        try (jdk.jfr.Recording rec = new jdk.jfr.Recording()) {
            rec.enable("biostack.SnapshotMerge");
            rec.start();
            Snapshot.merge(snap, p -> { }).join();
            rec.stop();
            rec.dump(jfr);
            var events = jdk.jfr.consumer.RecordingFile.readAllEvents(jfr).stream()
                    .filter(e -> e.getEventType().getName().equals("biostack.SnapshotMerge")).toList();
            assertThat(events).hasSize(1);
            assertThat(events.get(0).getString("device")).isEqualTo("snapj");
            assertThat(events.get(0).getString("origin")).isEqualTo("origin");
            assertThat(events.get(0).getLong("chunks")).isEqualTo(2);
            assertThat(events.get(0).getLong("bytes")).isEqualTo(2L * CHUNK);
            assertThat(events.get(0).getString("outcome")).isEqualTo("ok");
        } finally {
            java.nio.file.Files.deleteIfExists(jfr);
        }
    }

    @Test
    void writesDuringAMergeLandInTheOrigin() throws Exception {
        byte[] base = random(MiB, 20);
        RamDisk origin = originWith(base);
        Gate cowGate = new Gate(new RamDisk("cow", MiB));
        Snapshot snap = Snapshot.create("snap", origin, cowGate, false, CHUNK);
        for (int c = 0; c < 8; c++) {
            write(snap, (long) c * CHUNK, random(512, 30 + c));
        }
        byte[] expect = read(snap, 0, MiB);
        cowGate.hold = true;
        CompletableFuture<Void> m = snap.merge(p -> { });
        cowGate.awaitHeld(1);                            // merge is reading chunk 0 from the COW
        CompletableFuture<Void> w1 = snap.write(0, MemorySegment.ofArray(random(512, 40)));   // busy chunk: queues
        byte[] d2 = random(512, 41);
        CompletableFuture<Void> w2 = SnapshotOrigin.of("h", origin).write(5L * CHUNK + 1024, MemorySegment.ofArray(d2));
        assertThat(w1).isNotDone();
        cowGate.release();
        m.get(10, TimeUnit.SECONDS);
        w1.get(10, TimeUnit.SECONDS);
        w2.get(10, TimeUnit.SECONDS);
        System.arraycopy(random(512, 40), 0, expect, 0, 512);
        System.arraycopy(d2, 0, expect, 5 * CHUNK + 1024, 512);
        assertThat(read(origin, 0, MiB)).isEqualTo(expect);
    }

    @Test
    void bioForAChunkBeingCopiedOutWaitsAndSeesTheOldData() throws Exception {
        byte[] base = random(MiB, 21);
        Gate origin = new Gate(originWith(base));
        Snapshot snap = Snapshot.create("snap", origin, new RamDisk("cow", MiB), true, CHUNK);
        SnapshotOrigin h = SnapshotOrigin.of("h", origin);
        origin.hold = true;
        byte[] d = random(4096, 22);
        CompletableFuture<Void> w = h.write(2L * CHUNK, MemorySegment.ofArray(d)); // copy-out read held
        origin.awaitHeld(1);
        byte[] got = new byte[4096];
        CompletableFuture<Void> r = snap.read(2L * CHUNK, IoIter.of(got));          // queued behind it
        CompletableFuture<Void> w2 = snap.write(2L * CHUNK + 8192, MemorySegment.ofArray(d)); // queued too
        assertThat(origin.held()).isEqualTo(1);
        assertThat(r).isNotDone();
        origin.hold = false;
        origin.release();
        CompletableFuture.allOf(w, r, w2).get(10, TimeUnit.SECONDS);
        assertThat(got).isEqualTo(Arrays.copyOfRange(base, 2 * CHUNK, 2 * CHUNK + 4096));
        assertThat(read(origin, 2L * CHUNK, 4096)).isEqualTo(d);
        assertThat(read(snap, 2L * CHUNK + 8192, 4096)).isEqualTo(d);
        assertThat(snap.exceptionCount()).isEqualTo(1);
        snap.close();
    }

    @Test
    void originWriteWaitsForSnapshotReadsOfTheOldData() throws Exception {
        byte[] base = random(MiB, 23);
        Gate origin = new Gate(originWith(base));
        Snapshot snap = Snapshot.create("snap", origin, new RamDisk("cow", MiB), true, CHUNK);
        origin.hold = true;
        byte[] got = new byte[CHUNK];
        CompletableFuture<Void> r = snap.read(0, IoIter.of(got));        // snapshot read at the origin, held
        origin.awaitHeld(1);
        origin.hold = false;
        CompletableFuture<Void> w = SnapshotOrigin.of("h", origin).write(0, MemorySegment.ofArray(new byte[CHUNK]));
        Thread.sleep(50);
        assertThat(w).isNotDone();                                       // copied out, waiting for the read
        origin.release();
        CompletableFuture.allOf(r, w).get(10, TimeUnit.SECONDS);
        assertThat(got).isEqualTo(Arrays.copyOf(base, CHUNK));
        assertThat(read(origin, 0, CHUNK)).isEqualTo(new byte[CHUNK]);
        snap.close();
    }

    @Test
    void copyOutErrorInvalidatesTheSnapshotButNotTheOrigin() {
        byte[] base = random(MiB, 24);
        RamDisk origin = originWith(base);
        Gate cow = new Gate(new RamDisk("cow", MiB));
        Snapshot snap = Snapshot.create("snap", origin, cow, false, CHUNK);
        cow.failWrites = true;
        assertThatThrownBy(() -> write(snap, 0, random(512, 25))).cause().isInstanceOf(BioException.class);
        assertThat(snap.state()).isEqualTo(Snapshot.State.INVALID);
        byte[] d = random(512, 26);
        write(SnapshotOrigin.of("h", origin), 0, d);
        assertThat(read(origin, 0, 512)).isEqualTo(d);
        snap.close();
    }

    @Test
    void randomMixOfSnapshotAndOriginWritesMatchesAModelThenMerges() {
        Random r = new Random(27);
        int size = 512 * 1024;
        byte[] originModel = random(size, 28);
        byte[] snapModel = originModel.clone();
        RamDisk origin = originWith(originModel);
        Snapshot snap = Snapshot.create("snap", origin, new RamDisk("cow", 2L * size), true, 4096);
        SnapshotOrigin h = SnapshotOrigin.of("h", origin);
        for (int i = 0; i < 300; i++) {
            int len = 512 * (1 + r.nextInt(24));
            int off = 512 * r.nextInt((size - len) / 512);
            byte[] d = random(len, r.nextLong());
            if (r.nextBoolean()) {
                write(snap, off, d);
                System.arraycopy(d, 0, snapModel, off, len);
            } else {
                write(h, off, d);
                System.arraycopy(d, 0, originModel, off, len);
            }
            if (i % 50 == 0) {
                assertThat(read(snap, 0, size)).isEqualTo(snapModel);
                assertThat(read(h, 0, size)).isEqualTo(originModel);
            }
        }
        assertThat(read(snap, 0, size)).isEqualTo(snapModel);
        assertThat(read(origin, 0, size)).isEqualTo(originModel);
        snap.merge(p -> { }).join();
        assertThat(read(origin, 0, size)).isEqualTo(snapModel);
    }

    @Test
    void aWriteToAMergedChunkSurvivesARestartInTheMiddleOfTheMerge() throws Exception {
        byte[] base = random(MiB, 50);
        RamDisk origin = originWith(base);
        RamDisk cowDisk = new RamDisk("cow", MiB);
        Snapshot snap = Snapshot.create("snap", origin, cowDisk, true, CHUNK);
        for (int c = 0; c < 4; c++) {
            write(snap, (long) c * CHUNK, random(512, 51 + c));
        }
        long cowOfChunk2 = snap.exceptionsForTest().get(2L) * CHUNK;
        HoldAt cow = new HoldAt(cowDisk, cowOfChunk2);   // the merge stops before chunk 2
        snap.close();
        Snapshot merging = Snapshot.create("snap", origin, cow, true, CHUNK);
        CompletableFuture<Void> m = merging.merge(p -> { });
        cow.awaitHeld();                                 // chunks 0 and 1 merged back
        byte[] d = random(4096, 55);
        write(merging, 0, d);                            // chunk 0 is merged: this goes to the origin

        // the machine stops here; biostack starts again on what the disks hold
        RamDisk origin2 = originWith(read(origin, 0, MiB));
        RamDisk cow2 = new RamDisk("cow2", MiB);
        write(cow2, 0, read(cowDisk, 0, MiB));
        Snapshot again = Snapshot.create("snap", origin2, cow2, true, CHUNK);
        assertThat(Arrays.mismatch(read(again, 0, 4096), d)).as("the acknowledged write to the merged chunk").isEqualTo(-1);
        assertThat(again.exceptionCount()).as("chunks 2 and 3 are left to merge").isEqualTo(2);
        again.merge(p -> { }).get(10, TimeUnit.SECONDS);
        assertThat(Arrays.mismatch(read(origin2, 0, 4096), d)).isEqualTo(-1);

        cow.release();
        m.get(10, TimeUnit.SECONDS);
        merging.close();
    }

    @Test
    void aPowerCutWhileAnAreaFillsNeverLoadsTheTableTheCowHeldBefore() {
        int chunk = 512;                                  // 32 exceptions per area
        int perArea = chunk / 16;
        long area1 = (1 + perArea + 1L) * chunk;
        byte[] base = random(256 * 1024, 60);
        for (int cut = 0; cut <= 4; cut++) {
            RamDisk origin = originWith(base);
            RamDisk disk = new RamDisk("cow", 256 * 1024);
            // a COW device used before, of which only the start was zeroed: area 1 holds an old table
            ByteBuffer old = ByteBuffer.allocate(chunk).order(ByteOrder.LITTLE_ENDIAN);
            old.putLong(0, 400).putLong(8, 40);
            write(disk, area1, old.array());
            write(disk, 40L * chunk, random(chunk, 61));
            PowerCut cow = new PowerCut(disk);
            Snapshot snap = Snapshot.create("snap", origin, cow, true, chunk);
            byte[] expect = base.clone();
            for (int i = 0; i < perArea - 1; i++) {
                byte[] d = random(chunk, 62 + i);
                write(snap, (long) i * chunk, d);
                System.arraycopy(d, 0, expect, i * chunk, chunk);
            }
            cow.cutAfter(cut);                            // the power goes during the commit that fills area 0
            byte[] last = random(chunk, 99);
            snap.write((long) (perArea - 1) * chunk, MemorySegment.ofArray(last)).handle((v, e) -> null).join();
            snap.close();

            Snapshot again = Snapshot.create("again", origin, disk, true, chunk);
            byte[] got = read(again, 0, base.length);
            byte[] lastGot = Arrays.copyOfRange(got, (perArea - 1) * chunk, perArea * chunk);
            assertThat(Arrays.equals(lastGot, last) || Arrays.equals(lastGot, Arrays.copyOfRange(base, (perArea - 1) * chunk,
                    perArea * chunk))).as("the chunk written when the power went, cut after %d writes", cut).isTrue();
            System.arraycopy(lastGot, 0, expect, (perArea - 1) * chunk, chunk);
            assertThat(Arrays.mismatch(got, expect)).as("the snapshot after a cut after %d writes", cut).isEqualTo(-1);
            assertThat(again.exceptionCount()).isBetween((long) perArea - 1, (long) perArea);
            again.close();
        }
    }

    /** A device over {@code below} that the fault devices of these tests extend: they decide what to pass. */
    abstract static class Passing implements BlockDevice {
        final BlockDevice below;

        Passing(BlockDevice below) {
            this.below = below;
        }

        @Override public String name() { return below.name(); }
        @Override public long size() { return below.size(); }
        @Override public QueueLimits limits() { return below.limits(); }
        @Override public boolean isReadOnly() { return false; }
        @Override public void close() { }
    }

    /** Passes bios until {@link #cutAfter} writes more; then fails every write and flush, as a dead disk. */
    static final class PowerCut extends Passing {
        private final java.util.concurrent.atomic.AtomicInteger left = new java.util.concurrent.atomic.AtomicInteger(Integer.MAX_VALUE);

        PowerCut(BlockDevice below) {
            super(below);
        }

        void cutAfter(int writes) {
            left.set(writes);
        }

        @Override
        public void submit(Bio bio) {
            if (bio.op() != io.biostack.block.Op.READ && left.getAndDecrement() <= 0) {
                bio.fail(Status.IOERR, "power cut");
                return;
            }
            below.submit(bio);
        }
    }

    /** Holds the bio that starts at {@code offset} until {@link #release}; passes the rest. */
    static final class HoldAt extends Passing {
        final long offset;
        private final CompletableFuture<Bio> held = new CompletableFuture<>();

        HoldAt(BlockDevice below, long offset) {
            super(below);
            this.offset = offset;
        }

        @Override
        public void submit(Bio bio) {
            if (bio.offset() == offset && !held.isDone()) {
                held.complete(bio);
                return;
            }
            below.submit(bio);
        }

        void awaitHeld() throws Exception {
            held.get(10, TimeUnit.SECONDS);
        }

        void release() {
            below.submit(held.join());
        }
    }

    /** Holds bios (when {@link #hold} is set) until {@link #release}; can fail writes. */
    static final class Gate extends Passing {
        volatile boolean hold;
        volatile boolean failWrites;
        private final List<Bio> held = new ArrayList<>();

        Gate(BlockDevice below) {
            super(below);
        }

        @Override
        public void submit(Bio bio) {
            if (failWrites && bio.op() == io.biostack.block.Op.WRITE) {
                bio.fail(Status.IOERR, "injected");
                return;
            }
            synchronized (this) {
                if (hold) {
                    held.add(bio);
                    notifyAll();
                    return;
                }
            }
            below.submit(bio);
        }

        synchronized int held() {
            return held.size();
        }

        synchronized void awaitHeld(int n) throws InterruptedException {
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (held.size() < n && System.nanoTime() < end) {
                wait(100);
            }
            assertThat(held).hasSizeGreaterThanOrEqualTo(n);
        }

        void release() {
            List<Bio> go;
            synchronized (this) {
                hold = false;
                go = new ArrayList<>(held);
                held.clear();
            }
            go.forEach(below::submit);
        }
    }
}
