package io.biostack.nbd;

import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.tls.TlsMode;
import io.biostack.nbd.tls.X509Credentials;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;

import static io.biostack.TestData.random;
import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Clients that did not ask for NBD_INFO_BLOCK_SIZE get the spec's defaults (doc/proto.md, "Block
 * size constraints": a minimum of 1 and a maximum effectively unlimited): unaligned requests are
 * served by read-modify-write under the export's alignment, requests up to 64 MiB are split and
 * served, larger ones get EOVERFLOW with their WRITE payload read and dropped, over plain sockets
 * and TLS; bytes on disk checked against a model. Clients that asked keep the strict checks.
 */
@Timeout(120)
class NbdLenientClientTest {
    static final long SIZE = 96L << 20;
    static final int MIB = 1 << 20;

    @TempDir
    static Path keys;
    static TlsFixture tls;

    @TempDir
    Path dir;
    Path sock;
    Path file;
    LoopDevice loop;
    NbdServer server;
    /** What the file must hold. */
    byte[] model;
    ProbeDevice probe;

    @BeforeAll
    static void credentials() throws Exception {
        tls = TlsFixture.create(keys);
    }

    void serve(boolean withTls) throws Exception {
        sock = dir.resolve("nbd.sock");
        file = dir.resolve("disk.img");
        loop = LoopDevice.open(file, LoopConfig.defaults().withCreateSize(SIZE)
                .withDirectIo(io.biostack.loop.DirectIoMode.OFF)); // the page cache: the test is about the wire
        model = new byte[(int) SIZE];
        NbdServer.Builder b = NbdServer.builder().export(NbdExport.of("disk", loop)).unixSocket(sock);
        if (withTls) {
            b.tls(TlsMode.REQUIRE, X509Credentials.server(tls.x509, false, List.of()));
        }
        server = b.start();
    }

    /**
     * {@code a} writes byte 10 (cookie 1) and its head read is held by {@code dev}; then {@code b}
     * writes byte 20 (cookie 2), and its zero-length READ (cookie 3), answered in order after that
     * WRITE's payload is in, says when {@code b} has had its chance to read the block too.
     */
    static void bothWriteIntoBlock0WhileAsHeadReadIsHeld(ProbeDevice dev, RawNbdClient a, RawNbdClient b)
            throws Exception {
        dev.holding = true;
        a.write(0, 1, 10, new byte[] {0x11});
        assertThat(dev.awaitHeld(1, 5000)).as("a's head read").isEqualTo(1);
        b.write(0, 2, 20, new byte[] {0x22});
        b.request(0, CMD_READ, 3, 0, 0);
        assertThat(b.replyError(3)).isZero();
    }

    /** A device that holds its bios until the test lets them go ({@link ProbeDevice}), served on two reactors. */
    ProbeDevice serveProbe() throws Exception {
        sock = dir.resolve("nbd.sock");
        probe = new ProbeDevice(1 << 20);
        server = NbdServer.builder().export(NbdExport.of("disk", probe)).unixSocket(sock).threads(2).start();
        return probe;
    }

    @AfterEach
    void stop() {
        if (probe != null) {
            probe.holding = false;
            probe.releaseReversed(); // nothing held back blocks the server's close
        }
        if (server != null) {
            server.close();
        }
        if (loop != null) {
            loop.close();
        }
        if (probe != null) {
            probe.close();
        }
    }

    /** Enters transmission with NBD_OPT_GO, asking for no information (or for the block sizes). */
    RawNbdClient client(boolean withTls, boolean structured, boolean askBlockSize) throws Exception {
        RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        if (withTls) {
            c.startTls(X509Credentials.client(tls.nocert));
        }
        if (structured) {
            c.option(OPT_STRUCTURED_REPLY, new byte[0]);
            c.expectType(c.optionReply(), REP_ACK);
            c.structured = true;
        }
        List<RawNbdClient.OptReply> go = askBlockSize ? c.go(OPT_GO, "disk", INFO_BLOCK_SIZE) : c.go(OPT_GO, "disk");
        assertThat(go.getLast().type()).isEqualTo(REP_ACK);
        return c;
    }

