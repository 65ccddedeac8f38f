package io.biostack.nbd;

import io.biostack.block.QueueLimits;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The transmission phase from a raw socket: every command, and every bad-input rule of issue 3
 * (doc/proto.md "Request types", "Error values", "Size constraints", "Command flags").
 */
@Timeout(30)
class NbdTransmissionTest {
    static final int SIZE = 16 << 20;
    static final int MAX_PAYLOAD = 1 << 20;

    @TempDir
    Path dir;
    Path sock;
    ProbeDevice dev;
    RamDisk ro;
    RamDisk big;
    NbdServer server;

    @BeforeEach
    void start() throws Exception {
        sock = dir.resolve("nbd.sock");
        dev = new ProbeDevice(SIZE);
        ro = new RamDisk("ro", 1 << 20, 512, true);
        big = new RamDisk("big4k", 1 << 20, 4096, false);
        server = NbdServer.builder()
                .export(NbdExport.of("disk", dev))
                .export(new NbdExport("ro", "", ro, true))
                .export(NbdExport.of("4k", big))
                .unixSocket(sock)
                .maxPayload(MAX_PAYLOAD)
                .maxInflightBytesPerConnection(4L * MAX_PAYLOAD)
                .maxRequestsPerConnection(8)
                .drainTimeout(Duration.ofSeconds(5))
                .start();
    }

    @AfterEach
    void stop() {
        dev.holding = false;
        dev.releaseReversed();
        server.close();
        dev.close();
        ro.close();
        big.close();
    }

    static byte[] pattern(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }

    RawNbdClient simple() throws IOException {
        return RawNbdClient.open(sock, "disk", false, false);
    }

    RawNbdClient structured() throws IOException {
        return RawNbdClient.open(sock, "disk", true, true);
    }

    // ---- commands ------------------------------------------------------------------------------

    @Test
    void writtenDataReadsBackWithSimpleAndStructuredReplies() throws Exception {
        byte[] data = pattern(64 * 1024, 7);
        try (RawNbdClient c = simple()) {
            assertThat(c.writeAndWait(4096, data)).isZero();
            assertThat(c.read(4096, data.length)).isEqualTo(data);
        }
        try (RawNbdClient c = structured()) {
            assertThat(c.read(4096, data.length)).isEqualTo(data);
        }
    }

    @Test
    void largeWritesAndReadsUpToTheMaximumPayloadRoundTrip() throws Exception {
        byte[] data = pattern(MAX_PAYLOAD, 3);
        try (RawNbdClient c = structured()) {
            assertThat(c.writeAndWait(SIZE - MAX_PAYLOAD, data)).isZero();
            c.request(CMD_FLAG_DF, CMD_READ, 9, SIZE - MAX_PAYLOAD, MAX_PAYLOAD);
            List<RawNbdClient.Reply> r = c.chunks(9);
            assertThat(r).hasSize(1);
            assertThat(r.getFirst().type()).isEqualTo(REPLY_TYPE_OFFSET_DATA);
            assertThat(Arrays.copyOfRange(r.getFirst().payload(), 8, 8 + MAX_PAYLOAD)).isEqualTo(data);
        }
    }

