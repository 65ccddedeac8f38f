package io.biostack.nbd;

import io.biostack.block.RamDisk;
import io.biostack.nbd.tls.PskCredentials;
import io.biostack.nbd.tls.TlsChannel;
import io.biostack.nbd.tls.Tls12Client;
import io.biostack.nbd.tls.TlsMode;
import io.biostack.nbd.tls.TlsSession;
import io.biostack.nbd.tls.X509Credentials;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import java.util.Arrays;
import java.util.List;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * The TLS rules of the handshake from a raw socket (doc/proto.md "TLS support"): FORCEDTLS's
 * NBD_REP_ERR_TLS_REQD for everything but STARTTLS and ABORT, EXPORT_NAME ending the session,
 * STARTTLS once, TLS ON serving plain clients, and what the server does with garbage instead of
 * a ClientHello and with a client that leaves in the middle of the TLS handshake.
 */
@Timeout(30)
class NbdTlsHandshakeTest {
    @TempDir
    static Path keys;
    static TlsFixture tls;

    @TempDir
    Path dir;
    Path sock;
    RamDisk disk;
    NbdServer server;
    WarningLog warnings;

    @BeforeAll
    static void credentials() throws Exception {
        tls = TlsFixture.create(keys);
    }

    @BeforeEach
    void start() {
        sock = dir.resolve("nbd.sock");
        disk = new RamDisk("disk", 16 << 20);
        warnings = WarningLog.attach();
    }

    @AfterEach
    void stop() {
        warnings.close();
        if (server != null) {
            server.close();
        }
        disk.close();
    }

    void serve(TlsMode mode) throws Exception {
        server = NbdServer.builder().export(NbdExport.of("disk", disk)).unixSocket(sock)
                .tls(mode, X509Credentials.server(tls.x509, false, List.of())).start();
    }

    static RawNbdClient hello(Path sock) throws Exception {
        return RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    }

    @Test
    void requireAnswersEveryOptionButStartTlsAndAbortWithTlsReqd() throws Exception {
        serve(TlsMode.REQUIRE);
        try (RawNbdClient c = hello(sock)) {
            for (int opt : new int[] {OPT_LIST, OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY, OPT_LIST_META_CONTEXT, 4711}) {
                c.option(opt, opt == OPT_INFO || opt == OPT_GO ? RawNbdClient.infoRequest("disk") : new byte[0]);
                RawNbdClient.OptReply r = c.optionReply();
                assertThat(r.option()).isEqualTo(opt);
                assertThat(r.type()).as("option %d before TLS", opt).isEqualTo(REP_ERR_TLS_REQD);
                assertThat(r.text()).contains("STARTTLS");
            }
            c.option(OPT_STARTTLS, new byte[3]);
            assertThat(c.optionReply().type()).as("STARTTLS with data").isEqualTo(REP_ERR_INVALID);
            c.option(OPT_ABORT, new byte[0]);
            assertThat(c.optionReply().type()).isEqualTo(REP_ACK);
            assertThat(c.closedByServer()).isTrue();
        }
    }

    @Test
    void listBeforeTlsLeaksNoExportName() throws Exception {
        serve(TlsMode.REQUIRE);
        try (RawNbdClient c = hello(sock)) {
            c.option(OPT_LIST, new byte[0]);
            RawNbdClient.OptReply r = c.optionReply();
            assertThat(r.type()).isEqualTo(REP_ERR_TLS_REQD);
            assertThat(r.text()).doesNotContain("disk");
        }
    }

    @Test
    void exportNameBeforeTlsEndsTheSessionWithoutEnteringTransmission() throws Exception {
        serve(TlsMode.REQUIRE);
        try (RawNbdClient c = hello(sock)) {
            c.option(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            assertThat(c.closedByServer()).isTrue();
        }
        awaitNoConnections();
        assertThat(warnings.lines()).containsExactly("nbd: refused plain client unix socket: TLS is required");
    }

    @Test
    void afterStartTlsEverythingGoesThroughTlsAndASecondStartTlsIsInvalid() throws Exception {
        serve(TlsMode.REQUIRE);
        try (RawNbdClient c = hello(sock)) {
            c.startTls(X509Credentials.client(tls.nocert));
            c.option(OPT_STARTTLS, new byte[0]);
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_INVALID);
            c.option(OPT_STRUCTURED_REPLY, new byte[0]);
            assertThat(c.optionReply().type()).isEqualTo(REP_ACK);
            c.structured = true;
            List<RawNbdClient.OptReply> go = c.go(OPT_GO, "disk", INFO_BLOCK_SIZE);
            assertThat(go.getLast().type()).isEqualTo(REP_ACK);
            byte[] data = new byte[256 * 1024];
            new java.util.Random(5).nextBytes(data);
            assertThat(c.writeAndWait(4096, data)).isZero();
            assertThat(c.read(4096, data.length)).isEqualTo(data);
            c.disconnect();
            assertThat(c.closedByServer()).isTrue();
        }
        try (RawNbdClient c = hello(sock)) { // a new connection sees what the first one wrote
            c.startTls(X509Credentials.client(tls.nocert));
            c.go(OPT_GO, "disk");
            byte[] back = c.read(4096, 256 * 1024);
            byte[] data = new byte[256 * 1024];
            new java.util.Random(5).nextBytes(data);
            assertThat(back).isEqualTo(data);
        }
    }

