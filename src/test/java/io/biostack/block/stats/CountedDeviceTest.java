package io.biostack.block.stats;

import io.biostack.TestEnv;
import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Op;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.util.List;
import java.util.concurrent.ExecutionException;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

@Timeout(60)
class CountedDeviceTest {
    @Test
    void countsEachOpAndPassesDataThrough() {
        RamDisk ram = new RamDisk("ram0", 1 << 20);
        CountedDevice d = new CountedDevice(ram);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment w = a.allocate(8192, 4096).fill((byte) 0x5a);
            MemorySegment r = a.allocate(8192, 4096);
            d.write(4096, w).join();
            d.read(4096, r).join();
            d.read(0, r.asSlice(0, 512)).join();
            d.discard(65536, 65536).join();
            d.writeZeroes(0, 4096, false).join();
            d.flush().join();
            assertThat(r.get(ValueLayout.JAVA_BYTE, 4095)).isEqualTo((byte) 0x5a);
        }
        DeviceSnapshot s = d.stats().snapshot();
        assertThat(s.ios(StatGroup.READ)).isEqualTo(2);
        assertThat(s.sectors(StatGroup.READ)).isEqualTo(16 + 1);
        assertThat(s.ios(StatGroup.WRITE)).as("write + write_zeroes").isEqualTo(2);
        assertThat(s.sectors(StatGroup.WRITE)).isEqualTo(16 + 8);
        assertThat(s.ios(StatGroup.DISCARD)).isEqualTo(1);
        assertThat(s.sectors(StatGroup.DISCARD)).isEqualTo(128);
        assertThat(s.ios(StatGroup.FLUSH)).isEqualTo(1);
        assertThat(s.sectors(StatGroup.FLUSH)).isZero();
        assertThat(s.inFlight()).isZero();
    }

    @Test
    void aFailedBioIsCountedAndItsErrorReachesTheCaller() {
        CountedDevice d = new CountedDevice(new RamDisk("ram0", 1 << 20));
        try (Arena a = Arena.ofConfined()) {
            assertThatThrownBy(() -> d.write(1 << 20, a.allocate(4096, 4096)).get())
                    .isInstanceOf(ExecutionException.class).hasMessageContaining("beyond the end of ram0");
        }
        DeviceSnapshot s = d.stats().snapshot();
        assertThat(s.ios(StatGroup.WRITE)).as("the kernel counts failed I/O too").isEqualTo(1);
        assertThat(s.inFlight()).isZero();
    }

    @Test
    void aBioPassedInPlaceFromOneCountedDeviceToAnotherIsCountedByBoth() {
        CountedDevice inner = new CountedDevice(new RamDisk("ram0", 1 << 20));
        CountedDevice outer = new CountedDevice(new PassDown("part", inner)); // passes the bio down as it is
        try (Arena a = Arena.ofConfined()) {
            outer.write(0, a.allocate(4096, 4096)).join();
            assertThatThrownBy(() -> outer.read(1 << 20, a.allocate(4096, 4096)).get()).isInstanceOf(ExecutionException.class);
        }
        for (CountedDevice c : List.of(inner, outer)) {
            DeviceSnapshot s = c.stats().snapshot();
            assertThat(s.ios(StatGroup.WRITE)).as(c.name()).isEqualTo(1);
            assertThat(s.ios(StatGroup.READ)).as(c.name()).isEqualTo(1);
            assertThat(s.sectors(StatGroup.WRITE)).as(c.name()).isEqualTo(8);
            assertThat(s.inFlight()).isZero();
        }
    }

    @Test
    void everyDeviceOfAStackIsCountedLeafAndLayer() throws Exception {
        try (Stack st = Stack.open("r0: ram 1M\nl0: linear r0 8\n", "t"); Arena a = Arena.ofConfined()) {
            assertThat(st.stats()).extracting(DeviceStats::name).containsExactly("r0", "l0");
            st.device("l0").write(0, a.allocate(65536, 4096)).join();
            st.device("r0").read(0, a.allocate(4096, 4096)).join();
            DeviceSnapshot r0 = st.stats().get(0).snapshot();
            DeviceSnapshot l0 = st.stats().get(1).snapshot();
            assertThat(l0.ios(StatGroup.WRITE)).isEqualTo(1);
            assertThat(l0.sectors(StatGroup.WRITE)).isEqualTo(128);
            assertThat(l0.ios(StatGroup.READ)).isZero();
            assertThat(r0.ios(StatGroup.WRITE)).as("the layer's write reached the leaf").isEqualTo(1);
            assertThat(r0.sectors(StatGroup.WRITE)).isEqualTo(128);
            assertThat(r0.ios(StatGroup.READ)).isEqualTo(1);
        }
    }

    @Test
    void threadsSubmittingAtOnceAreCountedExactly() throws Exception {
        CountedDevice d = new CountedDevice(new RamDisk("ram0", 1 << 20));
        int threads = 6;
        int per = 20_000;
        List<Thread> ts = new java.util.ArrayList<>();
        for (int k = 0; k < threads; k++) {
            int id = k;
            ts.add(Thread.ofPlatform().start(() -> {
                try (Arena a = Arena.ofConfined()) {
                    MemorySegment buf = a.allocate(1024, 512);
                    Bio bio = new Bio();
                    EndIo cb = b -> { };
                    for (int i = 0; i < per; i++) {
                        Op op = (i + id) % 4 == 0 ? Op.READ : Op.WRITE;
                        bio.init(op, 0, (i * 1024L) & ((1 << 20) - 1), cb).addSegment(buf);
                        d.submit(bio);
                    }
                }
            }));
        }
        for (Thread t : ts) {
            t.join(30_000);
        }
        DeviceSnapshot s = d.stats().snapshot();
        long total = (long) threads * per;
        assertThat(s.ios(StatGroup.READ) + s.ios(StatGroup.WRITE)).isEqualTo(total);
        assertThat(s.ios(StatGroup.READ)).isEqualTo(total / 4);
        assertThat(s.sectors(StatGroup.READ) + s.sectors(StatGroup.WRITE)).isEqualTo(total * 2);
        assertThat(s.inFlight()).isZero();
    }

    @Test
    void theCountingPathAllocatesNothingOnceCompiled() {
        var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        TestEnv.require(mx.isThreadAllocatedMemorySupported(), "per-thread allocation counters");
        long tid = Thread.currentThread().threadId();
        RamDisk ram = new RamDisk("ram0", 1 << 20);
        CountedDevice inner = new CountedDevice(ram);
        CountedDevice outer = new CountedDevice(new PassDown("part", inner)); // the clone path too
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096);
            ram.write(0, a.allocate(1 << 20)).join();
            Bio bio = new Bio();
            long[] done = {0};
            EndIo cb = b -> done[0]++;
            for (BlockDevice d : List.of(inner, outer)) {
                long perRound = Long.MAX_VALUE;
                int round = 20_000;
                for (int k = 0; k < 30 && perRound >= 1024; k++) {
                    long before = mx.getThreadAllocatedBytes(tid);
                    for (int i = 0; i < round; i++) {
                        bio.init(i % 2 == 0 ? Op.READ : Op.WRITE, 0, (i * 4096L) & ((1 << 20) - 1), cb).addSegment(buf);
                        d.submit(bio);
                    }
                    perRound = mx.getThreadAllocatedBytes(tid) - before;
                }
                // A few hundred bytes of slack for the MXBean call itself, as uring's AllocationTest.
                assertThat(perRound).as("bytes allocated by %d counted I/Os on %s", round, d).isLessThan(1024);
            }
            assertThat(bio.status()).isEqualTo(Status.OK);
        }
    }

    /** A device that remaps nothing and passes each bio down in place (as a partition would). */
    private record PassDown(String name, BlockDevice below) implements BlockDevice {
        @Override public long size() { return below.size(); }
        @Override public io.biostack.block.QueueLimits limits() { return below.limits(); }
        @Override public boolean isReadOnly() { return false; }
        @Override public void submit(Bio bio) { below.submit(bio); }
        @Override public void close() { }
    }
}