    @Test
    void structuredReadSendsOffsetHoleForHoles() throws Exception {
        try (RawNbdClient c = structured()) {
            byte[] data = pattern(RamDisk.CHUNK, 1);
            assertThat(c.writeAndWait(RamDisk.CHUNK * 2L, data)).isZero();
            c.request(0, CMD_READ, 1, 0, 4 * RamDisk.CHUNK);
            List<RawNbdClient.Reply> r = c.chunks(1);
            assertThat(r).extracting(RawNbdClient.Reply::type)
                    .containsExactly(REPLY_TYPE_OFFSET_HOLE, REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE);
            ByteBuffer hole = r.getFirst().buf();
            assertThat(hole.getLong()).isZero();
            assertThat(hole.getInt()).isEqualTo(2 * RamDisk.CHUNK);
            assertThat(r.get(1).buf().getLong()).isEqualTo(2L * RamDisk.CHUNK);
            assertThat(Arrays.copyOfRange(r.get(1).payload(), 8, 8 + RamDisk.CHUNK)).isEqualTo(data);
            assertThat(c.read(0, 4 * RamDisk.CHUNK)).isEqualTo(concat(new byte[2 * RamDisk.CHUNK], data, new byte[RamDisk.CHUNK]));
            // With DF: one content chunk, zeroes sent as data.
            c.request(CMD_FLAG_DF, CMD_READ, 2, 0, 4 * RamDisk.CHUNK);
            r = c.chunks(2);
            assertThat(r).extracting(RawNbdClient.Reply::type).containsExactly(REPLY_TYPE_OFFSET_DATA);
            // All hole: one OFFSET_HOLE, no I/O.
            int reads = countReads();
            c.request(0, CMD_READ, 3, 8L * RamDisk.CHUNK, 4 * RamDisk.CHUNK);
            assertThat(c.chunks(3)).extracting(RawNbdClient.Reply::type).containsExactly(REPLY_TYPE_OFFSET_HOLE);
            assertThat(countReads()).isEqualTo(reads);
        }
    }

    /**
     * A backup view comes and goes as an export (addExport at backup-begin, removeExport at
     * backup-end); once removed and its clients gone, the server must not keep the device (a view
     * holds its snapshot's tables and a frozen bitmap): a long-running server that kept every
     * view grew with every backup.
     */
    @Test
    void aRemovedExportsDeviceIsNotKeptOnceItsClientsAreGone() throws Exception {
        RamDisk view = new RamDisk("view", 1 << 20);
        java.lang.ref.WeakReference<RamDisk> ref = new java.lang.ref.WeakReference<>(view);
        server.addExport(new NbdExport("view", "backup view", view, true));
        try (RawNbdClient c = RawNbdClient.open(sock, "view", false, false)) {
            assertThat(c.read(0, 4096)).hasSize(4096);
            assertThat(server.removeExport("view")).isTrue();
            assertThat(c.read(4096, 4096)).as("a client of a removed export is still served").hasSize(4096);
        }
        view.close();
        view = null;
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (server.connectionCount() > 0 && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        for (int i = 0; i < 20 && ref.get() != null; i++) {
            System.gc();
        }
        assertThat(ref.get()).as("the removed export's device").isNull();
    }

    /**
     * An error chunk's message is UTF-8 (doc/proto.md, "NBD_REPLY_TYPE_ERROR"); one longer than the
     * 1024 bytes the server sends is cut, and the cut must fall between characters. An export
     * named with 1300 '€' (3 bytes each) makes a TRIM's EPERM message 26 + 3900 bytes, whose byte
     * 1024 is inside a '€'.
     */
    @Test
    void aLongErrorMessageIsCutBetweenUtf8Characters() throws Exception {
        String name = "\u20ac".repeat(1300);
        server.addExport(new NbdExport(name, "", ro, true));
        try (RawNbdClient c = RawNbdClient.open(sock, name, true, false)) {
            c.request(0, CMD_TRIM, 5, 0, 4096);
            RawNbdClient.Reply r = c.chunks(5).getFirst();
            assertThat(r.type()).isEqualTo(REPLY_TYPE_ERROR);
            ByteBuffer b = r.buf();
            assertThat(b.getInt()).isEqualTo(EPERM);
            byte[] msg = new byte[Short.toUnsignedInt(b.getShort())];
            b.get(msg);
            String text = java.nio.charset.StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(msg)).toString(); // throws on a cut character
            assertThat(msg.length).isBetween(1022, 1024);
            assertThat(text).startsWith("TRIM on read-only export '\u20ac\u20ac").endsWith("\u20ac");
        }
    }

