package io.biostack.block.stats;

import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.RamDisk;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The clock rules of counting (SubmitClock): readings are shared between the levels of a stack
 * and with the submitter, and every latency stays true: a bio that completes inside its own
 * submit has its real, non-zero latency; a bio that a layer holds back is counted with its wait
 * by that layer only, never by the device below.
 */
@Timeout(60)
class CountedClockTest {
    private static final long SPIN_NS = 200_000;
    private static final int IOS = 50;

    @Test
    void aBioThatCompletesInsideItsSubmitIsCountedWithItsRealLatency() {
        CountedDevice d = new CountedDevice(new Spin("spin", SPIN_NS));
        submitReads(d, IOS);
        DeviceSnapshot s = d.stats().snapshot();
        assertThat(s.ios(StatGroup.READ)).isEqualTo(IOS);
        assertLatencies(s, SPIN_NS, "one counted level over an inline device");
    }

    @Test
    void twoCountedLevelsOverAnInlineDeviceBothCountTheRealLatency() {
        CountedDevice leaf = new CountedDevice(new Spin("spin", SPIN_NS));
        CountedDevice top = new CountedDevice(new PassDown("part", leaf)); // in place: the leaf counts a clone
        submitReads(top, IOS);
        assertLatencies(leaf.stats().snapshot(), SPIN_NS, "the leaf");
        assertLatencies(top.stats().snapshot(), SPIN_NS, "the counted device above it");
        // the end read once, below, is the one the top counted: its latency never is less than the leaf's
        assertThat(top.stats().snapshot().nsecs(StatGroup.READ)).isGreaterThanOrEqualTo(leaf.stats().snapshot().nsecs(StatGroup.READ));
    }

