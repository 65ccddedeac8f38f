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
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Real TLS clients against the server: libnbd's nbdinfo and nbdcopy (GnuTLS) over nbds:// and
 * nbds+unix://, qemu-img and qemu-io with tls-creds-x509 and tls-creds-psk; then every refusal
 * the issue lists, each refused with one log line, nothing written, and the server still serving.
 * The export is a loop device over a file, so "nothing written" is checked on the file's bytes.
 */
@Timeout(120)
class NbdTlsClientsTest {
    static final long SIZE = 16L << 20;

    @TempDir
    static Path keys;
    static TlsFixture tls;

    @TempDir
    Path dir;
    Path sock;
    Path file;
    LoopDevice loop;
    NbdServer server;
    WarningLog warnings;

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
        warnings = WarningLog.attach();
    }

    @AfterEach
    void stop() {
        warnings.close();
        if (server != null) {
            server.close();
        }
        loop.close();
    }

    void serve(TlsMode mode, TlsCredentials creds) throws Exception {
        server = NbdServer.builder().export(NbdExport.of("disk", loop)).unixSocket(sock).tcp("127.0.0.1", 0)
                .tls(mode, creds).start();
    }

    String tcp(String user, String query) {
        return "nbds://" + (user == null ? "" : user + "@") + "localhost:" + server.tcpAddress().getPort() + "/disk?" + query;
    }

    String unix(String user, String query) {
        return "nbds+unix://" + (user == null ? "" : user + "@") + "/disk?socket=" + sock + "&" + query;
    }

    Path pattern(long seed) throws Exception {
        byte[] b = new byte[(int) SIZE];
        new Random(seed).nextBytes(b);
        return Files.write(dir.resolve("pattern-" + seed), b);
    }

    /** nbdcopy up, nbdinfo, nbdcopy down; the copy, the backing file and the source agree. */
    void roundTrip(String uri, long seed) throws Exception {
        Path src = pattern(seed);
        Tools.ok(60, "nbdcopy", src.toString(), uri);
        Tools.Result info = Tools.ok(30, "nbdinfo", uri);
        assertThat(info.out()).contains("export-size: " + SIZE);
        Path back = dir.resolve("back-" + seed);
        Tools.ok(60, "nbdcopy", uri, back.toString());
        assertThat(Files.mismatch(src, back)).as("read back over TLS").isEqualTo(-1);
        loop.flush().get();
        assertThat(Files.mismatch(src, file)).as("backing file").isEqualTo(-1);
    }

    @Test
    void libnbdToolsOverX509OnTcpAndUnix() throws Exception {
        serve(TlsMode.REQUIRE, X509Credentials.server(tls.x509, true, List.of()));
        roundTrip(tcp(null, "tls-certificates=" + tls.x509), 1);
        roundTrip(unix(null, "tls-certificates=" + tls.x509 + "&tls-hostname=localhost"), 2);
        assertThat(warnings.lines()).isEmpty();
    }

    @Test
    void libnbdToolsOverPskOnTcpAndUnix() throws Exception {
        serve(TlsMode.REQUIRE, PskCredentials.server(tls.psk, List.of()));
        roundTrip(tcp("alice", "tls-psk-file=" + tls.psk), 3);
        roundTrip(unix("bob", "tls-psk-file=" + tls.psk), 4);
        assertThat(warnings.lines()).isEmpty();
    }

    /**
     * libnbd ends with NBD_CMD_DISC and reads on until the server's end; the server ends TLS with
     * close_notify before the socket closes (RFC 8446, section 6.1; nbdkit's gnutls_bye). Without
     * it GnuTLS reports "The TLS connection was non-properly terminated" (in libnbd's debug log).
     * X.509 runs on the JDK's engine, PSK on BouncyCastle: both.
     */
    @Test
    void libnbdSeesTheServerEndTlsWithCloseNotify() throws Exception {
        serve(TlsMode.REQUIRE, X509Credentials.server(tls.x509, false, List.of()));
        Tools.Result x509 = Tools.ok(30, "env", "LIBNBD_DEBUG=1", "nbdinfo",
                unix(null, "tls-certificates=" + tls.x509 + "&tls-hostname=localhost"));
        assertThat(x509.err()).contains("connection is using TLS").doesNotContain("non-properly terminated");
        server.close();
        serve(TlsMode.REQUIRE, PskCredentials.server(tls.psk, List.of()));
        Tools.Result psk = Tools.ok(30, "env", "LIBNBD_DEBUG=1", "nbdinfo", unix("alice", "tls-psk-file=" + tls.psk));
        assertThat(psk.err()).contains("connection is using TLS").doesNotContain("non-properly terminated");
    }

    @Test
    void qemuImgAndQemuIoWithX509AndPskCredentials() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        serve(TlsMode.REQUIRE, PskCredentials.server(tls.psk, List.of()));
        String psk = "tls-creds-psk,id=tls0,endpoint=client,dir=" + keys + ",username=alice";
        qemu(psk, 0x5a);
        server.close();
        serve(TlsMode.REQUIRE, X509Credentials.server(tls.x509, true, List.of("alice")));
        qemu("tls-creds-x509,id=tls0,endpoint=client,dir=" + tls.x509, 0xa5);
        assertThat(warnings.lines()).isEmpty();
    }

    /**
     * TLS 1.2 clients, which the record sharing must serve as well as 1.3 ones: nbdcopy (libnbd's
     * GnuTLS, told by a system priority file to leave TLS 1.3 out) copies up and down byte-exact,
     * and qemu-io (its tls-creds priority) reads 64 small blocks at once, so that their replies
     * share records, and checks each one's pattern. The server's own log says which version each
     * connection negotiated.
     */
    @Test
    void tls12ClientsGetBatchedRepliesInOrder() throws Exception {
        Tools.require("qemu-io");
        serve(TlsMode.REQUIRE, X509Credentials.server(tls.x509, true, List.of()));
        java.util.logging.Logger nbd = java.util.logging.Logger.getLogger("io.biostack.nbd");
        java.util.logging.Level was = nbd.getLevel();
        List<String> versions = java.util.Collections.synchronizedList(new java.util.ArrayList<>());
        java.util.logging.Handler h = new java.util.logging.Handler() {
            @Override
            public void publish(java.util.logging.LogRecord r) {
                String m = java.text.MessageFormat.format(r.getMessage(), r.getParameters());
                if (m.contains(" TLSv1.")) {
                    versions.add(m.replaceAll(".* (TLSv1\\.[0-9]).*", "$1"));
                }
            }

            @Override
            public void flush() {
            }

            @Override
            public void close() {
            }
        };
        h.setLevel(java.util.logging.Level.ALL);
        nbd.setLevel(java.util.logging.Level.FINE);
        nbd.addHandler(h);
        try {
            Path prio = Files.writeString(dir.resolve("gnutls-no-tls13.conf"), "[overrides]\ndisabled-version = tls1.3\n");
            String uri = unix(null, "tls-certificates=" + tls.x509 + "&tls-hostname=localhost");
            Path src = pattern(5);
            String env = "GNUTLS_SYSTEM_PRIORITY_FILE=" + prio;
            Tools.ok(60, "env", env, "nbdcopy", src.toString(), uri);
            Path back = dir.resolve("back-tls12");
            Tools.ok(60, "env", env, "nbdcopy", uri, back.toString());
            assertThat(Files.mismatch(src, back)).as("read back over TLS 1.2").isEqualTo(-1);

            List<String> cmd = new java.util.ArrayList<>(List.of("qemu-io", "--object",
                    "tls-creds-x509,id=tls0,endpoint=client,dir=" + tls.x509 + ",priority=NORMAL:-VERS-TLS1.3",
                    "--image-opts", "driver=nbd,server.type=unix,server.path=" + sock
                            + ",export=disk,tls-creds=tls0,tls-hostname=localhost",
                    "-c", "write -P 0x33 0 128k", "-c", "write -P 0x44 128k 128k"));
            for (int i = 0; i < 64; i++) {
                cmd.add("-c");
                cmd.add("aio_read -P " + (i < 32 ? "0x33" : "0x44") + " " + i * 4 + "k 4k");
            }
            cmd.add("-c");
            cmd.add("aio_flush");
            Tools.Result r = Tools.ok(60, cmd.toArray(String[]::new));
            assertThat(r.out()).as("qemu-io's pattern checks").doesNotContain("Pattern verification failed")
                    .contains("read 4096/4096 bytes at offset 258048");
        } finally {
            nbd.removeHandler(h);
            nbd.setLevel(was);
        }
        // nbdcopy opens one connection or more (multi-conn), qemu-io one
        assertThat(versions).as("versions the server negotiated").hasSizeGreaterThanOrEqualTo(3).containsOnly("TLSv1.2");
        assertThat(warnings.lines()).isEmpty();
    }

    void qemu(String object, int fill) throws Exception {
        String image = "driver=nbd,server.type=unix,server.path=" + sock + ",export=disk,tls-creds=tls0,tls-hostname=localhost";
        Tools.ok(60, "qemu-io", "--object", object, "--image-opts", image,
                "-c", "write -P " + fill + " 1M 1M", "-c", "read -P " + fill + " 1M 1M");
        Path back = dir.resolve("qemu-back");
        Files.deleteIfExists(back);
        Tools.ok(60, "qemu-img", "convert", "--object", object, "--image-opts", image, "-O", "raw", back.toString());
        loop.flush().get();
        assertThat(Files.mismatch(back, file)).isEqualTo(-1);
        byte[] mid = new byte[1 << 20];
        System.arraycopy(Files.readAllBytes(back), 1 << 20, mid, 0, mid.length);
        byte[] want = new byte[1 << 20];
        java.util.Arrays.fill(want, (byte) fill);
        assertThat(mid).isEqualTo(want);
    }

    /**
     * A client that must be refused: its nbdcopy of a pattern fails, the server logs one line
     * naming the peer and {@code reason}, the backing file still holds zeros, and a good client is
     * served right after.
     */
    void refused(String uri, String reason, String goodUri) throws Exception {
        int before = warnings.size();
        Tools.Result r = Tools.run(60, "nbdcopy", pattern(9).toString(), uri);
        assertThat(r.exit()).as("refused client's nbdcopy: " + r.all()).isNotZero();
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (warnings.since(before).isEmpty() && reason != null && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        if (reason != null) {
            assertThat(warnings.since(before)).singleElement().asString().contains("refused ").contains(reason)
                    .doesNotContain("STACK TRACE");
        }
        loop.flush().get();
        assertThat(firstNonZero(Files.readAllBytes(file))).as("nothing written: first non-zero byte").isEqualTo(-1);
        Tools.ok(30, "nbdinfo", goodUri);
    }

    static int firstNonZero(byte[] b) {
        for (int i = 0; i < b.length; i++) {
            if (b[i] != 0) {
                return i;
            }
        }
        return -1;
    }

    @Test
    void x509RefusesPlainClientsMissingForeignAndExpiredCertificatesAndNamesNotAllowed() throws Exception {
        serve(TlsMode.REQUIRE, X509Credentials.server(tls.x509, true, List.of("alice")));
        String good = unix(null, "tls-certificates=" + tls.x509 + "&tls-hostname=localhost");
        refused("nbd+unix:///disk?socket=" + sock, "refused plain client unix socket: TLS is required", good);
        refused(unix(null, "tls-certificates=" + tls.nocert + "&tls-hostname=localhost"), "no client certificate", good);
        refused(unix(null, "tls-certificates=" + tls.rogue + "&tls-hostname=localhost"), "not signed by the CA", good);
        refused(unix(null, "tls-certificates=" + tls.expired + "&tls-hostname=localhost"), "expired", good);
        refused(tcp(null, "tls-certificates=" + tls.eve), "'CN=eve' is not in --tls-allow", good);
        assertThat(String.join("\n", warnings.lines())).contains("unix socket").contains("127.0.0.1");
    }

    @Test
    void pskRefusesAWrongKeyAndAUserNotAllowed() throws Exception {
        serve(TlsMode.REQUIRE, PskCredentials.server(tls.psk, List.of("alice")));
        String good = unix("alice", "tls-psk-file=" + tls.psk);
        refused(unix("alice", "tls-psk-file=" + tls.wrongPsk), "wrong key for PSK identity 'alice'", good);
        refused(unix("bob", "tls-psk-file=" + tls.psk), "PSK identity 'bob' is not in --tls-allow", good);
    }

    @Test
    void tlsOnServesPlainAndTlsClientsAlike() throws Exception {
        serve(TlsMode.ON, X509Credentials.server(tls.x509, false, List.of()));
        Tools.ok(30, "nbdinfo", "nbd+unix:///disk?socket=" + sock);
        Tools.ok(30, "nbdinfo", unix(null, "tls-certificates=" + tls.nocert + "&tls-hostname=localhost"));
    }
}
