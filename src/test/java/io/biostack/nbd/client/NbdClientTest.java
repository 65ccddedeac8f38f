package io.biostack.nbd.client;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
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
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The NBD leaf against biostack's own server (in this process, over a Unix socket and over TCP
 * loopback): what the leaf writes is what the ramdisk behind the server holds, byte for byte.
 */
@Timeout(60)
class NbdClientTest {
    static final long SIZE = 16L << 20;

    @TempDir
    Path dir;
    RamDisk ram;
    RamDisk small;
    NbdServer server;
    Path sock;
    Arena arena;

    @BeforeEach
    void start() throws Exception {
        sock = dir.resolve("nbd.sock");
        ram = new RamDisk("ram", SIZE);
        small = new RamDisk("small", 1 << 20, 4096, true);
        server = NbdServer.builder()
                .export(NbdExport.of("disk", ram))
                .export(NbdExport.of("ro", small))
                .unixSocket(sock)
                .tcp("127.0.0.1", 0)
                .start();
        arena = Arena.ofShared();
    }

    @AfterEach
    void stop() {
        server.close();
        ram.close();
        small.close();
        arena.close();
    }

    NbdClient open(String uri, NbdClient.Options o) throws Exception {
        return NbdClient.open("remote", NbdUri.parse(uri), o);
    }

    String unixUri(String export) {
        return "nbd+unix:///" + export + "?socket=" + sock;
    }

    String tcpUri(String export) {
        return "nbd://127.0.0.1:" + server.tcpAddress().getPort() + "/" + export;
    }

    MemorySegment pattern(long n, long seed) {
        MemorySegment m = arena.allocate(n, 4096);
        Random r = new Random(seed);
        for (long i = 0; i < n; i += 8) {
            m.set(ValueLayout.JAVA_LONG_UNALIGNED, i, r.nextLong());
        }
        return m;
    }

    byte[] onServer(long off, int n) throws Exception {
        MemorySegment m = arena.allocate(n, 4096);
        ram.read(off, m).get(5, TimeUnit.SECONDS);
        return m.toArray(ValueLayout.JAVA_BYTE);
    }

    @Test
    void writesLandOnTheServerAndReadsComeBackOverUnixAndTcp() throws Exception {
        for (String uri : List.of(unixUri("disk"), tcpUri("disk"))) {
            try (NbdClient c = open(uri, NbdClient.Options.defaults())) {
                assertThat(c.size()).isEqualTo(SIZE);
                assertThat(c.isReadOnly()).isFalse();
                MemorySegment data = pattern(1 << 20, uri.length());
                c.write(3L << 20, data).get(10, TimeUnit.SECONDS);
                assertThat(onServer(3L << 20, 1 << 20)).isEqualTo(data.toArray(ValueLayout.JAVA_BYTE));
                MemorySegment back = arena.allocate(1 << 20, 4096);
                c.read(3L << 20, back).get(10, TimeUnit.SECONDS);
                assertThat(back.mismatch(data)).isEqualTo(-1);
            }
        }
    }

    @Test
    void queueLimitsComeFromTheServersBlockSizes() throws Exception {
        try (NbdClient c = open(unixUri("ro"), NbdClient.Options.defaults())) {
            assertThat(c.limits().logicalBlockSize()).isEqualTo(4096);
            assertThat(c.isReadOnly()).isTrue();
            Bio b = new Bio();
            CompletableFuture<Status> f = new CompletableFuture<>();
            b.init(Op.WRITE, 0, 0, x -> f.complete(x.status())).addSegment(arena.allocate(4096, 4096));
            c.submit(b);
            assertThat(f.get(5, TimeUnit.SECONDS)).isEqualTo(Status.READONLY);
        }
        try (NbdClient c = open(unixUri("disk"), NbdClient.Options.defaults())) {
            assertThat(c.limits().logicalBlockSize()).isEqualTo(512);
            assertThat(c.limits().maxBytes()).isEqualTo(NbdClient.MAX_DATA);
            assertThat(c.limits().fua()).isTrue();
            assertThat(c.limits().writeCache()).isTrue();
            assertThat(c.limits().writeZeroes()).isTrue();
        }
    }

    @Test
    void largeBiosAreSplitAtTheMaximumPayload() throws Exception {
        try (NbdClient c = open(unixUri("disk"), NbdClient.Options.defaults())) {
            MemorySegment data = pattern(10L << 20, 7);
            c.write(1L << 20, data).get(10, TimeUnit.SECONDS);
            assertThat(onServer(1L << 20, 10 << 20)).isEqualTo(data.toArray(ValueLayout.JAVA_BYTE));
            MemorySegment back = arena.allocate(10L << 20, 4096);
            c.read(1L << 20, back).get(10, TimeUnit.SECONDS);
            assertThat(back.mismatch(data)).isEqualTo(-1);
        }
    }

