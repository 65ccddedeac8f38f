package io.biostack.block.bitmap;

import io.biostack.block.Bio;
import io.biostack.block.EndIo;
import io.biostack.block.Op;
import io.biostack.block.RamDisk;
import io.biostack.block.stats.CountedDevice;
import io.biostack.block.stats.DeviceStats;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * A JMH-free measure of what a recording bitmap costs per write, for bench/cbt/run.sh. Not a
 * test (no Test suffix); run with {@code java -cp target/classes:target/test-classes:...
 * io.biostack.block.bitmap.BitmapCost [rounds] [ios-per-round] [dir]}. Three parts:
 * <ol>
 * <li>the whole submit path: 4 KiB random writes at QD1 on one thread into a counted ramdisk,
 *     without a bitmap, with one recording bitmap, and with one persistent bitmap whose chunks
 *     are all marked already; rounds rotate which side goes first; each round's figure is the
 *     thread's CPU ns per write, printed per round, and the result the medians;
 * <li>the mark alone: {@link DeviceBitmaps#beforeWrite} on a 4 KiB bio at random offsets (no
 *     device under it), ns per call, with no bitmap, one recording, one persistent marked;
 * <li>the first write to a clean chunk of a persistent bitmap (its side file in {@code dir}, on
 *     the disk): wall µs per synchronous 4 KiB write and metadata writes per write, beside
 *     writes to chunks already marked.
 * </ol>
 */
public final class BitmapCost {
    private BitmapCost() {
    }

    /**
     * Runs the three parts and prints their figures.
     *
     * @param args rounds, writes per round, directory for the side files
     * @throws Exception when a device or store fails
     */
    public static void main(String[] args) throws Exception {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 7;
        int ios = args.length > 1 ? Integer.parseInt(args[1]) : 1_000_000;
        Path dir = Files.createTempDirectory(args.length > 2 ? Path.of(args[2]) : Path.of("/var/tmp"), "bitmapcost");
        long size = 256L << 20;
        RamDisk ram = new RamDisk("ram0", size);
        CountedDevice none = new CountedDevice(ram, new DeviceStats("none"));
        CountedDevice one = new CountedDevice(ram, new DeviceStats("one"));
        one.setBitmaps(new DeviceBitmaps("one", size, null, one::submitBelow));
        one.bitmaps().message(List.of("add", "b"));
        CountedDevice pers = new CountedDevice(ram, new DeviceStats("pers"));
        pers.setBitmaps(new DeviceBitmaps("pers", size, new SideFileStore(dir.resolve("b")), pers::submitBelow));
        pers.bitmaps().message(List.of("add", "p", "persistent"));
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        try (Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(4096, 4096);
            pers.write(0, a.allocate(size)).join(); // every chunk marked and durable
            Bio bio = new Bio();
            EndIo cb = b -> { };
            CountedDevice[] devs = {none, one, pers};
            double[][] r = rotate(rounds, k -> run(devs[k], bio, buf, cb, ios, mx, size));
            double n = median(r[0]);
            double o = median(r[1]);
            double p = median(r[2]);
            printRounds("submit path", r);
            System.out.printf(Locale.ROOT, "bitmap cost, 4k random writes QD1 in-process on a ramdisk (cpu ns/write, median of %d rounds):"
                    + " none %.1f  one recording %.1f (+%.1f ns, %.3fx throughput)  persistent on marked chunks %.1f (+%.1f ns, %.3fx);"
                    + " metadata writes %d%n", rounds, n, o, o - n, n / o, p, p - n, n / p, pers.bitmaps().metadataWrites());

            // 2. the mark alone: beforeWrite with nothing under it (the bios are never sent down)
            DeviceBitmaps empty = new DeviceBitmaps("empty", size, null, x -> { });
            DeviceBitmaps[] bms = {empty, one.bitmaps(), pers.bitmaps()};
            bio.init(Op.WRITE, 0, 0, cb).addSegment(buf);
            double[][] m = rotate(rounds, k -> mark(bms[k], bio, buf, cb, ios * 10, mx, size));
            printRounds("beforeWrite alone", m);
            System.out.printf(Locale.ROOT, "the mark alone (DeviceBitmaps.beforeWrite, cpu ns/call, median): no bitmap %.2f  one recording %.2f"
                    + "  persistent on marked chunks %.2f%n", median(m[0]), median(m[1]), median(m[2]));

            // 3. first writes to clean chunks of a persistent bitmap: one metadata write each
            firstWrites(ram, dir, a, rounds);
        }
        pers.bitmaps().close();
    }

