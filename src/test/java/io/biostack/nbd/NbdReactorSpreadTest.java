package io.biostack.nbd;

import io.biostack.block.RamDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import static io.biostack.nbd.proto.NbdProtocol.CMD_READ;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * A new connection goes to the reactor with the fewest connections (issue 19: one client's
 * multi-conn connections spread over the cores), not blindly to the next one in turn: after a
 * client came and went, the next two connections still land on different reactors. Both
 * reactor kinds (the build's second run forces java.nio).
 */
class NbdReactorSpreadTest {
    @TempDir
    Path dir;

    @Test
    @Timeout(60)
    void connectionsGoToTheLeastLoadedReactorEvenAfterOthersCameAndWent() throws Exception {
        Path sock = dir.resolve("spread.sock");
        try (RamDisk disk = new RamDisk("disk", 1 << 20);
             NbdServer server = NbdServer.builder().export("disk", disk).unixSocket(sock).threads(2).start()) {
            RawNbdClient a = RawNbdClient.open(sock, "disk", false, false);
            RawNbdClient b = RawNbdClient.open(sock, "disk", false, false);
            assertThat(server.connectionsPerReactor()).containsExactly(1, 1);
            b.close();
            awaitCounts(server, 1, 0);
            // Round robin would now put c on reactor 0, beside a, and d on reactor 1.
            RawNbdClient c = RawNbdClient.open(sock, "disk", false, false);
            assertThat(server.connectionsPerReactor()).containsExactly(1, 1);
            RawNbdClient d = RawNbdClient.open(sock, "disk", false, false);
            int[] n = server.connectionsPerReactor();
            assertThat(n[0] + n[1]).isEqualTo(3);
            assertThat(Math.abs(n[0] - n[1])).isEqualTo(1);
            // Each is served.
            for (RawNbdClient x : new RawNbdClient[] {a, c, d}) {
                x.request(0, CMD_READ, 7, 0, 4096);
                assertThat(x.reply(4096).error()).isZero();
            }
            for (RawNbdClient x : new RawNbdClient[] {a, c, d}) {
                x.close();
            }
            awaitCounts(server, 0, 0);
        }
    }

    private static void awaitCounts(NbdServer server, int... want) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!Arrays.equals(server.connectionsPerReactor(), want) && System.nanoTime() < end) {
            Thread.sleep(10);
        }
        assertThat(server.connectionsPerReactor()).containsExactly(want);
    }
}
