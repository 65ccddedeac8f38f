package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.QueueLimits;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A window of another device: {@code length} bytes of {@code lower} from {@code start}
 * (dm-linear, Documentation/admin-guide/device-mapper/linear.rst; also what a partition is).
 *
 * <p>Table: {@code linear <dev> <offset>} (offset in 512-byte sectors, or with a suffix).
 *
 * <p>A bio is checked against the window, moved by {@code start} in place and handed to
 * {@code lower} ({@code blk_partition_remap}): no clone, no allocation. Ownership of the bio
 * passes to {@code lower}, which completes it. FLUSH passes down unchanged. Closing a linear
 * device does not close {@code lower}.
 */
public final class Linear implements Target {
    private final String name;
    private final BlockDevice lower;
    private final long start;
    private final long length;
    private final QueueLimits limits;

    /**
     * A window of {@code lengthBytes} from {@code startBytes} of {@code lower}. Both must be
     * multiples of the lower device's logical block size, and the window must lie inside it.
     *
     * @param name the device's name
     * @param lower the device below; not owned, the caller closes it after this one
     * @param startBytes where the window starts on {@code lower}, in bytes
     * @param lengthBytes the window's length in bytes
     * @throws IllegalArgumentException when the window is misaligned or does not fit in
     *         {@code lower}
     */
    public Linear(String name, BlockDevice lower, long startBytes, long lengthBytes) {
        QueueLimits ll = lower.limits();
        Layers.checkWindow(name, lower, startBytes, lengthBytes);
        this.name = name;
        this.lower = lower;
        this.start = startBytes;
        this.length = lengthBytes;
        this.limits = Layers.shiftLimits(ll, startBytes);
    }

    /**
     * The whole of {@code lower} from {@code startBytes} to its end.
     *
     * @param name the device's name
     * @param lower the device below; not owned
     * @param startBytes where the window starts, in bytes, a multiple of the logical block size
     * @return the window from {@code startBytes} to the end of {@code lower}
     */
    public static Linear of(String name, BlockDevice lower, long startBytes) {
        return new Linear(name, lower, startBytes, lower.size() - startBytes);
    }

    @Override public String name() { return name; }
    @Override public long size() { return length; }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return lower.isReadOnly(); }

    /**
     * The device below.
     *
     * @return the device below, as given to the constructor
     */
    public BlockDevice lower() {
        return lower;
    }

    /**
     * Where the window starts on {@link #lower()}, in bytes.
     *
     * @return the offset in bytes
     */
    public long start() {
        return start;
    }

    /** I/O memory of the device below: registered with its ring when it sits on a loop device. */
    @Override
    public MemorySegment allocateIoMemory(long bytes, Arena owner) {
        return lower.allocateIoMemory(bytes, owner);
    }

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, length, limits, lower.isReadOnly())) {
            return;
        }
        bio.setOffset(bio.offset() + start);
        lower.submit(bio);
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        long n = Math.min(maxLength, length - offset);
        if (n <= 0) {
            return Extent.data(0);
        }
        return lower.extentAt(start + offset, n);
    }

    @Override
    public String targetType() {
        return "linear";
    }

    @Override
    public String table() {
        return lower.name() + " " + Layers.sectors(start);
    }

    @Override
    public void close() {
        // The lower device belongs to whoever opened it.
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The table line {@code linear DEV OFFSET} (dm-linear's {@code linear_ctr}): DEV from OFFSET
     * (sectors, or a size) on; on a whole-device line, to the end of DEV.
     *
     * @param a the line's arguments
     * @return the spec, to open once DEV is
     */
    public static TableSpec parseTable(TableArgs a) {
        String dev = a.dev("DEV");
        long off = a.bytes("OFFSET");
        a.end();
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(dev);
            return new Linear(name, d, off, Layers.lengthOr(len, d.size() - off));
        });
    }
}
