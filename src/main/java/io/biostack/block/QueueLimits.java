package io.biostack.block;

/**
 * What a device accepts, published by every device and stacked by every layer
 * ({@code struct queue_limits}, include/linux/blkdev.h; stacking after block/blk-settings.c
 * {@code blk_stack_limits}). Immutable; build with {@link #builder()}.
 *
 * <p>All sizes are bytes. A zero maximum means "no limit" where the kernel says so
 * ({@code min_not_zero}); a zero {@code maxDiscardBytes} or {@code maxWriteZeroesBytes} means
 * the op is not supported.
 */
public final class QueueLimits {
    /** Default cap on one data bio: 1 MiB, as the loop driver's queue ends up with on most files. */
    public static final long DEFAULT_MAX_BYTES = 1L << 20;

    private final int logicalBlockSize;
    private final int physicalBlockSize;
    private final int dmaAlignment;
    private final long maxBytes;
    private final int maxSegments;
    private final long maxSegmentSize;
    private final long chunkBytes;
    private final int discardGranularity;
    private final long maxDiscardBytes;
    private final long maxWriteZeroesBytes;
    private final int ioMin;
    private final long ioOpt;
    private final boolean writeCache;
    private final boolean fua;

    private QueueLimits(Builder b) {
        this.logicalBlockSize = b.logicalBlockSize;
        this.physicalBlockSize = Math.max(b.physicalBlockSize, b.logicalBlockSize);
        this.dmaAlignment = b.dmaAlignment;
        this.maxBytes = b.maxBytes;
        this.maxSegments = b.maxSegments;
        this.maxSegmentSize = b.maxSegmentSize;
        this.chunkBytes = b.chunkBytes;
        this.discardGranularity = b.discardGranularity;
        this.maxDiscardBytes = b.maxDiscardBytes;
        this.maxWriteZeroesBytes = b.maxWriteZeroesBytes;
        this.ioMin = Math.max(b.ioMin, 0);
        this.ioOpt = b.ioOpt;
        this.writeCache = b.writeCache;
        this.fua = b.fua;
    }

    /**
     * A builder with the defaults of a 512-byte disk and no other limits.
     *
     * @return a new builder; each call gives a fresh one
     */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * A builder that starts from these limits.
     *
     * @return a new builder holding a copy of every limit of this object
     */
    public Builder toBuilder() {
        Builder b = new Builder();
        b.logicalBlockSize = logicalBlockSize;
        b.physicalBlockSize = physicalBlockSize;
        b.dmaAlignment = dmaAlignment;
        b.maxBytes = maxBytes;
        b.maxSegments = maxSegments;
        b.maxSegmentSize = maxSegmentSize;
        b.chunkBytes = chunkBytes;
        b.discardGranularity = discardGranularity;
        b.maxDiscardBytes = maxDiscardBytes;
        b.maxWriteZeroesBytes = maxWriteZeroesBytes;
        b.ioMin = ioMin;
        b.ioOpt = ioOpt;
        b.writeCache = writeCache;
        b.fua = fua;
        return b;
    }