    /**
     * A READ across 32 alternating holes and data runs, the most the hole probe splits a READ
     * into (NbdRequest.MAX_RUNS): its reply is 32 chunks, 16 with data, and must go out. It
     * never did: a batch was thought to need two pieces per run (65 > 64), so no batch had room
     * for it and the client waited for ever.
     */
    @Test
    void structuredReadOfThirtyTwoRunsIsAnswered() throws Exception {
        Path s2 = dir.resolve("runs.sock");
        int n = NbdRequest.MAX_RUNS;
        try (RamDisk disk = new RamDisk("runs", 4L << 20);
             NbdServer srv = NbdServer.builder().export(NbdExport.of("runs", disk)).unixSocket(s2)
                     .maxPayload(n * RamDisk.CHUNK).start();
             RawNbdClient c = RawNbdClient.open(s2, "runs", true, false)) {
            byte[] expect = new byte[n * RamDisk.CHUNK];
            for (int i = 1; i < n; i += 2) {
                byte[] data = pattern(RamDisk.CHUNK, i);
                assertThat(c.writeAndWait((long) i * RamDisk.CHUNK, data)).isZero();
                System.arraycopy(data, 0, expect, i * RamDisk.CHUNK, data.length);
            }
            c.request(0, CMD_READ, 9, 0, expect.length);
            CompletableFuture<List<RawNbdClient.Reply>> reply = CompletableFuture.supplyAsync(() -> {
                try {
                    return c.chunks(9);
                } catch (IOException e) {
                    throw new RuntimeException(e);
                }
            });
            List<RawNbdClient.Reply> r = reply.get(5, java.util.concurrent.TimeUnit.SECONDS);
            assertThat(r).hasSize(n);
            assertThat(r).extracting(RawNbdClient.Reply::type).containsOnly(REPLY_TYPE_OFFSET_HOLE, REPLY_TYPE_OFFSET_DATA);
            assertThat(c.read(0, expect.length)).isEqualTo(expect);
        }
    }