    @Test
    void structuredRepliesNegotiatedBeforeStartTlsAreForgotten() throws Exception {
        serve(TlsMode.ON);
        try (RawNbdClient c = hello(sock)) {
            c.option(OPT_STRUCTURED_REPLY, new byte[0]);
            assertThat(c.optionReply().type()).isEqualTo(REP_ACK);
            c.startTls(X509Credentials.client(tls.nocert));
            c.go(OPT_GO, "disk");
            assertThat(c.transmissionFlags & FLAG_SEND_DF).as("DF needs structured replies").isZero();
            assertThat(c.read(0, 4096)).hasSize(4096); // a simple reply: structured was reset
        }
    }

    @Test
    void tlsOnServesPlainClientsAndTlsClients() throws Exception {
        serve(TlsMode.ON);
        try (RawNbdClient c = hello(sock)) {
            assertThat(c.go(OPT_GO, "disk").getLast().type()).isEqualTo(REP_ACK);
            assertThat(c.read(0, 512)).hasSize(512);
        }
        try (RawNbdClient c = hello(sock)) {
            c.startTls(X509Credentials.client(tls.nocert));
            c.option(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            ByteBuffer b = c.read(10);
            assertThat(b.getLong()).isEqualTo(16L << 20);
        }
    }

    @Test
    void garbageInsteadOfAClientHelloIsRefusedWithOneLine() throws Exception {
        serve(TlsMode.REQUIRE);
        try (RawNbdClient c = hello(sock)) {
            c.option(OPT_STARTTLS, new byte[0]);
            c.expectType(c.optionReply(), REP_ACK);
            c.option(OPT_GO, RawNbdClient.infoRequest("disk")); // plain NBD where TLS belongs
            assertThat(c.closedByServer()).isTrue();
        }
        awaitNoConnections();
        assertThat(warnings.lines()).singleElement().asString()
                .isEqualTo("nbd: refused TLS client unix socket: not TLS: got 0x49484156");
        servesAGoodClient();
    }

    @Test
    void aClientLeavingInTheMiddleOfTheTlsHandshakeIsForgotten() throws Exception {
        serve(TlsMode.REQUIRE);
        TlsSession s = X509Credentials.client(tls.nocert).newClientSession("localhost");
        ByteBuffer hello = ByteBuffer.allocate(64 * 1024);
        s.readOutput(hello);
        hello.flip().limit(hello.limit() / 2); // half a ClientHello
        try (RawNbdClient c = hello(sock)) {
            c.option(OPT_STARTTLS, new byte[0]);
            c.expectType(c.optionReply(), REP_ACK);
            c.write(hello);
        }
        awaitNoConnections();
        servesAGoodClient();
    }

    /**
     * NBD_CMD_DISC: "the server MUST handle all outstanding requests, shut down the TLS session
     * (if one is running), and close the connection" (doc/proto.md). The server's close_notify
     * comes before its EOF, as nbdkit's gnutls_bye sends it, so the client's read ends on the
     * TLS session's close and not on a bare EOF (GnuTLS: "non-properly terminated").
     */
    @Test
    void disconnectEndsWithTheServersCloseNotify() throws Exception {
        serve(TlsMode.REQUIRE);
        try (RawNbdClient c = hello(sock)) {
            c.startTls(X509Credentials.client(tls.nocert));
            c.go(OPT_GO, "disk");
            assertThat(c.writeAndWait(0, new byte[4096])).isZero();
            c.disconnect();
            TlsChannel t = (TlsChannel) c.io;
            assertThat(t.read(ByteBuffer.allocate(16))).as("no bytes after DISC").isEqualTo(-1);
            assertThat(t.session().isClosed()).as("ended by close_notify, not by EOF alone").isTrue();
        }
    }

    /**
     * A client that sends close_notify right after its last request, without NBD_CMD_DISC (as a
     * GnuTLS client's gnutls_bye(GNUTLS_SHUT_WR) does): in TLS 1.3 that closes its direction only
     * (RFC 8446, section 6.1), so the reply to the request still comes, then our close_notify.
     * The reply was lost: the session refused to write once the peer had closed.
     */
    @Test
    void aClientsCloseNotifyStillGetsTheRepliesInFlight() throws Exception {
        serve(TlsMode.REQUIRE);
        closeNotifyRightAfterAWriteStillGetsItsReply(X509Credentials.client(tls.nocert), 8192, (byte) 0x6b);
    }

    /**
     * The same with a pre-shared key, whose sessions run on BouncyCastle: its TlsProtocol answered
     * a close_notify by closing both directions (RFC 5246's rule, section 7.2.1), so under TLS 1.3
     * the WRITE's reply was dropped and the connection cut. GnuTLS clients (nbdcopy with
     * tls-psk-file) end that way.
     */
    @Test
    void aPskClientsCloseNotifyStillGetsTheRepliesInFlight() throws Exception {
        server = NbdServer.builder().export(NbdExport.of("disk", disk)).unixSocket(sock)
                .tls(TlsMode.REQUIRE, PskCredentials.server(tls.psk, List.of())).start();
        closeNotifyRightAfterAWriteStillGetsItsReply(PskCredentials.client(tls.psk, "alice"), 4096, (byte) 0x5c);
    }

    /**
     * Over TLS 1.3 with {@code creds}: a WRITE of {@code fill} at {@code offset} with close_notify
     * right behind it gets its reply, then the server's close_notify; the bytes are on the device.
     */
    private void closeNotifyRightAfterAWriteStillGetsItsReply(io.biostack.nbd.tls.TlsCredentials creds, long offset,
                                                              byte fill) throws Exception {
        try (RawNbdClient c = hello(sock)) {
            c.startTls(creds);
            c.go(OPT_GO, "disk");
            TlsChannel t = (TlsChannel) c.io;
            assertThat(t.session().describe()).startsWith("TLSv1.3");
            byte[] data = new byte[4096];
            Arrays.fill(data, fill);
            ByteBuffer req = ByteBuffer.allocate(REQUEST_SIZE + data.length);
            req.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) CMD_WRITE).putLong(7).putLong(offset)
                    .putInt(data.length).put(data).flip();
            t.writeThenCloseNotify(req);
            assertThat(c.replyError(7)).as("the WRITE's reply").isZero();
            assertThat(t.read(ByteBuffer.allocate(16))).isEqualTo(-1);
            assertThat(t.session().isClosed()).as("then the server's close_notify").isTrue();
        }
        awaitNoConnections();
        try (RawNbdClient c = hello(sock)) {
            c.startTls(creds);
            c.go(OPT_GO, "disk");
            assertThat(c.read(offset, 4096)).as("written").containsOnly(fill);
        }
    }

    /**
     * TLS 1.2 has no half-close: "the other party MUST respond with a close_notify alert of its
     * own and close down the connection immediately, discarding any pending writes" (RFC 5246,
     * section 7.2.1). The reply to the WRITE may be dropped, but the close_notify must go before
     * the socket closes; the engine had it queued when the reply failed to encrypt, and the
     * connection closed without sending it.
     */
    @Test
    void aTls12ClientsCloseNotifyIsAnsweredWithTheServers() throws Exception {
        serve(TlsMode.REQUIRE);
        try (RawNbdClient c = hello(sock)) {
            c.startTls(Tls12Client.session(tls.nocert));
            c.go(OPT_GO, "disk");
            TlsChannel t = (TlsChannel) c.io;
            assertThat(t.session().describe()).startsWith("TLSv1.2");
            ByteBuffer req = ByteBuffer.allocate(REQUEST_SIZE + 4096);
            req.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) CMD_WRITE).putLong(11).putLong(0)
                    .putInt(4096).put(new byte[4096]).flip();
            t.writeThenCloseNotify(req);
            ByteBuffer rest = ByteBuffer.allocate(64);
            while (t.read(rest) >= 0 && rest.hasRemaining()) {
                // a reply, if the server sent it before it saw the close_notify
            }
            assertThat(t.session().isClosed()).as("the server's close_notify came before its EOF").isTrue();
        }
    }

    void awaitNoConnections() throws InterruptedException {
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (server.connectionCount() > 0 && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertThat(server.connectionCount()).isZero();
    }

    void servesAGoodClient() throws Exception {
        try (RawNbdClient c = hello(sock)) {
            c.startTls(X509Credentials.client(tls.nocert));
            assertThat(c.go(OPT_GO, "disk").getLast().type()).isEqualTo(REP_ACK);
            assertThat(c.read(0, 512)).hasSize(512);
        }
    }
}
