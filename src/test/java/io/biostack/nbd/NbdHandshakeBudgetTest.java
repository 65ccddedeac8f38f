package io.biostack.nbd;

import io.biostack.block.RamDisk;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static io.biostack.nbd.proto.NbdProtocol.FLAG_C_FIXED_NEWSTYLE;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Issue 7's "no lockout" rules as the reactor applies them: connections still in the handshake
 * have their own budget, and when it is full the oldest is dropped, never the newcomer; the
 * handshake timeout counts from the connect, so a client that trickles a byte at a time is closed
 * like an idle one; a client in transmission is not affected by either.
 */
class NbdHandshakeBudgetTest {
    @TempDir
    Path dir;
    Path sock;
    RamDisk disk;
    NbdServer server;

    @BeforeEach
    void start() throws Exception {
        sock = dir.resolve("b.sock");
        disk = new RamDisk("disk", 1 << 20);
        server = NbdServer.builder().export("disk", disk).unixSocket(sock)
                .handshakeBudget(3).handshakeTimeout(Duration.ofMillis(700)).start();
    }

    @AfterEach
    void stop() {
        server.close();
        disk.close();
    }

    @Test
    @Timeout(30)
    void aFullBudgetDropsTheOldestHandshakeNotTheNewcomer() throws Exception {
        List<RawNbdClient> idle = new ArrayList<>();
        try {
            for (int i = 0; i < 3; i++) {
                idle.add(RawNbdClient.connect(sock));
                waitForConnections(i + 1);
            }
            // The newcomer finishes its handshake and is served; the oldest idle one is gone.
            try (RawNbdClient c = RawNbdClient.open(sock, "disk", false, false)) {
                assertThat(c.read(0, 512)).hasSize(512);
                assertThat(idle.getFirst().closedByServer()).isTrue();
            }
        } finally {
            for (RawNbdClient c : idle) {
                c.close();
            }
        }
    }

    @Test
    @Timeout(30)
    void aClientTricklingBytesIsClosedAtTheHandshakeDeadlineWhileOthersAreServed() throws Exception {
        try (RawNbdClient trickler = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE);
             RawNbdClient served = RawNbdClient.open(sock, "disk", false, false)) {
            long t0 = System.nanoTime();
            byte[] option = {0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, 0, 0, 0, 3, 0, 0, 0, 0};
            boolean closed = false;
            for (int i = 0; i < option.length && !closed; i++) {
                try {
                    trickler.write(ByteBuffer.wrap(option, i, 1));
                } catch (java.io.IOException e) {
                    closed = true;
                }
                Thread.sleep(150);
                if (System.nanoTime() - t0 > 1_500_000_000L) {
                    break;
                }
            }
            assertThat(trickler.closedByServer()).isTrue();
            assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(5));
            // The client in transmission outlives the handshake deadline.
            Thread.sleep(800);
            assertThat(served.read(0, 512)).hasSize(512);
        }
    }

    private void waitForConnections(int n) throws InterruptedException {
        long end = System.currentTimeMillis() + 5000;
        while (server.connectionCount() < n && System.currentTimeMillis() < end) {
            Thread.sleep(5);
        }
        assertThat(server.connectionCount()).isEqualTo(n);
    }
}