    /**
     * The hole probe of a structured READ fails (a qcow2 image whose L2 table can't be read throws
     * from extentAt): the READ is served as plain data, as BLOCK_STATUS answers EIO. The exception
     * went up through the reactor, the request was never answered and the client waited for ever.
     */
    @Test
    void structuredReadWhoseHoleProbeFailsIsStillAnswered() throws Exception {
        byte[] data = pattern(RamDisk.CHUNK, 3);
        try (RawNbdClient c = structured()) {
            assertThat(c.writeAndWait(0, data)).isZero();
            dev.extentFailure = new java.io.UncheckedIOException(new IOException("L2 table unreadable"));
            CompletableFuture<byte[]> read = CompletableFuture.supplyAsync(() -> {
                try {
                    return c.read(0, 2 * RamDisk.CHUNK);
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            assertThat(read.get(5, java.util.concurrent.TimeUnit.SECONDS)).isEqualTo(concat(data, new byte[RamDisk.CHUNK]));
        }
    }

    int countReads() {
        return (int) dev.log.stream().filter(s -> s.startsWith("READ")).count();
    }

    static byte[] concat(byte[]... parts) {
        ByteBuffer b = ByteBuffer.allocate(Arrays.stream(parts).mapToInt(p -> p.length).sum());
        for (byte[] p : parts) {
            b.put(p);
        }
        return b.array();
    }

    @Test
    void fuaWritesAndTrimsReachTheDeviceWithFua() throws Exception {
        try (RawNbdClient c = simple()) {
            long cookie = 5;
            c.write(CMD_FLAG_FUA, cookie, 0, new byte[4096]);
            assertThat(c.replyError(cookie)).isZero();
            assertThat(c.command(CMD_FLAG_FUA, CMD_TRIM, 0, 4096)).isZero();
            assertThat(c.command(CMD_FLAG_FUA | CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 0, 4096)).isZero();
            assertThat(c.command(0, CMD_FLUSH, 0, 0)).isZero();
        }
        assertThat(dev.log).contains("WRITE FUA 0 4096", "DISCARD FUA 0 4096", "WRITE_ZEROES FUA|NOUNMAP 0 4096", "FLUSH - 0 0");
    }

    @Test
    void writeZeroesAndTrimReadBackAsZeroes() throws Exception {
        try (RawNbdClient c = simple()) {
            assertThat(c.writeAndWait(0, pattern(1 << 20, 9))).isZero();
            assertThat(c.command(0, CMD_WRITE_ZEROES, 0, 8192)).isZero();
            assertThat(c.command(CMD_FLAG_FAST_ZERO, CMD_WRITE_ZEROES, 8192, 8192)).isZero();
            assertThat(c.command(0, CMD_TRIM, 2 * RamDisk.CHUNK, RamDisk.CHUNK)).isZero();
            assertThat(c.read(0, 16384)).isEqualTo(new byte[16384]);
            assertThat(c.read(2L * RamDisk.CHUNK, RamDisk.CHUNK)).isEqualTo(new byte[RamDisk.CHUNK]);
        }
    }

    @Test
    void cacheIsAnsweredOk() throws Exception {
        try (RawNbdClient c = simple()) {
            assertThat(c.command(0, CMD_CACHE, 0, 1 << 20)).isZero();
            assertThat(c.command(0, CMD_CACHE, SIZE, 4096)).isEqualTo(EINVAL);
        }
    }

    @Test
    void blockStatusReportsHolesAndDataAndReqOneGivesOneExtent() throws Exception {
        try (RawNbdClient c = structured()) {
            assertThat(c.writeAndWait(RamDisk.CHUNK, new byte[4096])).isZero();
            c.request(0, CMD_BLOCK_STATUS, 1, 0, 4 * RamDisk.CHUNK);
            List<RawNbdClient.Reply> r = c.chunks(1);
            assertThat(r).hasSize(1);
            assertThat(r.getFirst().type()).isEqualTo(REPLY_TYPE_BLOCK_STATUS);
            ByteBuffer b = r.getFirst().buf();
            assertThat(b.getInt()).isEqualTo(BASE_ALLOCATION_ID);
            assertThat(b.remaining()).isEqualTo(3 * 8);
            assertThat(new long[] {b.getInt(), b.getInt(), b.getInt(), b.getInt(), b.getInt(), b.getInt()})
                    .containsExactly(RamDisk.CHUNK, 3, RamDisk.CHUNK, 0, 2 * RamDisk.CHUNK, 3);
            c.request(CMD_FLAG_REQ_ONE, CMD_BLOCK_STATUS, 2, 0, 4 * RamDisk.CHUNK);
            b = c.chunks(2).getFirst().buf();
            b.getInt();
            assertThat(b.remaining()).isEqualTo(8);
            assertThat(b.getInt()).isEqualTo(RamDisk.CHUNK);
        }
    }

    @Test
    void requestsAreAnsweredOutOfOrderAsTheyComplete() throws Exception {
        dev.holding = true;
        try (RawNbdClient c = simple()) {
            for (int i = 1; i <= 4; i++) {
                c.write(0, i, i * 4096L, pattern(4096, i));
            }
            assertThat(dev.awaitHeld(4, 5000)).isEqualTo(4);
            dev.releaseReversed();
            List<Long> order = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                RawNbdClient.Reply r = c.reply(0);
                assertThat(r.error()).isZero();
                order.add(r.cookie());
            }
            assertThat(order).containsExactly(4L, 3L, 2L, 1L);
        }
    }

    @Test
    void requestsInFlightAreLimitedPerConnection() throws Exception {
        dev.holding = true;
        try (RawNbdClient c = simple()) {
            for (int i = 0; i < 20; i++) {
                c.request(0, CMD_READ, i, 0, 4096);
            }
            assertThat(dev.awaitHeld(20, 500)).isEqualTo(8);
            dev.releaseReversed();
            Set<Long> cookies = new HashSet<>();
            for (int i = 0; i < 20; i++) {
                RawNbdClient.Reply r = c.reply(4096);
                assertThat(r.error()).isZero();
                cookies.add(r.cookie());
            }
            assertThat(cookies).hasSize(20);
        }
    }

    @Test
    void payloadBytesInFlightAreLimitedPerConnection() throws Exception {
        dev.holding = true;
        try (RawNbdClient c = simple()) {
            for (int i = 0; i < 6; i++) {
                c.request(0, CMD_READ, i, 0, MAX_PAYLOAD);
            }
            assertThat(dev.awaitHeld(6, 500)).as("4 MiB budget, 1 MiB each").isEqualTo(4);
            dev.releaseReversed();
            for (int i = 0; i < 6; i++) {
                assertThat(c.reply(MAX_PAYLOAD).error()).isZero();
            }
        }
    }

    @Test
    void deviceErrorsBecomeNbdErrors() throws Exception {
        try (RawNbdClient c = structured()) {
            dev.failWith = Status.MEDIUM;
            c.request(0, CMD_READ, 1, 0, 4096);
            RawNbdClient.Reply r = c.chunks(1).getFirst();
            assertThat(r.type()).isEqualTo(REPLY_TYPE_ERROR);
            assertThat(r.errorCode()).isEqualTo(EIO);
            dev.failWith = Status.NOSPC;
            assertThat(c.writeAndWait(0, new byte[4096])).isEqualTo(ENOSPC);
            dev.failWith = Status.CANCELLED;
            assertThat(c.command(0, CMD_FLUSH, 0, 0)).isEqualTo(ESHUTDOWN);
            dev.failWith = null;
            assertThat(c.writeAndWait(0, new byte[4096])).isZero();
        }
    }

    // ---- bad input -------------------------------------------------------------------------------

    @Test
    void readsAndTrimsPastTheEndAreEinval() throws Exception {
        try (RawNbdClient c = structured()) {
            assertThat(c.command(0, CMD_READ, SIZE - 4096, 8192)).isEqualTo(EINVAL);
            assertThat(c.command(0, CMD_READ, SIZE, 512)).isEqualTo(EINVAL);
            assertThat(c.command(0, CMD_READ, -512L, 512)).isEqualTo(EINVAL);
            assertThat(c.command(0, CMD_TRIM, SIZE - 512, 1024)).isEqualTo(EINVAL);
            c.request(0, CMD_BLOCK_STATUS, 7, SIZE, 512);
            assertThat(c.replyError(7)).isEqualTo(EINVAL);
        }
        try (RawNbdClient c = simple()) {
            assertThat(c.reply(0, CMD_READ, SIZE, 4096)).isEqualTo(EINVAL);
        }
        // Every one of them is counted on its export, by command and by error (for /metrics).
        ExportStats.Snapshot s = server.exportStats().getFirst().snapshot();
        assertThat(s.export()).isEqualTo("disk");
        assertThat(s.requests()).containsEntry("read", 4L).containsEntry("trim", 1L).containsEntry("block_status", 1L);
        assertThat(s.errors()).containsEntry("EINVAL", 6L);
        assertThat(s.opened()).isEqualTo(2);
    }

    @Test
    void writesAndWriteZeroesPastTheEndAreEnospcAndWriteNothing() throws Exception {
        try (RawNbdClient c = simple()) {
            assertThat(c.writeAndWait(SIZE - 4096, pattern(8192, 1))).isEqualTo(ENOSPC);
            assertThat(c.command(0, CMD_WRITE_ZEROES, SIZE, 4096)).isEqualTo(ENOSPC);
            assertThat(c.read(SIZE - 4096, 4096)).isEqualTo(new byte[4096]);
            assertThat(c.writeAndWait(SIZE - 4096, pattern(4096, 2))).as("last block").isZero();
            assertThat(c.read(SIZE - 4096, 4096)).isEqualTo(pattern(4096, 2));
        }
        assertThat(dev.log).noneMatch(s -> s.startsWith("WRITE") && s.endsWith(" 8192"));
    }

    @Test
    void changesToAReadOnlyExportAreEperm() throws Exception {
        try (RawNbdClient c = RawNbdClient.open(sock, "ro", true, false)) {
            assertThat(c.transmissionFlags & FLAG_READ_ONLY).isNotZero();
            assertThat(c.writeAndWait(0, new byte[4096])).isEqualTo(EPERM);
            assertThat(c.command(0, CMD_TRIM, 0, 4096)).isEqualTo(EPERM);
            assertThat(c.command(0, CMD_WRITE_ZEROES, 0, 4096)).isEqualTo(EPERM);
            assertThat(c.read(0, 4096)).hasSize(4096);
            assertThat(c.command(0, CMD_FLUSH, 0, 0)).isZero();
        }
    }

    @Test
    void unknownCommandsAndFlagsAndFlagsOnTheWrongCommandAreEinval() throws Exception {
        try (RawNbdClient c = structured()) {
            assertThat(c.command(0, 99, 0, 4096)).as("unknown command").isEqualTo(EINVAL);
            assertThat(c.command(1 << 9, CMD_READ, 0, 4096)).as("unknown flag").isEqualTo(EINVAL);
            assertThat(c.command(CMD_FLAG_REQ_ONE, CMD_READ, 0, 4096)).as("REQ_ONE on READ").isEqualTo(EINVAL);
            assertThat(c.command(CMD_FLAG_NO_HOLE, CMD_TRIM, 0, 4096)).as("NO_HOLE on TRIM").isEqualTo(EINVAL);
            assertThat(c.command(CMD_FLAG_DF, CMD_BLOCK_STATUS, 0, 4096)).as("DF on BLOCK_STATUS").isEqualTo(EINVAL);
            assertThat(c.command(CMD_FLAG_FAST_ZERO, CMD_CACHE, 0, 4096)).as("FAST_ZERO on CACHE").isEqualTo(EINVAL);
            long cookie = 77;
            c.write(CMD_FLAG_DF, cookie, 0, pattern(4096, 1));
            assertThat(c.replyError(cookie)).as("DF on WRITE; payload skipped").isEqualTo(EINVAL);
            assertThat(c.command(0, CMD_FLUSH, 4096, 0)).as("FLUSH with offset").isEqualTo(EINVAL);
            assertThat(c.command(0, CMD_FLUSH, 0, 512)).as("FLUSH with length").isEqualTo(EINVAL);
            assertThat(c.read(0, 4096)).as("nothing written, session goes on").isEqualTo(new byte[4096]);
        }
        try (RawNbdClient c = simple()) {
            assertThat(c.reply(CMD_FLAG_DF, CMD_READ, 0, 4096)).as("DF without structured replies").isEqualTo(EINVAL);
            assertThat(c.command(0, CMD_BLOCK_STATUS, 0, 4096)).as("BLOCK_STATUS without a context").isEqualTo(EINVAL);
        }
    }

    @Test
    void zeroLengthRequestsAreAnsweredNotDisconnected() throws Exception {
        try (RawNbdClient c = structured()) {
            c.request(0, CMD_READ, 1, 0, 0);
            assertThat(c.chunks(1)).extracting(RawNbdClient.Reply::type).containsExactly(REPLY_TYPE_NONE);
            assertThat(c.writeAndWait(0, new byte[0])).isZero();
            assertThat(c.command(0, CMD_TRIM, 0, 0)).isZero();
            assertThat(c.command(0, CMD_WRITE_ZEROES, 0, 0)).isZero();
            assertThat(c.command(0, CMD_CACHE, 0, 0)).isZero();
            assertThat(c.command(0, CMD_BLOCK_STATUS, 0, 0)).isEqualTo(EINVAL);
            assertThat(c.read(0, 512)).hasSize(512);
        }
        try (RawNbdClient c = simple()) {
            assertThat(c.reply(0, CMD_READ, 0, 0)).isZero();
            assertThat(c.read(0, 512)).hasSize(512);
        }
    }

    @Test
    void requestsMisalignedToTheAdvertisedMinimumAreEinval() throws Exception {
        try (RawNbdClient c = RawNbdClient.open(sock, "4k", true, false)) {
            assertThat(c.minBlock).isEqualTo(4096);
            assertThat(c.command(0, CMD_READ, 512, 4096)).isEqualTo(EINVAL);
            assertThat(c.command(0, CMD_READ, 0, 512)).isEqualTo(EINVAL);
            assertThat(c.writeAndWait(512, new byte[4096])).isEqualTo(EINVAL);
            assertThat(c.command(0, CMD_TRIM, 4096, 1000)).isEqualTo(EINVAL);
            assertThat(c.command(0, CMD_WRITE_ZEROES, 100, 4096)).isEqualTo(EINVAL);
            assertThat(c.read(0, 8192)).isEqualTo(new byte[8192]);
        }
    }

    @Test
    void readsOverTheMaximumPayloadAreEinvalWithoutData() throws Exception {
        try (RawNbdClient c = simple()) {
            assertThat(c.reply(0, CMD_READ, 0, MAX_PAYLOAD + 4096)).isEqualTo(EINVAL);
            assertThat(c.read(0, 4096)).hasSize(4096);
        }
    }

    @Test
    void writesOverTheMaximumPayloadAreReadAndDiscardedThenEinval() throws Exception {
        try (RawNbdClient c = simple()) {
            assertThat(c.writeAndWait(0, pattern(2 * MAX_PAYLOAD, 5))).isEqualTo(EINVAL);
            assertThat(c.read(0, 4096)).as("nothing written").isEqualTo(new byte[4096]);
        }
    }

    @Test
    void writesFarOverTheMaximumPayloadDisconnectWithoutReadingAndOthersGoOn() throws Exception {
        try (RawNbdClient c = simple()) {
            c.request(0, CMD_WRITE, 1, 0, 0xffff_f000L);
            c.write(ByteBuffer.wrap(new byte[8192]));
            assertThat(c.closedByServer()).isTrue();
        }
        try (RawNbdClient c = simple()) {
            assertThat(c.read(0, 4096)).hasSize(4096);
        }
    }

    @Test
    void fastZeroOnADeviceThatCannotZeroIsEnotsupAndChangesNothing() throws Exception {
        Path s2 = dir.resolve("nz.sock");
        QueueLimits noZeroes = QueueLimits.builder().logicalBlockSize(512).physicalBlockSize(4096)
                .maxDiscardBytes(Long.MAX_VALUE).discardGranularity(512).fua(true).build();
        ProbeDevice slow = new ProbeDevice(1 << 20, noZeroes);
        try (NbdServer s = NbdServer.builder().export("x", slow).unixSocket(s2).start();
             RawNbdClient c = RawNbdClient.open(s2, "x", false, false)) {
            assertThat(c.transmissionFlags & FLAG_SEND_WRITE_ZEROES).isNotZero();
            assertThat(c.writeAndWait(0, pattern(8192, 4))).isZero();
            assertThat(c.command(CMD_FLAG_FAST_ZERO, CMD_WRITE_ZEROES, 0, 8192)).isEqualTo(ENOTSUP);
            assertThat(c.read(0, 8192)).isEqualTo(pattern(8192, 4));
            assertThat(c.command(0, CMD_WRITE_ZEROES, 0, 8192)).as("written as zeros instead").isZero();
            assertThat(c.read(0, 8192)).isEqualTo(new byte[8192]);
        } finally {
            slow.close();
        }
    }

    @Test
    void aClientThatVanishesMidRequestDoesNotDisturbOthers() throws Exception {
        try (RawNbdClient c = simple()) {
            c.request(0, CMD_WRITE, 1, 0, 65536);
            c.write(ByteBuffer.wrap(new byte[1000]));
        }
        try (RawNbdClient c = simple()) {
            c.write(ByteBuffer.allocate(13).put((byte) 0x25)); // half a header
        }
        try (RawNbdClient c = simple()) {
            assertThat(c.writeAndWait(0, pattern(4096, 1))).isZero();
            assertThat(c.read(0, 4096)).isEqualTo(pattern(4096, 1));
        }
        long end = System.currentTimeMillis() + 5000;
        while (server.connectionCount() > 0 && System.currentTimeMillis() < end) {
            Thread.sleep(10);
        }
        assertThat(server.connectionCount()).isZero();
    }

    /**
     * A client whose connection ends (here by a bad magic) while unaligned WRITEs wait their turn
     * behind a read-modify-write in flight: each is given back with its buffer, none is written.
     * Only the first waiting one was: the rest kept their payload buffers (registered with the
     * ring, pinned) for ever.
     */
    @Test
    void readModifyWritesWaitingWhenTheConnectionEndsAreAllGivenBack() throws Exception {
        try (RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
            assertThat(c.go(OPT_GO, "disk").getLast().type()).isEqualTo(REP_ACK); // no block sizes: lenient
            c.writeAndWait(0, pattern(4096, 1)); // the pool is warm
            dev.holding = true;
            for (int i = 0; i < 4; i++) {
                c.write(0, 10 + i, 100 + 1000L * i, pattern(10, i)); // unaligned: read-modify-write
            }
            assertThat(dev.awaitHeld(1, 5000)).isEqualTo(1); // the first one's head read
            c.write(ByteBuffer.allocate(28).putInt(0, 0x12345678));
            assertThat(c.closedByServer()).isTrue();
            dev.releaseReversed();
        }
        long end = System.currentTimeMillis() + 5000;
        while (server.connectionCount() > 0 && System.currentTimeMillis() < end) {
            Thread.sleep(10);
        }
        Thread.sleep(100);
        assertThat(server.payloadBuffersOut()).isZero();
        assertThat(dev.log.stream().filter(s -> s.startsWith("WRITE")).count()).as(dev.log.toString()).isEqualTo(1);
    }

    @Test
    void badRequestMagicDisconnects() throws Exception {
        try (RawNbdClient c = simple()) {
            c.write(ByteBuffer.allocate(28).putInt(0, 0x12345678));
            assertThat(c.closedByServer()).isTrue();
        }
    }

    @Test
    void discAnswersWhatIsInFlightThenCloses() throws Exception {
        dev.holding = true;
        try (RawNbdClient c = simple()) {
            c.write(0, 1, 0, pattern(4096, 1));
            assertThat(dev.awaitHeld(1, 5000)).isEqualTo(1);
            c.disconnect();
            Thread.sleep(50);
            dev.releaseReversed();
            assertThat(c.replyError(1)).isZero();
            assertThat(c.closedByServer()).isTrue();
        }
    }

    // ---- shutdown and sockets -------------------------------------------------------------------

    @Test
    void closeAnswersRequestsInFlightFlushesAndRemovesTheSocket() throws Exception {
        dev.holding = true;
        try (RawNbdClient c = simple()) {
            c.write(0, 1, 0, pattern(4096, 1));
            assertThat(dev.awaitHeld(1, 5000)).isEqualTo(1);
            CompletableFuture<Void> closing = CompletableFuture.runAsync(server::close);
            Thread.sleep(100);
            assertThat(closing).isNotDone();
            dev.holding = false;
            dev.release(1);
            assertThat(c.replyError(1)).isZero();
            closing.get();
            assertThat(c.closedByServer()).isTrue();
        }
        assertThat(dev.flushes.get()).isPositive();
        assertThat(Files.exists(sock)).isFalse();
        assertThat(dev.ram.read(0, java.lang.foreign.MemorySegment.ofArray(new byte[4096]))).succeedsWithin(Duration.ofSeconds(1));
    }

    @Test
    void aSocketPathInUseGetsAClearMessage() {
        assertThatThrownBy(() -> NbdServer.builder().export("x", dev).unixSocket(sock).start())
                .isInstanceOf(IOException.class)
                .hasMessageContaining(sock.toString())
                .hasMessageContaining("in use");
    }

    @Test
    void aStaleSocketFileIsReplaced() throws Exception {
        Path stale = dir.resolve("stale.sock");
        try (NbdServer s = NbdServer.builder().export("x", dev).unixSocket(stale).start()) {
            assertThat(s.unixSocket()).isEqualTo(stale);
        }
        // simulate a server that died: a socket file nobody listens on
        try (var ch = java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            ch.bind(java.net.UnixDomainSocketAddress.of(stale));
        }
        assertThat(Files.exists(stale)).isTrue();
        try (NbdServer s = NbdServer.builder().export("x", dev).unixSocket(stale).start();
             RawNbdClient c = RawNbdClient.open(stale, "x", false, false)) {
            assertThat(c.read(0, 512)).hasSize(512);
        }
    }

    @Test
    void aTcpPortInUseGetsAClearMessage() throws Exception {
        try (NbdServer tcp = NbdServer.builder().export("x", dev).tcp("127.0.0.1", 0).start()) {
            int port = tcp.tcpAddress().getPort();
            assertThatThrownBy(() -> NbdServer.builder().export("x", dev).tcp("127.0.0.1", port).start())
                    .isInstanceOf(IOException.class)
                    .hasMessageContaining("127.0.0.1:" + port)
                    .hasMessageContaining("in use");
        }
    }
}
