package io.biostack.block.stats;

import io.biostack.block.Op;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

@Timeout(60)
class DeviceStatsTest {
    @Test
    void countsFollowStatRstGroupsAndFields() {
        DeviceStats s = new DeviceStats("d", Long.MAX_VALUE);
        long t = 1_000_000_000L;
        s.start(Op.READ, t);
        s.done(Op.READ, 0, 4096, t, t + 2_000_000);          // 8 sectors, 2 ms
        s.start(Op.WRITE, t);
        s.done(Op.WRITE, 0, 8192, t, t + 3_000_000);         // 16 sectors, 3 ms
        s.start(Op.WRITE_ZEROES, t);
        s.done(Op.WRITE_ZEROES, 0, 1 << 20, t, t + 1_000_000); // counts as a write (op_stat_group)
        s.start(Op.DISCARD, t);
        s.done(Op.DISCARD, 0, 65536, t, t + 1_000_000);
        s.start(Op.FLUSH, t);
        s.done(Op.FLUSH, 0, 0, t, t + 5_000_000);
        s.start(Op.READ, t);                                  // still in flight
        DeviceSnapshot snap = s.snapshot();
        long[] f = snap.statFields();
        assertThat(f).containsExactly(
                1, 0, 8, 2,                  // reads: ios, merges, sectors, ticks ms
                2, 0, 16 + 2048, 4,          // writes
                1, snap.busyNs() / 1_000_000, 12, // in_flight, io_ticks, time_in_queue
                1, 0, 128, 1,                // discards
                1, 5);                       // flushes
        assertThat(snap.latency(StatGroup.READ)[LatencyBuckets.index(2_000_000)]).isEqualTo(1);
        assertThat(snap.histogram(StatGroup.WRITE).getTotalCount()).isEqualTo(2);
    }

