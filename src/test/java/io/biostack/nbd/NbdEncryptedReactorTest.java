package io.biostack.nbd;

import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.tls.PskCredentials;
import io.biostack.nbd.tls.TlsCredentials;
import io.biostack.nbd.tls.TlsMode;
import io.biostack.nbd.tls.X509Credentials;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * NBD_OPT_STARTTLS on the reactors: TLS runs over buffers on the reactor thread, between the
 * socket bytes and the connection's plaintext. libnbd's tools copy a disk up and down through it
 * (X.509 on the unix socket and on TCP; PSK is covered by the TLS work's own client tests) and
 * every byte arrives; under {@code REQUIRE} a plain
 * client gets NBD_REP_ERR_TLS_REQD. Runs on both loops.
 */
class NbdEncryptedReactorTest {
    private static final long SIZE = 4 << 20;

    @TempDir
    static Path keys;
    static TlsFixture tls;

    @TempDir
    Path dir;
    Path sock;
    Path file;
    LoopDevice loop;
    NbdServer server;

    @BeforeAll
    static void credentials() throws Exception {
        tls = TlsFixture.create(keys);
    }

    @BeforeEach
    void backing() throws Exception {
        Tools.require("nbdinfo", "nbdcopy");
        sock = dir.resolve("nbd.sock");
        file = dir.resolve("disk.img");
        loop = LoopDevice.open(file, LoopConfig.defaults().withCreateSize(SIZE));
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.close();
        }
        loop.close();
    }

    private void serve(TlsCredentials creds) throws Exception {
        server = NbdServer.builder().export(NbdExport.of("disk", loop)).unixSocket(sock).tcp("127.0.0.1", 0)
                .tls(TlsMode.REQUIRE, creds).start();
    }

    private void roundTrip(String uri, long seed) throws Exception {
        byte[] b = new byte[(int) SIZE];
        new Random(seed).nextBytes(b);
        Path src = Files.write(dir.resolve("pattern-" + seed), b);
        Tools.ok(60, "nbdcopy", src.toString(), uri);
        assertThat(Tools.ok(30, "nbdinfo", uri).out()).contains("export-size: " + SIZE);
        Path back = dir.resolve("back-" + seed);
        Tools.ok(60, "nbdcopy", uri, back.toString());
        assertThat(Files.mismatch(src, back)).as("read back over TLS").isEqualTo(-1);
        loop.flush().get();
        assertThat(Files.mismatch(src, file)).as("backing file").isEqualTo(-1);
    }

    @Test
    void libnbdCopiesThroughX509OnUnixAndTcp() throws Exception {
        serve(X509Credentials.server(tls.x509, true, List.of()));
        roundTrip("nbds+unix:///disk?socket=" + sock + "&tls-certificates=" + tls.x509 + "&tls-hostname=localhost", 1);
        roundTrip("nbds://localhost:" + server.tcpAddress().getPort() + "/disk?tls-certificates=" + tls.x509, 2);
    }

    @Test
    void aPlainClientUnderRequireGetsTlsRequiredAndWritesNothing() throws Exception {
        serve(PskCredentials.server(tls.psk, List.of()));
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
            c.option(OPT_GO, new byte[] {0, 0, 0, 0, 0, 0});
            c.expectType(c.optionReply(), REP_ERR_TLS_REQD);
        }
        assertThat(Tools.run(30, "nbdinfo", "nbd+unix:///disk?socket=" + sock).exit()).isNotZero();
        byte[] zeros = new byte[(int) SIZE];
        assertThat(Files.readAllBytes(file)).isEqualTo(zeros);
    }
}
