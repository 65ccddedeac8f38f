package io.biostack.nbd;

import io.biostack.block.RamDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static io.biostack.nbd.proto.NbdProtocol.CMD_READ;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Issue 9, "Many connections": a thousand clients, each reading 4 KiB once a second, are served by
 * the server's few reactor threads (no thread per connection), the process grows by well under
 * 64 MiB, and every reply carries the bytes on the disk. Runs on both loops (io_uring reactors, and
 * java.nio ones in the build's second test execution).
 */
class NbdManyConnectionsTest {
    private static final int CLIENTS = 1000;
    private static final int ROUNDS = 5;

    @TempDir
    Path dir;

    @Test
    @Timeout(120)
    void aThousandClientsReadingOnceASecondAreServedByTheReactorsInBoundedMemory() throws Exception {
        Path sock = dir.resolve("many.sock");
        RamDisk disk = new RamDisk("disk", 8 << 20);
        byte[] pattern = new byte[4096];
        for (int i = 0; i < pattern.length; i++) {
            pattern[i] = (byte) (i * 31 + 7);
        }
        List<RawNbdClient> clients = new ArrayList<>(CLIENTS);
        try (NbdServer server = NbdServer.builder().export("disk", disk).unixSocket(sock)
                .maxConnections(CLIENTS + 10).handshakeBudget(CLIENTS + 10).threads(2).start();
             RawNbdClient writer = RawNbdClient.open(sock, "disk", false, false)) {
            assertThat(writer.writeAndWait(8192, pattern)).isZero();
            System.gc();
            long threadsBefore = Thread.activeCount();
            long rssBefore = rssBytes();

            for (int i = 0; i < CLIENTS; i++) {
                clients.add(RawNbdClient.open(sock, "disk", false, false));
            }
            assertThat(server.connectionCount()).isEqualTo(CLIENTS + 1);
            for (int round = 0; round < ROUNDS; round++) {
                long start = System.nanoTime();
                for (int i = 0; i < CLIENTS; i++) {
                    clients.get(i).request(0, CMD_READ, round * CLIENTS + i, 8192, 4096);
                }
                for (int i = 0; i < CLIENTS; i++) {
                    RawNbdClient.Reply r = clients.get(i).reply(4096);
                    assertThat(r.error()).isZero();
                    assertThat(r.cookie()).isEqualTo(round * CLIENTS + i);
                    assertThat(r.payload()).isEqualTo(pattern);
                }
                long left = TimeUnit.SECONDS.toNanos(1) - (System.nanoTime() - start);
                if (left > 0 && round < ROUNDS - 1) {
                    TimeUnit.NANOSECONDS.sleep(left);
                }
            }
            long threadsDuring = Thread.activeCount();
            System.gc();
            long rssDuring = rssBytes();
            System.err.printf("%d connections on %s: +%d threads, RSS +%d MiB%n", CLIENTS, server.describeLoop(),
                    threadsDuring - threadsBefore, (rssDuring - rssBefore) >> 20);
            assertThat(threadsDuring - threadsBefore).as("threads added for %d connections", CLIENTS).isLessThan(10);
            assertThat(server.threads()).isEqualTo(2);
            assertThat(rssDuring - rssBefore).as("RSS growth (server and the test's own clients)")
                    .isLessThan(64L << 20);
        } finally {
            for (RawNbdClient c : clients) {
                c.close();
            }
            disk.close();
        }
    }

    /** VmRSS of this process. */
    private static long rssBytes() throws Exception {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
            }
        }
        throw new IllegalStateException("no VmRSS in /proc/self/status");
    }
}
