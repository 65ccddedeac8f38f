package io.biostack.layer.crypt;

import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import org.bouncycastle.crypto.generators.Argon2BytesGenerator;
import org.bouncycastle.crypto.params.Argon2Parameters;

/**
 * One Argon2 derivation timed, for bench/argon2/run.sh: biostack's {@link Argon2} or
 * BouncyCastle's, with a keyslot's parameters. Prints one line per run: the wall time, the peak
 * heap used (all heap pools, peaks reset before the run), the process's resident memory before
 * and at its peak (VmRSS, VmHWM: the native memory, which no JDK pool counts when it is mapped),
 * the kind of memory, and the first bytes of the key so that the implementations can be seen to
 * agree. Not a test (no Test suffix):
 *
 * <pre>java -cp target/classes:target/test-classes:target/lib/* io.biostack.layer.crypt.Argon2Bench
 *     biostack|bc argon2id|argon2i TIME_COST MEMORY_KIB LANES SALT_HEX PASSPHRASE_FILE [RUNS]</pre>
 */
public final class Argon2Bench {
    private Argon2Bench() {
    }

    public static void main(String[] args) throws Exception {
        String impl = args[0];
        Argon2.Type type = switch (args[1]) {
            case "argon2id" -> Argon2.Type.ARGON2ID;
            case "argon2i" -> Argon2.Type.ARGON2I;
            case "argon2d" -> Argon2.Type.ARGON2D;
            default -> throw new IllegalArgumentException("unknown kdf " + args[1]);
        };
        int t = Integer.parseInt(args[2]);
        int m = Integer.parseInt(args[3]);
        int p = Integer.parseInt(args[4]);
        byte[] salt = HexFormat.of().parseHex(args[5]);
        byte[] password = Files.readAllBytes(Path.of(args[6]));
        int runs = args.length > 7 ? Integer.parseInt(args[7]) : 1;
        List<MemoryPoolMXBean> heap = ManagementFactory.getMemoryPoolMXBeans().stream()
                .filter(b -> b.getType() == MemoryType.HEAP).toList();
        for (int r = 0; r < runs; r++) {
            System.gc();
            heap.forEach(MemoryPoolMXBean::resetPeakUsage);
            long heapBefore = heap.stream().mapToLong(b -> b.getUsage().getUsed()).sum();
            long rssBefore = status("VmRSS:");
            com.sun.management.OperatingSystemMXBean os =
                    (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
            long cpuStart = os.getProcessCpuTime();
            long start = System.nanoTime();
            byte[] key = impl.equals("bc") ? bouncyCastle(type, password, salt, t, m, p)
                    : Argon2.derive(type, password, salt, t, m, p, 64);
            long ns = System.nanoTime() - start;
            long cpu = os.getProcessCpuTime() - cpuStart;
            long heapPeak = heap.stream().mapToLong(b -> b.getPeakUsage().getUsed()).sum();
            System.out.printf(Locale.ROOT,
                    "%s %s t=%d m=%d p=%d: %.3f s wall, %.3f s cpu, heap peak +%.1f MiB, rss %.1f MiB before,"
                    + " peak %.1f MiB, memory %s, key %s%n",
                    impl, args[1], t, m, p, ns / 1e9, cpu / 1e9, (heapPeak - heapBefore) / 1048576.0,
                    rssBefore / 1024.0, status("VmHWM:") / 1024.0,
                    impl.equals("bc") ? "heap" : Argon2Memory.mapsHugePages() ? "mapped+THP" : "arena",
                    HexFormat.of().formatHex(key, 0, 8));
        }
    }

    private static byte[] bouncyCastle(Argon2.Type type, byte[] password, byte[] salt, int t, int m, int p) {
        Argon2Parameters params = new Argon2Parameters.Builder(type.y)
                .withVersion(Argon2Parameters.ARGON2_VERSION_13)
                .withSalt(salt).withIterations(t).withMemoryAsKB(m).withParallelism(p).build();
        Argon2BytesGenerator gen = new Argon2BytesGenerator();
        gen.init(params);
        byte[] out = new byte[64];
        gen.generateBytes(password, out);
        return out;
    }

    /** A KiB figure of /proc/self/status. */
    private static long status(String field) throws java.io.IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"), StandardCharsets.US_ASCII)) {
            if (line.startsWith(field)) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return -1;
    }
}