    private interface Side {
        double run(int k);
    }

    /** Runs the three sides {@code rounds} times, rotating which goes first; figures by side. */
    private static double[][] rotate(int rounds, Side side) {
        for (int k = 0; k < 3; k++) {
            side.run(k); // warm-up
        }
        double[][] r = new double[3][rounds];
        for (int i = 0; i < rounds; i++) {
            for (int j = 0; j < 3; j++) {
                int k = (i + j) % 3;
                r[k][i] = side.run(k);
            }
        }
        return r;
    }

    private static void printRounds(String what, double[][] r) {
        for (int i = 0; i < r[0].length; i++) {
            System.out.printf(Locale.ROOT, "  %s round %d: none %.2f  one %.2f  persistent %.2f%n", what, i + 1, r[0][i], r[1][i], r[2][i]);
        }
    }

    private static double run(CountedDevice dev, Bio bio, MemorySegment buf, EndIo cb, int ios, ThreadMXBean mx, long size) {
        long off = 0;
        long t0 = mx.getCurrentThreadCpuTime();
        for (int i = 0; i < ios; i++) {
            bio.init(Op.WRITE, 0, off, cb).addSegment(buf);
            dev.submit(bio);
            off = (off + 4096L * 9973) & (size - 1);
        }
        return (double) (mx.getCurrentThreadCpuTime() - t0) / ios;
    }

    private static double mark(DeviceBitmaps b, Bio bio, MemorySegment buf, EndIo cb, int calls, ThreadMXBean mx, long size) {
        long off = 0;
        int sent = 0;
        long t0 = mx.getCurrentThreadCpuTime();
        for (int i = 0; i < calls; i++) {
            bio.setOffset(off);
            if (b.beforeWrite(bio)) {
                sent++;
            }
            off = (off + 4096L * 9973) & (size - 1);
        }
        double ns = (double) (mx.getCurrentThreadCpuTime() - t0) / calls;
        if (sent != calls) {
            throw new IllegalStateException("a write to a marked chunk was held for a metadata write");
        }
        return ns;
    }

    /**
     * Synchronous 4 KiB writes on a fresh persistent bitmap: to clean chunks (each one a
     * metadata write before it goes down), then the same chunks again (marked).
     */
    private static void firstWrites(RamDisk ram, Path dir, Arena a, int rounds) throws Exception {
        long size = ram.size();
        MemorySegment buf = a.allocate(4096, 4096);
        int n = 200;
        for (int r = 0; r < rounds; r++) {
            Path f = dir.resolve("first" + r);
            CountedDevice d = new CountedDevice(ram, new DeviceStats("first"));
            d.setBitmaps(new DeviceBitmaps("first", size, new SideFileStore(f), d::submitBelow));
            d.bitmaps().message(List.of("add", "p", "persistent", "granularity=64k"));
            long mw0 = d.bitmaps().metadataWrites();
            long t0 = System.nanoTime();
            for (int i = 0; i < n; i++) {
                d.write((long) i * 997 * 65536 % size, buf).join();
            }
            long clean = System.nanoTime() - t0;
            long mw = d.bitmaps().metadataWrites() - mw0;
            t0 = System.nanoTime();
            for (int i = 0; i < n; i++) {
                d.write((long) i * 997 * 65536 % size, buf).join();
            }
            long marked = System.nanoTime() - t0;
            long mw2 = d.bitmaps().metadataWrites() - mw0 - mw;
            System.out.printf(Locale.ROOT, "first write to a clean chunk (persistent bitmap, side file on %s), round %d: %.1f us/write,"
                    + " %.2f metadata writes/write; the same chunks again (marked): %.1f us/write, %d metadata writes%n",
                    dir, r + 1, clean / 1e3 / n, (double) mw / n, marked / 1e3 / n, mw2);
            d.bitmaps().close();
            Files.deleteIfExists(f);
        }
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }
}
