package io.biostack.layer;

import io.biostack.block.Op;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;
import io.biostack.layer.logwrites.LogWrites;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static io.biostack.layer.TestDevices.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class MirrorTest {
    final TestDevices.Probe a = new TestDevices.Probe(new RamDisk("a", 4 << 20));
    final TestDevices.Probe b = new TestDevices.Probe(new RamDisk("b", 4 << 20));

    Mirror mirror(long len) {
        return new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 65536)), len, 65536, true);
    }

    @Test
    void writesGoToEveryLegAndReadsAreBalanced() {
        Mirror m = mirror(1 << 20);
        MemorySegment d = pattern(8192, 1);
        write(m, 4096, d);
        assertThat(read(a, 4096, 8192)).isEqualTo(bytes(d));
        assertThat(read(b, 65536 + 4096, 8192)).isEqualTo(bytes(d));
        long ra = a.count(Op.READ);
        long rb = b.count(Op.READ);
        for (int i = 0; i < 10; i++) {
            assertThat(read(m, 4096, 8192)).isEqualTo(bytes(d));
        }
        assertThat(a.count(Op.READ) - ra).isEqualTo(5);
        assertThat(b.count(Op.READ) - rb).isEqualTo(5);
    }

    @Test
    void flushesReachEveryLeg() {
        Mirror m = mirror(1 << 20);
        join(m.flush());
        assertThat(a.count(Op.FLUSH)).isEqualTo(1);
        assertThat(b.count(Op.FLUSH)).isEqualTo(1);
    }

    @Test
    void discardsAndWriteZeroesReachEveryLegWhenEveryLegTakesThem() {
        // dm-raid1 takes discards (num_discard_bios = 1, sent to every leg): a mirror over
        // devices that take them must offer them (fstrim, an NBD export's TRIM), and FUA too.
        Mirror m = mirror(1 << 20);
        assertThat(m.limits().discard()).isTrue();
        assertThat(m.limits().writeZeroes()).isTrue();
        assertThat(m.limits().fua()).isTrue();
        write(m, 0, pattern(4 * 65536, 9));
        assertThat(statusOf(m.discard(0, 2 * 65536))).isEqualTo(Status.OK);
        assertThat(statusOf(m.writeZeroes(2 * 65536, 2 * 65536, true))).isEqualTo(Status.OK);
        assertThat(a.count(Op.DISCARD)).isEqualTo(1);
        assertThat(b.count(Op.DISCARD)).isEqualTo(1);
        assertThat(read(a, 0, 4 * 65536)).containsOnly(0);
        assertThat(read(b, 65536, 4 * 65536)).containsOnly(0);
    }

    @Test
    void aFailingLegIsDroppedAndTheDeviceKeepsServing() {
        Mirror m = mirror(1 << 20);
        b.failing = true;
        MemorySegment d = pattern(4096, 2);
        assertThat(statusOf(m.write(0, d))).isEqualTo(Status.OK);
        assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
        assertThat(m.status()).isEqualTo("2 a b 16/16 1 AD 1 core");
        for (int i = 0; i < 4; i++) {
            assertThat(read(m, 0, 4096)).isEqualTo(bytes(d));
        }
    }

    @Test
    void aFailedReadIsRetriedOnAnotherLeg() {
        Mirror m = mirror(1 << 20);
        MemorySegment d = pattern(4096, 3);
        write(m, 0, d);
        a.failing = true;
        for (int i = 0; i < 3; i++) {
            assertThat(read(m, 0, 4096)).isEqualTo(bytes(d));
        }
        assertThat(m.status()).contains(" RA ");
    }

    @Test
    void whenEveryLegFailsTheBioFails() {
        Mirror m = mirror(1 << 20);
        a.failing = true;
        b.failing = true;
        assertThat(statusOf(m.write(0, pattern(512, 4)))).isEqualTo(Status.IOERR);
        assertThat(statusOf(m.read(0, buffer(512)))).isEqualTo(Status.IOERR);
    }

    @Test
    void aReinstatedLegIsResynchronisedWhileWritesGoOn() throws Exception {
        long len = 2 << 20;
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), len, 65536, true);
        m.message(List.of("fail", "b"));
        Random rnd = new Random(5);
        for (int i = 0; i < 64; i++) {
            write(m, (long) rnd.nextInt((int) (len / 4096)) * 4096, pattern(4096, rnd.nextLong()));
        }
        assertThat(read(a, 0, (int) len)).isNotEqualTo(read(b, 0, (int) len));
        m.message(List.of("reinstate", "1"));
        List<CompletableFuture<Void>> fs = new ArrayList<>();
        for (int i = 0; i < 2000; i++) {
            fs.add(m.write((long) rnd.nextInt((int) (len / 4096)) * 4096, pattern(4096, rnd.nextLong())));
        }
        CompletableFuture.allOf(fs.toArray(new CompletableFuture[0])).get(20, TimeUnit.SECONDS);
        assertThat(m.awaitResync(20, TimeUnit.SECONDS)).isTrue();
        assertThat(m.legState(1)).isEqualTo(Mirror.LegState.IN_SYNC);
        assertThat(m.status()).isEqualTo("2 a b 32/32 1 AA 1 core");
        assertThat(read(b, 0, (int) len)).isEqualTo(read(a, 0, (int) len));
        m.close();
    }

    @Test
    void withoutNosyncTheSecondLegIsCopiedFromTheFirst() throws Exception {
        write(a, 0, pattern(1 << 20, 6));
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 1 << 20, 65536, false);
        assertThat(m.awaitResync(10, TimeUnit.SECONDS)).isTrue();
        assertThat(read(b, 0, 1 << 20)).isEqualTo(bytes(pattern(1 << 20, 6)));
        assertThat(m.table()).isEqualTo("core 1 128 2 a 0 b 0 1 handle_errors");
        m.close();
    }

    @Test
    void aLegDroppedOnErrorsIsTakenBackByItselfAndOnlyItsDirtyRegionsAreCopied() throws Exception {
        long len = 2 << 20;
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), len, 65536, true);
        b.failing = true;
        write(m, 0, pattern(4096, 20));
        assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
        assertThat(m.status()).isEqualTo("2 a b 32/32 1 AD 1 core");
        // Writes while the leg is down: regions 0, 5 and 9 (the second write shares region 5).
        write(m, 5 * 65536 + 8192, pattern(8192, 21));
        write(m, 5 * 65536 + 32768, pattern(4096, 22));
        write(m, 9 * 65536, pattern(65536, 23));
        assertThat(m.dirtyRegions(1)).isEqualTo(3);
        long writesBefore = b.count(Op.WRITE);
        b.failing = false; // the leg answers again: no command is given
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while ((m.legState(1) != Mirror.LegState.IN_SYNC || m.isResyncing()) && System.nanoTime() < end) {
            Thread.sleep(10);
        }
        assertThat(m.legState(1)).isEqualTo(Mirror.LegState.IN_SYNC);
        assertThat(m.status()).isEqualTo("2 a b 32/32 1 AA 1 core");
        assertThat(b.count(Op.WRITE) - writesBefore).as("one copy per dirty region").isEqualTo(3);
        assertThat(m.dirtyRegions(1)).isZero();
        assertThat(read(b, 0, (int) len)).isEqualTo(read(a, 0, (int) len));
        m.close();
    }

    @Test
    void aLegThatFailsAgainDuringItsResyncKeepsTheRegionsItStillLacks() throws Exception {
        long len = 2 << 20;
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), len, 65536, true);
        b.failing = true;
        write(m, 0, pattern(4096, 40));
        assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
        for (int r = 0; r < 32; r++) {
            write(m, r * 65536L, pattern(4096, 41 + r)); // while it is away: every region
        }
        assertThat(m.dirtyRegions(1)).isEqualTo(32);
        b.failFromWriteAt = 5 * 65536; // it comes back, and dies again at the copy of region 5
        b.failing = false;
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (b.failFromWriteAt != -1 && System.nanoTime() < end) {
            Thread.sleep(5);
        }
        while ((m.isResyncing() || m.legState(1) != Mirror.LegState.FAILED) && System.nanoTime() < end) {
            Thread.sleep(5);
        }
        assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
        assertThat(m.dirtyRegions(1)).as("regions 5 to 31 are still to copy").isEqualTo(27);
        b.failing = false; // back for good
        end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while ((m.legState(1) != Mirror.LegState.IN_SYNC || m.isResyncing()) && System.nanoTime() < end) {
            Thread.sleep(10);
        }
        assertThat(m.legState(1)).isEqualTo(Mirror.LegState.IN_SYNC);
        assertThat(read(b, 0, (int) len)).as("in sync means the same bytes").isEqualTo(read(a, 0, (int) len));
        m.close();
    }

    /**
     * The core log's version of MirrorDiskLogTest's: leg b is a disk with a volatile write cache
     * whose server restarts and loses what it had not flushed; the mirror's next flush fails on
     * it. The regions written since its last good flush (kept per leg in memory) and those
     * written while it was away are copied when it answers again, not the whole device.
     */
    @Test
    void aLegWhoseFlushFailedGetsOnlyTheRegionsWrittenSinceItsLastGoodFlush(@TempDir Path dir) throws Exception {
        long region = 64 * 1024;
        RamDisk a = new RamDisk("a", 1 << 20);
        RamDisk bDisk = new RamDisk("b", 1 << 20);
        RamDisk bLog = new RamDisk("b-log", 4 << 20);
        LogWrites bw = new LogWrites("bw", bDisk, bLog);
        Probe b = new Probe(bw);
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 1 << 20, region, true);
        try {
            write(m, 1 * region, pattern(4096, 1));
            write(m, 5 * region, pattern(4096, 5));
            join(m.flush()); // stable on both legs
            write(m, 2 * region, pattern(4096, 2)); // in b's cache only
            write(m, 9 * region + 8192, pattern(4096, 9));
            b.failing = true; // b's server restarts without its cache: the flush says so
            join(m.flush()); // held by leg a
            assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
            write(m, 12 * region, pattern(4096, 12)); // while b is away
            // (LogWrites records the good flush on its log a moment after it completes)
            RamDisk b2 = MirrorDiskLogTest.afterPowerCut(bLog, "b2", 1 << 20, dir);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (!java.util.Arrays.equals(read(b2, 1 * region, 4096), bytes(pattern(4096, 1))) && System.nanoTime() < deadline) {
                Thread.sleep(5);
                b2 = MirrorDiskLogTest.afterPowerCut(bLog, "b2", 1 << 20, dir);
            }
            assertThat(read(b2, 1 * region, 4096)).isEqualTo(bytes(pattern(4096, 1)));
            assertThat(read(b2, 2 * region, 4096)).as("acknowledged, never flushed: lost").containsOnly(0);
            write(bDisk, 0, MemorySegment.ofArray(read(b2, 0, 1 << 20)));
            b.failing = false; // it answers again: the prober takes it back
            MirrorTest.awaitTakenBackInSync(m, 1);
            assertThat(m.resyncBytes()).as("regions 2, 9 (unflushed) and 12 (dirty), not all 16").isEqualTo(3 * region);
            assertThat(read(bDisk, 0, 1 << 20)).as("b holds every byte a holds").isEqualTo(read(a, 0, 1 << 20));
        } finally {
            m.close();
            bw.close();
        }
    }

    @Test
    void aLegFailedByMessageStaysDownUntilReinstated() throws Exception {
        Mirror m = mirror(1 << 20);
        m.message(List.of("fail", "1"));
        write(m, 0, pattern(4096, 30));
        Thread.sleep(2 * Mirror.PROBE_MIN_NANOS / 1_000_000 + 200);
        assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
        assertThat(m.dirtyRegions(1)).isEqualTo(1);
        m.close();
    }

    @Test
    void badMessagesAndTablesAreRefused() {
        Mirror m = mirror(1 << 20);
        assertThatThrownBy(() -> m.message(List.of("reinstate", "0"))).hasMessageContaining("only a failed leg");
        assertThatThrownBy(() -> m.message(List.of("fail", "7"))).hasMessageContaining("no leg '7'");
        assertThatThrownBy(() -> m.message(List.of("explode", "0"))).hasMessageContaining("unknown mirror message");
        assertThatThrownBy(() -> new Mirror("m", List.of(new Leg(a, 0)), 8 << 20, 65536, true)).hasMessageContaining("beyond the end");
        assertThatThrownBy(() -> new Mirror("m", List.of(new Leg(a, 0)), 1 << 20, 100, true)).hasMessageContaining("region size");
    }

    /** Waits (10 s at most) for the prober to take {@code leg} back and its copy to end, in sync. */
    static void awaitTakenBackInSync(Mirror m, int leg) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (m.legState(leg) == Mirror.LegState.FAILED && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertThat(m.awaitResync(10, TimeUnit.SECONDS)).isTrue();
        assertThat(m.legState(leg)).isEqualTo(Mirror.LegState.IN_SYNC);
    }
}
