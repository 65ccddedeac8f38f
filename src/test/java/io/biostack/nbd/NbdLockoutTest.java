package io.biostack.nbd;

import io.biostack.block.RamDisk;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * No lockout by idle clients: connections in the handshake have their own budget, the oldest is
 * dropped when it is full, the handshake deadline is total (a trickler is dropped like an idle
 * client), --max-connections counts only clients in transmission, and a thousand idle sockets cost
 * little memory and don't keep nbdinfo out.
 */
@Timeout(60)
class NbdLockoutTest {
    @TempDir
    Path dir;
    Path sock;
    RamDisk disk;
    NbdServer server;
    final List<RawNbdClient> idle = new ArrayList<>();

    @BeforeEach
    void start() {
        sock = dir.resolve("nbd.sock");
        disk = new RamDisk("disk", 16 << 20);
    }

    @AfterEach
    void stop() throws Exception {
        for (RawNbdClient c : idle) {
            c.close();
        }
        if (server != null) {
            server.close();
        }
        disk.close();
    }

    void serve(NbdServer.Builder b) throws Exception {
        server = b.export(NbdExport.of("disk", disk)).unixSocket(sock).start();
    }

    static long rssBytes(long pid) throws Exception {
        for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
            if (l.startsWith("VmRSS:")) {
                return Long.parseLong(l.replaceAll("[^0-9]", "")) * 1024;
            }
        }
        throw new IllegalStateException("no VmRSS");
    }

    void awaitConnections(int n) throws InterruptedException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (server.connectionCount() != n && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertThat(server.connectionCount()).isEqualTo(n);
    }

    /**
     * The server in a child JVM ({@code biostack serve}), so that its RSS is the server's alone:
     * 1000 sockets connect and are greeted, then say nothing; the server's RSS grows by less than
     * 64 MiB and nbdinfo on a fresh socket is served within a second.
     */
    @Test
    void aThousandIdleSocketsCostUnder64MiBAndNbdinfoIsServedWithinASecond() throws Exception {
        Tools.require("nbdinfo");
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "io.biostack.cli.Main", "serve", "--ram", "16M", "--socket", sock.toString(), "--listen", "none",
                "--handshake-budget", "1100").redirectErrorStream(true).start();
        try {
            var out = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream()));
            for (String l = out.readLine(); l != null && !l.equals("ready"); l = out.readLine()) {
                assertThat(p.isAlive()).isTrue();
            }
            Thread.ofVirtual().start(() -> {
                try {
                    out.transferTo(java.io.Writer.nullWriter()); // keep the pipe drained
                } catch (java.io.IOException e) {
                    // the server was stopped
                }
            });
            Tools.ok(10, "nbdinfo", "nbd+unix:///?socket=" + sock); // warm: classes loaded, JIT busy
            Thread.sleep(500);
            long before = rssBytes(p.pid());
            for (int i = 0; i < 1000; i++) {
                RawNbdClient c = RawNbdClient.connect(sock);
                idle.add(c);
            }
            for (RawNbdClient c : idle) {
                c.read(18); // greeted: accepted, and its handshake runs
            }
            long grown = rssBytes(p.pid()) - before;
            System.out.printf("NbdLockoutTest: server RSS grew %.1f MiB for 1000 idle connections%n", grown / 1048576.0);
            assertThat(grown).as("server RSS growth for 1000 idle connections").isLessThan(64L << 20);
            long t0 = System.nanoTime();
            Tools.ok(10, "nbdinfo", "nbd+unix:///?socket=" + sock);
            assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(1));
        } finally {
            p.destroy();
            p.waitFor(10, java.util.concurrent.TimeUnit.SECONDS);
            p.destroyForcibly();
        }
    }

    @Test
    void withTheBudgetFullANewcomerDropsTheOldestUnfinishedHandshake() throws Exception {
        serve(NbdServer.builder().handshakeBudget(4));
        for (int i = 0; i < 4; i++) {
            RawNbdClient c = RawNbdClient.connect(sock);
            c.read(18); // greeted: its handshake is running
            idle.add(c);
        }
        try (RawNbdClient c = RawNbdClient.open(sock, "disk", false, false)) {
            assertThat(c.read(0, 4096)).hasSize(4096);
        }
        assertThat(idle.getFirst().closedByServer()).as("the oldest was dropped").isTrue();
        for (RawNbdClient c : idle.subList(1, 4)) {
            c.ch.configureBlocking(false);
            assertThat(c.ch.read(ByteBuffer.allocate(1))).as("younger ones still open").isZero();
        }
    }

    @Test
    void theDefaultBudgetLetsNbdinfoPastAThousandIdleSockets() throws Exception {
        Tools.require("nbdinfo");
        serve(NbdServer.builder());
        for (int i = 0; i < 1000; i++) {
            idle.add(RawNbdClient.connect(sock));
        }
        long t0 = System.nanoTime();
        Tools.ok(10, "nbdinfo", "nbd+unix:///disk?socket=" + sock);
        assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(1));
        assertThat(server.connectionCount()).isLessThanOrEqualTo(256);
    }

    @Test
    void aClientTricklingBytesIsDroppedAtTheTotalDeadline() throws Exception {
        serve(NbdServer.builder().handshakeTimeout(Duration.ofMillis(500)));
        try (RawNbdClient c = RawNbdClient.connect(sock)) {
            c.read(18);
            // Client flags, then an option header, one byte every 50 ms: no read waits long.
            ByteBuffer b = ByteBuffer.allocate(20).putInt(FLAG_C_FIXED_NEWSTYLE).putLong(IHAVEOPT).putInt(OPT_LIST)
                    .putInt(100).flip();
            long t0 = System.nanoTime();
            boolean dropped = false;
            while (b.hasRemaining() && !dropped) {
                try {
                    c.write(ByteBuffer.wrap(new byte[] {b.get()}));
                } catch (java.io.IOException e) {
                    dropped = true;
                }
                Thread.sleep(50);
                if (System.nanoTime() - t0 > 3_000_000_000L) {
                    break;
                }
            }
            assertThat(dropped || c.closedByServer()).isTrue();
            assertThat(Duration.ofNanos(System.nanoTime() - t0)).isBetween(Duration.ofMillis(400), Duration.ofMillis(2000));
        }
    }

    @Test
    void maxConnectionsCountsOnlyClientsInTransmission() throws Exception {
        serve(NbdServer.builder().maxConnections(2));
        for (int i = 0; i < 10; i++) {
            idle.add(RawNbdClient.connect(sock)); // in the handshake: not counted
        }
        try (RawNbdClient a = RawNbdClient.open(sock, "disk", false, false);
             RawNbdClient b = RawNbdClient.open(sock, "disk", false, false);
             RawNbdClient third = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
            RawNbdClient.OptReply r = third.go(OPT_GO, "disk").getLast();
            assertThat(r.type()).isEqualTo(REP_ERR_POLICY);
            assertThat(r.text()).contains("--max-connections");
            a.disconnect();
            assertThat(a.closedByServer()).isTrue();
            long deadline = System.nanoTime() + 5_000_000_000L;
            List<RawNbdClient.OptReply> go;
            do {
                Thread.sleep(10);
                go = third.go(OPT_GO, "disk");
            } while (go.getLast().type() != REP_ACK && System.nanoTime() < deadline);
            assertThat(go.getLast().type()).as("a freed slot is taken").isEqualTo(REP_ACK);
            assertThat(third.read(0, 512)).hasSize(512);
            assertThat(b.read(0, 512)).hasSize(512);
        }
    }
}
