import io.biostack.bench.BenchResult;
import io.biostack.bench.LoadGenerator;
import io.biostack.bench.Workload;
import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.loop.DirectIoMode;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.stack.Qcow2Target;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;

/**
 * The qcow2/raw ratio of issue 15 measured in one JVM, raw and qcow2 in short alternating
 * windows (bench/qcow2/interleave.sh runs it). On a shared machine the CPU a process gets
 * changes from one second to the next, and separate `biostack bench` runs, seconds apart, see
 * different machines: their ratios spread from 0.5 to 1.4 with the same build. Windows of a
 * second or so, raw and qcow2 in turn, see the same load, and the median of their ratios is the
 * layer's cost.
 *
 * <p>Usage: Interleave RAW QCOW2 DIRECT(on|off|ram) RW PAIRS SECONDS. With {@code ram}, the
 * qcow2 and raw files are copied into RamDisks and measured there: bios complete
 * inside submit on one thread, no kernel, so the difference is the qcow2 layer's CPU alone.
 */
public class Interleave {
    public static void main(String[] a) throws Exception {
        Path raw = Path.of(a[0]);
        Path img = Path.of(a[1]);
        String mode = a[2];
        String rw = a[3];
        int pairs = Integer.parseInt(a[4]);
        double secs = Double.parseDouble(a[5]);
        try (Arena arena = Arena.ofShared()) {
            BlockDevice r;
            BlockDevice container;
            if (mode.equals("ram")) {
                r = ramCopy(raw, arena);
                container = ramCopy(img, arena);
            } else {
                LoopConfig cfg = LoopConfig.defaults().withDirectIo(DirectIoMode.parse(mode));
                r = LoopDevice.open("raw", raw, cfg);
                container = LoopDevice.open("c", img, cfg);
            }
            try (BlockDevice q = Qcow2Target.open("q", container, false)) {
                long range = q.size();
                List<Double> ratios = new ArrayList<>();
                List<Double> extra = new ArrayList<>();
                System.out.printf(Locale.ROOT, "%-5s %12s %10s %12s %10s %8s %10s%n", "pair", "raw IOPS", "raw us/IO",
                        "qcow2 IOPS", "q us/IO", "ratio", "extra ns");
                for (int p = -1; p < pairs; p++) {
                    double[] iops = new double[2];
                    double[] cpu = new double[2];
                    for (int k = 0; k < 2; k++) {
                        // raw first in even pairs, qcow2 first in odd ones: neither always runs second
                        int which = (p & 1) == 0 ? k : 1 - k;
                        BlockDevice d = which == 0 ? r : q;
                        Workload w = new Workload(Workload.Pattern.parse(rw), 4096, 32, (long) (secs * 1e9), range, 50, 7 + p);
                        BenchResult br = new LoadGenerator(d, w).ramp((long) 2e8).run(null);
                        iops[which] = br.iops();
                        cpu[which] = br.cpuUsPerIo();
                    }
                    if (p < 0) {
                        continue; // warm-up pair: the JIT compiles both paths
                    }
                    ratios.add(iops[1] / iops[0]);
                    extra.add((cpu[1] - cpu[0]) * 1000);
                    System.out.printf(Locale.ROOT, "%-5d %12.0f %10.3f %12.0f %10.3f %7.2fx %10.0f%n", p, iops[0], cpu[0],
                            iops[1], cpu[1], iops[1] / iops[0], (cpu[1] - cpu[0]) * 1000);
                }
                System.out.printf(Locale.ROOT, "median %s %s: qcow2/raw IOPS %.3fx, qcow2 extra CPU %.0f ns/IO%n", mode, rw,
                        median(ratios), median(extra));
            } finally {
                r.close();
            }
        }
    }

    private static double median(List<Double> v) {
        List<Double> s = new ArrayList<>(v);
        Collections.sort(s);
        int n = s.size();
        return n % 2 == 1 ? s.get(n / 2) : (s.get(n / 2 - 1) + s.get(n / 2)) / 2;
    }

    /** The image file in a RamDisk, its size rounded up to whole 64 KiB. */
    private static RamDisk ramCopy(Path img, Arena arena) throws Exception {
        long sz = Files.size(img);
        long ramSize = (sz + 65535) & ~65535L;
        RamDisk ram = new RamDisk("ram", ramSize);
        try (FileChannel ch = FileChannel.open(img); Arena map = Arena.ofConfined()) {
            MemorySegment m = ch.map(FileChannel.MapMode.READ_ONLY, 0, sz, map);
            MemorySegment buf = arena.allocate(1 << 20, 4096);
            for (long o = 0; o < ramSize; o += 1 << 20) {
                long n = Math.min(1 << 20, Math.max(0, sz - o));
                buf.fill((byte) 0);
                buf.asSlice(0, n).copyFrom(m.asSlice(o, n));
                ram.write(o, buf.asSlice(0, Math.min(1 << 20, ramSize - o))).join();
            }
        }
        return ram;
    }
}
