package io.biostack.layer;

import io.biostack.block.BlockDevice;

/**
 * A device and where on it a target's data starts, the {@code <dev> <offset>} pair of dm tables.
 *
 * @param device the device below (not owned by the target)
 * @param start  bytes into {@code device}
 */
public record Leg(BlockDevice device, long start) {
    /** {@code "<dev> <offset in sectors>"} as a table prints it. */
    public String table() {
        return device.name() + " " + Layers.sectors(start);
    }
}
