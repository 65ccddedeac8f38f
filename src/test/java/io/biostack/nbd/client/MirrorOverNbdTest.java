package io.biostack.nbd.client;

import io.biostack.block.RamDisk;
import io.biostack.layer.Leg;
import io.biostack.layer.Mirror;
import io.biostack.nbd.NbdExport;
import io.biostack.nbd.NbdServer;
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
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A mirror with a local leg and an NBD leg whose server goes away and comes back (in this
 * process, over a Unix socket; {@link NetnsFaultTest} does it across a network namespace): the
 * mirror serves on, says the leg is down, and takes it back by itself with only what changed.
 */
@Timeout(60)
class MirrorOverNbdTest {
    @TempDir
    Path dir;

    @Test
    void theRemoteLegIsDroppedWhileItsServerIsGoneAndResyncedByItselfAfter() throws Exception {
        long size = 8L << 20;
        Path sock = dir.resolve("remote.sock");
        Path jfr = dir.resolve("events.jfr");
        jdk.jfr.Recording rec = new jdk.jfr.Recording();
        rec.enable("biostack.LeafReconnect");
        rec.enable("biostack.MirrorResync");
        rec.start();
        long dirty;
        try (RamDisk local = new RamDisk("local", size);
             RamDisk far = new RamDisk("far", size);
             Arena arena = Arena.ofShared()) {
            NbdServer server = NbdServer.builder().export(NbdExport.of("", far)).unixSocket(sock).start();
            NbdClient leaf = NbdClient.open("remote", NbdUri.parse("nbd+unix:///?socket=" + sock),
                    NbdClient.Options.defaults().withTimeout(Duration.ofSeconds(1)));
            Mirror m = new Mirror("pair", List.of(new Leg(local, 0), new Leg(leaf, 0)), size, 64 * 1024, true);
            try {
                Random rnd = new Random(1);
                MemorySegment a = arena.allocate(64 * 1024, 4096);
                a.fill((byte) 1);
                m.write(0, a).get(5, TimeUnit.SECONDS);
                m.flush().get(5, TimeUnit.SECONDS); // stable on both: only what it misses is copied back

                server.close(); // the remote host goes away
                List<CompletableFuture<Void>> fs = new ArrayList<>();
                for (int i = 0; i < 40; i++) {
                    MemorySegment d = arena.allocate(4096, 4096);
                    d.fill((byte) rnd.nextInt());
                    fs.add(m.write((long) rnd.nextInt((int) (size / 4096)) * 4096, d));
                }
                CompletableFuture.allOf(fs.toArray(new CompletableFuture[0])).get(20, TimeUnit.SECONDS);
                assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
                assertThat(m.status()).contains(" AD ");
                dirty = m.dirtyRegions(1);
                assertThat(dirty).isBetween(1L, 40L);

                server = NbdServer.builder().export(NbdExport.of("", far)).unixSocket(sock).start();
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while ((m.legState(1) != Mirror.LegState.IN_SYNC || m.isResyncing()) && System.nanoTime() < end) {
                    Thread.sleep(20);
                }
                assertThat(m.legState(1)).as("taken back by itself").isEqualTo(Mirror.LegState.IN_SYNC);
                assertThat(m.status()).contains(" AA ").contains(m.regionCount() + "/" + m.regionCount());
                MemorySegment l = arena.allocate(size, 4096);
                MemorySegment f = arena.allocate(size, 4096);
                local.read(0, l).get(5, TimeUnit.SECONDS);
                far.read(0, f).get(5, TimeUnit.SECONDS);
                assertThat(l.mismatch(f)).as("the legs are byte-equal").isEqualTo(-1);
                assertThat(l.get(ValueLayout.JAVA_BYTE, 0)).isNotZero();
            } finally {
                m.close();
                leaf.close();
                server.close();
            }
        }
        rec.stop();
        rec.dump(jfr);
        rec.close();
        // JFR: the leaf's reconnect (attempts until the server was back) and the mirror's resync.
        List<jdk.jfr.consumer.RecordedEvent> events = jdk.jfr.consumer.RecordingFile.readAllEvents(jfr);
        assertThat(events).filteredOn(e -> e.getEventType().getName().equals("biostack.LeafReconnect")
                        && e.getString("outcome").equals("connected") && e.getString("device").equals("remote"))
                .hasSize(1);
        assertThat(events).filteredOn(e -> e.getEventType().getName().equals("biostack.MirrorResync")
                        && e.getString("leg").equals("remote") && e.getString("outcome").equals("ok"))
                .singleElement()
                .satisfies(e -> assertThat(e.getLong("bytes")).isEqualTo(dirty * 64 * 1024));
    }

