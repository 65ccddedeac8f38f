package io.biostack.layer.qcow2;

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
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
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
}
