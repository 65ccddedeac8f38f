package io.biostack.nbd.client;

import io.biostack.block.BioFlags;
import io.biostack.block.Extent;
import io.biostack.block.IoIter;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.io.RandomAccessFile;
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

/**
 * The NBD leaf against the servers people run: qemu-nbd (over a sparse raw file) and nbdkit's
 * memory plugin. Missing tools fail under CI=true and skip elsewhere.
 */
@Timeout(60)
class NbdInteropTest {
    static final long SIZE = 32L << 20;

    @TempDir
    Path dir;
    Process server;
    final Arena arena = Arena.ofShared();

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

    Path start(String... cmd) throws Exception {
        Path sock = dir.resolve("s.sock");
        List<String> c = new ArrayList<>();
        for (String s : cmd) {
            c.add(s.replace("SOCK", sock.toString()));
        }
        server = new ProcessBuilder(c).redirectErrorStream(true)
                .redirectOutput(dir.resolve("server.log").toFile()).start();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!Files.exists(sock) && System.nanoTime() < end && server.isAlive()) {
            Thread.sleep(20);
        }
        assertThat(Files.exists(sock)).as("server socket; log: %s", log()).isTrue();
        return sock;
    }

    String log() throws Exception {
        Path l = dir.resolve("server.log");
        return Files.exists(l) ? Files.readString(l) : "";
    }

    MemorySegment pattern(long n, long seed) {
        MemorySegment m = arena.allocate(n, 4096);
        Random r = new Random(seed);
        for (long i = 0; i < n; i += 8) {
            m.set(ValueLayout.JAVA_LONG_UNALIGNED, i, r.nextLong());
        }
        return m;
    }

    /** The same exercise for each server: data, FUA, flush, zeroes, trim, block status, reads. */
    void exercise(NbdClient c) throws Exception {
        assertThat(c.size()).isEqualTo(SIZE);
        assertThat(c.extentAt(0, SIZE).flags() & Extent.HOLE).as("a fresh export starts as a hole").isEqualTo(Extent.HOLE);
        MemorySegment d = pattern(2L << 20, 1);
        c.write(1L << 20, IoIter.of(d), BioFlags.FUA).get(10, TimeUnit.SECONDS);
        c.flush().get(10, TimeUnit.SECONDS);
        assertThat(c.extentAt(1L << 20, SIZE).flags()).as("written data is data").isZero();
        Extent head = c.extentAt(0, SIZE);
        assertThat(head.flags() & Extent.HOLE).isEqualTo(Extent.HOLE);
        assertThat(head.length()).isEqualTo(1L << 20);
        c.writeZeroes(1L << 20, 64 * 1024, false).get(10, TimeUnit.SECONDS);
        c.writeZeroes((1L << 20) + 65536, 64 * 1024, true).get(10, TimeUnit.SECONDS);
        if (c.limits().discard()) {
            c.discard((2L << 20), 1L << 20).get(10, TimeUnit.SECONDS);
        }
        List<CompletableFuture<Void>> fs = new ArrayList<>();
        MemorySegment many = pattern(4L << 20, 2);
        for (int i = 0; i < 1024; i++) {
            fs.add(c.write((8L << 20) + i * 4096L, many.asSlice(i * 4096L, 4096)));
        }
        CompletableFuture.allOf(fs.toArray(new CompletableFuture[0])).get(20, TimeUnit.SECONDS);
        MemorySegment back = arena.allocate(4L << 20, 4096);
        c.read(8L << 20, back).get(10, TimeUnit.SECONDS);
        assertThat(back.mismatch(many)).isEqualTo(-1);
        MemorySegment first = arena.allocate(1L << 20, 4096);
        c.read(1L << 20, first).get(10, TimeUnit.SECONDS);
        byte[] f = first.toArray(ValueLayout.JAVA_BYTE);
        for (int i = 0; i < 128 * 1024; i++) {
            if (f[i] != 0) {
                throw new AssertionError("byte " + i + " of the zeroed range is " + f[i]);
            }
        }
        assertThat(first.asSlice(128 * 1024).mismatch(d.asSlice(128 * 1024, (1L << 20) - 128 * 1024))).isEqualTo(-1);
    }

    @Test
    void againstQemuNbdOverASparseFile() throws Exception {
        Tools.require("qemu-nbd");
        Path img = dir.resolve("disk.img");
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(SIZE);
        }
        Path sock = start("qemu-nbd", "-f", "raw", "--socket=SOCK", "--persistent", "--shared=8",
                "--discard=unmap", "--cache=none", "--aio=threads", img.toString());
        try (NbdClient c = NbdClient.open("q", NbdUri.parse("nbd+unix:///?socket=" + sock),
                NbdClient.Options.defaults().withConnections(4))) {
            exercise(c);
        }
        byte[] file = Files.readAllBytes(img);
        MemorySegment many = pattern(4L << 20, 2);
        assertThat(MemorySegment.ofArray(file).asSlice(8L << 20, 4L << 20).mismatch(many))
                .as("the bytes are in qemu-nbd's file").isEqualTo(-1);
    }

    @Test
    void againstNbdkitMemoryWithMultiConn() throws Exception {
        Tools.require("nbdkit");
        Path sock = start("nbdkit", "-f", "-U", "SOCK", "memory", String.valueOf(SIZE));
        try (NbdClient c = NbdClient.open("k", NbdUri.parse("nbd+unix:///?socket=" + sock),
                NbdClient.Options.defaults().withConnections(4))) {
            assertThat(c.connections()).as("nbdkit memory allows multi-conn").isEqualTo(4);
            exercise(c);
        }
    }

    @Test
    void againstNbdkitWithNoFixedMaximumPayload() throws Exception {
        Tools.require("nbdkit");
        // nbdkit's blocksize filter advertises a maximum payload of 0xffffffff, which doc/proto.md
        // ("Size constraints") permits for a server without a fixed limit.
        Path sock = start("nbdkit", "-f", "-U", "SOCK", "--filter=blocksize", "memory", String.valueOf(SIZE));
        try (NbdClient c = NbdClient.open("b", NbdUri.parse("nbd+unix:///?socket=" + sock), NbdClient.Options.defaults())) {
            assertThat(c.limits().maxBytes()).as("no limit from the server: the leaf's own").isEqualTo(NbdClient.MAX_DATA);
            exercise(c);
        }
    }

    @Test
    void againstNbdkitTheLeafRefusesWhatTheServerCannotDo() throws Exception {
        Tools.require("nbdkit");
        // A read-only export without flush: writes are refused here, flushes complete at once.
        Path sock = start("nbdkit", "-f", "-r", "-U", "SOCK", "pattern", String.valueOf(SIZE));
        try (NbdClient c = NbdClient.open("p", NbdUri.parse("nbd+unix:///?socket=" + sock), NbdClient.Options.defaults())) {
            assertThat(c.isReadOnly()).isTrue();
            MemorySegment b = arena.allocate(4096, 4096);
            c.read(8 * 4096, b).get(5, TimeUnit.SECONDS);
            // nbdkit-pattern-plugin: each 8-byte word holds its own offset, big-endian.
            assertThat(b.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN), 8)).isEqualTo(8 * 4096 + 8);
            assertThat(c.write(0, b)).failsWithin(5, TimeUnit.SECONDS);
        }
        new File(sock.toString()).delete();
    }

    /** Kills the server (SIGKILL: what it had only in memory is gone) and starts it again on the same socket. */
    void restart(Path sock, NbdClient c, String... cmd) throws Exception {
        long before = c.reconnects();
        server.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        Files.deleteIfExists(sock);
        start(cmd);
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (c.reconnects() == before && System.nanoTime() < end) {
            Thread.sleep(10);
        }
        assertThat(c.reconnects()).as("the leaf reconnected").isGreaterThan(before);
    }

    @Test
    void aFlushAfterTheServerRestartedFailsRatherThanVouchForWritesItLost() throws Exception {
        Tools.require("qemu-nbd");
        Tools.require("qemu-img");
        Path img = dir.resolve("disk.qcow2");
        assertThat(new ProcessBuilder("qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "8M")
                .inheritIO().start().waitFor()).isZero();
        // qemu-nbd's default cache is writeback: a new cluster's L2 entry stays in its memory
        // until a flush, so a SIGKILL loses acknowledged, unflushed writes.
        String[] cmd = {"qemu-nbd", "-f", "qcow2", "--socket=SOCK", "--persistent", img.toString()};
        Path sock = start(cmd);
        try (NbdClient c = NbdClient.open("q", NbdUri.parse("nbd+unix:///?socket=" + sock),
                NbdClient.Options.defaults().withTimeout(java.time.Duration.ofSeconds(5)))) {
            MemorySegment d = pattern(64 * 1024, 7);
            c.write(0, d).get(5, TimeUnit.SECONDS);
            c.flush().get(5, TimeUnit.SECONDS);
            restart(sock, c, cmd);
            c.flush().get(5, TimeUnit.SECONDS); // everything was flushed: nothing to report

            MemorySegment e = pattern(64 * 1024, 8);
            c.write(1L << 20, e).get(5, TimeUnit.SECONDS);
            restart(sock, c, cmd);
            MemorySegment back = arena.allocate(64 * 1024, 4096);
            c.read(1L << 20, back).get(5, TimeUnit.SECONDS);
            assertThat(back.mismatch(e)).as("the precondition: qemu-nbd lost the acknowledged write").isNotEqualTo(-1);
            assertThat(c.flush()).as("the flush must not say the lost write is stable")
                    .failsWithin(5, TimeUnit.SECONDS)
                    .withThrowableThat().withMessageContaining("may be lost");
            c.flush().get(5, TimeUnit.SECONDS); // said once; the leaf goes on

            c.write(1L << 20, e).get(5, TimeUnit.SECONDS); // the caller writes it again
            c.flush().get(5, TimeUnit.SECONDS);
            restart(sock, c, cmd);
            c.read(1L << 20, back).get(5, TimeUnit.SECONDS);
            assertThat(back.mismatch(e)).as("flushed: it survives the kill").isEqualTo(-1);
            c.read(0, back).get(5, TimeUnit.SECONDS);
            assertThat(back.mismatch(d)).isEqualTo(-1);
            c.flush().get(5, TimeUnit.SECONDS);
        }
    }

    @Test
    void aServerRestartedWithoutMultiConnIsNotTakenUpByAMultiConnLeaf() throws Exception {
        Tools.require("nbdkit");
        Path sock = start("nbdkit", "-f", "-U", "SOCK", "memory", String.valueOf(SIZE));
        try (NbdClient c = NbdClient.open("k", NbdUri.parse("nbd+unix:///?socket=" + sock),
                NbdClient.Options.defaults().withConnections(4).withTimeout(java.time.Duration.ofMillis(300)))) {
            assertThat(c.connections()).isEqualTo(4);
            MemorySegment d = pattern(64 * 1024, 9);
            c.write(0, d).get(5, TimeUnit.SECONDS);
            server.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            Files.deleteIfExists(sock);
            // The same export, now without NBD_FLAG_CAN_MULTI_CONN: a FLUSH on one of the four
            // connections would no longer cover the writes acknowledged on the other three.
            start("nbdkit", "-f", "-U", "SOCK", "--filter=multi-conn", "memory", String.valueOf(SIZE),
                    "multi-conn-mode=disable");
            assertThat(c.write(0, d)).failsWithin(5, TimeUnit.SECONDS)
                    .withThrowableThat().withMessageContaining("the export changed");
            assertThat(c.reconnects()).as("no connection went to the changed export").isZero();
        }
        new File(sock.toString()).delete();
    }

    @Test
    void anExportWhoseSizeIsNotWholeSectorsIsReadToItsEndWithTheTailZero() throws Exception {
        Tools.require("nbdkit");
        // 1000 bytes, 9s at 990..992: nbdkit-data-plugin. qemu's NBD client shows such an export
        // as 1024 bytes and reads the 24 past its end as zeros (qemu-img convert copies them).
        Path sock = start("nbdkit", "-f", "-U", "SOCK", "data", "1 2 3 @990 9 9 9", "size=1000");
        try (NbdClient c = NbdClient.open("d", NbdUri.parse("nbd+unix:///?socket=" + sock), NbdClient.Options.defaults())) {
            assertThat(c.size()).isEqualTo(1024);
            MemorySegment b = arena.allocate(1024, 4096);
            b.fill((byte) 0x77);
            c.read(0, b).get(5, TimeUnit.SECONDS);
            byte[] want = new byte[1024];
            want[0] = 1;
            want[1] = 2;
            want[2] = 3;
            want[990] = 9;
            want[991] = 9;
            want[992] = 9;
            assertThat(b.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(want);
            MemorySegment last = arena.allocate(512, 4096);
            last.fill((byte) 0x77);
            c.read(512, last).get(5, TimeUnit.SECONDS);
            assertThat(last.mismatch(MemorySegment.ofArray(want).asSlice(512))).isEqualTo(-1);
            long at = 0;
            while (at < c.size()) { // a copy's walk ends
                Extent e = c.extentAt(at, c.size() - at);
                assertThat(e.length()).as("extent at %d", at).isPositive();
                assertThat(e.length() % 512).as("whole blocks: a copy reads what it is told").isZero();
                at += e.length();
            }
            assertThat(at).isEqualTo(1024);
            assertThat(c.write(512, last)).as("past the export's end there is nothing to write to")
                    .failsWithin(5, TimeUnit.SECONDS).withThrowableThat().withMessageContaining("1000");
            c.write(0, last).get(5, TimeUnit.SECONDS);
            c.read(0, b).get(5, TimeUnit.SECONDS);
            assertThat(b.asSlice(0, 512).mismatch(last)).isEqualTo(-1);
        }
        new File(sock.toString()).delete();
    }
}
