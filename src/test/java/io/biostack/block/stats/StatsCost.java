package io.biostack.block.stats;

import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Op;
import io.biostack.block.RamDisk;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Arrays;
import java.util.Locale;

/**
 * A JMH-free measure of what counting costs per I/O, for bench/stats/run.sh: 4 KiB reads at QD1
 * on one thread, a bare ramdisk against the same ramdisk in a {@link CountedDevice}, alternating
 * rounds; each round's cost is the thread's CPU time per I/O (less disturbed by other processes
 * than wall time), and the result is the median of the per-round differences. Not a test (no
 * Test suffix); run with {@code java -cp target/classes:target/test-classes:... 
 * io.biostack.block.stats.StatsCost [rounds] [ios-per-round]}.
 */
public final class StatsCost {
    private StatsCost() {
    }

    public static void main(String[] args) {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 11;
        int ios = args.length > 1 ? Integer.parseInt(args[1]) : 2_000_000;
        RamDisk ram = new RamDisk("ram0", 64L << 20);
        CountedDevice counted = new CountedDevice(ram, new DeviceStats("ram0"));
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096);
            ram.write(0, a.allocate(64L << 20)).join(); // every chunk present: reads copy memory
            Bio bio = new Bio();
            long[] done = new long[1];
            EndIo cb = b -> done[0]++;
            double[] bare = new double[rounds];
            double[] cnt = new double[rounds];
            double[] diff = new double[rounds];
            run(ram, bio, buf, cb, ios, mx); // warm-up of both paths
            run(counted, bio, buf, cb, ios, mx);
            for (int r = 0; r < rounds; r++) {
                bare[r] = run(ram, bio, buf, cb, ios, mx);
                cnt[r] = run(counted, bio, buf, cb, ios, mx);
                diff[r] = cnt[r] - bare[r];
            }
            System.out.printf(Locale.ROOT, "stats cost, 4k reads QD1 in-process on a ramdisk (cpu ns/io, median of %d rounds): "
                    + "off %.1f  on %.1f  difference %.1f ns/io%n", rounds, median(bare), median(cnt), median(diff));
            System.out.println("counted " + counted.stats().snapshot());
            // two levels: a counted linear over a counted ramdisk against the bare linear over the ramdisk
            BlockDevice bareTwo = io.biostack.layer.Linear.of("lin", ram, 0);
            CountedDevice leaf = new CountedDevice(ram, new DeviceStats("ram0"));
            CountedDevice two = new CountedDevice(io.biostack.layer.Linear.of("lin", leaf, 0), new DeviceStats("lin"));
            run(bareTwo, bio, buf, cb, ios, mx);
            run(two, bio, buf, cb, ios, mx);
            for (int r = 0; r < rounds; r++) {
                bare[r] = run(bareTwo, bio, buf, cb, ios, mx);
                cnt[r] = run(two, bio, buf, cb, ios, mx);
                diff[r] = cnt[r] - bare[r];
            }
            System.out.printf(Locale.ROOT, "two counted levels (linear over ram), same measure: "
                    + "off %.1f  on %.1f  difference %.1f ns/io, %.1f per counted device%n",
                    median(bare), median(cnt), median(diff), median(diff) / 2);
        }
    }

    private static double run(BlockDevice dev, Bio bio, MemorySegment buf, EndIo cb, int ios, ThreadMXBean mx) {
        long off = 0;
        long t0 = mx.getCurrentThreadCpuTime();
        for (int i = 0; i < ios; i++) {
            bio.init(Op.READ, 0, off, cb).addSegment(buf);
            dev.submit(bio);
            off = (off + 4096 * 97) & ((64L << 20) - 1);
        }
        return (double) (mx.getCurrentThreadCpuTime() - t0) / ios;
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }
}
