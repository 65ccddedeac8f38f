package io.biostack.block.stats;

import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.layer.Linear;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * One clock reading per I/O where it can be shared: nested scopes take the outer reading, a
 * completion inside a scope takes it too, a completion outside any scope reads the clock.
 */
@Timeout(30)
class IoClockTest {
    @Test
    void nestedScopesShareTheOuterReadingAndANewScopeReadsAgain() throws Exception {
        long outer = IoClock.enter();
        try {
            Thread.sleep(2);
            assertThat(IoClock.now()).isEqualTo(outer);
            long inner = IoClock.enter();
            try {
                assertThat(inner).isEqualTo(outer);
            } finally {
                IoClock.exit();
            }
            assertThat(IoClock.now()).isEqualTo(outer);
        } finally {
            IoClock.exit();
        }
        assertThat(IoClock.now() - outer).isGreaterThanOrEqualTo(2_000_000L);
        long next = IoClock.enter();
        IoClock.exit();
        assertThat(next - outer).isGreaterThanOrEqualTo(2_000_000L);
    }

    @Test
    void aTwoLevelStackOverAnInlineDeviceSharesOneReadingAcrossBothLevels() {
        // counted linear over a counted ramdisk: the ramdisk completes inside the submit, so both
        // levels start and end at the one reading the outer submit took
        CountedDevice leaf = new CountedDevice(new RamDisk("ram0", 1 << 20));
        CountedDevice top = new CountedDevice(Linear.of("lin", leaf, 0));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096);
            for (int i = 0; i < 100; i++) {
                top.write(i * 4096L, buf).join();
            }
        }
        for (CountedDevice d : new CountedDevice[] {top, leaf}) {
            DeviceSnapshot s = d.stats().snapshot();
            assertThat(s.ios(StatGroup.WRITE)).as(d.name()).isEqualTo(100);
            assertThat(s.nsecs(StatGroup.WRITE)).as(d.name()).isZero();
            assertThat(s.inFlight()).isZero();
        }
    }

    @Test
    void aCompletionOutsideTheSubmitReadsTheClock() throws Exception {
        // completes 20 ms later on another thread: outside any scope, so its latency is real
        RamDisk ram = new RamDisk("ram1", 1 << 20);
        BlockDevice later = new BlockDevice() {
            @Override public String name() { return "later"; }
            @Override public long size() { return ram.size(); }
            @Override public io.biostack.block.QueueLimits limits() { return ram.limits(); }
            @Override public boolean isReadOnly() { return false; }
            @Override public void close() { }
            @Override public void submit(Bio bio) {
                CompletableFuture.delayedExecutor(20, TimeUnit.MILLISECONDS).execute(bio::endIo);
            }
        };
        CountedDevice d = new CountedDevice(later);
        try (Arena a = Arena.ofConfined()) {
            d.read(0, a.allocate(4096, 4096)).get(5, TimeUnit.SECONDS);
        }
        assertThat(d.stats().snapshot().nsecs(StatGroup.READ)).isGreaterThanOrEqualTo(20_000_000L);
        assertThat(d.stats().snapshot().ios(StatGroup.READ)).isEqualTo(1);
    }
}
