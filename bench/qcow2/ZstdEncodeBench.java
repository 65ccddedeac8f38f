package io.biostack.layer.qcow2;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Encode throughput and ratio of biostack's ZstdEncoder on qcow2-shaped input: a file cut into
 * clusters, each compressed as its own frame into cluster_size - 1 bytes (stored whole when it
 * does not fit, as qemu does), REPS times on one thread. Every frame is checked once through
 * ZstdDecoder. Run by bench/qcow2/zstd-encode.sh, which times the zstd CLI on the same clusters.
 */
public final class ZstdEncodeBench {
    public static void main(String[] a) throws Exception {
        byte[] all = Files.readAllBytes(Path.of(a[0]));
        int cluster = Integer.parseInt(a[1]);
        int reps = Integer.parseInt(a[2]);
        int n = all.length / cluster;
        ZstdEncoder e = a.length > 3 ? new ZstdEncoder(Integer.parseInt(a[3])) : new ZstdEncoder();
        ZstdDecoder d = new ZstdDecoder();
        byte[] in = new byte[cluster];
        byte[] out = new byte[cluster];
        byte[] back = new byte[cluster];
        long stored = 0;
        long raw = 0;
        for (int i = 0; i < n; i++) { // check once, and warm up
            System.arraycopy(all, i * cluster, in, 0, cluster);
            int len = e.compress(in, cluster, out, cluster - 1);
            if (len < 0) {
                stored += cluster;
                raw++;
                continue;
            }
            stored += len;
            d.decompress(out, len, back);
            if (!Arrays.equals(back, in)) {
                throw new AssertionError("cluster " + i + " does not round-trip");
            }
        }
        long t0 = System.nanoTime();
        for (int r = 0; r < reps; r++) {
            for (int i = 0; i < n; i++) {
                System.arraycopy(all, i * cluster, in, 0, cluster);
                e.compress(in, cluster, out, cluster - 1);
            }
        }
        double s = (System.nanoTime() - t0) / 1e9;
        long bytes = (long) reps * n * cluster;
        System.out.printf("biostack ZstdEncoder: %d MiB in %.2f s = %.1f MB/s, %d -> %d bytes (ratio %.3f, %d of %d"
                + " clusters stored whole)%n", bytes >> 20, s, bytes / s / 1e6, (long) n * cluster, stored,
                (double) n * cluster / stored, raw, n);
    }
}
