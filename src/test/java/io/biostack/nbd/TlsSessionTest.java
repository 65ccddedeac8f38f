package io.biostack.nbd;

import io.biostack.nbd.tls.PskCredentials;
import io.biostack.nbd.tls.TlsCredentials;
import io.biostack.nbd.tls.TlsException;
import io.biostack.nbd.tls.TlsSession;
import io.biostack.nbd.tls.X509Credentials;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The TLS engine on its own: a server session and a client session passing buffers to each other
 * in memory, with the certificates and keys certtool and psktool made. Refusals are asserted by
 * the one-line reason the server would log.
 */
@Timeout(60)
class TlsSessionTest {
    @TempDir
    static Path dir;
    static TlsFixture tls;

    @BeforeAll
    static void makeCertificates() throws Exception {
        tls = TlsFixture.create(dir);
    }

    /** Moves bytes both ways until neither side has anything to send; server errors propagate. */
    static void pump(TlsSession client, TlsSession server) throws TlsException {
        ByteBuffer b = ByteBuffer.allocate(64 * 1024);
        for (int i = 0; i < 1000; i++) {
            boolean moved = false;
            while (client.pendingOutput() > 0) {
                b.clear();
                client.readOutput(b);
                server.offerInput(b.flip());
                moved = true;
            }
            while (server.pendingOutput() > 0) {
                b.clear();
                server.readOutput(b);
                client.offerInput(b.flip());
                moved = true;
            }
            if (!moved) {
                return;
            }
        }
        throw new AssertionError("TLS sessions still talking after 1000 rounds");
    }

    static byte[] receive(TlsSession s, int n) {
        ByteBuffer b = ByteBuffer.allocate(n);
        s.readApplication(b);
        assertThat(b.position()).as("plaintext received").isEqualTo(n);
        return b.array();
    }

    /** Handshake, then 1 MiB each way (many records), compared byte for byte. */
    static void talk(TlsCredentials serverCreds, TlsCredentials clientCreds) throws Exception {
        TlsSession server = serverCreds.newServerSession("test peer");
        TlsSession client = clientCreds.newClientSession("localhost");
        pump(client, server);
        assertThat(server.isHandshakeComplete()).isTrue();
        assertThat(client.isHandshakeComplete()).isTrue();
        byte[] up = new byte[1 << 20];
        byte[] down = new byte[1 << 20];
        new Random(1).nextBytes(up);
        new Random(2).nextBytes(down);
        client.writeApplication(ByteBuffer.wrap(up));
        server.writeApplication(ByteBuffer.allocateDirect(down.length).put(down).flip());
        pump(client, server);
        assertThat(receive(server, up.length)).isEqualTo(up);
        assertThat(receive(client, down.length)).isEqualTo(down);
        assertThat(server.availableApplication()).isZero();
        client.close();
        pump(client, server);
        assertThat(server.isClosed()).as("server saw close_notify").isTrue();
    }

