package io.biostack.nbd.client;

import io.biostack.nbd.proto.NbdProtocol;
import io.biostack.block.Bio;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;
import io.biostack.nbd.NbdExport;
import io.biostack.nbd.NbdServer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.DataOutputStream;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Faults between the leaf and its server, made on loopback by a proxy that cuts or stalls the
 * connections, by a server that goes away and comes back, and by scripted servers that break the
 * protocol. Every wait is bounded; no bio may hang.
 */
@Timeout(60)
class NbdClientFaultTest {
    static final long SIZE = 8L << 20;

    RamDisk ram;
    NbdServer server;
    TcpProxy proxy;
    Arena arena;

    @BeforeEach
    void start() throws Exception {
        ram = new RamDisk("ram", SIZE);
        server = NbdServer.builder().export(NbdExport.of("disk", ram)).tcp("127.0.0.1", 0).start();
        proxy = new TcpProxy(server.tcpAddress());
        arena = Arena.ofShared();
    }

    @AfterEach
    void stop() {
        proxy.close();
        server.close();
        ram.close();
        arena.close();
    }

    NbdClient viaProxy(Duration timeout) throws Exception {
        return NbdClient.open("remote", NbdUri.parse("nbd://127.0.0.1:" + proxy.port() + "/disk"),
                NbdClient.Options.defaults().withTimeout(timeout));
    }

    MemorySegment pattern(long n, long seed) {
        MemorySegment m = arena.allocate(n, 4096);
        Random r = new Random(seed);
        for (long i = 0; i < n; i += 8) {
            m.set(ValueLayout.JAVA_LONG_UNALIGNED, i, r.nextLong());
        }
        return m;
    }

    /** Submits a bio and returns its status (and detail) when it completes. */
    CompletableFuture<Bio> submit(NbdClient c, Op op, long off, MemorySegment mem) {
        CompletableFuture<Bio> f = new CompletableFuture<>();
        Bio b = new Bio().init(op, 0, off, f::complete);
        b.addSegment(mem);
        c.submit(b);
        return f;
    }

    @Test
    void connectionsCutUnderLoadAreReissuedAndNothingIsLost() throws Exception {
        try (NbdClient c = viaProxy(Duration.ofSeconds(20))) {
            MemorySegment data = pattern(SIZE, 1);
            List<CompletableFuture<Bio>> fs = new ArrayList<>();
            int blocks = (int) (SIZE / 4096);
            for (int i = 0; i < blocks; i++) {
                fs.add(submit(c, Op.WRITE, i * 4096L, data.asSlice(i * 4096L, 4096)));
                if (i % 500 == 250) {
                    proxy.cutAll();
                }
            }
            for (CompletableFuture<Bio> f : fs) {
                Bio b = f.get(20, TimeUnit.SECONDS);
                assertThat(b.status()).as("%s", b.detail()).isEqualTo(Status.OK);
            }
            MemorySegment back = arena.allocate(SIZE, 4096);
            ram.read(0, back).get(5, TimeUnit.SECONDS);
            assertThat(back.mismatch(data)).isEqualTo(-1);
            proxy.cutAll();
            MemorySegment r = arena.allocate(SIZE, 4096);
            c.read(0, r).get(20, TimeUnit.SECONDS);
            assertThat(r.mismatch(data)).isEqualTo(-1);
        }
    }

    @Test
    void aStallShorterThanTheTimeoutDelaysButFailsNothing() throws Exception {
        try (NbdClient c = viaProxy(Duration.ofSeconds(20))) {
            MemorySegment data = pattern(64 * 1024, 2);
            proxy.stall(true);
            CompletableFuture<Bio> w = submit(c, Op.WRITE, 0, data);
            Thread.sleep(1500);
            assertThat(w).isNotDone();
            proxy.stall(false);
            assertThat(w.get(15, TimeUnit.SECONDS).status()).isEqualTo(Status.OK);
            MemorySegment back = arena.allocate(64 * 1024, 4096);
            ram.read(0, back).get(5, TimeUnit.SECONDS);
            assertThat(back.mismatch(data)).isEqualTo(-1);
        }
    }