    /**
     * Smallest unit a request's offset and length must be a multiple of.
     *
     * @return the logical block size in bytes, a power of two of at least 512
     */
    public int logicalBlockSize() { return logicalBlockSize; }
    /**
     * Smallest unit the device writes without read-modify-write.
     *
     * @return the physical block size in bytes, at least the logical one
     */
    public int physicalBlockSize() { return physicalBlockSize; }
    /**
     * Alignment of memory addresses and segment lengths for zero-copy I/O (1 = any).
     *
     * @return the alignment in bytes, a power of two; 1 when any address will do
     */
    public int dmaAlignment() { return dmaAlignment; }
    /**
     * Largest data bio in bytes (0 = no limit).
     *
     * @return the limit in bytes, 0 when there is none
     */
    public long maxBytes() { return maxBytes; }
    /**
     * Most segments in one bio (0 = no limit).
     *
     * @return the limit, 0 when there is none
     */
    public int maxSegments() { return maxSegments; }
    /**
     * Largest segment in bytes (0 = no limit).
     *
     * @return the limit in bytes, 0 when there is none
     */
    public long maxSegmentSize() { return maxSegmentSize; }
    /**
     * A bio must not cross a multiple of this (0 = no boundary); stripes set it.
     *
     * @return the boundary in bytes, 0 when there is none
     */
    public long chunkBytes() { return chunkBytes; }
    /**
     * Unit in bytes a discard frees storage in (0 = the logical block size).
     *
     * @return the granularity in bytes, 0 when it is the logical block size
     */
    public int discardGranularity() { return discardGranularity; }
    /**
     * Largest DISCARD in bytes; 0 = DISCARD not supported.
     *
     * @return the limit in bytes, 0 when the device takes no DISCARD
     */
    public long maxDiscardBytes() { return maxDiscardBytes; }
    /**
     * Largest WRITE_ZEROES in bytes; 0 = WRITE_ZEROES not supported.
     *
     * @return the limit in bytes, 0 when the device takes no WRITE_ZEROES
     */
    public long maxWriteZeroesBytes() { return maxWriteZeroesBytes; }
    /**
     * Minimum preferred I/O size.
     *
     * @return the size in bytes, 0 when the device prefers none
     */
    public int ioMin() { return ioMin; }
    /**
     * Optimal I/O size (0 = not reported).
     *
     * @return the size in bytes, 0 when the device reports none
     */
    public long ioOpt() { return ioOpt; }
    /**
     * True when writes sit in a volatile cache until a FLUSH.
     *
     * @return true when FLUSH is needed for durability, false when a completed write is durable
     */
    public boolean writeCache() { return writeCache; }
    /**
     * True when FUA is honoured natively.
     *
     * @return true when the device makes a FUA write durable itself, false when a flush must follow
     *         it
     */
    public boolean fua() { return fua; }
    /**
     * True when the device takes DISCARD.
     *
     * @return true when {@link #maxDiscardBytes()} is above 0
     */
    public boolean discard() { return maxDiscardBytes > 0; }
    /**
     * True when the device takes WRITE_ZEROES.
     *
     * @return true when {@link #maxWriteZeroesBytes()} is above 0
     */
    public boolean writeZeroes() { return maxWriteZeroesBytes > 0; }

    /**
     * Limits of a device stacked on {@code bottom}, starting from the top device's own
     * ({@code blk_stack_limits}): the minimum of maxima (0 = none), the maximum of block sizes and
     * alignments, the lcm of io_opt and chunk boundaries; DISCARD, WRITE_ZEROES and FUA only when
     * both have them; a volatile write cache when either has one (so that FLUSH is sent).
     *
     * @param top the upper device's own limits (its block size, its own maxima and features)
     * @param bottom the limits of the device it sits on
     * @return the combined limits that the upper device publishes
     */
    public static QueueLimits stack(QueueLimits top, QueueLimits bottom) {
        Builder b = new Builder();
        b.logicalBlockSize = Math.max(top.logicalBlockSize, bottom.logicalBlockSize);
        b.physicalBlockSize = Math.max(top.physicalBlockSize, bottom.physicalBlockSize);
        b.dmaAlignment = Math.max(top.dmaAlignment, bottom.dmaAlignment);
        b.maxBytes = minNotZero(top.maxBytes, bottom.maxBytes);
        b.maxSegments = (int) minNotZero(top.maxSegments, bottom.maxSegments);
        b.maxSegmentSize = minNotZero(top.maxSegmentSize, bottom.maxSegmentSize);
        b.chunkBytes = lcmNotZero(top.chunkBytes, bottom.chunkBytes);
        b.discardGranularity = Math.max(top.discardGranularity, bottom.discardGranularity);
        b.maxDiscardBytes = Math.min(top.maxDiscardBytes, bottom.maxDiscardBytes);
        b.maxWriteZeroesBytes = Math.min(top.maxWriteZeroesBytes, bottom.maxWriteZeroesBytes);
        b.ioMin = Math.max(top.ioMin, bottom.ioMin);
        b.ioOpt = lcmNotZero(top.ioOpt, bottom.ioOpt);
        b.writeCache = top.writeCache || bottom.writeCache;
        b.fua = top.fua && bottom.fua;
        return new QueueLimits(b);
    }

    static long minNotZero(long a, long b) {
        if (a == 0) {
            return b;
        }
        if (b == 0) {
            return a;
        }
        return Math.min(a, b);
    }

    static long lcmNotZero(long a, long b) {
        if (a == 0) {
            return b;
        }
        if (b == 0) {
            return a;
        }
        return a / gcd(a, b) * b;
    }

    private static long gcd(long a, long b) {
        while (b != 0) {
            long t = a % b;
            a = b;
            b = t;
        }
        return a;
    }

    @Override
    public String toString() {
        return "QueueLimits[lbs=" + logicalBlockSize + " pbs=" + physicalBlockSize + " dma=" + dmaAlignment
                + " maxBytes=" + maxBytes + " maxSegs=" + maxSegments + " maxSegSize=" + maxSegmentSize
                + " chunk=" + chunkBytes + " discard=" + maxDiscardBytes + "/" + discardGranularity
                + " wzeroes=" + maxWriteZeroesBytes + " ioMin=" + ioMin + " ioOpt=" + ioOpt
                + " wc=" + writeCache + " fua=" + fua + "]";
    }

