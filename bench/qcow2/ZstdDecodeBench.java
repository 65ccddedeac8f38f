package io.biostack.layer.qcow2;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Decode throughput of biostack's ZstdDecoder on qcow2-shaped input: a file split into clusters,
 * each compressed as its own zstd frame (as qemu writes them), decoded REPS times.
 * Run by bench/qcow2/zstd-decode.sh, which times the zstd CLI on the same frames.
 */
public final class ZstdDecodeBench {
    public static void main(String[] a) throws Exception {
        Path dir = Path.of(a[0]);
        int cluster = Integer.parseInt(a[1]);
        int reps = Integer.parseInt(a[2]);
        List<byte[]> frames = new ArrayList<>();
        for (int i = 0; ; i++) {
            Path f = dir.resolve(String.format("c%06d.zst", i));
            if (!Files.exists(f)) {
                break;
            }
            frames.add(Files.readAllBytes(f));
        }
        byte[] want = Files.readAllBytes(dir.resolve("all.raw"));
        ZstdDecoder d = new ZstdDecoder();
        byte[] out = new byte[cluster];
        for (int i = 0; i < frames.size(); i++) { // check once, and warm up
            d.decompress(frames.get(i), frames.get(i).length, out);
            if (!Arrays.equals(out, 0, cluster, want, i * cluster, (i + 1) * cluster)) {
                throw new AssertionError("cluster " + i + " differs");
            }
        }
        long t0 = System.nanoTime();
        for (int r = 0; r < reps; r++) {
            for (byte[] f : frames) {
                d.decompress(f, f.length, out);
            }
        }
        double s = (System.nanoTime() - t0) / 1e9;
        long bytes = (long) reps * frames.size() * cluster;
        System.out.printf("biostack ZstdDecoder: %d MiB in %.2f s = %.1f MB/s%n", bytes >> 20, s, bytes / s / 1e6);
    }
}
