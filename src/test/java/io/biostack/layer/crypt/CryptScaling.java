package io.biostack.layer.crypt;

import io.biostack.bench.BenchResult;
import io.biostack.bench.LoadGenerator;
import io.biostack.bench.Workload;
import io.biostack.block.RamDisk;

import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;

/**
 * A tuning aid for the crypt worker pool, for bench/crypt/run.sh and by hand: the same load on
 * crypt over a ramdisk (where the cipher is the only cost) with several {@link Crypt.Tuning}s,
 * alternating in one JVM for several rounds, printing IOPS and process CPU time per I/O. CPU per
 * I/O stays readable on a loaded machine, where IOPS do not. Not a test (no Test suffix):
 * {@code java -cp target/classes:target/test-classes:target/lib/* io.biostack.layer.crypt.CryptScaling
 * RW BS QD SECONDS ROUNDS TUNING...} with each TUNING {@code workers,inline,chunk,spin_us}.
 */
public final class CryptScaling {
    private CryptScaling() {
    }

    public static void main(String[] args) throws Exception {
        Workload.Pattern rw = Workload.Pattern.parse(args[0]);
        int bs = Integer.parseInt(args[1]);
        int qd = Integer.parseInt(args[2]);
        double seconds = Double.parseDouble(args[3]);
        int rounds = Integer.parseInt(args[4]);
        List<Crypt.Tuning> tunings = new ArrayList<>();
        for (int i = 5; i < args.length; i++) {
            String[] p = args[i].split(",");
            tunings.add(new Crypt.Tuning(Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2]),
                    Integer.parseInt(p[3])));
        }
        long size = 256L << 20;
        RamDisk ram = new RamDisk("ram0", size);
        byte[] key = new byte[64];
        new Random(1).nextBytes(key);
        var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        Workload w = new Workload(rw, bs, qd, (long) (seconds * 1e9), size, 100, 1);
        double[][] iops = new double[tunings.size()][rounds];
        double[][] cpu = new double[tunings.size()][rounds];
        for (int r = -1; r < rounds; r++) { // round -1 warms the JIT
            for (int t = 0; t < tunings.size(); t++) {
                Crypt c = Crypt.create("c0", ram, "aes-xts-plain64", key, 0, 0, 512, false, tunings.get(t));
                try {
                    long c0 = os.getProcessCpuTime();
                    BenchResult res = new LoadGenerator(c, w).run(null);
                    long c1 = os.getProcessCpuTime();
                    if (r >= 0) {
                        iops[t][r] = res.iops();
                        cpu[t][r] = (c1 - c0) / 1e3 / Math.max(1, res.ios());
                    }
                } finally {
                    c.close();
                }
            }
        }
        System.out.printf(Locale.ROOT, "# crypt over ram %s bs=%d qd=%d, %d rounds of %.1fs; cpus=%d%n", rw.fioName(),
                bs, qd, rounds, seconds, Runtime.getRuntime().availableProcessors());
        for (int t = 0; t < tunings.size(); t++) {
            java.util.Arrays.sort(iops[t]);
            java.util.Arrays.sort(cpu[t]);
            System.out.printf(Locale.ROOT, "%-28s iops k: max %7.1f med %7.1f   cpu us/io: min %6.2f med %6.2f%n",
                    tunings.get(t), iops[t][rounds - 1] / 1e3, iops[t][rounds / 2] / 1e3, cpu[t][0], cpu[t][rounds / 2]);
        }
    }
}