    @Test
    void aStallPastTheTimeoutFailsWithTimeoutThenTheLeafRecovers() throws Exception {
        try (NbdClient c = viaProxy(Duration.ofMillis(1500))) {
            proxy.stall(true);
            long t0 = System.nanoTime();
            MemorySegment buf = pattern(4096, 3);
            Bio b = submit(c, Op.READ, 0, buf).get(10, TimeUnit.SECONDS);
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertThat(b.status()).isEqualTo(Status.TIMEOUT);
            assertThat(b.detail()).contains("nbd://127.0.0.1:" + proxy.port() + "/disk").contains("no reply within");
            assertThat(ms).isBetween(1400L, 5000L);
            assertThat(buf.mismatch(pattern(4096, 3))).as("a timed-out read leaves the buffer alone").isEqualTo(-1);
            proxy.stall(false);
            proxy.cutAll();
            MemorySegment data = pattern(4096, 4);
            assertThat(submit(c, Op.WRITE, 4096, data).get(10, TimeUnit.SECONDS).status()).isEqualTo(Status.OK);
        }
    }

    @Test
    void aServerGoneForGoodFailsBiosWithTimeoutNamingTheUriAndComesBackWhenItDoes() throws Exception {
        try (NbdClient c = viaProxy(Duration.ofSeconds(1))) {
            proxy.refuse(true);
            proxy.cutAll();
            Bio b = submit(c, Op.READ, 0, arena.allocate(4096, 4096)).get(10, TimeUnit.SECONDS);
            assertThat(b.status()).isEqualTo(Status.TIMEOUT);
            assertThat(b.detail()).contains("nbd://127.0.0.1:" + proxy.port() + "/disk");
            assertThat(c.isConnected()).isFalse();
            proxy.refuse(false);
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (!c.isConnected() && System.nanoTime() < end) {
                Thread.sleep(20);
            }
            assertThat(c.isConnected()).as("reconnected by itself").isTrue();
            assertThat(submit(c, Op.READ, 0, arena.allocate(4096, 4096)).get(10, TimeUnit.SECONDS).status())
                    .isEqualTo(Status.OK);
        }
    }

    @Test
    void aServerRestartedOnTheSameAddressIsReconnected() throws Exception {
        try (NbdClient c = viaProxy(Duration.ofSeconds(10))) {
            MemorySegment data = pattern(4096, 5);
            c.write(0, data).get(5, TimeUnit.SECONDS);
            InetSocketAddress a = server.tcpAddress();
            server.close();
            CompletableFuture<Bio> w = submit(c, Op.WRITE, 8192, data);
            Thread.sleep(300);
            server = NbdServer.builder().export(NbdExport.of("disk", ram)).tcp("127.0.0.1", a.getPort()).start();
            assertThat(w.get(10, TimeUnit.SECONDS).status()).isEqualTo(Status.OK);
            MemorySegment back = arena.allocate(4096, 4096);
            ram.read(8192, back).get(5, TimeUnit.SECONDS);
            assertThat(back.mismatch(data)).isEqualTo(-1);
        }
    }

    // ---- servers that break the protocol -----------------------------------------------------

    Bio againstBadServer(BadServer.Answer answer, Op op) throws Exception {
        try (BadServer bad = new BadServer(answer);
             NbdClient c = NbdClient.open("bad", NbdUri.parse(bad.uri()),
                     NbdClient.Options.defaults().withTimeout(Duration.ofSeconds(3)))) {
            MemorySegment buf = pattern(4096, 6);
            Bio b = submit(c, op, 0, buf).get(10, TimeUnit.SECONDS);
            assertThat(buf.mismatch(pattern(4096, 6))).as("nothing written into the caller's buffer").isEqualTo(-1);
            return b;
        }
    }

