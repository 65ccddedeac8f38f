package io.biostack.nbd;

import io.biostack.block.RamDisk;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

/** The fixed newstyle handshake, from a raw socket (doc/proto.md "Handshake", "Option types"). */
@Timeout(30)
class NbdHandshakeTest {
    @TempDir
    Path dir;
    Path sock;
    RamDisk disk;
    RamDisk other;
    NbdServer server;

    @BeforeEach
    void start() throws Exception {
        sock = dir.resolve("nbd.sock");
        disk = new RamDisk("disk", 16 << 20);
        other = new RamDisk("other", 1 << 20, 4096, true);
        server = NbdServer.builder()
                .export(new NbdExport("disk", "a test disk", disk, false))
                .export(NbdExport.of("other", other))
                .unixSocket(sock)
                .maxConnections(300)
                .handshakeTimeout(Duration.ofSeconds(2))
                .start();
    }

    @AfterEach
    void stop() {
        server.close();
        disk.close();
        other.close();
    }

    @Test
    void greetingIsFixedNewstyleWithNoZeroes() throws Exception {
        try (RawNbdClient c = RawNbdClient.connect(sock)) {
            ByteBuffer g = c.read(18);
            assertThat(g.getLong()).isEqualTo(0x4e42444d41474943L);
            assertThat(g.getLong()).isEqualTo(0x49484156454F5054L);
            assertThat(g.getShort()).isEqualTo((short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
        }
    }

    @Test
    void unknownClientFlagsDisconnect() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | 1 << 7)) {
            assertThat(c.closedByServer()).isTrue();
        }
    }

    @Test
    void badOptionMagicDisconnectsAndOthersAreStillServed() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE)) {
            c.optionHeader(0x1234567812345678L, OPT_GO, 0);
            assertThat(c.closedByServer()).isTrue();
        }
        try (RawNbdClient c = RawNbdClient.open(sock, "disk", false, false)) {
            assertThat(c.size).isEqualTo(16 << 20);
        }
    }

    @Test
    void garbageInsteadOfAHandshakeDisconnects() throws Exception {
        try (RawNbdClient c = RawNbdClient.connect(sock)) {
            c.read(18);
            c.write(ByteBuffer.wrap("GET / HTTP/1.1\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII)));
            assertThat(c.closedByServer()).isTrue();
        }
    }

    @Test
    void hugeOptionLengthDisconnectsWithoutReadingIt() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE)) {
            c.optionHeader(IHAVEOPT, OPT_GO, 0xfffffff0);
            assertThat(c.closedByServer()).isTrue();
        }
        try (RawNbdClient c = RawNbdClient.open(sock, "disk", true, true)) {
            assertThat(c.size).isEqualTo(16 << 20);
        }
    }

    @Test
    void unknownOptionGetsErrUnsupAndTheSessionGoesOn() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
            c.option(4711, new byte[100]);
            RawNbdClient.OptReply r = c.optionReply();
            assertThat(r.option()).isEqualTo(4711);
            assertThat(r.type()).isEqualTo(REP_ERR_UNSUP);
            c.option(OPT_STARTTLS, new byte[0]);
            // TLS off: "NBD_REP_ERR_POLICY (if it does not support TLS for policy reasons)".
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_POLICY);
            List<RawNbdClient.OptReply> go = c.go(OPT_GO, "disk");
            assertThat(go.getLast().type()).isEqualTo(REP_ACK);
            assertThat(c.read(0, 512)).hasSize(512);
        }
    }

    @Test
    void infoAndGoForAnUnknownExportGetErrUnknownAndTheSessionGoesOn() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
            assertThat(c.go(OPT_INFO, "nope")).extracting(RawNbdClient.OptReply::type).containsExactly(REP_ERR_UNKNOWN);
            assertThat(c.go(OPT_GO, "nope")).extracting(RawNbdClient.OptReply::type).containsExactly(REP_ERR_UNKNOWN);
            assertThat(c.go(OPT_GO, "disk").getLast().type()).isEqualTo(REP_ACK);
        }
    }

    @Test
    void infoReportsSizeFlagsBlockSizesNameAndDescription() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
            List<RawNbdClient.OptReply> r = c.go(OPT_INFO, "disk", INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE);
            assertThat(r.getLast().type()).isEqualTo(REP_ACK);
            assertThat(c.size).isEqualTo(16 << 20);
            int f = c.transmissionFlags;
            assertThat(f & FLAG_HAS_FLAGS).isNotZero();
            assertThat(f & FLAG_READ_ONLY).isZero();
            for (int flag : new int[] {FLAG_SEND_FLUSH, FLAG_SEND_FUA, FLAG_SEND_TRIM, FLAG_SEND_WRITE_ZEROES,
                    FLAG_SEND_FAST_ZERO, FLAG_CAN_MULTI_CONN, FLAG_SEND_CACHE}) {
                assertThat(f & flag).as("flag %d", flag).isNotZero();
            }
            assertThat(f & FLAG_SEND_DF).as("DF needs structured replies").isZero();
            assertThat(c.minBlock).isEqualTo(512);
            assertThat(c.prefBlock).isEqualTo(4096);
            assertThat(c.maxPayload).isEqualTo(32 << 20);
            List<String> texts = new ArrayList<>();
            for (RawNbdClient.OptReply o : r) {
                ByteBuffer b = o.buf();
                if (o.type() == REP_INFO) {
                    int t = b.getShort();
                    if (t == INFO_NAME || t == INFO_DESCRIPTION) {
                        texts.add(t + ":" + StandardCharsets.UTF_8.decode(b));
                    }
                }
            }
            assertThat(texts).containsExactlyInAnyOrder(INFO_NAME + ":disk", INFO_DESCRIPTION + ":a test disk");
            // INFO does not end the handshake.
            assertThat(c.go(OPT_INFO, "other").getLast().type()).isEqualTo(REP_ACK);
            assertThat(c.transmissionFlags & FLAG_READ_ONLY).isNotZero();
            assertThat(c.minBlock).as("minimum = logical block size").isEqualTo(4096);
        }
    }

    @Test
    void emptyNameIsTheDefaultExport() throws Exception {
        try (RawNbdClient c = RawNbdClient.open(sock, "", false, false)) {
            assertThat(c.size).isEqualTo(16 << 20);
        }
    }

    @Test
    void dfIsAdvertisedOnlyWithStructuredReplies() throws Exception {
        try (RawNbdClient c = RawNbdClient.open(sock, "disk", true, false)) {
            assertThat(c.transmissionFlags & FLAG_SEND_DF).isNotZero();
        }
    }

    @Test
    void exportNameEntersTransmissionWith124ZeroesUnlessNoZeroes() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE)) {
            c.option(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            ByteBuffer b = c.read(8 + 2 + 124);
            assertThat(b.getLong()).isEqualTo(16 << 20);
            assertThat(b.getShort() & FLAG_HAS_FLAGS).isNotZero();
            while (b.hasRemaining()) {
                assertThat(b.get()).isZero();
            }
            assertThat(c.read(0, 4096)).hasSize(4096);
        }
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
            c.option(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            c.read(10);
            assertThat(c.command(0, CMD_FLUSH, 0, 0)).isZero();
        }
    }

    @Test
    void exportNameOfAnUnknownExportDisconnects() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE)) {
            c.option(OPT_EXPORT_NAME, "nope".getBytes(StandardCharsets.UTF_8));
            assertThat(c.closedByServer()).isTrue();
        }
    }

    @Test
    void listShowsEveryExportAndRefusesData() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE)) {
            c.option(OPT_LIST, new byte[0]);
            List<String> names = new ArrayList<>();
            RawNbdClient.OptReply r;
            while ((r = c.optionReply()).type() == REP_SERVER) {
                ByteBuffer b = r.buf();
                byte[] n = new byte[b.getInt()];
                b.get(n);
                names.add(new String(n, StandardCharsets.UTF_8));
            }
            assertThat(r.type()).isEqualTo(REP_ACK);
            assertThat(names).containsExactly("disk", "other");
            c.option(OPT_LIST, new byte[3]);
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_INVALID);
        }
    }

    @Test
    void abortIsAcknowledgedThenClosed() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE)) {
            c.option(OPT_ABORT, new byte[0]);
            assertThat(c.optionReply().type()).isEqualTo(REP_ACK);
            assertThat(c.closedByServer()).isTrue();
        }
    }

    @Test
    void malformedInfoAndStructuredReplyWithDataAreInvalid() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE)) {
            c.option(OPT_STRUCTURED_REPLY, new byte[1]);
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_INVALID);
            // name length beyond the option
            c.option(OPT_GO, ByteBuffer.allocate(10).putInt(1000).array());
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_INVALID);
            // info count that does not match
            c.option(OPT_INFO, ByteBuffer.allocate(8).putInt(0).putShort((short) 5).array());
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_INVALID);
            assertThat(c.go(OPT_GO, "disk").getLast().type()).isEqualTo(REP_ACK);
        }
    }

    @Test
    void metaContextsNeedStructuredRepliesAndOfferBaseAllocation() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
            c.option(OPT_SET_META_CONTEXT, RawNbdClient.metaRequest("disk", BASE_ALLOCATION));
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_INVALID);
            c.option(OPT_STRUCTURED_REPLY, new byte[0]);
            assertThat(c.optionReply().type()).isEqualTo(REP_ACK);

            c.option(OPT_LIST_META_CONTEXT, RawNbdClient.metaRequest("disk"));
            RawNbdClient.OptReply r = c.optionReply();
            assertThat(r.type()).isEqualTo(REP_META_CONTEXT);
            assertThat(new String(r.data(), 4, r.data().length - 4, StandardCharsets.UTF_8)).isEqualTo(BASE_ALLOCATION);
            assertThat(c.optionReply().type()).isEqualTo(REP_ACK);

            c.option(OPT_LIST_META_CONTEXT, RawNbdClient.metaRequest("disk", "base:"));
            assertThat(c.optionReply().type()).isEqualTo(REP_META_CONTEXT);
            assertThat(c.optionReply().type()).isEqualTo(REP_ACK);

            c.option(OPT_SET_META_CONTEXT, RawNbdClient.metaRequest("disk", "qemu:dirty-bitmap:x", "base:nothing"));
            assertThat(c.optionReply().type()).as("unknown contexts are ignored").isEqualTo(REP_ACK);

            c.option(OPT_SET_META_CONTEXT, RawNbdClient.metaRequest("nope", BASE_ALLOCATION));
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_UNKNOWN);

            c.option(OPT_SET_META_CONTEXT, ByteBuffer.allocate(12).putInt(0).putInt(1).putInt(99).array());
            assertThat(c.optionReply().type()).as("query beyond the option").isEqualTo(REP_ERR_INVALID);

            c.option(OPT_SET_META_CONTEXT, RawNbdClient.metaRequest("disk", BASE_ALLOCATION));
            r = c.optionReply();
            assertThat(r.type()).isEqualTo(REP_META_CONTEXT);
            assertThat(r.buf().getInt()).isEqualTo(BASE_ALLOCATION_ID);
            assertThat(c.optionReply().type()).isEqualTo(REP_ACK);
        }
    }

    @Test
    void hundredsOfIdleConnectionsDoNotStopServingOthers() throws Exception {
        List<RawNbdClient> idle = new ArrayList<>();
        try {
            for (int i = 0; i < 200; i++) {
                idle.add(RawNbdClient.connect(sock));
            }
            try (RawNbdClient c = RawNbdClient.open(sock, "disk", true, true)) {
                assertThat(c.writeAndWait(0, new byte[4096])).isZero();
                assertThat(server.connectionCount()).isGreaterThanOrEqualTo(200);
            }
        } finally {
            for (RawNbdClient c : idle) {
                c.close();
            }
        }
    }

    @Test
    void aConnectionThatDoesNotFinishItsHandshakeIsClosed() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE)) {
            long t0 = System.nanoTime();
            assertThat(c.closedByServer()).isTrue();
            assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(10));
        }
    }

    @Test
    void aClientThatSendsOptionsWithoutReadingRepliesIsHeldBackAndStillAnsweredInFull() throws Exception {
        // Each NBD_OPT_INFO is 22 bytes in and 86 out: a client that never reads its replies must
        // meet TCP back-pressure, as in transmission, not make the server hold all of them.
        Path s2 = dir.resolve("slow.sock");
        try (NbdServer srv = NbdServer.builder().export("disk", disk).unixSocket(s2)
                .handshakeTimeout(Duration.ofSeconds(30)).start();
             RawNbdClient c = RawNbdClient.handshake(s2, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
            byte[] info = RawNbdClient.infoRequest("disk");
            int options = (2 << 20) / (16 + info.length);
            ByteBuffer all = ByteBuffer.allocate(options * (16 + info.length));
            for (int i = 0; i < options; i++) {
                all.putLong(IHAVEOPT).putInt(OPT_INFO).putInt(info.length).put(info);
            }
            all.flip();
            c.ch.configureBlocking(false);
            long lastProgress = System.nanoTime();
            while (all.hasRemaining() && System.nanoTime() - lastProgress < 500_000_000L) {
                if (c.ch.write(all) > 0) {
                    lastProgress = System.nanoTime();
                } else {
                    Thread.sleep(5);
                }
            }
            assertThat(all.position()).as("bytes of options the server took without our reading a reply")
                    .isLessThan(1 << 20);
            c.ch.configureBlocking(true);
            Thread writer = Thread.ofVirtual().start(() -> {
                try {
                    c.write(all);
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            // Every option answered (INFO, INFO, ACK), read in bulk: a read per reply is slow.
            int acks = 0;
            ByteBuffer in = ByteBuffer.allocate(1 << 20);
            while (acks < options) {
                if (c.ch.read(in) < 0) {
                    throw new java.io.EOFException("closed after " + acks + " answers");
                }
                in.flip();
                while (in.remaining() >= 20 && in.remaining() >= 20 + in.getInt(in.position() + 16)) {
                    long magic = in.getLong();
                    int option = in.getInt();
                    int type = in.getInt();
                    if (magic != OPT_REPLY_MAGIC || option != OPT_INFO || (type != REP_INFO && type != REP_ACK)) {
                        throw new AssertionError("answer " + acks + ": magic 0x" + Long.toHexString(magic)
                                + ", option " + option + ", type 0x" + Integer.toHexString(type));
                    }
                    acks += type == REP_ACK ? 1 : 0;
                    int len = in.getInt();
                    in.position(in.position() + len);
                }
                in.compact();
            }
            writer.join();
            assertThat(c.go(OPT_GO, "disk").getLast().type()).isEqualTo(REP_ACK);
            assertThat(c.read(0, 512)).hasSize(512);
        }
    }

    @Test
    void connectionsOverTheLimitAreRefusedAndServiceGoesOn() throws Exception {
        Path s2 = dir.resolve("small.sock");
        try (NbdServer small = NbdServer.builder().export("disk", disk).unixSocket(s2).maxConnections(2).start()) {
            try (RawNbdClient a = RawNbdClient.open(s2, "disk", false, false);
                 RawNbdClient b = RawNbdClient.open(s2, "disk", false, false);
                 RawNbdClient extra = RawNbdClient.handshake(s2, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
                // --max-connections counts clients in transmission: a third GO is refused.
                assertThat(extra.go(OPT_GO, "disk").getLast().type()).isEqualTo(REP_ERR_POLICY);
                assertThat(a.read(0, 512)).hasSize(512);
                assertThat(b.read(0, 512)).hasSize(512);
                b.disconnect();
                assertThat(b.closedByServer()).isTrue();
            }
            long end = System.currentTimeMillis() + 5000;
            while (small.connectionCount() > 0 && System.currentTimeMillis() < end) {
                Thread.sleep(10);
            }
            try (RawNbdClient c = RawNbdClient.open(s2, "disk", false, false)) {
                assertThat(c.read(0, 512)).hasSize(512);
            }
        }
    }
}
