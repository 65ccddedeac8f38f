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
 * A JMH-free measure of what a recording bitmap costs per write, for bench/cbt/run.sh: 4 KiB
 * random writes at QD1 on one thread into a counted ramdisk, without a bitmap, with one
 * recording bitmap, and with one persistent bitmap whose chunks are all marked already,
 * alternating rounds; each round's figure is the thread's CPU ns per write, and the result the
 * medians. Not a test (no Test suffix); run with {@code java -cp target/classes:target/test-classes:...
 * io.biostack.block.bitmap.BitmapCost [rounds] [ios-per-round]}.
 */
public final class BitmapCost {
    private BitmapCost() {
    }

    public static void main(String[] args) throws Exception {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 7;
        int ios = args.length > 1 ? Integer.parseInt(args[1]) : 1_000_000;
        long size = 256L << 20;
        RamDisk ram = new RamDisk("ram0", size);
        CountedDevice none = new CountedDevice(ram, new DeviceStats("none"));
        CountedDevice one = new CountedDevice(ram, new DeviceStats("one"));
        one.setBitmaps(new DeviceBitmaps("one", size, null, one::submitBelow));
        one.bitmaps().message(List.of("add", "b"));
        Path dir = Files.createTempDirectory("bitmapcost");
        CountedDevice pers = new CountedDevice(ram, new DeviceStats("pers"));
        pers.setBitmaps(new DeviceBitmaps("pers", size, new SideFileStore(dir.resolve("b")), pers::submitBelow));
        pers.bitmaps().message(List.of("add", "p", "persistent"));
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        try (Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(4096, 4096);
            pers.write(0, a.allocate(size)).join(); // every chunk marked and durable
            Bio bio = new Bio();
            EndIo cb = b -> { };
            double[][] r = new double[3][rounds];
            CountedDevice[] devs = {none, one, pers};
            for (CountedDevice d : devs) {
                run(d, bio, buf, cb, ios, mx, size); // warm-up
            }
            for (int i = 0; i < rounds; i++) {
                for (int k = 0; k < 3; k++) {
                    r[k][i] = run(devs[(i + k) % 3], bio, buf, cb, ios, mx, size);
                }
                // rotate which side goes first; put the figures back in device order
                double[] row = {r[0][i], r[1][i], r[2][i]};
                for (int k = 0; k < 3; k++) {
                    r[(i + k) % 3][i] = row[k];
                }
            }
            double n = median(r[0]);
            double o = median(r[1]);
            double p = median(r[2]);
            System.out.printf(Locale.ROOT, "bitmap cost, 4k random writes QD1 in-process on a ramdisk (cpu ns/write, median of %d rounds):"
                    + " none %.1f  one recording %.1f (+%.1f ns, %.3fx throughput)  persistent on marked chunks %.1f (+%.1f ns, %.3fx);"
                    + " metadata writes %d%n", rounds, n, o, o - n, n / o, p, p - n, n / p, pers.bitmaps().metadataWrites());
        }
        pers.bitmaps().close();
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

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }
}
