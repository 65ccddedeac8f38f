package io.biostack.uring;

import io.biostack.sys.Libc;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * When an idle loop polls: for an event that comes within the window it polls, unless a device
 * wait says its next event is a lone device I/O away; then it sleeps (RingLoop#addDeviceWait).
 * The event here is an eventfd that another thread writes 300 us after the loop went idle on it.
 */
class RingLoopPollTest {
    private static final int ROUNDS = 40;

    /** Idle periods that polling ended over {@link #ROUNDS} events, with the device wait as given. */
    private static long caughtOver(boolean loneDeviceIo) throws Exception {
        assertThat(IoUring.isAvailable()).as("io_uring").isTrue();
        AtomicBoolean device = new AtomicBoolean(loneDeviceIo);
        Semaphore done = new Semaphore(0);
        int efd = Libc.eventfd(0, 0);
        assertThat(efd).isPositive();
        int[] id = new int[1];
        try (Arena arena = Arena.ofShared()) {
            MemorySegment in = arena.allocate(8, 8);
            MemorySegment one = arena.allocate(8, 8);
            one.set(ValueLayout.JAVA_LONG, 0, 1L);
            RingLoop loop = RingLoop.start("poll-test", 64, l -> {
                id[0] = l.register((ud, res, flags) -> done.release());
                l.setPollMaxNanos(TimeUnit.MILLISECONDS.toNanos(5));
                l.addDeviceWait(device::get);
            });
            try {
                long before = -1;
                for (int k = 0; k < ROUNDS; k++) {
                    loop.execute(() -> loop.ring().prepRead(efd, in.address(), 8, 0, RingLoop.tag(id[0], 0)));
                    Thread.sleep(0, 300_000);
                    if (k == 1) {
                        before = loop.pollsCaught(); // the first rounds open the window
                    }
                    assertThat(Libc.write(efd, one.address(), 8)).isEqualTo(8);
                    assertThat(done.tryAcquire(5, TimeUnit.SECONDS)).as("event %d completed", k).isTrue();
                }
                return loop.pollsCaught() - before;
            } finally {
                loop.stop(null);
                assertThat(loop.awaitStopped(5000)).isTrue();
            }
        } finally {
            Libc.close(efd);
        }
    }

    @Test
    void anIdleLoopPollsForAnEventThatComesWithinItsWindow() throws Exception {
        assertThat(caughtOver(false)).as("idle periods polling ended").isGreaterThanOrEqualTo(ROUNDS / 2);
    }

    @Test
    void anIdleLoopWaitingOnALoneDeviceIoSleepsInsteadOfPolling() throws Exception {
        assertThat(caughtOver(true)).as("idle periods polling ended").isZero();
    }
}
