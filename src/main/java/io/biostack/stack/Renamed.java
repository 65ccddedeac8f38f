package io.biostack.stack;

import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.QueueLimits;
import io.biostack.layer.Target;

import java.util.List;

/**
 * A device built by another module shown under the table line that made it ({@code luks DEV
 * keyfile=...}), so that {@code table} prints what a reload would take. Status and messages go to
 * the device when it is a {@link Target}. Closing closes the device.
 */
final class Renamed implements Target {
    private final BlockDevice dev;
    private final String type;
    private final String table;

    Renamed(BlockDevice dev, String type, String table) {
        this.dev = dev;
        this.type = type;
        this.table = table;
    }

    @Override public String name() { return dev.name(); }
    @Override public long size() { return dev.size(); }
    @Override public QueueLimits limits() { return dev.limits(); }
    @Override public boolean isReadOnly() { return dev.isReadOnly(); }
    @Override public void submit(Bio bio) { dev.submit(bio); }
    @Override public Extent extentAt(long offset, long maxLength) { return dev.extentAt(offset, maxLength); }
    @Override public String targetType() { return type; }
    @Override public String table() { return table; }

    @Override
    public String status() {
        return dev instanceof Target t ? t.status() : "";
    }

    @Override
    public String message(List<String> argv) {
        if (dev instanceof Target t) {
            return t.message(argv);
        }
        return Target.super.message(argv);
    }

    @Override
    public void close() {
        dev.close();
    }
}
