package io.biostack.layer.crypt;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Argon2 (RFC 9106, version 0x13), the key derivation of LUKS2 keyslots ({@code argon2i},
 * {@code argon2id}), with its lanes filled in parallel over off-heap memory.
 *
 * <p>The memory ({@code m} KiB) is one native {@link MemorySegment} ({@link Argon2Memory}: huge
 * pages where the kernel gives them), no object per block. Within a pass, the four slices follow one another; the segments of one slice (one per
 * lane) are independent (RFC 9106 section 3.4: a block references no block of the current slice
 * of another lane), so the lanes of a slice run on up to {@code min(lanes, cores)} threads: the
 * caller's and helpers from a small daemon pool, created on first use, whose idle threads exit.
 * A slice ends when all its lanes are done, which is the synchronisation the RFC asks for. The
 * memory is zeroed and freed before {@link #derive} returns, whatever happens. H and H' are the
 * BLAKE2b of {@link Argon2Blake2b}; the compression is {@link Argon2Fill}.
 *
 * <p>Stateless apart from the pool; safe to call from many threads at once (each call has its own
 * memory; a call that finds every helper busy fills its lanes itself).
 */
public final class Argon2 {
    /** RFC 9106 section 3.1: version 0x13. */
    private static final int VERSION = 0x13;
    /** RFC 9106 section 3.4: four slices per pass. */
    private static final int SYNC_POINTS = 4;
    /**
     * The largest memory cost accepted, in KiB: 4 GiB, cryptsetup's limit for LUKS2 keyslots
     * ({@code MAX_PBKDF_MEMORY} in lib/utils_pbkdf.c).
     */
    public static final int MAX_MEMORY_KIB = 4 * 1024 * 1024;
    /** RFC 9106 section 3.1: at most 2^24 - 1 lanes. */
    private static final int MAX_LANES = (1 << 24) - 1;

    private static final int CORES = Runtime.getRuntime().availableProcessors();
    /** Helper threads; made on first use of more than one lane. */
    private static volatile ThreadPoolExecutor pool;

    private Argon2() {
    }

    /** The variant (RFC 9106 section 3.1, the {@code y} parameter). */
    public enum Type {
        /** Data-dependent addressing (y = 0). */
        ARGON2D(0),
        /** Data-independent addressing (y = 1): LUKS2's {@code argon2i}. */
        ARGON2I(1),
        /** Hybrid (y = 2): LUKS2's {@code argon2id}, cryptsetup's default. */
        ARGON2ID(2);

        /** The RFC's {@code y}. */
        public final int y;

        Type(int y) {
            this.y = y;
        }
    }

    /**
     * Derives {@code outLen} bytes (Argon2 version 0x13, no secret, no associated data).
     *
     * @param type       the variant
     * @param password   the passphrase or key file bytes; not kept
     * @param salt       the salt, at least 8 bytes
     * @param iterations passes over memory ({@code t}), at least 1
     * @param memoryKiB  memory in KiB ({@code m}), at least 8 x lanes and at most
     *                   {@link #MAX_MEMORY_KIB} (4 GiB)
     * @param lanes      parallelism ({@code p}), 1 to 2^24-1
     * @param outLen     bytes wanted ({@code T}), at least 4
     * @return a new array of {@code outLen} bytes; the caller owns it and should wipe it
     * @throws IllegalArgumentException when a parameter is out of range (the message names it)
     */
    public static byte[] derive(Type type, byte[] password, byte[] salt, int iterations, int memoryKiB,
                                int lanes, int outLen) {
        return derive(type, password, salt, new byte[0], new byte[0], iterations, memoryKiB, lanes, outLen);
    }

    /**
     * {@link #derive(Type, byte[], byte[], int, int, int, int)} with the RFC's optional secret
     * {@code K} and associated data {@code X} (LUKS2 uses neither; the RFC's test vectors do).
     *
     * @param secret     the secret value {@code K}, possibly empty; not kept
     * @param associated the associated data {@code X}, possibly empty
     */
    static byte[] derive(Type type, byte[] password, byte[] salt, byte[] secret, byte[] associated,
                         int iterations, int memoryKiB, int lanes, int outLen) {
        check(type, password, salt, iterations, memoryKiB, lanes, outLen);
        // RFC 9106 section 3.4: m' = 4 * p * floor(m / 4p) blocks, q = m' / p columns per lane.
        int segmentLength = memoryKiB / (SYNC_POINTS * lanes);
        int laneLength = segmentLength * SYNC_POINTS;
        long blocks = (long) laneLength * lanes;
        byte[] h0 = h0(type, password, salt, secret, associated, iterations, memoryKiB, lanes, outLen);
        try (Argon2Memory memory = Argon2Memory.allocate(blocks * Argon2Fill.BLOCK_BYTES)) {
            MemorySegment mem = memory.segment();
            firstBlocks(mem, h0, lanes, laneLength);
            fill(mem, type, iterations, lanes, laneLength);
            return finish(mem, lanes, laneLength, outLen);
        } finally {
            Arrays.fill(h0, (byte) 0);
        }
    }

    private static void check(Type type, byte[] password, byte[] salt, int iterations, int memoryKiB,
                              int lanes, int outLen) {
        if (type == null || password == null || salt == null) {
            throw new IllegalArgumentException("argon2: type, password and salt are required");
        }
        if (salt.length < 8) {
            throw new IllegalArgumentException("argon2: the salt must be at least 8 bytes, not " + salt.length);
        }
        if (iterations < 1) {
            throw new IllegalArgumentException("argon2: iterations (time cost) must be at least 1, not " + iterations);
        }
        if (lanes < 1 || lanes > MAX_LANES) {
            throw new IllegalArgumentException("argon2: lanes (parallelism) must be 1 to " + MAX_LANES + ", not " + lanes);
        }
        if (memoryKiB < 0 || memoryKiB > MAX_MEMORY_KIB) {
            throw new IllegalArgumentException("argon2: memory cost " + Integer.toUnsignedString(memoryKiB)
                    + " KiB is above the 4 GiB (" + MAX_MEMORY_KIB + " KiB) that LUKS2 allows");
        }
        if (memoryKiB < 8 * lanes) {
            throw new IllegalArgumentException("argon2: memory cost " + memoryKiB + " KiB is below 8 KiB per lane ("
                    + lanes + " lanes)");
        }
        if (outLen < 4) {
            throw new IllegalArgumentException("argon2: the output must be at least 4 bytes, not " + outLen);
        }
    }

    /** RFC 9106 section 3.2 step 1: {@code H0}, 64 bytes. */
    private static byte[] h0(Type type, byte[] password, byte[] salt, byte[] secret, byte[] associated,
                             int iterations, int memoryKiB, int lanes, int outLen) {
        return new Argon2Blake2b(64)
                .updateLe32(lanes).updateLe32(outLen).updateLe32(memoryKiB).updateLe32(iterations)
                .updateLe32(VERSION).updateLe32(type.y)
                .updateLe32(password.length).update(password)
                .updateLe32(salt.length).update(salt)
                .updateLe32(secret.length).update(secret)
                .updateLe32(associated.length).update(associated)
                .digest();
    }

    /** Steps 3 and 4: {@code B[i][0]} and {@code B[i][1]} of every lane, from {@code H0}. */
    private static void firstBlocks(MemorySegment mem, byte[] h0, int lanes, int laneLength) {
        byte[] in = Arrays.copyOf(h0, 72);
        byte[] block = new byte[Argon2Fill.BLOCK_BYTES];
        long[] words = new long[Argon2Fill.WORDS];
        try {
            for (int lane = 0; lane < lanes; lane++) {
                for (int j = 0; j < 2; j++) {
                    putLe32(in, 64, j);
                    putLe32(in, 68, lane);
                    Argon2Blake2b.hashLong(in, block, 0, block.length);
                    for (int w = 0; w < words.length; w++) {
                        words[w] = Argon2Blake2b.le64(block, w * 8);
                    }
                    MemorySegment.copy(words, 0, mem, ValueLayout.JAVA_LONG,
                            ((long) lane * laneLength + j) * Argon2Fill.BLOCK_BYTES, words.length);
                }
            }
        } finally {
            Arrays.fill(in, (byte) 0);
            Arrays.fill(block, (byte) 0);
            Arrays.fill(words, 0);
        }
    }

    /** Steps 5 and 6: every pass, slice by slice, the lanes of a slice in parallel. */
    private static void fill(MemorySegment mem, Type type, int passes, int lanes, int laneLength) {
        Argon2Fill own = new Argon2Fill(mem, lanes, laneLength, passes, type.y);
        try {
            int helpers = Math.min(lanes, CORES) - 1;
            for (int pass = 0; pass < passes; pass++) {
                for (int slice = 0; slice < SYNC_POINTS; slice++) {
                    if (helpers == 0) {
                        for (int lane = 0; lane < lanes; lane++) {
                            own.fillSegment(pass, lane, slice);
                        }
                    } else {
                        new Slice(mem, type, passes, lanes, laneLength, pass, slice).run(own, helpers);
                    }
                }
            }
        } finally {
            own.wipe();
        }
    }

    /**
     * One slice of one pass: its lanes are taken one at a time from a counter by whichever thread
     * is free (the caller, and helpers if the pool has them), so a helper that starts late or not
     * at all only means the caller does more of them.
     */
    private static final class Slice implements Runnable {
        private final MemorySegment mem;
        private final Type type;
        private final int passes;
        private final int lanes;
        private final int laneLength;
        private final int pass;
        private final int slice;
        private final AtomicInteger next = new AtomicInteger();
        private final CountDownLatch done;
        private final AtomicReference<Throwable> failure = new AtomicReference<>();

        Slice(MemorySegment mem, Type type, int passes, int lanes, int laneLength, int pass, int slice) {
            this.mem = mem;
            this.type = type;
            this.passes = passes;
            this.lanes = lanes;
            this.laneLength = laneLength;
            this.pass = pass;
            this.slice = slice;
            this.done = new CountDownLatch(lanes);
        }

        /** Runs the slice on the calling thread and up to {@code helpers} pool threads; returns when every lane is done. */
        void run(Argon2Fill own, int helpers) {
            ThreadPoolExecutor p = pool();
            for (int i = 0; i < helpers; i++) {
                try {
                    p.execute(this);
                } catch (RejectedExecutionException busy) {
                    break; // every helper is busy with another derivation: do the lanes here
                }
            }
            work(own);
            boolean interrupted = false;
            while (true) {
                try {
                    done.await();
                    break;
                } catch (InterruptedException e) {
                    // The memory cannot be freed while a helper fills it: wait, then pass the interrupt on.
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
            Throwable t = failure.get();
            if (t != null) {
                throw new IllegalStateException("argon2: a lane failed", t);
            }
        }

        /** A helper's part: a filler of its own, wiped when the slice has no lane left. */
        @Override
        public void run() {
            if (next.get() >= lanes) {
                return;
            }
            Argon2Fill fill = new Argon2Fill(mem, lanes, laneLength, passes, type.y);
            try {
                work(fill);
            } finally {
                fill.wipe();
            }
        }

        private void work(Argon2Fill fill) {
            int lane;
            while ((lane = next.getAndIncrement()) < lanes) {
                try {
                    fill.fillSegment(pass, lane, slice);
                } catch (Throwable t) {
                    failure.compareAndSet(null, t);
                } finally {
                    done.countDown();
                }
            }
        }
    }

    private static ThreadPoolExecutor pool() {
        ThreadPoolExecutor p = pool;
        if (p == null) {
            synchronized (Argon2.class) {
                p = pool;
                if (p == null) {
                    // No queue: a task runs on an idle helper or a new one (up to cores - 1), or is
                    // refused and its lanes are done by the caller. Idle helpers exit after 10 s.
                    AtomicInteger n = new AtomicInteger();
                    p = new ThreadPoolExecutor(0, Math.max(1, CORES - 1), 10, TimeUnit.SECONDS,
                            new SynchronousQueue<>(), r -> {
                                Thread t = new Thread(r, "argon2-" + n.incrementAndGet());
                                t.setDaemon(true);
                                return t;
                            });
                    pool = p;
                }
            }
        }
        return p;
    }

    /** Steps 7 and 8: {@code C} = the XOR of each lane's last block, then {@code H'^T(C)}. */
    private static byte[] finish(MemorySegment mem, int lanes, int laneLength, int outLen) {
        long[] c = new long[Argon2Fill.WORDS];
        long[] w = new long[Argon2Fill.WORDS];
        byte[] cBytes = new byte[Argon2Fill.BLOCK_BYTES];
        try {
            for (int lane = 0; lane < lanes; lane++) {
                MemorySegment.copy(mem, ValueLayout.JAVA_LONG,
                        ((long) lane * laneLength + laneLength - 1) * Argon2Fill.BLOCK_BYTES, w, 0, w.length);
                for (int i = 0; i < c.length; i++) {
                    c[i] ^= w[i];
                }
            }
            for (int i = 0; i < c.length; i++) {
                for (int b = 0; b < 8; b++) {
                    cBytes[i * 8 + b] = (byte) (c[i] >>> (8 * b));
                }
            }
            byte[] out = new byte[outLen];
            Argon2Blake2b.hashLong(cBytes, out, 0, outLen);
            return out;
        } finally {
            Arrays.fill(c, 0);
            Arrays.fill(w, 0);
            Arrays.fill(cBytes, (byte) 0);
        }
    }

    private static void putLe32(byte[] b, int off, int x) {
        b[off] = (byte) x;
        b[off + 1] = (byte) (x >>> 8);
        b[off + 2] = (byte) (x >>> 16);
        b[off + 3] = (byte) (x >>> 24);
    }
}