    @Test
    void aRemoteLegWhoseServerLostUnflushedWritesGetsThemBackBeforeItServesReads() throws Exception {
        long size = 1L << 20;
        Path img = dir.resolve("far.qcow2");
        Path sock = dir.resolve("far.sock");
        Process server = farImage(img, sock, size);
        try (RamDisk local = new RamDisk("local", size);
             Arena arena = Arena.ofShared();
             NbdClient leaf = NbdClient.open("remote", NbdUri.parse("nbd+unix:///?socket=" + sock),
                     NbdClient.Options.defaults().withTimeout(Duration.ofSeconds(5)))) {
            Mirror m = new Mirror("pair", List.of(new Leg(local, 0), new Leg(leaf, 0)), size, 64 * 1024, true);
            try {
                MemorySegment a = arena.allocate(size, 4096);
                a.fill((byte) 0x5a);
                m.write(0, a).get(5, TimeUnit.SECONDS); // both legs acknowledge it, every region; no flush yet

                server.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
                server = qemuNbd(img, sock);
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (leaf.reconnects() == 0 && System.nanoTime() < end) {
                    Thread.sleep(10);
                }
                assertThat(leaf.reconnects()).isEqualTo(1);
                m.flush().get(5, TimeUnit.SECONDS); // the local leg has it: the mirror's flush holds

                end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while ((m.legState(1) != Mirror.LegState.IN_SYNC || m.isResyncing()) && System.nanoTime() < end) {
                    Thread.sleep(20);
                }
                assertThat(m.legState(1)).as("taken back by itself").isEqualTo(Mirror.LegState.IN_SYNC);
                m.flush().get(5, TimeUnit.SECONDS);
                MemorySegment f = arena.allocate(size, 4096);
                leaf.read(0, f).get(5, TimeUnit.SECONDS);
                assertThat(f.mismatch(a)).as("the remote leg has what its server lost").isEqualTo(-1);
                for (int i = 0; i < 4; i++) { // reads go round robin: each leg serves some
                    MemorySegment r = arena.allocate(size, 4096);
                    m.read(0, r).get(5, TimeUnit.SECONDS);
                    assertThat(r.mismatch(a)).as("read %d", i).isEqualTo(-1);
                }
            } finally {
                m.close();
            }
        } finally {
            server.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        }
    }

    @Test
    void withADiskLogARemoteLegWhoseServerLostUnflushedWritesGetsOnlyTheMarkedRegions() throws Exception {
        long size = 1L << 20;
        long region = 64 * 1024; // one qcow2 cluster
        Path img = dir.resolve("far.qcow2");
        Path sock = dir.resolve("far.sock");
        Process server = farImage(img, sock, size);
        try (RamDisk local = new RamDisk("local", size);
             RamDisk log = new RamDisk("log", 1 << 20);
             Arena arena = Arena.ofShared();
             NbdClient leaf = NbdClient.open("remote", NbdUri.parse("nbd+unix:///?socket=" + sock),
                     NbdClient.Options.defaults().withTimeout(Duration.ofSeconds(5)))) {
            Mirror m = new Mirror("pair", List.of(new Leg(local, 0), new Leg(leaf, 0)), size, region, true, log);
            m.log().clearDelay(5);
            try {
                MemorySegment one = arena.allocate(region, 4096);
                one.fill((byte) 0x11);
                m.write(1 * region, one).get(5, TimeUnit.SECONDS);
                m.write(5 * region, one).get(5, TimeUnit.SECONDS);
                m.flush().get(5, TimeUnit.SECONDS);
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (m.log().markedRegions() != 0 && System.nanoTime() < end) {
                    Thread.sleep(5);
                }
                assertThat(m.log().markedRegions()).as("flushed on both legs: clean on the log").isZero();
                m.log().clearDelay(60_000);
                MemorySegment a = arena.allocate(region, 4096);
                a.fill((byte) 0x5a);
                m.write(2 * region, a).get(5, TimeUnit.SECONDS); // new clusters: their L2 entries in
                m.write(9 * region, a).get(5, TimeUnit.SECONDS); // qemu-nbd's memory, not flushed

                server.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
                server = qemuNbd(img, sock);
                end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (leaf.reconnects() == 0 && System.nanoTime() < end) {
                    Thread.sleep(10);
                }
                MemorySegment f = arena.allocate(region, 4096);
                leaf.read(2 * region, f).get(5, TimeUnit.SECONDS);
                assertThat(f.get(ValueLayout.JAVA_BYTE, 0)).as("the restarted server lost the write").isZero();
                m.flush().get(5, TimeUnit.SECONDS); // fails on the remote leg, holds on the local one

                end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while ((m.legState(1) != Mirror.LegState.IN_SYNC || m.isResyncing()) && System.nanoTime() < end) {
                    Thread.sleep(20);
                }
                assertThat(m.legState(1)).as("taken back by itself").isEqualTo(Mirror.LegState.IN_SYNC);
                assertThat(m.resyncBytes()).as("regions 2 and 9, not all 16").isEqualTo(2 * region);
                MemorySegment mine = arena.allocate(size, 4096);
                MemorySegment theirs = arena.allocate(size, 4096);
                local.read(0, mine).get(5, TimeUnit.SECONDS);
                leaf.read(0, theirs).get(5, TimeUnit.SECONDS);
                assertThat(theirs.mismatch(mine)).as("the remote leg has every byte").isEqualTo(-1);
            } finally {
                m.close();
            }
        } finally {
            server.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        }
    }

