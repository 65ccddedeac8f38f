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
 * than wall time), and the result is the median of the per-round differences. Then the same with
 * a caller that times its own I/O as bench does (its two readings go down and come back with the
 * bio, so counting adds none), and the cost of two bare clock readings in the loop. Not a test (no
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
            breakdown(ram, counted, bio, buf, rounds, ios, mx);
            breakdownTwo(bareTwo, two, bio, buf, rounds, ios, mx);
        }
    }

    /**
     * Where the one-level difference goes, and why it is larger here than in {@code bench}: the
     * same bare-against-counted pair with a caller that reads the clock at submit and at
     * completion, as bench's load generator does for its own latency (so the pipeline drain of
     * the clock read is already paid when counting reads it), and the bare loop with two clock
     * reads per I/O added and nothing else (what two reads cost in this loop).
     */
    private static void breakdown(RamDisk ram, CountedDevice counted, Bio bio, MemorySegment buf, int rounds, int ios,
            ThreadMXBean mx) {
        long[] sink = new long[1];
        EndIo timed = b -> {
            long end = b.completionTime(); // as bench: the counted device's reading when there is one
            sink[0] += (end == 0 ? System.nanoTime() : end) - b.privateLong();
        };
        EndIo plain = b -> sink[0]++;
        double[] bare = new double[rounds];
        double[] cnt = new double[rounds];
        double[] diff = new double[rounds];
        double[] clk = new double[rounds];
        double[] plainBare = new double[rounds];
        runTimed(ram, bio, buf, timed, ios, mx);
        runTimed(counted, bio, buf, timed, ios, mx);
        runClock(ram, bio, buf, plain, ios, mx);
        for (int r = 0; r < rounds; r++) {
            bare[r] = runTimed(ram, bio, buf, timed, ios, mx);
            cnt[r] = runTimed(counted, bio, buf, timed, ios, mx);
            diff[r] = cnt[r] - bare[r];
            plainBare[r] = run(ram, bio, buf, plain, ios, mx);
            clk[r] = runClock(ram, bio, buf, plain, ios, mx) - plainBare[r];
        }
        System.out.printf(Locale.ROOT, "one level, a caller that reads the clock at submit and completion as bench does: "
                + "off %.1f  on %.1f  difference %.1f ns/io%n", median(bare), median(cnt), median(diff));
        System.out.printf(Locale.ROOT, "two System.nanoTime() reads added to the bare loop (submit, completion): %+.1f ns/io%n",
                median(clk));
        if (sink[0] == 42) {
            System.out.println();
        }
    }

    /** The two-level pair with a caller that times its I/O, as bench's l0. */
    private static void breakdownTwo(BlockDevice bareTwo, BlockDevice two, Bio bio, MemorySegment buf, int rounds, int ios,
            ThreadMXBean mx) {
        long[] sink = new long[1];
        EndIo timed = b -> {
            long end = b.completionTime();
            sink[0] += (end == 0 ? System.nanoTime() : end) - b.privateLong();
        };
        double[] bare = new double[rounds];
        double[] cnt = new double[rounds];
        double[] diff = new double[rounds];
        runTimed(bareTwo, bio, buf, timed, ios, mx);
        runTimed(two, bio, buf, timed, ios, mx);
        for (int r = 0; r < rounds; r++) {
            bare[r] = runTimed(bareTwo, bio, buf, timed, ios, mx);
            cnt[r] = runTimed(two, bio, buf, timed, ios, mx);
            diff[r] = cnt[r] - bare[r];
        }
        System.out.printf(Locale.ROOT, "two counted levels, a caller that times its I/O as bench does: "
                + "off %.1f  on %.1f  difference %.1f ns/io, %.1f per counted device%n",
                median(bare), median(cnt), median(diff), median(diff) / 2);
        if (sink[0] == 42) {
            System.out.println();
        }
    }

    private static double runTimed(BlockDevice dev, Bio bio, MemorySegment buf, EndIo cb, int ios, ThreadMXBean mx) {
        long off = 0;
        long t0 = mx.getCurrentThreadCpuTime();
        for (int i = 0; i < ios; i++) {
            bio.init(Op.READ, 0, off, cb).addSegment(buf);
            long now = System.nanoTime();
            bio.setPrivateLong(now);
            bio.setIssueTime(now);
            dev.submit(bio);
            off = (off + 4096 * 97) & ((64L << 20) - 1);
        }
        return (double) (mx.getCurrentThreadCpuTime() - t0) / ios;
    }

    private static long clockSink;

    private static double runClock(BlockDevice dev, Bio bio, MemorySegment buf, EndIo cb, int ios, ThreadMXBean mx) {
        long off = 0;
        long s = 0;
        long t0 = mx.getCurrentThreadCpuTime();
        for (int i = 0; i < ios; i++) {
            bio.init(Op.READ, 0, off, cb).addSegment(buf);
            s += System.nanoTime();
            dev.submit(bio);
            s += System.nanoTime();
            off = (off + 4096 * 97) & ((64L << 20) - 1);
        }
        clockSink += s;
        return (double) (mx.getCurrentThreadCpuTime() - t0) / ios;
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
