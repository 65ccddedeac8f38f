package io.biostack.block;

/**
 * The checks every device makes before it touches anything: range, alignment, read-only. One
 * place, so every device fails bad bios with the same status and the same words, and writes
 * nothing.
 */
public final class BioChecks {
    private BioChecks() {
    }

    /**
     * Checks {@code bio} against a device of {@code capacity} bytes. When it is bad, completes it
     * with a clear status and message and returns false: the caller must not touch it again.
     * When it is a zero-length data, discard or write-zeroes bio, completes it with OK and returns
     * false too (nothing to do). Otherwise returns true and the caller goes on.
     *
     * @param bio a bio just submitted to the device
     * @param device the device's name, for the message
     * @param capacity the device's size in bytes
     * @param lim the device's limits (block size, maximum sizes, features)
     * @param readOnly true when the device refuses changes
     * @return true when the caller should go on with the bio; false when it has already been
     *         completed
     */
    public static boolean admit(Bio bio, String device, long capacity, QueueLimits lim, boolean readOnly) {
        Op op = bio.op();
        if (readOnly && op.changesData()) {
            bio.fail(Status.READONLY, op + " on read-only device " + device);
            return false;
        }
        if (op == Op.FLUSH) {
            return true;
        }
        long off = bio.offset();
        long len = bio.size();
        int lbs = lim.logicalBlockSize();
        if (off < 0 || len < 0) {
            bio.fail(Status.INVAL, op + " with negative offset or length on " + device);
            return false;
        }
        // a mask, not %: lbs is a power of two (QueueLimits), and a 64-bit division costs tens
        // of cycles on every bio of every layer that admits it
        if (((off | len) & (lbs - 1)) != 0) {
            bio.fail(Status.INVAL, op + " of " + len + " bytes at offset " + off + " on " + device
                    + " is not aligned to its " + lbs + "-byte logical blocks");
            return false;
        }
        if (off > capacity || len > capacity - off) {
            Status s = op == Op.READ ? Status.INVAL : Status.NOSPC;
            bio.fail(s, op + " of " + len + " bytes at offset " + off + " goes beyond the end of "
                    + device + " (" + capacity + " bytes)");
            return false;
        }
        if (len == 0) {
            bio.endIo();
            return false;
        }
        if (op == Op.DISCARD && !lim.discard() || op == Op.WRITE_ZEROES && !lim.writeZeroes()) {
            bio.fail(Status.NOTSUPP, op + " is not supported by " + device);
            return false;
        }
        return true;
    }
}
