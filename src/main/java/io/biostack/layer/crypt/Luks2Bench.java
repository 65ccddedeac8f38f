package io.biostack.layer.crypt;

/**
 * The KDF benchmarks of format and add-key (cryptsetup's {@code lib/utils_benchmark.c} and
 * {@code crypt_benchmark_pbkdf}): pick a cost that makes one unlock take about the asked time on
 * this machine. PBKDF2 runs a trial and scales the iterations; Argon2 runs a trial at a fraction of
 * the memory and scales, raising the time cost at full memory, or, when even the minimum time cost
 * 4 is too slow, lowering the memory (cryptsetup's order). Stateless.
 */
final class Luks2Bench {
    /** cryptsetup's minimum PBKDF2 iterations (LUKS_MKD_ITERATIONS_MIN / pbkdf2 minimum). */
    static final int PBKDF2_MIN = 1000;
    /** cryptsetup's minimum Argon2 time cost and memory (PBKDF_ARGON2_MIN... argon2 time 4, 32 MiB floor here). */
    static final int ARGON2_MIN_TIME = 4;
    static final int ARGON2_MIN_KIB = 32 * 1024;
    /** Digest iterations: cryptsetup aims at 1/8 s for the volume key digest (LUKS_MKD_ITERATIONS_MS 125). */
    static final int DIGEST_MS = 125;

    private Luks2Bench() {
    }

    /** PBKDF2 iterations of {@code hash} that take about {@code ms} milliseconds here. */
    static int pbkdf2Iterations(String hash, int ms) {
        byte[] pw = "biostack benchmark".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        byte[] salt = new byte[32];
        int trial = 20_000;
        LuksKdf.pbkdf2(hash, pw, salt, 2_000, 32); // warm the JIT
        long t0 = System.nanoTime();
        LuksKdf.pbkdf2(hash, pw, salt, trial, 32);
        long ns = Math.max(1, System.nanoTime() - t0);
        long it = (long) ((double) trial * ms * 1_000_000 / ns);
        return (int) Math.clamp(it, PBKDF2_MIN, Integer.MAX_VALUE / 2);
    }

    /** The volume key digest's iterations. */
    static int digestIterations() {
        return pbkdf2Iterations("sha256", DIGEST_MS);
    }

    /**
     * Argon2 {time, memory KiB} taking about {@code ms} with at most {@code maxKiB} and
     * {@code lanes} lanes.
     */
    static int[] argon2(String type, int ms, int maxKiB, int lanes) {
        Argon2.Type t = type.equals("argon2i") ? Argon2.Type.ARGON2I : Argon2.Type.ARGON2ID;
        int trialKiB = Math.max(8 * lanes, Math.min(maxKiB, 64 * 1024));
        byte[] pw = "biostack benchmark".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        byte[] salt = new byte[32];
        Argon2.derive(t, pw, salt, 1, Math.max(8 * lanes, trialKiB / 8), lanes, 32); // warm up
        long t0 = System.nanoTime();
        Argon2.derive(t, pw, salt, 1, trialKiB, lanes, 32);
        double nsPerKiBPass = (double) Math.max(1, System.nanoTime() - t0) / trialKiB;
        double budget = ms * 1_000_000.0;
        double passesAtMax = budget / (nsPerKiBPass * maxKiB);
        if (passesAtMax >= ARGON2_MIN_TIME) {
            return new int[] {(int) Math.min(passesAtMax, 1 << 20), maxKiB};
        }
        long mem = (long) (budget / (nsPerKiBPass * ARGON2_MIN_TIME));
        return new int[] {ARGON2_MIN_TIME, (int) Math.clamp(mem, Math.min(ARGON2_MIN_KIB, maxKiB), maxKiB)};
    }
}
