package io.biostack.layer.crypt;

import io.biostack.bench.BenchResult;
import io.biostack.bench.LoadGenerator;
import io.biostack.bench.Workload;
import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.stack.Stack;

import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;

/**
 * A tuning aid for the crypt worker pool, for bench/crypt/run.sh and by hand: the same load on
 * crypt with several {@link Crypt.Tuning}s, alternating in one JVM for several rounds, printing
 * IOPS, the cores the process used (CPU time over wall time) and CPU time per I/O, in all and
 * split by thread (the io_uring worker, the crypt workers, the rest). CPU per I/O stays readable on a loaded machine, where IOPS do not; the io_uring
 * worker's share is the cipher work left on the ring's critical path. Not a test (no Test
 * suffix):
 * <pre>
 * java -cp target/classes:target/test-classes:target/lib/* io.biostack.layer.crypt.CryptScaling \
 *     LOWER RW BS QD SECONDS ROUNDS TUNING...
 * </pre>
 * LOWER is {@code ram} (a 256 MiB ramdisk) or {@code STACKFILE:DEVICE}; each TUNING is
 * {@code workers,inline,chunk,spin_us[,nohelp][@SECTOR_SIZE]} (512 unless {@code @4096} says
 * otherwise; the IV counts 512-byte units, as LUKS2 does), or {@code plain} for LOWER alone.
 */
public final class CryptScaling {
    private CryptScaling() {
    }

    public static void main(String[] args) throws Exception {
        Stack stack = null;
        BlockDevice lower;
        if (args[0].equals("ram")) {
            lower = new RamDisk("ram0", 256L << 20);
        } else {
            int colon = args[0].lastIndexOf(':');
            stack = Stack.open(Path.of(args[0].substring(0, colon)));
            lower = stack.device(args[0].substring(colon + 1));
        }
        Workload.Pattern rw = Workload.Pattern.parse(args[1]);
        int bs = Integer.parseInt(args[2]);
        int qd = Integer.parseInt(args[3]);
        double seconds = Double.parseDouble(args[4]);
        int rounds = Integer.parseInt(args[5]);
        List<Crypt.Tuning> tunings = new ArrayList<>();
        List<Integer> sectors = new ArrayList<>();
        for (int i = 6; i < args.length; i++) {
            String[] at = args[i].split("@");
            sectors.add(at.length > 1 ? Integer.parseInt(at[1]) : 512);
            String[] p = at[0].split(",");
            if (p[0].equals("plain")) {
                tunings.add(null);
                continue;
            }
            tunings.add(new Crypt.Tuning(Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2]),
                    Integer.parseInt(p[3]), !(p.length > 4 && p[4].equals("nohelp"))));
        }
        byte[] key = new byte[64];
        new Random(1).nextBytes(key);
        var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        Workload w = new Workload(rw, bs, qd, (long) (seconds * 1e9), Math.min(lower.size(), 1L << 30), 100, 1);
        String[] groups = {"all", "biostack-uring", "crypt-", "other"};
        double[][] iops = new double[tunings.size()][rounds];
        double[][] cores = new double[tunings.size()][rounds];
        double[][][] cpu = new double[tunings.size()][groups.length][rounds];
        for (int r = -1; r < rounds; r++) { // round -1 warms the JIT
            for (int t = 0; t < tunings.size(); t++) {
                Crypt.Tuning tu = tunings.get(t);
                Crypt c = tu == null ? null
                        : Crypt.create("c0", lower, "aes-xts-plain64", key, 0, 0, sectors.get(t), false,
                        tu);
                try {
                    Map<Long, Long> before = threadCpu();
                    long p0 = os.getProcessCpuTime();
                    BenchResult res = new LoadGenerator(c == null ? lower : c, w).run(null);
                    long p1 = os.getProcessCpuTime();
                    Map<Long, Long> after = threadCpu();
                    if (r >= 0) {
                        iops[t][r] = res.iops();
                        cores[t][r] = (p1 - p0) / (double) res.elapsedNs();
                        double[] g = byGroup(before, after, groups);
                        // threads that ended during the run (the bench's starter) count in "other"
                        g[groups.length - 1] += (p1 - p0) - g[0];
                        g[0] = p1 - p0;
                        for (int k = 0; k < groups.length; k++) {
                            cpu[t][k][r] = g[k] / 1e3 / Math.max(1, res.ios());
                        }
                    }
                } finally {
                    if (c != null) {
                        c.close();
                    }
                }
            }
        }
        if (stack != null) {
            stack.close();
        }
        System.out.printf(Locale.ROOT,
                "# crypt over %s %s bs=%d qd=%d, %d rounds of %.1fs; cpus=%d; median of rounds%n",
                args[0], rw.fioName(), bs, qd, rounds, seconds, Runtime.getRuntime().availableProcessors());
        System.out.printf(Locale.ROOT, "%-44s %8s %8s %6s   cpu us/io: %6s %6s %6s %6s%n", "tuning", "max k",
                "med k", "cores", "all", "uring", "crypt", "other");
        for (int t = 0; t < tunings.size(); t++) {
            Arrays.sort(iops[t]);
            Arrays.sort(cores[t]);
            double[] med = new double[groups.length];
            for (int k = 0; k < groups.length; k++) {
                Arrays.sort(cpu[t][k]);
                med[k] = cpu[t][k][rounds / 2];
            }
            Crypt.Tuning tu = tunings.get(t);
            String name = tu == null ? "plain (" + lower.name() + " alone)"
                    : String.format(Locale.ROOT, "w=%d inline=%d chunk=%d spin=%d%s", tu.workers(), tu.inlineBytes(),
                    tu.chunkBytes(), tu.spinUs(), tu.starterHelps() ? "" : " nohelp")
                    + (sectors.get(t) != 512 ? " ss=" + sectors.get(t) : "");
            System.out.printf(Locale.ROOT, "%-44s %8.1f %8.1f %6.2f   cpu us/io: %6.2f %6.2f %6.2f %6.2f%n", name,
                    iops[t][rounds - 1] / 1e3, iops[t][rounds / 2] / 1e3, cores[t][rounds / 2], med[0], med[1], med[2],
                    med[3]);
        }
    }

    private static Map<Long, Long> threadCpu() {
        var mx = ManagementFactory.getThreadMXBean();
        Map<Long, Long> m = new HashMap<>();
        for (long id : mx.getAllThreadIds()) {
            long c = mx.getThreadCpuTime(id);
            if (c >= 0) {
                m.put(id, c);
            }
        }
        return m;
    }

    /** CPU nanoseconds between the snapshots: all threads, then per name prefix, the rest last. */
    private static double[] byGroup(Map<Long, Long> before, Map<Long, Long> after, String[] groups) {
        var mx = ManagementFactory.getThreadMXBean();
        double[] g = new double[groups.length];
        for (Map.Entry<Long, Long> e : after.entrySet()) {
            var info = mx.getThreadInfo(e.getKey());
            if (info == null) {
                continue;
            }
            double d = e.getValue() - before.getOrDefault(e.getKey(), 0L);
            g[0] += d;
            int k = groups.length - 1;
            for (int i = 1; i < groups.length - 1; i++) {
                if (info.getThreadName().startsWith(groups[i])) {
                    k = i;
                }
            }
            g[k] += d;
        }
        return g;
    }
}
