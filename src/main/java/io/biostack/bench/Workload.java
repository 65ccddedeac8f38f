package io.biostack.bench;

import java.util.Locale;

/**
 * What a load generator does, in fio's words.
 *
 * @param rw        read, write, randread, randwrite or randrw
 * @param blockSize bytes per I/O ({@code --bs})
 * @param ioDepth   I/Os kept in flight ({@code --iodepth})
 * @param runtimeNs how long to run
 * @param rangeBytes bytes of the device the offsets fall in ({@code --size}; 0 = the whole device)
 * @param readMixPercent share of reads for randrw ({@code --rwmixread})
 * @param seed      random offsets are reproducible for one seed
 */
public record Workload(Pattern rw, int blockSize, int ioDepth, long runtimeNs, long rangeBytes,
                       int readMixPercent, long seed) {

    /** fio's {@code --rw} values. */
    public enum Pattern {
        /** Sequential reads. */
        READ(false, 100),
        /** Sequential writes. */
        WRITE(false, 0),
        /** Reads at random block-aligned offsets. */
        RANDREAD(true, 100),
        /** Writes at random block-aligned offsets. */
        RANDWRITE(true, 0),
        /** Random reads and writes, mixed as {@code readMixPercent} says. */
        RANDRW(true, -1);

        final boolean random;
        final int reads;

        Pattern(boolean random, int reads) {
            this.random = random;
            this.reads = reads;
        }

        /**
         * The pattern fio calls {@code s} (read, write, randread, randwrite, randrw).
         *
         * @param s a fio {@code --rw} value, in any case
         * @return the pattern
         * @throws IllegalArgumentException when {@code s} names no pattern
         */
        public static Pattern parse(String s) {
            try {
                return valueOf(s.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--rw must be read, write, randread, randwrite or randrw: " + s);
            }
        }

        /**
         * Whether the offsets are random (the patterns fio names {@code rand*}).
         *
         * @return true for randread, randwrite and randrw
         */
        public boolean isRandom() {
            return random;
        }

        /**
         * The name fio gives the pattern.
         *
         * @return the name in lower case, as fio's {@code --rw} takes it
         */
        public String fioName() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /** Checks the numbers; throws {@link IllegalArgumentException} naming the bad option. */
    public Workload {
        if (blockSize <= 0) {
            throw new IllegalArgumentException("--bs must be positive");
        }
        if (ioDepth <= 0 || ioDepth > 4096) {
            throw new IllegalArgumentException("--iodepth must be between 1 and 4096: " + ioDepth);
        }
        if (runtimeNs <= 0) {
            throw new IllegalArgumentException("--runtime must be positive");
        }
        if (readMixPercent < 0 || readMixPercent > 100) {
            throw new IllegalArgumentException("--rwmixread must be between 0 and 100");
        }
    }
}