    /** A new qcow2 image of {@code size} bytes at {@code img}, served by {@link #qemuNbd} at {@code sock}. */
    Process farImage(Path img, Path sock, long size) throws Exception {
        io.biostack.nbd.Tools.require("qemu-nbd");
        io.biostack.nbd.Tools.require("qemu-img");
        assertThat(new ProcessBuilder("qemu-img", "create", "-q", "-f", "qcow2", img.toString(), String.valueOf(size))
                .inheritIO().start().waitFor()).isZero();
        return qemuNbd(img, sock);
    }

    /**
     * qemu-nbd on a qcow2 image. Its default writeback cache keeps a new cluster's L2 entry in
     * memory until a flush: a SIGKILL loses writes it had acknowledged, as a crashed host loses
     * its cache.
     */
    Process qemuNbd(Path img, Path sock) throws Exception {
        java.nio.file.Files.deleteIfExists(sock);
        Process p = new ProcessBuilder("qemu-nbd", "-f", "qcow2", "--socket=" + sock, "--persistent", img.toString())
                .redirectErrorStream(true).redirectOutput(dir.resolve("qemu-nbd.log").toFile()).start();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!java.nio.file.Files.exists(sock) && p.isAlive() && System.nanoTime() < end) {
            Thread.sleep(10);
        }
        return p;
    }

    @Test
    void aRemoteLegTakenBackAfterItsServerDiedIsInSyncOnlyOnceAFlushSaysItKeptWhatItHad() throws Exception {
        long size = 1L << 20;
        Path img = dir.resolve("far.qcow2");
        Path sock = dir.resolve("far.sock");
        Process server = farImage(img, sock, size);
        try (RamDisk local = new RamDisk("local", size);
             Arena arena = Arena.ofShared();
             NbdClient leaf = NbdClient.open("remote", NbdUri.parse("nbd+unix:///?socket=" + sock),
                     NbdClient.Options.defaults().withTimeout(Duration.ofMillis(500)))) {
            Mirror m = new Mirror("pair", List.of(new Leg(local, 0), new Leg(leaf, 0)), size, 64 * 1024, true);
            try {
                MemorySegment a = arena.allocate(size, 4096);
                a.fill((byte) 0x5a);
                m.write(0, a.asSlice(0, 512 * 1024)).get(5, TimeUnit.SECONDS); // on both legs, not flushed

                server.destroyForcibly().waitFor(5, TimeUnit.SECONDS); // the remote host dies
                m.write(512 * 1024, a.asSlice(512 * 1024)).get(5, TimeUnit.SECONDS); // the remote leg misses it
                assertThat(m.legState(1)).isEqualTo(Mirror.LegState.FAILED);
                server = qemuNbd(img, sock);

                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while ((m.legState(1) != Mirror.LegState.IN_SYNC || m.isResyncing()) && System.nanoTime() < end) {
                    Thread.sleep(20);
                }
                assertThat(m.legState(1)).as("taken back by itself").isEqualTo(Mirror.LegState.IN_SYNC);
                MemorySegment f = arena.allocate(size, 4096);
                leaf.read(0, f).get(5, TimeUnit.SECONDS);
                assertThat(f.mismatch(a)).as("in sync, with no flush from above: the remote leg has every byte").isEqualTo(-1);
            } finally {
                m.close();
            }
        } finally {
            server.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        }
    }
}
