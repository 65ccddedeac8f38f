package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;

/**
 * Reads return zeros and writes are dropped (dm-zero, Documentation/admin-guide/device-mapper/
 * zero.rst): a sparse device's holes, or a sink. Table: {@code zero} (no arguments). Bios
 * complete on the submitting thread.
 */
public final class Zero implements Target {
    private final String name;
    private final long length;
    private final QueueLimits limits = QueueLimits.builder()
            .maxDiscardBytes(Long.MAX_VALUE).discardGranularity(Layers.SECTOR)
            .maxWriteZeroesBytes(Long.MAX_VALUE).build();

    /**
     * A device of {@code lengthBytes} (whole sectors) that reads zeros and drops writes.
     *
     * @param name the device's name
     * @param lengthBytes the size in bytes, a multiple of 512
     */
    public Zero(String name, long lengthBytes) {
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
        if (!BioChecks.admit(bio, name, length, limits, false)) {
            return;
        }
        if (bio.op() == Op.READ) {
            bio.zeroFill();
        }
        bio.endIo();
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        return Extent.hole(Math.max(0, Math.min(maxLength, length - offset)));
    }

    @Override public String targetType() { return "zero"; }
    @Override public String table() { return ""; }
    @Override public void close() { }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The table line {@code zero} (no arguments): segments only, as the target has no size of its
     * own ({@code NAME: START LENGTH zero}).
     *
     * @param a the line's arguments
     * @return the spec
     */
    public static TableSpec parseTable(TableArgs a) {
        a.end();
        return a.spec((name, len, r) -> new Zero(name, Layers.needLength(len)));
    }
}