    static String refusal(TlsCredentials serverCreds, TlsCredentials clientCreds) {
        try {
            TlsSession server = serverCreds.newServerSession("test peer");
            TlsSession client = clientCreds.newClientSession("localhost");
            try {
                pump(client, server);
            } catch (TlsException e) {
                assertThat(server.isHandshakeComplete()).isFalse();
                return e.getMessage();
            }
            throw new AssertionError("the server accepted the client (" + server.peerIdentity() + ")");
        } catch (TlsException e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void x509SessionsTalkTls13AndTheServerSeesTheClientSubject() throws Exception {
        TlsCredentials server = X509Credentials.server(tls.x509, true, List.of());
        talk(server, X509Credentials.client(tls.x509));
        TlsSession s = server.newServerSession("p");
        TlsSession c = X509Credentials.client(tls.x509).newClientSession("localhost");
        pump(c, s);
        assertThat(s.describe()).as("TLS 1.3, AES-128-GCM first").isEqualTo("TLSv1.3 TLS_AES_128_GCM_SHA256");
        assertThat(s.peerIdentity()).isEqualTo("CN=alice");
    }

    @Test
    void x509WithoutVerifyPeerLetsAClientWithoutCertificateIn() throws Exception {
        talk(X509Credentials.server(tls.x509, false, List.of()), X509Credentials.client(tls.nocert));
    }

    @Test
    void allowListTakesACommonNameOrAWholeDnAndRefusesOthers() throws Exception {
        talk(X509Credentials.server(tls.x509, true, List.of("alice")), X509Credentials.client(tls.x509));
        talk(X509Credentials.server(tls.x509, true, List.of("CN=eve")), X509Credentials.client(tls.eve));
        assertThat(refusal(X509Credentials.server(tls.x509, true, List.of("alice")), X509Credentials.client(tls.eve)))
                .isEqualTo("'CN=eve' is not in --tls-allow");
    }

    @Test
    void verifyPeerRefusesNoCertificateAnotherCaAndAnExpiredCertificate() throws Exception {
        TlsCredentials server = X509Credentials.server(tls.x509, true, List.of());
        assertThat(refusal(server, X509Credentials.client(tls.nocert))).contains("no client certificate");
        assertThat(refusal(server, X509Credentials.client(tls.rogue))).isEqualTo("client certificate not signed by the CA");
        assertThat(refusal(server, X509Credentials.client(tls.expired))).isEqualTo("client certificate has expired");
    }

    @Test
    void clientChecksTheServerNameAndTheCa() throws Exception {
        TlsCredentials server = X509Credentials.server(tls.x509, false, List.of());
        TlsSession s = server.newServerSession("p");
        TlsSession c = X509Credentials.client(tls.x509).newClientSession("not-the-server.example");
        assertThatThrownBy(() -> pumpClientSide(c, s)).isInstanceOf(TlsException.class)
                .hasMessageContaining("not-the-server.example");
    }

    /** Like pump, but reports the client's error (the server's follows from the alert). */
    static void pumpClientSide(TlsSession c, TlsSession s) throws TlsException {
        ByteBuffer b = ByteBuffer.allocate(64 * 1024);
        for (int i = 0; i < 100; i++) {
            while (c.pendingOutput() > 0) {
                b.clear();
                c.readOutput(b);
                try {
                    s.offerInput(b.flip());
                } catch (TlsException e) {
                    // the client's alert
                }
            }
            while (s.pendingOutput() > 0) {
                b.clear();
                s.readOutput(b);
                c.offerInput(b.flip());
            }
        }
    }

    @Test
    void pskSessionsTalkTls13() throws Exception {
        TlsCredentials server = PskCredentials.server(tls.psk, List.of());
        talk(server, PskCredentials.client(tls.psk, "alice"));
        talk(server, PskCredentials.client(tls.psk, "bob"));
        TlsSession s = server.newServerSession("p");
        pump(PskCredentials.client(tls.psk, "bob").newClientSession(null), s);
        assertThat(s.describe()).startsWith("TLSv1.3");
        assertThat(s.peerIdentity()).isEqualTo("bob");
    }

    @Test
    void pskRefusesAWrongKeyAnUnknownUserAndAUserNotAllowed() throws Exception {
        assertThat(refusal(PskCredentials.server(tls.psk, List.of()), PskCredentials.client(tls.wrongPsk, "alice")))
                .isEqualTo("wrong key for PSK identity 'alice'");
        Path carol = Files.writeString(dir.resolve("carol.psk"), "carol:00112233445566778899aabbccddeeff\n");
        assertThat(refusal(PskCredentials.server(tls.psk, List.of()), PskCredentials.client(carol, "carol")))
                .isEqualTo("unknown PSK identity 'carol'");
        assertThat(refusal(PskCredentials.server(tls.psk, List.of("alice")), PskCredentials.client(tls.psk, "bob")))
                .isEqualTo("PSK identity 'bob' is not in --tls-allow");
    }

    @Test
    void anythingButTlsIsRefusedWithItsFirstBytes() throws Exception {
        for (TlsCredentials c : List.of(X509Credentials.server(tls.x509, false, List.of()),
                PskCredentials.server(tls.psk, List.of()))) {
            TlsSession s = c.newServerSession("p");
            // An NBD option header where a ClientHello belongs.
            ByteBuffer nbd = ByteBuffer.allocate(16).putLong(0x49484156454F5054L).putInt(7).putInt(0).flip();
            assertThatThrownBy(() -> s.offerInput(nbd)).isInstanceOf(TlsException.class)
                    .hasMessage("not TLS: got 0x49484156");
        }
    }

    @Test
    void badCredentialFilesSayWhichFileAndWhy() throws Exception {
        Path empty = Files.createDirectories(dir.resolve("empty"));
        assertThatThrownBy(() -> X509Credentials.server(empty, false, List.of()))
                .isInstanceOf(TlsException.class).hasMessageContaining("server-cert.pem: no such file");
        Path bad = Files.writeString(dir.resolve("bad.psk"), "alice:xyz\n");
        assertThatThrownBy(() -> PskCredentials.server(bad, List.of()))
                .isInstanceOf(TlsException.class).hasMessageContaining("line 1: the key is not hex");
    }
    /**
     * A batch of 8 read replies (a 16-byte header and a 4 KiB payload each, as the server's send
     * batch holds them) given as pieces in one call goes out in 3 records (33 KiB of plaintext,
     * 16 KiB per record), not 16, and the peer reads the pieces back in their order. Counted on
     * the wire: every TLS record starts with a 5-byte header whose last two bytes are its length
     * (RFC 8446 section 5.1).
     */
    @Test
    void piecesGivenTogetherShareRecordsAndArriveInOrderWithBothEngines() throws Exception {
        for (TlsCredentials[] pair : List.of(
                new TlsCredentials[] {X509Credentials.server(tls.x509, true, List.of()), X509Credentials.client(tls.x509)},
                new TlsCredentials[] {PskCredentials.server(tls.psk, List.of()), PskCredentials.client(tls.psk, "alice")})) {
            TlsSession server = pair[0].newServerSession("test peer");
            TlsSession client = pair[1].newClientSession("localhost");
            pump(client, server);
            assertThat(server.isHandshakeComplete()).isTrue();
            pump(client, server); // anything the server sends after the handshake (tickets) goes first
            ByteBuffer[] pieces = new ByteBuffer[16];
            ByteBuffer expected = ByteBuffer.allocate(8 * (16 + 4096));
            Random rnd = new Random(3);
            for (int i = 0; i < pieces.length; i++) {
                byte[] b = new byte[i % 2 == 0 ? 16 : 4096];
                rnd.nextBytes(b);
                expected.put(b);
                // direct and heap pieces alike, as headers and payloads come
                pieces[i] = i % 4 == 1 ? ByteBuffer.allocateDirect(b.length).put(b).flip() : ByteBuffer.wrap(b);
            }
            server.writeApplication(pieces, 0, pieces.length);
            for (ByteBuffer p : pieces) {
                assertThat(p.hasRemaining()).as("every piece consumed").isFalse();
            }
            ByteBuffer wire = ByteBuffer.allocate(64 * 1024);
            server.readOutput(wire);
            wire.flip();
            int records = 0;
            for (int at = 0; at < wire.limit(); at += 5 + (wire.getShort(at + 3) & 0xffff)) {
                records++;
            }
            assertThat(records).as(server.describe() + ": records for 16 pieces of 33 KiB").isEqualTo(3);
            client.offerInput(wire);
            assertThat(receive(client, expected.capacity())).isEqualTo(expected.array());
        }
    }

    /**
     * TLS 1.3 keys wear out: the JDK's engine updates its sending key (a KeyUpdate message,
     * RFC 8446 section 4.6.3) once a key has encrypted jdk.tls.keyLimits' bytes, 2^37 for AES-GCM
     * by default. That wrap gives the KeyUpdate and takes no plaintext, and writeApplication took
     * it for a stuck engine ("TLS engine made no progress"): a connection that had carried
     * 128 GiB one way (an nbdcopy of a large disk over X.509) was cut. A child JVM with a 64 KiB
     * limit ({@link KeyLimitProbe}) sends 256 KiB each way.
     */
    @Test
    void sessionsGoOnThroughKeyUpdatesAtTheKeyLimit() throws Exception {
        String jvm = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(jvm, "-XX:TieredStopAtLevel=1", "-cp",
                System.getProperty("java.class.path"), KeyLimitProbe.class.getName(), dir.toString())
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(out).as("the probe's output").startsWith("ok TLSv1.3");
        assertThat(p.exitValue()).isZero();
    }
}
