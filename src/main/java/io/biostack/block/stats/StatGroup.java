package io.biostack.block.stats;

import io.biostack.block.Op;

import java.util.Locale;

/**
 * The four groups the kernel counts I/O in ({@code enum stat_group}, include/linux/blk_types.h;
 * {@code op_stat_group()} in include/linux/blkdev.h): every op that writes and is not a discard
 * (WRITE, WRITE_ZEROES) counts as a write.
 */
public enum StatGroup {
    /** Reads. */
    READ,
    /** Writes and write-zeroes. */
    WRITE,
    /** Discards. */
    DISCARD,
    /** Flushes. */
    FLUSH;

    private static final StatGroup[] BY_OP = new StatGroup[Op.values().length];

    static {
        for (Op op : Op.values()) {
            BY_OP[op.ordinal()] = switch (op) {
                case READ -> READ;
                case WRITE, WRITE_ZEROES -> WRITE;
                case DISCARD -> DISCARD;
                case FLUSH -> FLUSH;
            };
        }
    }

    /**
     * The group {@code op} is counted in.
     *
     * @param op the operation
     * @return the group {@code op} is counted in
     */
    public static StatGroup of(Op op) {
        return BY_OP[op.ordinal()];
    }

    /**
     * Lower-case name, as in labels ({@code op="read"}) and JSON.
     *
     * @return lower-case name, as in labels ({@code op="read"}) and JSON
     */
    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }

    static final StatGroup[] ALL = values();
}
