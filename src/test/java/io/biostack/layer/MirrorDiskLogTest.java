package io.biostack.layer;

import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.layer.logwrites.LogWrites;
import io.biostack.replay.WriteLog;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class MirrorDiskLogTest {
    static final long REGION = 64 * 1024;

    static MemorySegment fill(int size, int v) {
        MemorySegment m = Arena.ofAuto().allocate(size, 4096);
        m.fill((byte) v);
        return m;
    }

    static byte[] read(BlockDevice d, long off, int len) throws Exception {
        MemorySegment m = Arena.ofAuto().allocate(len, 4096);
        d.read(off, m).get(10, TimeUnit.SECONDS);
        return m.toArray(ValueLayout.JAVA_BYTE);
    }

    static long logWord(BlockDevice log, int w) throws Exception {
        MemorySegment m = Arena.ofAuto().allocate(4096, 4096);
        log.read(4096, m).get(10, TimeUnit.SECONDS);
        return m.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), w * 8L);
    }

    @Test
    void aRegionIsMarkedOnTheLogBeforeItsFirstWriteAndLaterWritesCostNothing() throws Exception {
        RamDisk a = new RamDisk("a", 4 << 20);
        RamDisk b = new RamDisk("b", 4 << 20);
        RamDisk log = new RamDisk("log", 1 << 20);
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 4 << 20, REGION, true, log);
        try {
            // the delay set once the log's thread runs, as a table's clear_delay= may be
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().equals("biostack-mirror-log-log")
                    && t.getState() == Thread.State.TIMED_WAITING) && System.nanoTime() < deadline) {
                Thread.onSpinWait();
            }
            m.log().clearDelay(100);
            assertThat(m.log().isFresh()).isTrue();
            long before = m.log().logWrites();
            m.write(3 * REGION, fill(4096, 5)).get();
            assertThat(logWord(log, 0) & (1L << 3)).as("region 3's bit is on the log device").isNotZero();
            assertThat(m.log().logWrites()).isEqualTo(before + 1);
            for (int i = 1; i < 8; i++) {
                m.write(3 * REGION + i * 4096, fill(4096, 5)).get();
            }
            assertThat(m.log().logWrites()).isEqualTo(before + 1);
            assertThat(read(b, 3 * REGION, 4096)).containsOnly(5);
            // cleared lazily once every leg has it and the region is idle: two passes of the delay
            // set after the start (as a table's clear_delay= is), not of the 5 s default
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(3);
            while (logWord(log, 0) != 0 && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            assertThat(logWord(log, 0)).as("cleared within a few 100 ms passes").isZero();
            assertThat(m.status()).endsWith("3 disk log A marked=0 log_writes=" + m.log().logWrites() + " resync_bytes=0");
            assertThat(m.table()).startsWith("disk 3 log 128 nosync 2").endsWith(" 2 handle_errors clear_delay=100ms");
        } finally {
            m.close();
        }
    }

    @Test
    void aLegDownAcrossARestartGetsOnlyTheRegionsWrittenWhileItWasAway() throws Exception {
        RamDisk a = new RamDisk("a", 4 << 20);
        RamDisk b = new RamDisk("b", 4 << 20);
        RamDisk log = new RamDisk("log", 1 << 20);
        a.write(0, fill(4 << 20, 1)).get();
        b.write(0, fill(4 << 20, 1)).get();
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 4 << 20, REGION, true, log);
        m.message(List.of("fail", "1"));
        m.write(2 * REGION, fill(8192, 7)).get();
        m.write(9 * REGION + 4096, fill(4096, 8)).get();
        m.close(); // a leg is out of sync: the marks stay on the log
        assertThat(logWord(log, 0)).isEqualTo((1L << 2) | (1L << 9));
        assertThat(read(b, 2 * REGION, 4096)).containsOnly(1);

        Mirror again = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 4 << 20, REGION, true, log);
        try {
            assertThat(again.log().isFresh()).isFalse();
            assertThat(again.awaitResync(10, TimeUnit.SECONDS)).isTrue();
            assertThat(again.resyncBytes()).isEqualTo(2 * REGION);
            assertThat(read(b, 0, 4 << 20)).isEqualTo(read(a, 0, 4 << 20));
            assertThat(again.status()).contains("64/64 1 AA");
        } finally {
            again.close();
        }
    }

    /** A copy of {@code d} as it is now: what a crash at this instant leaves on it. */
    static RamDisk crashCopy(BlockDevice d, String name) throws Exception {
        RamDisk c = new RamDisk(name, d.size());
        c.write(0, MemorySegment.ofArray(read(d, 0, (int) d.size()))).get(10, TimeUnit.SECONDS);
        return c;
    }

    @Test
    void aFirstLegDownAcrossACrashIsCopiedToAndNeverCopiedFrom() throws Exception {
        RamDisk a = new RamDisk("a", 4 << 20);
        RamDisk b = new RamDisk("b", 4 << 20);
        RamDisk log = new RamDisk("log", 1 << 20);
        a.write(0, fill(4 << 20, 1)).get();
        b.write(0, fill(4 << 20, 1)).get();
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 4 << 20, REGION, true, log);
        RamDisk a2;
        RamDisk b2;
        RamDisk log2;
        try {
            m.message(List.of("fail", "0")); // the first leg goes away; leg 1 alone has what follows
            m.write(2 * REGION, fill(8192, 7)).get(10, TimeUnit.SECONDS);
            // the process dies now, the write acknowledged: what the disks hold is all there is
            a2 = crashCopy(a, "a");
            b2 = crashCopy(b, "b");
            log2 = crashCopy(log, "log");
        } finally {
            m.close();
        }
        assertThat(read(a2, 2 * REGION, 4096)).containsOnly(1);
        assertThat(read(b2, 2 * REGION, 4096)).containsOnly(7);

        Mirror again = new Mirror("m", List.of(new Leg(a2, 0), new Leg(b2, 0)), 4 << 20, REGION, true, log2);
        try {
            assertThat(again.awaitResync(10, TimeUnit.SECONDS)).isTrue();
            assertThat(read(again, 2 * REGION, 8192)).as("the acknowledged write").containsOnly(7);
            assertThat(read(b2, 2 * REGION, 8192)).as("the leg that had it keeps it").containsOnly(7);
            assertThat(read(a2, 2 * REGION, 8192)).as("the leg that was away gets it").containsOnly(7);
            assertThat(read(a2, 0, 4 << 20)).isEqualTo(read(b2, 0, 4 << 20));
            assertThat(again.resyncBytes()).isEqualTo(REGION);
        } finally {
            again.close();
        }
    }

    /**
     * What a disk with a volatile write cache keeps after a power cut: the writes its log-writes
     * log holds up to its last completed flush, replayed onto what it held before (zeros here).
     */
    static RamDisk afterPowerCut(RamDisk logDev, String name, long size, Path dir) throws Exception {
        Path file = dir.resolve(name + ".log");
        Files.write(file, read(logDev, 0, (int) logDev.size()));
        RamDisk d = new RamDisk(name, size);
        try (WriteLog wl = WriteLog.open(file)) {
            int lastFlush = -1;
            for (int i = 0; i < wl.size(); i++) {
                if (wl.isFlush(i)) {
                    lastFlush = i;
                }
            }
            for (int i = 0; i < lastFlush; i++) {
                if (wl.changesData(i)) {
                    MemorySegment m = Arena.ofAuto().allocate(wl.length(i), 4096);
                    if (!wl.isDiscard(i)) {
                        m.copyFrom(wl.data(i));
                    }
                    d.write(wl.offset(i), m).get(10, TimeUnit.SECONDS);
                }
            }
        }
        return d;
    }

    @Test
    void aRegionGoesCleanOnTheLogOnlyOnceEveryLegHasFlushedItsWrites(@TempDir Path dir) throws Exception {
        // Leg b stands for a disk with a volatile write cache: what it keeps after a power cut is
        // what it had flushed (its log-writes log says which). dm-log's disk_flush calls the
        // mirror's flush (a PREFLUSH to every leg) before it writes a log that clears bits.
        RamDisk a = new RamDisk("a", 1 << 20);
        RamDisk b = new RamDisk("b", 1 << 20);
        RamDisk bLog = new RamDisk("b-log", 4 << 20);
        RamDisk log = new RamDisk("log", 1 << 20);
        LogWrites bw = new LogWrites("bw", b, bLog);
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(bw, 0)), 1 << 20, REGION, true, log);
        m.log().clearDelay(5);
        try {
            m.write(3 * REGION, fill(4096, 7)).get(10, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (logWord(log, 0) != 0 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(logWord(log, 0)).as("region 3 went clean on the log").isZero();
        } finally {
            m.close();
            bw.close();
        }
        // the power goes now: the log says every region is clean
        RamDisk b2 = afterPowerCut(bLog, "b", 1 << 20, dir);
        Mirror again = new Mirror("m", List.of(new Leg(a, 0), new Leg(b2, 0)), 1 << 20, REGION, true, log);
        try {
            assertThat(again.awaitResync(10, TimeUnit.SECONDS)).isTrue();
            assertThat(read(b2, 3 * REGION, 4096)).as("the write leg b acknowledged before its bit was cleared").containsOnly(7);
            assertThat(read(b2, 0, 1 << 20)).isEqualTo(read(a, 0, 1 << 20));
        } finally {
            again.close();
        }
    }

    @Test
    void aLegWhoseFlushFailsBeforeTheLogClearsIsDroppedAndTheRegionStaysMarked() throws Exception {
        RamDisk a = new RamDisk("a", 1 << 20);
        TestDevices.Probe b = new TestDevices.Probe(new RamDisk("b", 1 << 20));
        RamDisk log = new RamDisk("log", 1 << 20);
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 1 << 20, REGION, true, log);
        m.log().clearDelay(5);
        try {
            m.write(3 * REGION, fill(4096, 7)).get(10, TimeUnit.SECONDS);
            b.failing = true; // the write is in its cache; the flush that would make it stable fails
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            // (the pass that dropped the leg puts the bit back once its flush has answered)
            while ((m.legState(1) != Mirror.LegState.FAILED || m.log().markedRegions() == 0) && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
            assertThat(b.count(io.biostack.block.Op.FLUSH)).isPositive();
            assertThat(logWord(log, 0)).as("region 3 stays marked on the log").isEqualTo(1L << 3);
            assertThat(m.status()).contains(" 1 AD 3 disk log A marked=1 ");
        } finally {
            m.close();
        }
        assertThat(logWord(log, 0)).isEqualTo(1L << 3);
    }

    @Test
    void theStatusCountsARegionMarkedUntilACleanPassHasClearedItOnTheLogDevice() throws Exception {
        // A clean pass takes region 3's bit out and waits for the legs' flush: the log device
        // still holds the bit, and the bit comes back if the flush fails. "marked=0" now would
        // say the log is clean when a crash would still copy region 3.
        RamDisk a = new RamDisk("a", 1 << 20);
        TestDevices.Probe b = new TestDevices.Probe(new RamDisk("b", 1 << 20));
        RamDisk log = new RamDisk("log", 1 << 20);
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 1 << 20, REGION, true, log);
        m.log().clearDelay(5);
        try {
            b.holdFlushes(); // leg b is slow to empty its cache
            m.write(3 * REGION, fill(4096, 7)).get(10, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (b.count(io.biostack.block.Op.FLUSH) == 0 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(b.count(io.biostack.block.Op.FLUSH)).as("a clean pass waits for b's flush").isOne();
            assertThat(logWord(log, 0)).isEqualTo(1L << 3);
            assertThat(m.log().markedRegions()).as("still marked on the log device").isOne();
            assertThat(m.status()).contains(" marked=1 ");
            b.release();
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (m.log().markedRegions() != 0 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(m.log().markedRegions()).isZero();
            assertThat(logWord(log, 0)).as("cleared on the device once it says so").isZero();
        } finally {
            b.release();
            m.close();
        }
    }

    @Test
    void aFlushThatFailsOnTheFirstLegIsAcknowledgedOnlyOnceTheLogSaysThatLegIsOutOfSync() throws Exception {
        // Leg a is a server that restarted without its cache: it lost a write it had acknowledged,
        // and says so when the next flush fails. Leg b flushed. A flush acknowledged now promises
        // the write, so from then on a crash must not let a restart copy a over b.
        TestDevices.Probe a = new TestDevices.Probe(new RamDisk("a", 1 << 20));
        RamDisk b = new RamDisk("b", 1 << 20);
        TestDevices.Probe log = new TestDevices.Probe(new RamDisk("log", 1 << 20));
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 1 << 20, REGION, true, log);
        m.log().clearDelay(60_000);
        RamDisk a2;
        RamDisk b2;
        RamDisk log2;
        try {
            m.write(2 * REGION, fill(4096, 7)).get(10, TimeUnit.SECONDS);
            a.lower.write(2 * REGION, fill(4096, 0)).get(10, TimeUnit.SECONDS); // gone from a's cache
            a.failing = true;
            log.holdWrites(); // the log device is slow to take the header that records leg a
            java.util.concurrent.CompletableFuture<Void> f = m.flush();
            if (!f.isDone()) {
                log.release();
                f.get(10, TimeUnit.SECONDS);
            }
            assertThat(f).isCompleted();
            // the process dies as the flush is acknowledged: what the disks hold is all there is
            a2 = crashCopy(a.lower, "a");
            b2 = crashCopy(b, "b");
            log2 = crashCopy(log.lower, "log");
        } finally {
            log.release();
            m.close();
        }
        Mirror again = new Mirror("m", List.of(new Leg(a2, 0), new Leg(b2, 0)), 1 << 20, REGION, true, log2);
        try {
            assertThat(again.awaitResync(10, TimeUnit.SECONDS)).isTrue();
            assertThat(read(b2, 2 * REGION, 4096)).as("the flushed write stays on the leg that had it").containsOnly(7);
            assertThat(read(a2, 2 * REGION, 4096)).as("and the leg that lost it gets it back").containsOnly(7);
        } finally {
            again.close();
        }
    }

    @Test
    void aCrashDuringTheCopyToAReinstatedLegCopiesEverythingAgain() throws Exception {
        RamDisk a = new RamDisk("a", 1 << 20);
        TestDevices.Probe b = new TestDevices.Probe(new RamDisk("b", 1 << 20));
        RamDisk log = new RamDisk("log", 1 << 20);
        a.write(0, fill(1 << 20, 1)).get(10, TimeUnit.SECONDS);
        b.lower.write(0, fill(1 << 20, 1)).get(10, TimeUnit.SECONDS);
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 1 << 20, REGION, true, log);
        RamDisk a2;
        RamDisk b2;
        RamDisk log2;
        try {
            m.message(List.of("fail", "1"));
            m.write(2 * REGION, fill(4096, 7)).get(10, TimeUnit.SECONDS);
            b.lower.write(0, fill(1 << 20, 0)).get(10, TimeUnit.SECONDS); // the admin puts in a new disk
            b.holdWrites(); // the copy to it is slow
            m.message(List.of("reinstate", "1"));
            // the process dies during the copy
            a2 = crashCopy(a, "a");
            b2 = crashCopy(b.lower, "b");
            log2 = crashCopy(log, "log");
        } finally {
            b.release();
            m.close();
        }
        Mirror again = new Mirror("m", List.of(new Leg(a2, 0), new Leg(b2, 0)), 1 << 20, REGION, true, log2);
        try {
            assertThat(again.awaitResync(10, TimeUnit.SECONDS)).isTrue();
            assertThat(again.status()).contains(" 16/16 1 AA ");
            assertThat(read(b2, 0, 1 << 20)).as("the new disk has every region").isEqualTo(read(a2, 0, 1 << 20));
        } finally {
            again.close();
        }
    }

    /**
     * Leg b is a remote disk with a volatile write cache (its log-writes log says what it had
     * flushed): its server restarts and loses the writes it had not flushed, and the mirror's next
     * flush fails on it. What it may lack is on the log (every region written since the last
     * flush that held on every leg) or in its dirty bits (written while it was away): when it
     * answers again only those are copied, not the whole device.
     */
    @Test
    void aLegWhoseFlushFailedGetsOnlyTheMarkedAndDirtyRegionsWhenItAnswersAgain(@TempDir Path dir) throws Exception {
        RamDisk a = new RamDisk("a", 1 << 20);
        RamDisk bDisk = new RamDisk("b", 1 << 20);
        RamDisk bLog = new RamDisk("b-log", 4 << 20);
        LogWrites bw = new LogWrites("bw", bDisk, bLog);
        TestDevices.Probe b = new TestDevices.Probe(bw);
        RamDisk log = new RamDisk("log", 1 << 20);
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 1 << 20, REGION, true, log);
        m.log().clearDelay(5);
        try {
            m.write(1 * REGION, fill(4096, 3)).get(10, TimeUnit.SECONDS);
            m.write(5 * REGION, fill(4096, 3)).get(10, TimeUnit.SECONDS);
            m.flush().get(10, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (logWord(log, 0) != 0 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(logWord(log, 0)).as("regions 1 and 5 went clean: every leg flushed them").isZero();
            m.log().clearDelay(60_000); // no clean pass from here on
            m.write(2 * REGION, fill(4096, 7)).get(10, TimeUnit.SECONDS); // in b's cache only
            m.write(9 * REGION + 8192, fill(4096, 7)).get(10, TimeUnit.SECONDS);
            b.failing = true; // b's server restarts without its cache: the flush says so
            m.flush().get(10, TimeUnit.SECONDS); // held by leg a
            assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
            m.write(12 * REGION, fill(4096, 8)).get(10, TimeUnit.SECONDS); // while b is away
            // b as its restarted server has it: what it had flushed, no more
            RamDisk b2 = afterPowerCut(bLog, "b2", 1 << 20, dir);
            assertThat(read(b2, 1 * REGION, 4096)).containsOnly(3);
            assertThat(read(b2, 2 * REGION, 4096)).as("acknowledged, never flushed: lost").containsOnly(0);
            bDisk.write(0, MemorySegment.ofArray(read(b2, 0, 1 << 20))).get(10, TimeUnit.SECONDS);
            b.failing = false; // it answers again: the prober takes it back
            MirrorTest.awaitTakenBackInSync(m, 1);
            assertThat(m.resyncBytes()).as("regions 2, 9 (marked) and 12 (dirty), not all 16").isEqualTo(3 * REGION);
            assertThat(m.status()).contains(" 16/16 1 AA ").endsWith(" resync_bytes=" + 3 * REGION);
            assertThat(read(bDisk, 0, 1 << 20)).as("b holds every byte a holds").isEqualTo(read(a, 0, 1 << 20));
            assertThat(read(bDisk, 2 * REGION, 4096)).containsOnly(7);
            assertThat(read(bDisk, 12 * REGION, 4096)).containsOnly(8);
        } finally {
            m.close();
            bw.close();
        }
    }

    @Test
    void aLegWhoseFlushFailedInACleanPassGetsTheRegionsThePassPutBack() throws Exception {
        // The clean pass takes region 3's bit out, flushes the legs, and b's flush fails: the bit
        // goes back, and b, which lost the write from its cache, gets region 3 and nothing else.
        RamDisk a = new RamDisk("a", 1 << 20);
        TestDevices.Probe b = new TestDevices.Probe(new RamDisk("b", 1 << 20));
        RamDisk log = new RamDisk("log", 1 << 20);
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 1 << 20, REGION, true, log);
        m.log().clearDelay(5);
        try {
            m.write(3 * REGION, fill(4096, 7)).get(10, TimeUnit.SECONDS);
            b.failing = true;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while ((m.legState(1) != Mirror.LegState.FAILED || m.log().markedRegions() == 0) && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
            b.lower.write(3 * REGION, fill(4096, 0)).get(10, TimeUnit.SECONDS); // gone with its cache
            b.failing = false;
            MirrorTest.awaitTakenBackInSync(m, 1);
            assertThat(m.resyncBytes()).as("region 3, not all 16").isEqualTo(REGION);
            assertThat(read(b.lower, 3 * REGION, 4096)).containsOnly(7);
            assertThat(read(b.lower, 0, 1 << 20)).isEqualTo(read(a, 0, 1 << 20));
        } finally {
            m.close();
        }
    }

    @Test
    void aLegWhoseFlushFailedIsStillCopiedWholeWhenReinstated() throws Exception {
        RamDisk a = new RamDisk("a", 1 << 20);
        TestDevices.Probe b = new TestDevices.Probe(new RamDisk("b", 1 << 20));
        RamDisk log = new RamDisk("log", 1 << 20);
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 1 << 20, REGION, true, log);
        m.log().clearDelay(60_000);
        try {
            m.write(2 * REGION, fill(4096, 7)).get(10, TimeUnit.SECONDS);
            b.failing = true;
            m.flush().get(10, TimeUnit.SECONDS);
            assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
            b.lower.write(0, fill(1 << 20, 9)).get(10, TimeUnit.SECONDS); // the admin puts in another disk
            b.failing = false;
            m.message(List.of("reinstate", "1")); // before the prober's first look (500 ms)
            assertThat(m.awaitResync(10, TimeUnit.SECONDS)).isTrue();
            assertThat(m.resyncBytes()).as("a reinstated leg may be a new disk: every region").isEqualTo(1 << 20);
            assertThat(read(b.lower, 0, 1 << 20)).isEqualTo(read(a, 0, 1 << 20));
        } finally {
            m.close();
        }
    }

    @Test
    void aNewLogWithSyncCopiesEverythingAndACrashDuringThatCopyCopiesEverythingAgain() throws Exception {
        RamDisk a = new RamDisk("a", 1 << 20);
        RamDisk b = new RamDisk("b", 1 << 20);
        RamDisk log = new RamDisk("log", 1 << 20);
        Mirror m = new Mirror("m", List.of(new Leg(a, 0), new Leg(b, 0)), 1 << 20, REGION, false, log);
        // the marks of every region were durable before the copy began
        assertThat(m.awaitResync(10, TimeUnit.SECONDS)).isTrue();
        assertThat(m.resyncBytes()).isEqualTo(1 << 20);
        m.close();
    }

    @Test
    void badLogDevicesAreRefusedClearly() throws Exception {
        RamDisk a = new RamDisk("a", 4 << 20);
        RamDisk log = new RamDisk("log", 1 << 20);
        new Mirror("m", List.of(new Leg(a, 0)), 4 << 20, REGION, true, log).close();
        assertThatThrownBy(() -> new Mirror("m", List.of(new Leg(a, 0)), 4 << 20, 2 * REGION, true, log))
                .hasMessageContaining("was made for 64 regions of 65536 bytes");
        RamDisk other = new RamDisk("other", 1 << 20);
        other.write(0, fill(4096, 3)).get();
        assertThatThrownBy(() -> new Mirror("m", List.of(new Leg(a, 0)), 4 << 20, REGION, true, other))
                .hasMessageContaining("holds something else");
        RamDisk tiny = new RamDisk("tiny", 4096);
        assertThatThrownBy(() -> new Mirror("m", List.of(new Leg(a, 0)), 4 << 20, REGION, true, tiny))
                .hasMessageContaining("needs 8192");
    }

    @Test
    void theStackFileTakesADiskLog(@TempDir Path dir) throws Exception {
        String text = "a: ram 4M\nb: ram 4M\nlog: loop " + dir.resolve("log") + " size=1M direct-io=off\n"
                + "m: mirror disk 2 log 64k 2 a 0 b 0\n";
        try (Stack s = Stack.open(text, "t")) {
            s.device("m").write(0, fill(4096, 1)).get();
            assertThat(s.table("m")).containsExactly("0 8192 mirror disk 2 log 128 2 a 0 b 0 1 handle_errors");
            assertThat(String.join("\n", s.status("m"))).contains("3 disk log A");
        }
        assertThatThrownBy(() -> Stack.open("a: ram 4M\nm: mirror disk 2 a 64k 1 a 0\n", "t")).hasMessageContaining("can't be a leg too");
        assertThatThrownBy(() -> Stack.open("a: ram 4M\nl: ram 1M\nm: mirror disk 1 l 1 a 0\n", "t")).hasMessageContaining("disk log takes 2 or 3");
        assertThat(Files.size(dir.resolve("log"))).isEqualTo(1 << 20);
        try (Stack s = Stack.open(text.replace("2 a 0 b 0\n", "2 a 0 b 0 2 handle_errors clear_delay=1.5s\n"), "t")) {
            assertThat(s.table("m")).containsExactly("0 8192 mirror disk 2 log 128 2 a 0 b 0 2 handle_errors clear_delay=1500ms");
        }
        assertThatThrownBy(() -> Stack.open("a: ram 4M\nb: ram 4M\nm: mirror core 1 64k 2 a 0 b 0 1 clear_delay=1s\n", "t"))
                .hasMessageContaining("clear_delay= is for a disk log");
        assertThatThrownBy(() -> Stack.open(text.replace("2 a 0 b 0\n", "2 a 0 b 0 1 clear_delay=soon\n"), "t"))
                .hasMessageContaining("clear_delay");
    }
}