    void write(RawNbdClient c, long offset, byte[] data) throws IOException {
        assertThat(c.writeAndWait(offset, data)).as("WRITE of %d at %d", data.length, offset).isZero();
        System.arraycopy(data, 0, model, (int) offset, data.length);
    }

    /** Flushes through the server, then checks [offset, offset + n) of the file itself. */
    void assertOnDisk(RawNbdClient c, long offset, int n) throws IOException {
        assertThat(c.command(0, CMD_FLUSH, 0, 0)).isZero();
        ByteBuffer b = ByteBuffer.allocate(n);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            while (b.hasRemaining() && ch.read(b, offset + b.position()) > 0) {
                // read on
            }
        }
        assertThat(b.array()).as("file bytes at %d", offset)
                .isEqualTo(Arrays.copyOfRange(model, (int) offset, (int) offset + n));
    }

    @ParameterizedTest(name = "tls={0}")
    @ValueSource(booleans = {false, true})
    void unalignedReadsAndWritesAreServedByReadModifyWrite(boolean withTls) throws Exception {
        serve(withTls);
        try (RawNbdClient c = client(withTls, true, false)) {
            write(c, 0, random(3 * MIB, 1));
            byte[] r = c.read(1, MIB + 14);
            assertThat(r).isEqualTo(Arrays.copyOfRange(model, 1, 1 + MIB + 14));
            // Head and tail in different blocks, in one block, at a block's start and end.
            write(c, 1, random(MIB + 14, 2));
            write(c, 4095, random(3, 3));
            write(c, 8192 + 100, random(200, 4));
            write(c, 8192 + 300, random(10, 5));
            write(c, 2 * MIB - 7, random(7, 6));
            write(c, 2 * MIB, random(5, 7));
            assertThat(c.read(0, 3 * MIB)).isEqualTo(Arrays.copyOf(model, 3 * MIB));
            assertOnDisk(c, 0, 3 * MIB);
        }
        try (RawNbdClient c = client(withTls, false, false)) {
            assertThat(c.read(4093, 517)).isEqualTo(Arrays.copyOfRange(model, 4093, 4093 + 517));
            assertThat(c.command(0, CMD_WRITE_ZEROES, 5, 1000)).isZero();
            Arrays.fill(model, 5, 1005, (byte) 0);
            assertThat(c.command(0, CMD_TRIM, 3, 600)).as("a trim of no whole block does nothing").isZero();
            assertOnDisk(c, 0, 3 * MIB);
        }
        ExportStats.Snapshot s = server.exportStats().getFirst().snapshot();
        assertThat(s.readModifyWrite()).isEqualTo(9);
    }

    @ParameterizedTest(name = "tls={0}")
    @ValueSource(booleans = {false, true})
    void writesAndReadsOf33To48MiBAreSplitAndServed(boolean withTls) throws Exception {
        serve(withTls);
        try (RawNbdClient c = client(withTls, true, false)) {
            write(c, 4096, random(48 * MIB, 8));
            write(c, 56 * MIB + 3, random(33 * MIB, 9)); // oversized and unaligned
            assertThat(c.read(4096, 48 * MIB)).isEqualTo(Arrays.copyOfRange(model, 4096, 4096 + 48 * MIB));
            assertThat(c.read(50 * MIB + 1, 40 * MIB))
                    .isEqualTo(Arrays.copyOfRange(model, 50 * MIB + 1, 90 * MIB + 1));
            assertOnDisk(c, 0, 90 * MIB);
        }
        try (RawNbdClient c = client(withTls, false, false)) {
            assertThat(c.read(MIB, 40 * MIB)).isEqualTo(Arrays.copyOfRange(model, MIB, 41 * MIB));
        }
        assertThat(server.exportStats().getFirst().snapshot().oversized()).isEqualTo(5);
    }

    @ParameterizedTest(name = "tls={0}")
    @ValueSource(booleans = {false, true})
    void requestsOver64MiBGetEoverflowAndARefusedPayloadIsReadAndDropped(boolean withTls) throws Exception {
        serve(withTls);
        try (RawNbdClient c = client(withTls, false, false)) {
            assertThat(c.reply(0, CMD_READ, 0, 65 * MIB)).isEqualTo(EOVERFLOW);
            byte[] refused = new byte[65 * MIB];
            Arrays.fill(refused, (byte) 0x5a);
            assertThat(c.writeAndWait(0, refused)).isEqualTo(EOVERFLOW);
            assertThat(c.reply(0, CMD_READ, 1, 64 * MIB)).as("aligned range over 64 MiB").isEqualTo(EOVERFLOW);
            assertThat(c.read(0, 4096)).as("nothing written, connection alive").isEqualTo(new byte[4096]);
            assertOnDisk(c, 0, 2 * MIB);
        }
        assertThat(server.exportStats().getFirst().snapshot().errors()).containsEntry("EOVERFLOW", 3L);
    }

    /**
     * The export offers NBD_FLAG_CAN_MULTI_CONN, so two connections may write disjoint bytes of one
     * block at once: their read-modify-writes must not both read the block as it was and each
     * write back its own bytes over the other's (nbdkit's blocksize filter takes one lock for all).
     * The device holds every bio, so both head reads would be in flight together if nothing
     * serialised them; the second connection's zero-length READ, answered in order after its
     * WRITE was parsed and its payload received, says when it has had its chance to read.
     */
    @Test
    void unalignedWritesFromTwoConnectionsIntoOneBlockKeepBothWrites() throws Exception {
        ProbeDevice dev = serveProbe();
        try (RawNbdClient a = client(false, false, false); RawNbdClient b = client(false, false, false)) {
            bothWriteIntoBlock0WhileAsHeadReadIsHeld(dev, a, b);
            int reads = dev.held.size();
            dev.release(reads); // the head reads in flight see the block as it was
            assertThat(dev.awaitHeld(reads, 5000)).as("their writes").isEqualTo(reads);
            dev.releaseReversed();
            assertThat(a.replyError(1)).isZero();
            assertThat(b.replyError(2)).isZero();
            byte[] head = new byte[32];
            head[10] = 0x11;
            head[20] = 0x22;
            assertThat(Arrays.copyOf(a.read(0, 512), 32)).as("both bytes, from the device").isEqualTo(head);
        }
    }

    /**
     * A connection cut (a bad request magic) while its read-modify-write waits behind another
     * connection's: when its turn comes nothing of it is written, and the device's next
     * read-modify-write, from a third connection, still gets its turn.
     */
    @Test
    void aReadModifyWriteOfAClosedConnectionIsDroppedAndTheNextOneStillRuns() throws Exception {
        ProbeDevice dev = serveProbe();
        try (RawNbdClient a = client(false, false, false); RawNbdClient b = client(false, false, false)) {
            bothWriteIntoBlock0WhileAsHeadReadIsHeld(dev, a, b);
            b.write(java.nio.ByteBuffer.allocate(REQUEST_SIZE)); // no magic: the server cuts b
            assertThat(b.closedByServer()).isTrue();
            dev.releaseReversed();
            assertThat(a.replyError(1)).isZero();
            try (RawNbdClient c = client(false, false, false)) {
                assertThat(c.writeAndWait(30, new byte[] {0x33})).isZero();
                byte[] head = new byte[32];
                head[10] = 0x11;
                head[30] = 0x33;
                assertThat(Arrays.copyOf(c.read(0, 512), 32)).as("a's and c's bytes, not b's").isEqualTo(head);
            }
        }
    }

    @Test
    void clientsThatAskedForBlockSizesKeepTheStrictChecks() throws Exception {
        serve(false);
        try (RawNbdClient c = client(false, false, true)) {
            assertThat(c.reply(0, CMD_READ, 1, 4096)).isEqualTo(EINVAL);
            assertThat(c.writeAndWait(0, new byte[33 * MIB])).isEqualTo(EINVAL);
            assertThat(c.read(0, 512)).hasSize(512);
        }
        // EXPORT_NAME can't ask for anything: the defaults apply.
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
            c.option(OPT_EXPORT_NAME, "disk".getBytes(java.nio.charset.StandardCharsets.UTF_8));
            c.read(10);
            write(c, 7, random(9, 11));
            assertThat(c.read(0, 512)).isEqualTo(Arrays.copyOf(model, 512));
        }
    }
}
