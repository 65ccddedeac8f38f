package io.biostack.nbd;

import io.biostack.nbd.proto.NbdProtocol;
import io.biostack.block.BlockDevice;
import io.biostack.block.QueueLimits;

import java.util.Objects;

/**
 * A device as the server offers it: a name clients ask for, an optional description for
 * {@code NBD_INFO_DESCRIPTION} and {@code NBD_OPT_LIST}, and whether changes are refused.
 *
 * <p>The server does not own the device: whoever built the export closes the device after the
 * server has closed.
 *
 * @param name        the export name (may be empty)
 * @param description text for humans, or empty
 * @param device      what the requests go to
 * @param readOnly    refuse every change with EPERM (also true when the device itself is read-only)
 */
public record NbdExport(String name, String description, BlockDevice device, boolean readOnly) {
    /** Checks the name and device; an export of a read-only device is read-only. */
    public NbdExport {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(device, "device");
        description = description == null ? "" : description;
        readOnly = readOnly || device.isReadOnly();
        if (name.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > NbdProtocol.MAX_STRING) {
            throw new IllegalArgumentException("export name longer than 4096 bytes");
        }
    }

    /**
     * A writable export of {@code device} (read-only when the device is).
     *
     * @param name   the export name
     * @param device what the requests go to
     * @return the export, without description
     */
    public static NbdExport of(String name, BlockDevice device) {
        return new NbdExport(name, "", device, false);
    }

    /**
     * The smallest request alignment the export accepts: the device's logical block size, so that
     * a loop device with O_DIRECT never sees a misaligned request (issue 3, "The protocol").
     */
    int minimumBlock() {
        return device.limits().logicalBlockSize();
    }

    /** The preferred request size: the physical block size, at least 4096. */
    int preferredBlock() {
        QueueLimits l = device.limits();
        return Math.max(4096, Math.max(l.physicalBlockSize(), l.logicalBlockSize()));
    }
}
