package io.biostack.uring;

import io.biostack.TestEnv;

import static org.assertj.core.api.Assertions.assertThat;

import com.sun.management.ThreadMXBean;
import java.lang.management.ManagementFactory;
import org.junit.jupiter.api.Test;

/**
 * DESIGN.md: "The steady-state I/O path allocates nothing per I/O." Until C2 has compiled the
 * path, FFM downcalls allocate (about 40 bytes each in the interpreter and C1), so the test
 * warms up in rounds and asserts that a round eventually allocates nothing.
 */
class AllocationTest {
    private static final int ROUND = 20_000;
    private long completed;
    private final CqeHandler handler = (ud, res, flags) -> completed += ud;

    @Test
    void steadyStatePrepSubmitReapAllocatesNothingOnceCompiled() throws Exception {
        TestEnv.require(IoUring.isAvailable(), "io_uring");
        ThreadMXBean mx = (ThreadMXBean) ManagementFactory.getThreadMXBean();
        TestEnv.require(mx.isThreadAllocatedMemorySupported(), "per-thread allocation counters");
        long tid = Thread.currentThread().threadId();
        try (IoUring ring = IoUring.open(16, 0, IoUring.RECOMMENDED_SETUP_FLAGS)) {
            long perRound = Long.MAX_VALUE;
            for (int round = 0; round < 15 && perRound >= 1024; round++) {
                long before = mx.getThreadAllocatedBytes(tid);
                cycle(ring, ROUND);
                perRound = mx.getThreadAllocatedBytes(tid) - before;
            }
            // A few hundred bytes of slack for the MXBean call itself.
            assertThat(perRound).as("bytes allocated by %d I/O cycles", ROUND).isLessThan(1024);
            assertThat(completed).isPositive();
        }
    }

    private void cycle(IoUring ring, int n) {
        for (int i = 0; i < n; i++) {
            ring.prepNop(1);
            ring.prepNop(2);
            ring.submitAndWait(2);
            ring.reap(handler);
        }
    }
}
