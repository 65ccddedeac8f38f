package io.biostack.layer.qcow2;

import io.biostack.layer.Delay;
import io.biostack.layer.Flakey;
import io.biostack.layer.Leg;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The write path's allocations against the metadata cache and the container, qemu-img the oracle. */
class Qcow2WritePathTest {
    @TempDir
    Path dir;

    private static Qcow2Device open(LoopDevice c, Path img, long cacheBytes) throws Exception {
        return Qcow2Device.open("q", c, new Qcow2Device.Options(false, cacheBytes, null, true, img, null,
                img.toString()));
    }

    @Test
    void allocatingWritesInFlightWhileASmallCacheEvictsTheirTablesAllLand() throws Exception {
        // 4 KiB clusters: an L2 table maps 2 MiB. Every table exists (one cluster written in each
        // by qemu-io), and the cache holds two: the writes below, all in flight at once, load
        // each other's tables out of the cache while their data is being written.
        int cs = 4096;
        long span = (long) cs / 8 * cs;
        int tables = 32;
        Path img = dir.resolve("evict.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=" + cs, img.toString(),
                String.valueOf(tables * span));
        List<String> io = new ArrayList<>(List.of("qemu-io", "-f", "qcow2"));
        for (int t = 0; t < tables; t++) {
            io.add("-c");
            io.add("write -P 0x11 " + t * span + " " + cs);
        }
        io.add(img.toString());
        Tools.ok(60, io.toArray(String[]::new));
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
             Qcow2Device q = open(c, img, 2L * cs);
             Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate((long) tables * 4 * cs, 4096);
            List<CompletableFuture<Void>> all = new ArrayList<>();
            for (int round = 0; round < 4; round++) {
                for (int t = 0; t < tables; t++) {
                    // a new cluster in table t, written partly: a COW read, then the data write
                    MemorySegment p = m.asSlice(((long) round * tables + t) * cs, 512);
                    p.fill((byte) (0x20 + t));
                    all.add(q.write(t * span + (round + 1L) * cs, p));
                }
            }
            List<String> failed = new ArrayList<>();
            for (CompletableFuture<Void> f : all) {
                try {
                    f.orTimeout(30, TimeUnit.SECONDS).join();
                } catch (RuntimeException e) {
                    failed.add(e.getMessage());
                }
            }
            assertTrue(failed.isEmpty(), failed.size() + " of " + all.size() + " writes failed, the first: "
                    + (failed.isEmpty() ? "" : failed.get(0)));
            q.flush().join();
        }
        Tools.ok(60, "qemu-img", "check", img.toString());
        Path raw = dir.resolve("evict.raw");
        Tools.ok(60, "qemu-img", "convert", "-O", "raw", img.toString(), raw.toString());
        byte[] b = Files.readAllBytes(raw);
        for (int t = 0; t < tables; t++) {
            for (int round = 0; round < 4; round++) {
                long at = t * span + (round + 1L) * cs;
                for (int i = 0; i < cs; i++) {
                    byte want = i < 512 ? (byte) (0x20 + t) : 0;
                    assertEquals(want, b[(int) (at + i)], "table " + t + " round " + round + " byte " + i);
                }
            }
        }
    }

    /**
     * An image of 4 KiB clusters whose L2 tables 0 to 3 exist, with 32 free clusters (refcount 0,
     * qemu discarded them) below its last one: allocations take those and the container, which
     * cannot grow under a {@link Delay} or a {@link Flakey}, need not grow.
     */
    private Path imageWithFreeClusters(String name) throws Exception {
        Path img = dir.resolve(name);
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", img.toString(), "8M");
        Tools.ok(60, "qemu-io", "-f", "qcow2", "-c", "write -P 0x01 1M 128k", "-c", "write -P 0x02 0 4k",
                "-c", "write -P 0x03 2M 4k", "-c", "write -P 0x04 4M 4k", "-c", "write -P 0x05 6M 4k",
                "-c", "discard 1M 128k", img.toString());
        return img;
    }

    private static MemorySegment filled(Arena a, int len, int value) {
        MemorySegment m = a.allocate(len, 4096);
        m.fill((byte) value);
        return m;
    }

    private byte[] qemuRead(Path img, String name) throws Exception {
        Path raw = dir.resolve(name);
        Tools.ok(60, "qemu-img", "convert", "-O", "raw", img.toString(), raw.toString());
        return Files.readAllBytes(raw);
    }

    private static void assertFilled(byte[] b, long off, int len, int value, String what) {
        for (int i = 0; i < len; i++) {
            if (b[(int) off + i] != (byte) value) {
                throw new AssertionError(what + ": byte " + (off + i) + " is " + b[(int) off + i] + ", wanted " + value);
            }
        }
    }

    @Test
    void anL2TableEvictedWhileItsWritebackIsInFlightKeepsItsNewEntries() throws Exception {
        Path img = imageWithFreeClusters("wbevict.qcow2");
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
             Delay slow = new Delay("slow", c.size(), List.of(new Delay.Path(new Leg(c, 0), 0),
                     new Delay.Path(new Leg(c, 0), 0), new Delay.Path(new Leg(c, 0), 400)));
             Qcow2Device q = Qcow2Device.open("q", slow, new Qcow2Device.Options(false, 2L * 4096, null, true, null,
                     null, "slow"));
             Arena a = Arena.ofShared()) {
            // a new cluster in table 0: its entry is in the cached table only
            q.write(20 << 12, filled(a, 4096, 0x61)).join();
            // the writeback copies table 0 and waits 400 ms for its first container flush
            CompletableFuture<Void> first = q.flush();
            // meanwhile tables 1 and 2 are read into the cache of two: table 0 goes
            MemorySegment m = a.allocate(4096, 4096);
            q.read(2L << 20, m).join();
            q.read(4L << 20, m).join();
            // another new cluster in table 0 reads the table again, before the writeback wrote it
            q.write(21 << 12, filled(a, 4096, 0x62)).join();
            first.join();
            q.flush().join();
            q.read(20 << 12, m).join();
            assertEquals(-1, m.mismatch(filled(a, 4096, 0x61)), "the first write reads back");
        }
        Tools.ok(60, "qemu-img", "check", img.toString());
        byte[] b = qemuRead(img, "wbevict.raw");
        assertFilled(b, 20 << 12, 4096, 0x61, "the first write");
        assertFilled(b, 21 << 12, 4096, 0x62, "the second write");
    }

    @Test
    void aMetadataWritebackThatFailedIsWrittenByTheNextFlush() throws Exception {
        Path img = imageWithFreeClusters("retry.qcow2");
        AtomicLong now = new AtomicLong();
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
             // up for 1000 ns of the clock, then down (every bio fails) for 1000
             Flakey f = new Flakey("f", new Leg(c, 0), c.size(), 1_000, 1_000, Flakey.Features.NONE, now::get);
             Qcow2Device q = Qcow2Device.open("q", f, new Qcow2Device.Options(false, -1, null, true, null, null,
                     "f"));
             Arena a = Arena.ofShared()) {
            q.write(20 << 12, filled(a, 4096, 0x61)).join();
            q.discard(0, 4096).join(); // frees qemu's cluster: its refcount drops after the L2 entry
            now.set(1_500);
            assertThrows(CompletionException.class, () -> q.flush().join(), "the container is down");
            now.set(2_000);
            q.flush().join();
        }
        Tools.ok(60, "qemu-img", "check", img.toString());
        byte[] b = qemuRead(img, "retry.raw");
        assertFilled(b, 20 << 12, 4096, 0x61, "the write acknowledged before the failed flush");
        assertFilled(b, 0, 4096, 0, "the discarded cluster");
    }
}