    @Test
    void aLayeredStackCountsEachLevelWithTheLatencyOfWhatIsBelowIt() throws Exception {
        // l0 clones each bio (a mapped device) and the ramdisk completes inside the submit
        try (Stack st = Stack.open("r0: ram 1M\nl0: linear r0 0\n", "t"); Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096);
            for (int i = 0; i < IOS; i++) {
                st.device("l0").read(4096L * i, buf).join();
            }
            DeviceSnapshot r0 = st.stats().get(0).snapshot();
            DeviceSnapshot l0 = st.stats().get(1).snapshot();
            assertThat(r0.ios(StatGroup.READ)).isEqualTo(IOS);
            assertThat(l0.ios(StatGroup.READ)).isEqualTo(IOS);
            for (int i = 0; i < 4; i++) { // exact below 64 ns: bucket 0 holds only 0 ns latencies
                assertThat(r0.latency(StatGroup.READ)[i]).as("r0 latencies of %d ns", i).isZero();
                assertThat(l0.latency(StatGroup.READ)[i]).as("l0 latencies of %d ns", i).isZero();
            }
            assertThat(l0.nsecs(StatGroup.READ)).isGreaterThanOrEqualTo(r0.nsecs(StatGroup.READ));
        }
    }

    @Test
    void aDelayLayerCountsItsDelayAndTheDeviceBelowDoesNot() throws Exception {
        // reads wait 40 ms in the delay layer, then go down from the timer thread
        try (Stack st = Stack.open("r0: ram 1M\nd0: delay r0 0 40\n", "t"); Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(4096, 4096);
            for (int i = 0; i < 5; i++) {
                st.device("d0").read(4096L * i, buf).join();
            }
            DeviceSnapshot r0 = st.stats().get(0).snapshot();
            DeviceSnapshot d0 = st.stats().get(1).snapshot();
            assertThat(d0.ios(StatGroup.READ)).isEqualTo(5);
            assertThat(r0.ios(StatGroup.READ)).isEqualTo(5);
            long d0min = LatencyBuckets.percentile(d0.latency(StatGroup.READ), 0);
            long d0max = LatencyBuckets.percentile(d0.latency(StatGroup.READ), 100);
            assertThat(d0min).as("the delay layer's fastest read").isGreaterThanOrEqualTo(TimeUnit.MILLISECONDS.toNanos(39));
            assertThat(d0max).as("the delay layer's slowest read").isLessThan(TimeUnit.MILLISECONDS.toNanos(40 + 500));
            long r0max = LatencyBuckets.percentile(r0.latency(StatGroup.READ), 100);
            assertThat(r0max).as("the ramdisk below the delay does not count the wait above it")
                    .isLessThan(TimeUnit.MILLISECONDS.toNanos(20)).isPositive();
        }
    }

    @Test
    void theSubmittersIssueTimeIsTheStartAndTheCountedCompletionTimeComesBack() {
        CountedDevice d = new CountedDevice(new RamDisk("ram0", 1 << 20));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096);
            long issued = System.nanoTime() - TimeUnit.MILLISECONDS.toNanos(5); // as if issued 5 ms ago
            long[] seen = new long[2];
            Bio bio = new Bio().init(Op.READ, 0, 0, b -> {
                seen[0] = b.completionTime();
                seen[1] = b.issueTime();
            }).addSegment(buf);
            bio.setIssueTime(issued);
            long before = System.nanoTime();
            d.submit(bio);
            long after = System.nanoTime();
            assertThat(seen[0]).as("the completion time the callback sees").isBetween(before, after);
            assertThat(seen[1]).as("the issue time is taken by the counted device").isZero();
            DeviceSnapshot s = d.stats().snapshot();
            assertThat(s.nsecs(StatGroup.READ)).as("counted from the submitter's reading")
                    .isEqualTo(seen[0] - issued).isGreaterThanOrEqualTo(TimeUnit.MILLISECONDS.toNanos(5));

            // the same bio again: init clears both times, so the second I/O reads the clock afresh
            bio.init(Op.READ, 0, 0, null).addSegment(buf);
            assertThat(bio.completionTime()).isZero();
            long again = System.nanoTime();
            d.submit(bio);
            assertThat(bio.completionTime()).as("a new reading for the second completion").isGreaterThan(again);
            assertThat(d.stats().snapshot().nsecs(StatGroup.READ) - (seen[0] - issued)).as("the second read's latency")
                    .isPositive().isLessThan(TimeUnit.MILLISECONDS.toNanos(5));
        }
    }

    @Test
    void aCompletionOnAnotherThreadLaterIsCountedWithItsWait() throws Exception {
        CountedDevice d = new CountedDevice(new Later("later", 30));
        try (Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(4096, 4096);
            for (int i = 0; i < 3; i++) {
                d.read(0, buf).get(10, TimeUnit.SECONDS);
            }
        }
        DeviceSnapshot s = d.stats().snapshot();
        long min = LatencyBuckets.percentile(s.latency(StatGroup.READ), 0);
        assertThat(min).isGreaterThanOrEqualTo(TimeUnit.MILLISECONDS.toNanos(29)).isLessThan(TimeUnit.MILLISECONDS.toNanos(1000));
    }

    private static void submitReads(BlockDevice d, int n) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096);
            Bio bio = new Bio();
            for (int i = 0; i < n; i++) {
                bio.init(Op.READ, 0, 4096L * i, null).addSegment(buf);
                d.submit(bio);
            }
        }
    }

    /** Every latency at least {@code minNs}, and not absurdly more (a loaded machine: 200 ms). */
    private static void assertLatencies(DeviceSnapshot s, long minNs, String what) {
        long[] lat = s.latency(StatGroup.READ);
        long lowest = LatencyBuckets.percentile(lat, 0);
        // the middle of a bucket, at most 1/64 below its true value
        assertThat(lowest).as("%s: the fastest I/O", what).isGreaterThanOrEqualTo(minNs - minNs / 32);
        assertThat(s.nsecs(StatGroup.READ)).as("%s: the time counted", what)
                .isGreaterThanOrEqualTo(minNs * s.ios(StatGroup.READ)).isLessThan(200_000_000L * s.ios(StatGroup.READ));
    }

    /** Completes each bio inside its submit after spinning for {@code ns}: a slow ramdisk. */
    private record Spin(String name, long ns) implements BlockDevice {
        @Override public long size() { return 1L << 30; }
        @Override public QueueLimits limits() { return QueueLimits.builder().build(); }
        @Override public boolean isReadOnly() { return false; }
        @Override public void close() { }

        @Override
        public void submit(Bio bio) {
            long until = System.nanoTime() + ns;
            int spins = 0;
            while (System.nanoTime() < until && spins++ < 100_000_000) {
                Thread.onSpinWait();
            }
            bio.endIo();
        }
    }

    /** Completes each bio on another thread {@code ms} later. */
    private record Later(String name, long ms) implements BlockDevice {
        @Override public long size() { return 1L << 30; }
        @Override public QueueLimits limits() { return QueueLimits.builder().build(); }
        @Override public boolean isReadOnly() { return false; }
        @Override public void close() { }

        @Override
        public void submit(Bio bio) {
            CompletableFuture.delayedExecutor(ms, TimeUnit.MILLISECONDS).execute(bio::endIo);
        }
    }

    /** Passes each bio down in place, as a partition would. */
    private record PassDown(String name, BlockDevice below) implements BlockDevice {
        @Override public long size() { return below.size(); }
        @Override public QueueLimits limits() { return below.limits(); }
        @Override public boolean isReadOnly() { return false; }
        @Override public void submit(Bio bio) { below.submit(bio); }
        @Override public void close() { }
    }
}