    @Test
    void fuaFlushTrimAndZeroesReachTheServer() throws Exception {
        try (NbdClient c = open(unixUri("disk"), NbdClient.Options.defaults())) {
            MemorySegment data = pattern(256 * 1024, 3);
            c.write(0, io.biostack.block.IoIter.of(data), BioFlags.FUA).get(5, TimeUnit.SECONDS);
            assertThat(onServer(0, 256 * 1024)).isEqualTo(data.toArray(ValueLayout.JAVA_BYTE));
            c.flush().get(5, TimeUnit.SECONDS);
            c.writeZeroes(64 * 1024, 64 * 1024, true).get(5, TimeUnit.SECONDS);
            c.writeZeroes(128 * 1024, 64 * 1024, false).get(5, TimeUnit.SECONDS);
            byte[] s = onServer(0, 256 * 1024);
            for (int i = 64 * 1024; i < 192 * 1024; i++) {
                assertThat(s[i]).as("byte %d", i).isZero();
            }
            assertThat(s[0]).isEqualTo(data.get(ValueLayout.JAVA_BYTE, 0));
            assertThat(s[200 * 1024]).isEqualTo(data.get(ValueLayout.JAVA_BYTE, 200 * 1024));
            if (c.limits().discard()) {
                c.discard(0, 64 * 1024).get(5, TimeUnit.SECONDS);
            }
            // A PREFLUSH write goes out as FLUSH, then the write.
            Bio b = new Bio();
            CompletableFuture<Status> f = new CompletableFuture<>();
            b.init(Op.WRITE, BioFlags.PREFLUSH | BioFlags.FUA, 8L << 20, x -> f.complete(x.status()))
                    .addSegment(data.asSlice(0, 4096));
            c.submit(b);
            assertThat(f.get(5, TimeUnit.SECONDS)).isEqualTo(Status.OK);
            assertThat(onServer(8L << 20, 4096)).isEqualTo(data.asSlice(0, 4096).toArray(ValueLayout.JAVA_BYTE));
        }
    }

    @Test
    void cacheIsPassedWhenTheServerOffersItAndBadRangesAreRefused() throws Exception {
        try (NbdClient c = open(unixUri("disk"), NbdClient.Options.defaults())) {
            c.cache(0, 1 << 20).get(5, TimeUnit.SECONDS);
            assertThatThrownBy(() -> c.cache(100, 4096).get(5, TimeUnit.SECONDS)).hasMessageContaining("misaligned");
            assertThatThrownBy(() -> c.cache(SIZE, 4096).get(5, TimeUnit.SECONDS)).hasMessageContaining("out of range");
        }
    }

    @Test
    void holesStayHolesThroughBlockStatus() throws Exception {
        try (NbdClient c = open(unixUri("disk"), NbdClient.Options.defaults())) {
            Extent e0 = c.extentAt(0, SIZE);
            assertThat(e0.flags() & Extent.HOLE).isEqualTo(Extent.HOLE);
            c.write(4L << 20, pattern(64 * 1024, 1)).get(5, TimeUnit.SECONDS);
            Extent h = c.extentAt(0, SIZE);
            assertThat(h.flags() & Extent.HOLE).isEqualTo(Extent.HOLE);
            assertThat(h.length()).isLessThanOrEqualTo(4L << 20);
            Extent d = c.extentAt(4L << 20, SIZE - (4L << 20));
            assertThat(d.flags()).isZero();
            assertThat(d.length()).isGreaterThanOrEqualTo(64 * 1024);
            // Reads of holes come back as zeros (OFFSET_HOLE chunks or data).
            MemorySegment back = pattern(1 << 20, 9);
            c.read(0, back).get(5, TimeUnit.SECONDS);
            assertThat(back.asSlice(0, 1 << 20).toArray(ValueLayout.JAVA_BYTE)).containsOnly((byte) 0);
        }
    }

    @Test
    void multiConnSpreadsRequestsAndEveryOneLands() throws Exception {
        try (NbdClient c = open(unixUri("disk"), NbdClient.Options.defaults().withConnections(4))) {
            assertThat(c.connections()).isEqualTo(4);
            List<CompletableFuture<Void>> fs = new ArrayList<>();
            MemorySegment data = pattern(4L << 20, 11);
            for (int i = 0; i < 1024; i++) {
                fs.add(c.write(i * 4096L, data.asSlice(i * 4096L, 4096)));
            }
            CompletableFuture.allOf(fs.toArray(new CompletableFuture[0])).get(20, TimeUnit.SECONDS);
            c.flush().get(5, TimeUnit.SECONDS);
            assertThat(onServer(0, 4 << 20)).isEqualTo(data.toArray(ValueLayout.JAVA_BYTE));
            assertThat(server.connectionCount()).isGreaterThanOrEqualTo(4);
        }
    }