    @Test
    void garbageInsteadOfAReplyFailsTheBioWithIoError() throws Exception {
        Bio b = againstBadServer((out, cookie, type, off, len) -> out.writeLong(0x0123456789abcdefL), Op.READ);
        assertThat(b.status()).isEqualTo(Status.IOERR);
        assertThat(b.detail()).contains("garbage where a reply should be");
    }

    @Test
    void aReplyToACookieNeverSentFailsTheBio() throws Exception {
        Bio b = againstBadServer((out, cookie, type, off, len) -> {
            out.writeInt(NbdProtocol.SIMPLE_REPLY_MAGIC);
            out.writeInt(0);
            out.writeLong(cookie ^ 0x5555_0000_0000L);
        }, Op.READ);
        assertThat(b.status()).isEqualTo(Status.IOERR);
        assertThat(b.detail()).contains("never sent");
    }

    @Test
    void anOversizedReadReplyIsRefusedWithoutTouchingTheBuffer() throws Exception {
        Bio b = againstBadServer((out, cookie, type, off, len) -> {
            dataChunk(out, NbdProtocol.REPLY_FLAG_DONE, cookie, off, new byte[1 << 20], 0, 1 << 20);
        }, Op.READ);
        assertThat(b.status()).isEqualTo(Status.IOERR);
        assertThat(b.detail()).contains("OFFSET_DATA");
    }

    /** Writes an NBD_REPLY_TYPE_OFFSET_DATA chunk of {@code data[from, from + n)} at {@code offset}. */
    static void dataChunk(DataOutputStream out, int flags, long cookie, long offset, byte[] data, int from, int n)
            throws IOException {
        out.writeInt(NbdProtocol.STRUCTURED_REPLY_MAGIC);
        out.writeShort(flags);
        out.writeShort(NbdProtocol.REPLY_TYPE_OFFSET_DATA);
        out.writeLong(cookie);
        out.writeInt(8 + n);
        out.writeLong(offset);
        out.write(data, from, n);
    }

    /** Writes an NBD_REPLY_TYPE_OFFSET_HOLE chunk of {@code n} bytes at {@code offset}. */
    static void holeChunk(DataOutputStream out, int flags, long cookie, long offset, int n) throws IOException {
        out.writeInt(NbdProtocol.STRUCTURED_REPLY_MAGIC);
        out.writeShort(flags);
        out.writeShort(NbdProtocol.REPLY_TYPE_OFFSET_HOLE);
        out.writeLong(cookie);
        out.writeInt(12);
        out.writeLong(offset);
        out.writeInt(n);
    }

    @Test
    void aReadReplyThatEndsInSuccessWithoutAllItsDataFailsTheBio() throws Exception {
        // The first 512 bytes come (the very bytes the buffer holds, so the helper's check of the
        // buffer still speaks for the rest), then a final NONE chunk: "success" with 3584 bytes
        // never sent, which the caller would otherwise take for data.
        byte[] data = pattern(4096, 6).toArray(ValueLayout.JAVA_BYTE);
        Bio b = againstBadServer((out, cookie, type, off, len) -> {
            dataChunk(out, 0, cookie, off, data, 0, 512);
            out.writeInt(NbdProtocol.STRUCTURED_REPLY_MAGIC);
            out.writeShort(NbdProtocol.REPLY_FLAG_DONE);
            out.writeShort(NbdProtocol.REPLY_TYPE_NONE);
            out.writeLong(cookie);
            out.writeInt(0);
        }, Op.READ);
        assertThat(b.status()).isEqualTo(Status.IOERR);
        assertThat(b.detail()).contains("as a success with 512 bytes");
    }

