package io.biostack.nbd;

import io.biostack.block.RamDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The reactors' adaptive polling (serve --poll-us): while requests come close together a reactor
 * polls its ring instead of sleeping, and once they stop it goes back to sleep, so a quiet server
 * burns no CPU. The java.nio reactors (the build's second run) never poll.
 */
class NbdReactorPollTest {
    @TempDir
    Path dir;

    private static boolean uringReactors() {
        return !"threads".equals(System.getProperty("biostack.engine"));
    }

    /** CPU time of this JVM's reactor threads, in nanoseconds. */
    private static long reactorCpuNanos() {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        long n = 0;
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().startsWith("nbd-reactor-")) {
                n += Math.max(0, mx.getThreadCpuTime(t.threadId()));
            }
        }
        return n;
    }

    @Test
    void aReactorThatPolledUnderLoadSleepsOnceTheLoadStops() throws Exception {
        Path sock = dir.resolve("poll.sock");
        RamDisk ram = new RamDisk("ram0", 8 << 20);
        try (NbdServer server = NbdServer.builder().export("disk", ram).unixSocket(sock).threads(1)
                     .pollMicros(50).start();
             RawNbdClient c = RawNbdClient.open(sock, "disk", false, false)) {
            if (uringReactors()) {
                assertThat(server.describeLoop()).contains("polls up to 50 us");
            } else {
                assertThat(server.describeLoop()).doesNotContain("polls");
            }
            byte[] data = new byte[4096];
            new Random(7).nextBytes(data);
            assertThat(c.writeAndWait(0, data)).isZero();
            for (int i = 0; i < 2000; i++) { // one request at a time: the loop polls between them
                assertThat(c.read(0, 4096)).isEqualTo(data);
            }
            long caught = server.pollCounts()[0];
            Thread.sleep(1000); // idle: the window has stopped after 8 long idle periods (0.8 s of ticks)
            long before = reactorCpuNanos();
            Thread.sleep(1000);
            long idle = reactorCpuNanos() - before;
            assertThat(idle).as("reactor CPU over a quiet second, ns").isLessThan(20_000_000L);
            if (uringReactors()) {
                assertThat(caught).as("idle periods that polling ended under load").isPositive();
                assertThat(server.pollCounts()[1]).as("poll window once quiet").isZero();
            } else {
                assertThat(server.pollCounts()).containsExactly(0, 0);
            }
            assertThat(Arrays.equals(c.read(0, 4096), data)).isTrue(); // and it still answers
        }
    }
}