    @Test
    void manyThreadsCountExactlyWhateverThreadCompletes() throws Exception {
        DeviceStats s = new DeviceStats("d", Long.MAX_VALUE);
        int threads = 8;
        int per = 50_000;
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        // Half of the threads start I/O, the other half complete it: cells of different
        // threads must add up (a bio may complete on another thread than its submitter's).
        java.util.concurrent.ArrayBlockingQueue<Long> handoff = new java.util.concurrent.ArrayBlockingQueue<>(1024);
        for (int k = 0; k < threads; k++) {
            boolean starter = k % 2 == 0;
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                    for (int i = 0; i < per; i++) {
                        if (starter) {
                            long now = System.nanoTime();
                            s.start(i % 3 == 0 ? Op.READ : Op.WRITE, now);
                            handoff.put(now * 4 + (i % 3 == 0 ? 0 : 1));
                        } else {
                            long v = handoff.take();
                            long st = v >> 2;
                            s.done((v & 3) == 0 ? Op.READ : Op.WRITE, 0, 4096, st, System.nanoTime());
                        }
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }));
        }
        go.countDown();
        // Snapshots taken while counting never see more completions than starts.
        while (ts.stream().anyMatch(Thread::isAlive)) {
            DeviceSnapshot mid = s.snapshot();
            assertThat(mid.inFlight()).isGreaterThanOrEqualTo(0);
            Thread.sleep(5);
        }
        for (Thread t : ts) {
            t.join(TimeUnit.SECONDS.toMillis(30));
        }
        DeviceSnapshot end = s.snapshot();
        long total = (long) threads / 2 * per;
        long reads = (long) threads / 2 * ((per + 2) / 3);
        assertThat(end.ios(StatGroup.READ)).isEqualTo(reads);
        assertThat(end.ios(StatGroup.WRITE)).isEqualTo(total - reads);
        assertThat(end.sectors(StatGroup.READ) + end.sectors(StatGroup.WRITE)).isEqualTo(total * 8);
        assertThat(end.inFlight()).isZero();
        long histTotal = 0;
        for (long c : end.latency(StatGroup.READ)) {
            histTotal += c;
        }
        for (long c : end.latency(StatGroup.WRITE)) {
            histTotal += c;
        }
        assertThat(histTotal).isEqualTo(total);
    }

    @Test
    void countsOfThreadsThatEndedAreKept() throws Exception {
        DeviceStats s = new DeviceStats("d", Long.MAX_VALUE);
        for (int k = 0; k < 20; k++) {
            Thread t = Thread.ofPlatform().start(() -> {
                long now = System.nanoTime();
                s.start(Op.WRITE, now);
                s.done(Op.WRITE, 0, 512, now, now + 1000);
            });
            t.join();
        }
        DeviceSnapshot a = s.snapshot();
        assertThat(a.ios(StatGroup.WRITE)).isEqualTo(20);
        assertThat(a.sectors(StatGroup.WRITE)).isEqualTo(20);
        assertThat(s.snapshot().ios(StatGroup.WRITE)).as("folded once, not twice").isEqualTo(20);
    }

    @Test
    void busyTimeCountsAfterTheThreadThatStartedAnIoHasEnded() {
        // An NBD connection's thread starts I/O and ends; the ring's thread completes it. Once the
        // ended thread's cells were folded, the in-flight count that busy time asks at each start
        // left out its starts but kept their completions: it read 0 with I/O in flight, and the
        // busy time (io_ticks, %util) before each start was lost from then on.
        DeviceStats s = new DeviceStats("d", Long.MAX_VALUE);
        long tick = 1L << 20; // DeviceStats' io_ticks granularity
        long t0 = ((System.nanoTime() >> 20) + 1000) * tick;
        Thread t = Thread.ofPlatform().start(() -> s.start(Op.READ, t0));
        try {
            t.join();
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
        s.snapshot(); // folds the ended thread's cells
        s.done(Op.READ, 0, 4096, t0, t0 + 10 * tick);                 // busy 0..10
        s.start(Op.READ, t0 + 20 * tick);                             // idle 10..20
        s.start(Op.READ, t0 + 30 * tick);                             // busy 20..30: one in flight
        s.done(Op.READ, 0, 4096, t0 + 20 * tick, t0 + 40 * tick);     // busy 30..40
        s.done(Op.READ, 0, 4096, t0 + 30 * tick, t0 + 50 * tick);     // busy 40..50
        assertThat(s.snapshot().busyNs()).isEqualTo(40 * tick);
        assertThat(s.inFlight()).isZero();
    }

    @Test
    void busyTimeCountsOnlyWhileSomethingIsInFlight() throws Exception {
        DeviceStats s = new DeviceStats("d", Long.MAX_VALUE);
        long t0 = System.nanoTime();
        s.start(Op.READ, t0);
        Thread.sleep(50);
        s.done(Op.READ, 0, 4096, t0, System.nanoTime());
        Thread.sleep(50); // idle: not busy
        DeviceSnapshot snap = s.snapshot();
        assertThat(snap.busyNs()).isBetween(40_000_000L, snap.uptimeNs() - 40_000_000L);
        assertThat(Iostat.of(snap).util()).isBetween(20.0, 80.0);
    }

    @Test
    void theWireFormRoundTripsAndDifferencesCoverTheInterval() {
        DeviceStats s = new DeviceStats("disk0", Long.MAX_VALUE);
        long t = System.nanoTime();
        s.start(Op.READ, t);
        s.done(Op.READ, 0, 4096, t, t + 100_000);
        DeviceSnapshot a = s.snapshot();
        assertThat(DeviceSnapshot.fromWire(a.toWire()).toWire()).isEqualTo(a.toWire());
        s.start(Op.WRITE, t);
        s.done(Op.WRITE, 0, 4096, t, t + 300_000);
        DeviceSnapshot b = DeviceSnapshot.fromWire(s.snapshot().toWire());
        DeviceSnapshot d = b.minus(a);
        assertThat(d.ios(StatGroup.READ)).isZero();
        assertThat(d.ios(StatGroup.WRITE)).isEqualTo(1);
        assertThat(d.uptimeNs()).isEqualTo(b.timeNs() - a.timeNs());
        Iostat row = Iostat.of(d);
        assertThat(row.wAwait()).isCloseTo(0.3, org.assertj.core.data.Offset.offset(1e-9));
        assertThat(row.p50()).isCloseTo(0.3, org.assertj.core.data.Offset.offset(0.01));
    }
}