    /** Builds {@link QueueLimits}; defaults are a 512-byte disk with no other limits. */
    public static final class Builder {
        /** Made by {@link QueueLimits#builder()} and its siblings. */
        Builder() {
        }

        private int logicalBlockSize = 512;
        private int physicalBlockSize = 512;
        private int dmaAlignment = 1;
        private long maxBytes;
        private int maxSegments;
        private long maxSegmentSize;
        private long chunkBytes;
        private int discardGranularity;
        private long maxDiscardBytes;
        private long maxWriteZeroesBytes;
        private int ioMin;
        private long ioOpt;
        private boolean writeCache;
        private boolean fua;

        /**
         * Sets the unit a request's offset and length must be a multiple of
         * ({@code logical_block_size}).
         *
         * @param v the size in bytes, a power of two of at least 512
         * @return this builder
         * @throws IllegalArgumentException when {@code v} is not a power of two or is below 512
         */
        public Builder logicalBlockSize(int v) {
            if (v < 512 || Integer.bitCount(v) != 1) {
                throw new IllegalArgumentException("logical block size must be a power of two >= 512: " + v);
            }
            logicalBlockSize = v;
            return this;
        }
        /**
         * Sets the unit the device writes without read-modify-write.
         *
         * @param v the size in bytes; below the logical block size it is raised to it on
         *         {@link #build}
         * @return this builder
         */
        public Builder physicalBlockSize(int v) { physicalBlockSize = v; return this; }
        /**
         * Sets the alignment the memory of a bio needs (1 = any).
         *
         * @param v the alignment in bytes, a power of two; 0 or 1 mean any address
         * @return this builder
         */
        public Builder dmaAlignment(int v) { dmaAlignment = Math.max(1, v); return this; }
        /**
         * Sets the largest data bio in bytes (0 = no limit).
         *
         * @param v the limit in bytes, 0 for none
         * @return this builder
         */
        public Builder maxBytes(long v) { maxBytes = v; return this; }
        /**
         * Sets the most segments in a bio (0 = no limit).
         *
         * @param v the limit, 0 for none
         * @return this builder
         */
        public Builder maxSegments(int v) { maxSegments = v; return this; }
        /**
         * Sets the largest segment in bytes (0 = no limit).
         *
         * @param v the limit in bytes, 0 for none
         * @return this builder
         */
        public Builder maxSegmentSize(long v) { maxSegmentSize = v; return this; }
        /**
         * Sets the boundary no bio may cross, in bytes (0 = none), as a striped layer's chunk.
         *
         * @param v the boundary in bytes, 0 for none
         * @return this builder
         */
        public Builder chunkBytes(long v) { chunkBytes = v; return this; }
        /**
         * Sets the unit a discard frees storage in.
         *
         * @param v the granularity in bytes, 0 for the logical block size
         * @return this builder
         */
        public Builder discardGranularity(int v) { discardGranularity = v; return this; }
        /**
         * Sets the largest DISCARD in bytes (0 = no DISCARD).
         *
         * @param v the limit in bytes, 0 to refuse DISCARD
         * @return this builder
         */
        public Builder maxDiscardBytes(long v) { maxDiscardBytes = v; return this; }
        /**
         * Sets the largest WRITE_ZEROES in bytes (0 = no WRITE_ZEROES).
         *
         * @param v the limit in bytes, 0 to refuse WRITE_ZEROES
         * @return this builder
         */
        public Builder maxWriteZeroesBytes(long v) { maxWriteZeroesBytes = v; return this; }
        /**
         * Sets the smallest I/O the device prefers.
         *
         * @param v the size in bytes, 0 for none
         * @return this builder
         */
        public Builder ioMin(int v) { ioMin = v; return this; }
        /**
         * Sets the I/O size the device streams best at.
         *
         * @param v the size in bytes, 0 for none
         * @return this builder
         */
        public Builder ioOpt(long v) { ioOpt = v; return this; }
        /**
         * Says whether the device has a volatile write cache (FLUSH matters).
         *
         * @param v true when writes are only durable after a FLUSH
         * @return this builder
         */
        public Builder writeCache(boolean v) { writeCache = v; return this; }
        /**
         * Says whether the device honours FUA itself.
         *
         * @param v true when the device makes a FUA write durable without a separate flush
         * @return this builder
         */
        public Builder fua(boolean v) { fua = v; return this; }

        /**
         * The limits set so far.
         *
         * @return new, immutable limits; the builder may go on being used
         */
        public QueueLimits build() {
            return new QueueLimits(this);
        }
    }
}
