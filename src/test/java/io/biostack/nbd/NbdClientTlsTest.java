package io.biostack.nbd;

import io.biostack.nbd.client.NbdClient;
import io.biostack.nbd.client.NbdUri;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The NBD leaf over TLS ({@code nbds+unix://}) against {@code nbdkit --tls=require}, with X.509
 * certificates and with pre-shared keys made by certtool and psktool ({@link TlsFixture}).
 * (In this package for the fixture; the leaf lives in io.biostack.nbd.client.)
 */
@Timeout(60)
class NbdClientTlsTest {
    static final long SIZE = 16L << 20;

    @TempDir
    static Path keys;
    static TlsFixture tls;

    @TempDir
    Path dir;
    Process server;
    final Arena arena = Arena.ofShared();

    @BeforeAll
    static void credentials() throws Exception {
        tls = TlsFixture.create(keys);
    }

    @AfterEach
    void stop() throws Exception {
        if (server != null) {
            server.destroy();
            if (!server.waitFor(5, TimeUnit.SECONDS)) {
                server.destroyForcibly();
            }
        }
        arena.close();
    }

    Path nbdkit(String... tlsArgs) throws Exception {
        Tools.require("nbdkit");
        Path sock = dir.resolve("k.sock");
        List<String> cmd = new ArrayList<>(List.of("nbdkit", "-f", "-U", sock.toString(), "--tls=require"));
        cmd.addAll(List.of(tlsArgs));
        cmd.addAll(List.of("memory", String.valueOf(SIZE)));
        server = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve("k.log").toFile()).start();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!Files.exists(sock) && System.nanoTime() < end && server.isAlive()) {
            Thread.sleep(20);
        }
        assertThat(Files.exists(sock)).as("nbdkit socket").isTrue();
        return sock;
    }

    MemorySegment pattern(long n, long seed) {
        MemorySegment m = arena.allocate(n, 4096);
        Random r = new Random(seed);
        for (long i = 0; i < n; i += 8) {
            m.set(ValueLayout.JAVA_LONG_UNALIGNED, i, r.nextLong());
        }
        return m;
    }

    void roundTrip(NbdClient c) throws Exception {
        MemorySegment big = pattern(6L << 20, 1);
        c.write(1L << 20, big).get(20, TimeUnit.SECONDS);
        List<CompletableFuture<Void>> fs = new ArrayList<>();
        MemorySegment small = pattern(1L << 20, 2);
        for (int i = 0; i < 256; i++) {
            fs.add(c.write((8L << 20) + i * 4096L, small.asSlice(i * 4096L, 4096)));
        }
        CompletableFuture.allOf(fs.toArray(new CompletableFuture[0])).get(20, TimeUnit.SECONDS);
        c.flush().get(10, TimeUnit.SECONDS);
        MemorySegment back = arena.allocate(6L << 20, 4096);
        c.read(1L << 20, back).get(20, TimeUnit.SECONDS);
        assertThat(back.mismatch(big)).isEqualTo(-1);
        MemorySegment back2 = arena.allocate(1L << 20, 4096);
        c.read(8L << 20, back2).get(20, TimeUnit.SECONDS);
        assertThat(back2.mismatch(small)).isEqualTo(-1);
    }

    @Test
    void x509AgainstNbdkitTlsRequire() throws Exception {
        Path sock = nbdkit("--tls-certificates=" + tls.x509, "--tls-verify-peer");
        String uri = "nbds+unix:///?socket=" + sock + "&tls-certificates=" + tls.x509;
        try (NbdClient c = NbdClient.open("t", NbdUri.parse(uri), NbdClient.Options.defaults())) {
            roundTrip(c);
        }
    }

    @Test
    void pskAgainstNbdkitTlsRequire() throws Exception {
        Path sock = nbdkit("--tls-psk=" + tls.psk);
        String uri = "nbds+unix://alice@/?socket=" + sock + "&tls-psk-file=" + tls.psk;
        try (NbdClient c = NbdClient.open("t", NbdUri.parse(uri), NbdClient.Options.defaults())) {
            roundTrip(c);
        }
    }

    @Test
    void plainOrWrongKeysAreRefusedWithAReasonNamingTheUri() throws Exception {
        Path sock = nbdkit("--tls-psk=" + tls.psk);
        String plain = "nbd+unix:///?socket=" + sock;
        assertThatThrownBy(() -> NbdClient.open("t", NbdUri.parse(plain), NbdClient.Options.defaults()))
                .hasMessageStartingWith(plain + ":").hasMessageContaining("requires TLS");
        String wrong = "nbds+unix://alice@/?socket=" + sock + "&tls-psk-file=" + tls.wrongPsk;
        assertThatThrownBy(() -> NbdClient.open("t", NbdUri.parse(wrong), NbdClient.Options.defaults()))
                .hasMessageStartingWith(wrong + ":");
        String nobody = "nbds+unix://carol@/?socket=" + sock + "&tls-psk-file=" + tls.psk;
        assertThatThrownBy(() -> NbdClient.open("t", NbdUri.parse(nobody), NbdClient.Options.defaults()))
                .hasMessageContaining("no key for 'carol'");
    }

    @Test
    void aTlsLeafReconnectsWithTlsWhenTheServerComesBack() throws Exception {
        Path sock = nbdkit("--tls-psk=" + tls.psk);
        String uri = "nbds+unix://bob@/?socket=" + sock + "&tls-psk-file=" + tls.psk;
        try (NbdClient c = NbdClient.open("t", NbdUri.parse(uri),
                NbdClient.Options.defaults().withTimeout(java.time.Duration.ofSeconds(15)))) {
            c.write(0, pattern(4096, 3)).get(10, TimeUnit.SECONDS);
            server.destroyForcibly();
            server.waitFor(5, TimeUnit.SECONDS);
            Files.deleteIfExists(sock);
            CompletableFuture<Void> w = c.write(4096, pattern(4096, 4));
            nbdkit("--tls-psk=" + tls.psk);
            w.get(15, TimeUnit.SECONDS);
            assertThat(c.reconnects()).isPositive();
            MemorySegment back = arena.allocate(4096, 4096);
            c.read(4096, back).get(10, TimeUnit.SECONDS);
            assertThat(back.mismatch(pattern(4096, 4))).isEqualTo(-1);
        }
    }

    // ---- against biostack's own server with TLS required ----------------------------------------

    NbdServer biostack(io.biostack.nbd.tls.TlsCredentials creds, io.biostack.block.RamDisk ram) throws Exception {
        return NbdServer.builder().export(NbdExport.of("disk", ram)).unixSocket(dir.resolve("b.sock"))
                .tls(io.biostack.nbd.tls.TlsMode.REQUIRE, creds).start();
    }

    @Test
    void x509WithAClientCertificateAgainstBiostackServeTlsRequire() throws Exception {
        try (io.biostack.block.RamDisk ram = new io.biostack.block.RamDisk("ram", SIZE);
             NbdServer srv = biostack(io.biostack.nbd.tls.X509Credentials.server(tls.x509, true, List.of("alice")), ram)) {
            String uri = "nbds+unix:///disk?socket=" + dir.resolve("b.sock") + "&tls-certificates=" + tls.x509;
            try (NbdClient c = NbdClient.open("t", NbdUri.parse(uri), NbdClient.Options.defaults().withConnections(2))) {
                assertThat(c.connections()).isEqualTo(2);
                roundTrip(c);
            }
            MemorySegment onServer = arena.allocate(4096, 4096);
            ram.read((8L << 20) + 4096, onServer).get(5, TimeUnit.SECONDS);
            assertThat(onServer.mismatch(pattern(1L << 20, 2).asSlice(4096, 4096))).isEqualTo(-1);
            // eve's certificate is signed by the same CA but is not allowed in.
            String eve = "nbds+unix:///disk?socket=" + dir.resolve("b.sock") + "&tls-certificates=" + tls.eve;
            assertThatThrownBy(() -> NbdClient.open("t", NbdUri.parse(eve), NbdClient.Options.defaults()))
                    .hasMessageStartingWith(eve + ":");
        }
    }

    @Test
    void pskAgainstBiostackServeTlsRequireAndPlainIsTurnedAway() throws Exception {
        try (io.biostack.block.RamDisk ram = new io.biostack.block.RamDisk("ram", SIZE);
             NbdServer srv = biostack(io.biostack.nbd.tls.PskCredentials.server(tls.psk, List.of()), ram)) {
            String uri = "nbds+unix://bob@/disk?socket=" + dir.resolve("b.sock") + "&tls-psk-file=" + tls.psk;
            try (NbdClient c = NbdClient.open("t", NbdUri.parse(uri), NbdClient.Options.defaults())) {
                roundTrip(c);
            }
            String plain = "nbd+unix:///disk?socket=" + dir.resolve("b.sock");
            assertThatThrownBy(() -> NbdClient.open("t", NbdUri.parse(plain), NbdClient.Options.defaults()))
                    .hasMessageStartingWith(plain + ":").hasMessageContaining("requires TLS");
        }
    }
}
