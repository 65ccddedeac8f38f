package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;

/**
 * Fails every read, write, discard and write-zeroes with an I/O error (dm-error,
 * Documentation/admin-guide/device-mapper: "error" target; a table hole, or a device made to
 * fail). An empty FLUSH succeeds: dm sends it none. Table: {@code error} (no arguments).
 */
public final class ErrorTarget implements Target {
    private final String name;
    private final long length;
    private final QueueLimits limits = QueueLimits.builder()
            .maxDiscardBytes(Long.MAX_VALUE).maxWriteZeroesBytes(Long.MAX_VALUE).build();

    /**
     * A device of {@code lengthBytes} (whole sectors) that fails every bio.
     *
     * @param name the device's name
     * @param lengthBytes the size in bytes, a multiple of 512
     */
    public ErrorTarget(String name, long lengthBytes) {
        if (lengthBytes < 0 || lengthBytes % Layers.SECTOR != 0) {
            throw new IllegalArgumentException(name + ": length must be whole sectors: " + lengthBytes);
        }
        this.name = name;
        this.length = lengthBytes;
    }

    @Override public String name() { return name; }
    @Override public long size() { return length; }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return false; }

    @Override
    public void submit(Bio bio) {
        if (bio.op() == Op.FLUSH) {
            // dm sends no flush to it (io_err_ctr sets no num_flush_bios): a table with an error
            // segment among others still flushes, and only I/O to the segment fails
            bio.endIo();
        } else if (BioChecks.admit(bio, name, length, limits, false)) {
            bio.fail(Status.IOERR, bio.op() + " on error target " + name);
        }
    }

    @Override public String targetType() { return "error"; }
    @Override public String table() { return ""; }
    @Override public void close() { }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The table line {@code error} (no arguments): segments only, as the target has no size of its
     * own ({@code NAME: START LENGTH error}).
     *
     * @param a the line's arguments
     * @return the spec
     */
    public static TableSpec parseTable(TableArgs a) {
        a.end();
        return a.spec((name, len, r) -> new ErrorTarget(name, Layers.needLength(len)));
    }
}
