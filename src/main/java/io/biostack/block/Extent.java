package io.biostack.block;

/**
 * A run of bytes with the same allocation state, as NBD's {@code base:allocation} context
 * describes (doc/proto.md, "base:allocation" metadata context).
 *
 * @param length bytes in the run, from the offset asked about
 * @param flags  {@link #HOLE} and/or {@link #ZERO}; 0 for allocated data
 */
public record Extent(long length, int flags) {
    /** Not allocated (NBD_STATE_HOLE, bit 0). */
    public static final int HOLE = 1;
    /** Reads as zeros (NBD_STATE_ZERO, bit 1). */
    public static final int ZERO = 2;

    /**
     * {@code length} bytes that hold data (or may).
     *
     * @param length the run's length in bytes
     * @return an extent of data
     */
    public static Extent data(long length) {
        return new Extent(length, 0);
    }

    /**
     * {@code length} bytes that read as zeros and hold no storage.
     *
     * @param length the run's length in bytes
     * @return an extent that is a hole
     */
    public static Extent hole(long length) {
        return new Extent(length, HOLE | ZERO);
    }
}
