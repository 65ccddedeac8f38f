package io.biostack.block;

/**
 * What a bio asks of a device, after the kernel's {@code enum req_op} (include/linux/blk_types.h).
 */
public enum Op {
    /** Read {@code size} bytes at {@code offset} into the bio's segments. */
    READ,
    /** Write the bio's segments at {@code offset}. */
    WRITE,
    /** Make every write completed before this flush durable. Carries no data and no range. */
    FLUSH,
    /** The range's contents are no longer needed; later reads may return anything (zeros here). */
    DISCARD,
    /** The range reads back as zeros. With {@link BioFlags#NOUNMAP} the blocks stay allocated. */
    WRITE_ZEROES;

    /**
     * True when the op carries data in its segments.
     *
     * @return true for READ and WRITE, false for FLUSH, DISCARD and WRITE_ZEROES
     */
    public boolean hasData() {
        return this == READ || this == WRITE;
    }

    /**
     * True when the op changes what the device holds (refused on a read-only device).
     *
     * @return true for WRITE, DISCARD and WRITE_ZEROES
     */
    public boolean changesData() {
        return this == WRITE || this == DISCARD || this == WRITE_ZEROES;
    }
}
