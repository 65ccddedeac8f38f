package io.biostack.block;

/**
 * Flags of a bio, a bit set in an {@code int}, after the kernel's {@code REQ_*} flags
 * (include/linux/blk_types.h).
 */
public final class BioFlags {
    /** Forced unit access: this write is durable when it completes ({@code REQ_FUA}). */
    public static final int FUA = 1;
    /** Flush the volatile cache before this op ({@code REQ_PREFLUSH}). */
    public static final int PREFLUSH = 1 << 1;
    /** WRITE_ZEROES must leave the blocks allocated ({@code REQ_NOUNMAP}). */
    public static final int NOUNMAP = 1 << 2;
    /** Fail with {@link Status#AGAIN} rather than wait for resources ({@code REQ_NOWAIT}). */
    public static final int NOWAIT = 1 << 3;
    /**
     * WRITE_ZEROES that must not be done by writing data: a device that can't zero this range
     * faster than it would write it fails it with {@link Status#NOTSUPP} (qemu's
     * {@code BDRV_REQ_NO_FALLBACK}, NBD's {@code FAST_ZERO}); the caller then writes the zeros
     * itself, or not at all. Parts zeroed before the refusal may stay zeroed.
     */
    public static final int NOFALLBACK = 1 << 4;

    private BioFlags() {
    }

    /**
     * Short text for logs: "FUA|PREFLUSH", or "-" when none.
     *
     * @param flags {@link BioFlags} bits
     * @return the names of the bits set, joined by "|"
     */
    public static String toString(int flags) {
        if (flags == 0) {
            return "-";
        }
        StringBuilder sb = new StringBuilder();
        append(sb, flags, FUA, "FUA");
        append(sb, flags, PREFLUSH, "PREFLUSH");
        append(sb, flags, NOUNMAP, "NOUNMAP");
        append(sb, flags, NOWAIT, "NOWAIT");
        append(sb, flags, NOFALLBACK, "NOFALLBACK");
        return sb.toString();
    }

    private static void append(StringBuilder sb, int flags, int bit, String name) {
        if ((flags & bit) != 0) {
            if (!sb.isEmpty()) {
                sb.append('|');
            }
            sb.append(name);
        }
    }
}
