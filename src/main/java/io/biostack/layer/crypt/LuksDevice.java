package io.biostack.layer.crypt;

import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.QueueLimits;
import io.biostack.layer.Target;

/**
 * An open LUKS volume as a table line shows it ({@code luks DEV keyfile=... [header=FILE]}): the
 * crypt device of the payload, and the detached header device it opened, closed with it. Bios go
 * straight to the crypt device.
 */
final class LuksDevice implements Target {
    private final BlockDevice crypt;
    private final BlockDevice header;
    private final String table;

    /**
     * @param crypt  the payload; owned from now on
     * @param header a detached header device opened for this volume, or null; owned from now on
     * @param table  the table arguments to show (no secret in them)
     */
    LuksDevice(BlockDevice crypt, BlockDevice header, String table) {
        this.crypt = crypt;
        this.header = header;
        this.table = table;
    }

    @Override public String name() { return crypt.name(); }
    @Override public long size() { return crypt.size(); }
    @Override public QueueLimits limits() { return crypt.limits(); }
    @Override public boolean isReadOnly() { return crypt.isReadOnly(); }
    @Override public void submit(Bio bio) { crypt.submit(bio); }
    @Override public String targetType() { return "luks"; }
    @Override public String table() { return table; }

    @Override
    public void close() {
        crypt.close();
        if (header != null) {
            header.close();
        }
    }

    @Override
    public String toString() {
        return "luks " + table + " -> " + crypt;
    }
}