    @Test
    void aReadReplyWhoseChunksOverlapFailsTheBioEvenWhenTheirLengthsAddUp() throws Exception {
        // Two OFFSET_DATA chunks for the same first half (again the bytes the buffer holds): 4096
        // bytes described, as many as asked, yet the second half never came. doc/proto.md
        // (NBD_REPLY_TYPE_OFFSET_DATA): chunks "MUST NOT overlap with the bounds of any earlier
        // content chunk".
        byte[] data = pattern(4096, 6).toArray(ValueLayout.JAVA_BYTE);
        Bio b = againstBadServer((out, cookie, type, off, len) -> {
            dataChunk(out, 0, cookie, off, data, 0, 2048);
            dataChunk(out, NbdProtocol.REPLY_FLAG_DONE, cookie, off, data, 0, 2048);
        }, Op.READ);
        assertThat(b.status()).isEqualTo(Status.IOERR);
        assertThat(b.detail()).contains("overlap");
    }

    @Test
    void aReadReplyInOrderUntilAChunkGoesBackOverItFails() throws Exception {
        // [0, 2048) and [2048, 3072) in order, then [1024, 2048) again: 4096 bytes described,
        // [3072, 4096) never sent. The in-order prefix must count in the check made once a chunk
        // goes back.
        byte[] data = pattern(4096, 6).toArray(ValueLayout.JAVA_BYTE);
        Bio b = againstBadServer((out, cookie, type, off, len) -> {
            dataChunk(out, 0, cookie, off, data, 0, 2048);
            dataChunk(out, 0, cookie, off + 2048, data, 2048, 1024);
            dataChunk(out, NbdProtocol.REPLY_FLAG_DONE, cookie, off + 1024, data, 1024, 1024);
        }, Op.READ);
        assertThat(b.status()).isEqualTo(Status.IOERR);
        assertThat(b.detail()).contains("overlap");
    }

    @Test
    void aReadReplyInChunksOutOfOrderWithAHoleSucceeds() throws Exception {
        // Content chunks "MAY be sent in any order": the first 1024 bytes, the last 1024, then
        // the hole between (an in-order start, then a jump: both parts of the cover count).
        byte[] all = pattern(4096, 6).toArray(ValueLayout.JAVA_BYTE);
        java.util.Arrays.fill(all, 1024, 3072, (byte) 0);
        try (BadServer bad = new BadServer((out, cookie, type, off, len) -> {
            dataChunk(out, 0, cookie, off, all, 0, 1024);
            dataChunk(out, 0, cookie, off + 3072, all, 3072, 1024);
            holeChunk(out, NbdProtocol.REPLY_FLAG_DONE, cookie, off + 1024, 2048);
        });
             NbdClient c = NbdClient.open("bad", NbdUri.parse(bad.uri()),
                     NbdClient.Options.defaults().withTimeout(Duration.ofSeconds(3)))) {
            MemorySegment buf = pattern(4096, 7);
            Bio b = submit(c, Op.READ, 0, buf).get(10, TimeUnit.SECONDS);
            assertThat(b.status()).isEqualTo(Status.OK);
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(all);
        }
    }

    @Test
    void aBlockStatusExtentLongerThanTheQueryIsCutToIt() throws Exception {
        // The spec: the descriptors' lengths MUST NOT add up to more than the request's. A server
        // that calls the whole export a hole must not make the next bytes past the query (data
        // here, as far as anyone asked) read as a hole to a copy that skips holes.
        try (BadServer bad = new BadServer((out, cookie, type, off, len) -> {
                out.writeInt(NbdProtocol.STRUCTURED_REPLY_MAGIC);
                out.writeShort(NbdProtocol.REPLY_FLAG_DONE);
                out.writeShort(NbdProtocol.REPLY_TYPE_BLOCK_STATUS);
                out.writeLong(cookie);
                out.writeInt(12);
                out.writeInt(BadServer.META_ID);
                out.writeInt((int) BadServer.SIZE);
                out.writeInt(Extent.HOLE | Extent.ZERO); // NBD_STATE_HOLE | NBD_STATE_ZERO: the same bits
            }, true);
             NbdClient c = NbdClient.open("bad", NbdUri.parse(bad.uri()), NbdClient.Options.defaults())) {
            Extent e = c.extentAt(0, 4096 + 100); // the query is the whole block before it: 4096
            assertThat(bad.requests.get()).as("one BLOCK_STATUS asked").isEqualTo(1);
            assertThat(e.flags() & Extent.ZERO).isNotZero();
            assertThat(e.length()).isEqualTo(4096);
        }
    }