    @Test
    void moreBiosThanSlotsWaitTheirTurn() throws Exception {
        try (NbdClient c = open(unixUri("disk"), NbdClient.Options.defaults())) {
            int n = Connection.SLOTS * 4;
            MemorySegment data = pattern(n * 4096L, 5);
            List<CompletableFuture<Void>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                fs.add(c.write(i * 4096L, data.asSlice(i * 4096L, 4096)));
            }
            CompletableFuture.allOf(fs.toArray(new CompletableFuture[0])).get(20, TimeUnit.SECONDS);
            assertThat(onServer(0, n * 4096)).isEqualTo(data.toArray(ValueLayout.JAVA_BYTE));
        }
    }

    @Test
    void largeWritesResubmittedFromEndIoCallbacksNeverStallTheConnection() throws Exception {
        // A server that stops reading at 2 MiB in flight, and 32 chains of 1 MiB writes and reads
        // in turn, each submitting the next from its end-io callback (on the leaf's receiving
        // thread): READ replies fill the socket towards us while a WRITE payload would fill the
        // socket towards the server. The receiving thread must keep reading.
        NbdServer tight = NbdServer.builder().export(NbdExport.of("disk", ram)).unixSocket(dir.resolve("tight.sock"))
                .maxPayload(1 << 20).maxInflightBytesPerConnection(2 << 20).start();
        try (NbdClient c = NbdClient.open("remote", NbdUri.parse("nbd+unix:///disk?socket=" + dir.resolve("tight.sock")),
                NbdClient.Options.defaults().withTimeout(Duration.ofSeconds(20)))) {
            MemorySegment data = pattern(1 << 20, 13);
            int chains = 32;
            int perChain = 16;
            java.util.concurrent.CountDownLatch done = new java.util.concurrent.CountDownLatch(chains);
            java.util.concurrent.atomic.AtomicInteger errors = new java.util.concurrent.atomic.AtomicInteger();
            long t0 = System.nanoTime();
            for (int k = 0; k < chains; k++) {
                long off = (long) (k % 16) << 20;
                MemorySegment readBuf = arena.allocate(1 << 20, 4096);
                io.biostack.block.EndIo[] next = new io.biostack.block.EndIo[1];
                int[] left = {perChain};
                next[0] = b -> {
                    if (b.status() != Status.OK) {
                        errors.incrementAndGet();
                    }
                    if (--left[0] == 0) {
                        done.countDown();
                        return;
                    }
                    boolean write = left[0] % 2 == 0;
                    Bio n = new Bio().init(write ? Op.WRITE : Op.READ, 0, off, next[0]);
                    n.addSegment(write ? data : readBuf);
                    c.submit(n);
                };
                Bio b = new Bio().init(Op.WRITE, 0, off, next[0]);
                b.addSegment(data);
                c.submit(b);
            }
            assertThat(done.await(40, TimeUnit.SECONDS)).isTrue();
            assertThat(errors.get()).isZero();
            assertThat(c.reconnects()).as("no stall had to be broken by a reconnect").isZero();
            assertThat((System.nanoTime() - t0) / 1_000_000).isLessThan(20_000);
            assertThat(onServer(15L << 20, 1 << 20)).isEqualTo(data.toArray(ValueLayout.JAVA_BYTE));
        } finally {
            tight.close();
        }
    }

    @Test
    void outOfRangeAndMisalignedBiosFailWithoutReachingTheServer() throws Exception {
        try (NbdClient c = open(unixUri("disk"), NbdClient.Options.defaults())) {
            MemorySegment data = pattern(4096, 1);
            assertThatThrownBy(() -> c.write(SIZE, data).get(5, TimeUnit.SECONDS))
                    .isInstanceOf(ExecutionException.class).hasMessageContaining("beyond the end");
            assertThatThrownBy(() -> c.write(100, data).get(5, TimeUnit.SECONDS))
                    .isInstanceOf(ExecutionException.class).hasMessageContaining("not aligned");
            assertThat(onServer(0, 8192)).containsOnly((byte) 0);
        }
    }

    @Test
    void aRefusedConnectionOrAnUnknownExportNamesTheUri() {
        String gone = "nbd+unix:///disk?socket=" + dir.resolve("nobody.sock");
        assertThatThrownBy(() -> open(gone, NbdClient.Options.defaults()))
                .hasMessageStartingWith(gone + ":");
        assertThatThrownBy(() -> open(unixUri("nope"), NbdClient.Options.defaults()))
                .hasMessageStartingWith(unixUri("nope") + ":").hasMessageContaining("no export 'nope'");
    }

    @Test
    void closingCancelsNothingCompletedAndRefusesNewBios() throws Exception {
        NbdClient c = open(unixUri("disk"), NbdClient.Options.defaults().withTimeout(Duration.ofSeconds(5)));
        c.write(0, pattern(4096, 2)).get(5, TimeUnit.SECONDS);
        c.close();
        assertThatThrownBy(() -> c.read(0, arena.allocate(4096, 4096)).get(5, TimeUnit.SECONDS))
                .hasMessageContaining("closed");
    }
}
