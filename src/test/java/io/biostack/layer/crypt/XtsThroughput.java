package io.biostack.layer.crypt;

import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Locale;
import java.util.Random;

/**
 * A JMH-free measure of XTS and of the crypt layer, for bench/crypt/run.sh: MB/s of
 * {@link Xts} over a 1 MiB buffer (AES-128/256, 512- and 4096-byte sectors), then of 128 KiB
 * writes and reads through {@link Crypt} over a ramdisk against the bare ramdisk, one thread.
 * Not a test (no Test suffix); run with {@code java -cp target/classes:target/test-classes
 * io.biostack.layer.crypt.XtsThroughput [seconds]}.
 */
public final class XtsThroughput {
    private XtsThroughput() {
    }

    public static void main(String[] args) throws InterruptedException {
        if (args.length > 0 && args[0].equals("ceiling")) {
            ceiling(Integer.parseInt(args[1]), Double.parseDouble(args[2]));
            return;
        }
        double seconds = args.length > 0 ? Double.parseDouble(args[0]) : 2;
        Random r = new Random(1);
        byte[] buf = new byte[1 << 20];
        r.nextBytes(buf);
        System.out.println("# XTS in memory, 1 MiB per call, one thread");
        for (int keyLen : new int[] {32, 64}) {
            byte[] key = new byte[keyLen];
            r.nextBytes(key);
            Xts xts = new Xts(key);
            for (int ss : new int[] {512, 4096}) {
                double enc = rate(seconds, () -> xts.encrypt(buf, 0, buf.length, 0, ss, ss / 512), buf.length);
                double dec = rate(seconds, () -> xts.decrypt(buf, 0, buf.length, 0, ss, ss / 512), buf.length);
                System.out.printf(Locale.ROOT, "xts aes-%d sector=%-4d encrypt %7.0f MB/s  decrypt %7.0f MB/s%n",
                        keyLen * 4, ss, enc, dec);
            }
        }
        System.out.println("# 128 KiB bios, QD1, one thread: ramdisk vs crypt(aes-256-xts) over ramdisk");
        int bs = 128 * 1024;
        long size = 256L << 20;
        RamDisk plain = new RamDisk("ram0", size);
        RamDisk under = new RamDisk("ram1", size);
        byte[] key = new byte[64];
        r.nextBytes(key);
        BlockDevice crypt = Crypt.create("c0", under, "aes-xts-plain64", key, 0, 0, 512);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mem = arena.allocate(bs, 4096);
            mem.copyFrom(MemorySegment.ofArray(buf).asSlice(0, bs));
            for (BlockDevice d : new BlockDevice[] {plain, crypt}) {
                long[] pos = {0};
                double w = rate(seconds, () -> {
                    d.write(pos[0], mem).join();
                    pos[0] = (pos[0] + bs) % size;
                }, bs);
                pos[0] = 0;
                double rd = rate(seconds, () -> {
                    d.read(pos[0], mem).join();
                    pos[0] = (pos[0] + bs) % size;
                }, bs);
                System.out.printf(Locale.ROOT, "%-5s write %7.0f MB/s  read %7.0f MB/s%n", d.name(), w, rd);
            }
        }
    }

    /**
     * What the machine gives right now: XTS over 128 KiB buffers on one thread, then on
     * {@code threads} threads at once, alternating three times; prints the best of each and the
     * ratio. On a quiet machine it is about the number of cores; a crypt pool cannot scale past it.
     */
    private static void ceiling(int threads, double seconds) throws InterruptedException {
        byte[] key = new byte[64];
        new Random(2).nextBytes(key);
        Xts xts = new Xts(key);
        double best1 = 0;
        double bestN = 0;
        for (int round = 0; round < 3; round++) {
            best1 = Math.max(best1, parallel(xts, 1, seconds));
            bestN = Math.max(bestN, parallel(xts, threads, seconds));
        }
        System.out.printf(Locale.ROOT, "xts ceiling: 1 thread %.0f MB/s, %d threads %.0f MB/s: %.2fx%n", best1, threads,
                bestN, bestN / best1);
    }

    private static double parallel(Xts xts, int threads, double seconds) throws InterruptedException {
        long end = System.nanoTime() + (long) (seconds * 1e9);
        long[] ops = new long[threads];
        Thread[] ts = new Thread[threads];
        long start = System.nanoTime();
        for (int i = 0; i < threads; i++) {
            int id = i;
            ts[i] = Thread.ofPlatform().start(() -> {
                byte[] b = new byte[128 * 1024];
                long n = 0;
                while (System.nanoTime() < end) {
                    xts.decrypt(b, 0, b.length, n++, 512, 1);
                }
                ops[id] = n;
            });
        }
        long total = 0;
        for (int i = 0; i < threads; i++) {
            ts[i].join();
            total += ops[i];
        }
        return total * 128.0 * 1024 / ((System.nanoTime() - start) / 1e9) / 1e6;
    }

    /** MB/s (10^6 bytes) of {@code op} moving {@code bytes} per call, after a warm-up. */
    private static double rate(double seconds, Runnable op, long bytes) {
        long warm = System.nanoTime() + (long) (seconds * 0.3e9);
        while (System.nanoTime() < warm) {
            op.run();
        }
        long n = 0;
        long start = System.nanoTime();
        long end = start + (long) (seconds * 1e9);
        long now;
        do {
            op.run();
            n++;
            now = System.nanoTime();
        } while (now < end);
        return n * bytes / ((now - start) / 1e9) / 1e6;
    }
}