    @Test
    void anErrorChunkBecomesTheBiosStatus() throws Exception {
        Bio b = againstBadServer((out, cookie, type, off, len) -> {
            byte[] msg = "disk on fire".getBytes();
            out.writeInt(NbdProtocol.STRUCTURED_REPLY_MAGIC);
            out.writeShort(NbdProtocol.REPLY_FLAG_DONE);
            out.writeShort(NbdProtocol.REPLY_TYPE_ERROR);
            out.writeLong(cookie);
            out.writeInt(6 + msg.length);
            out.writeInt(28); // ENOSPC
            out.writeShort(msg.length);
            out.write(msg);
        }, Op.WRITE);
        assertThat(b.status()).isEqualTo(Status.NOSPC);
    }

    @Test
    void cacheFailsWithNotSupportedWhenTheServerDoesNotOfferIt() throws Exception {
        try (BadServer bad = new BadServer((out, cookie, type, off, len) -> out.writeLong(0));
             NbdClient c = NbdClient.open("bad", NbdUri.parse(bad.uri()), NbdClient.Options.defaults())) {
            assertThat(c.cache(0, 4096)).failsWithin(5, TimeUnit.SECONDS)
                    .withThrowableOfType(java.util.concurrent.ExecutionException.class)
                    .withMessageContaining("NBD_FLAG_SEND_CACHE unset");
            assertThat(bad.requests.get()).as("nothing was sent").isZero();
        }
    }

    @Test
    void biosBeyondTheSlotsTimeOutOnTimeToo() throws Exception {
        // A server that takes every request and never answers: the first SLOTS bios hold every
        // slot; the rest wait for one, and must fail at the timeout as well, not a timeout later.
        try (BadServer silent = new BadServer((out, cookie, type, off, len) -> { });
             NbdClient c = NbdClient.open("silent", NbdUri.parse(silent.uri()),
                     NbdClient.Options.defaults().withTimeout(Duration.ofMillis(1500)))) {
            long t0 = System.nanoTime();
            List<CompletableFuture<Bio>> fs = new ArrayList<>();
            for (int i = 0; i < Connection.SLOTS * 3; i++) {
                fs.add(submit(c, Op.READ, (i % 256) * 4096L, arena.allocate(4096, 4096)));
            }
            for (CompletableFuture<Bio> f : fs) {
                assertThat(f.get(10, TimeUnit.SECONDS).status()).isEqualTo(Status.TIMEOUT);
            }
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertThat(ms).as("all failed near the 1.5 s timeout").isLessThan(2900);
        }
    }

    @Test
    void somethingThatIsNotAnNbdServerIsRefusedAtOpenNamingTheUri() throws Exception {
        try (java.net.ServerSocket http = new java.net.ServerSocket(0, 5, java.net.InetAddress.getLoopbackAddress())) {
            Thread.ofPlatform().daemon().start(() -> {
                try (java.net.Socket s = http.accept()) {
                    s.getOutputStream().write("HTTP/1.1 400 Bad Request\r\n\r\n".getBytes());
                    s.getInputStream().read();
                } catch (java.io.IOException e) {
                    // the client hung up
                }
            });
            String uri = "nbd://127.0.0.1:" + http.getLocalPort() + "/x";
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> NbdClient.open("h", NbdUri.parse(uri), NbdClient.Options.defaults()))
                    .hasMessageStartingWith(uri + ":").hasMessageContaining("not an NBD server");
        }
    }
}
