package io.biostack.layer;

import io.biostack.block.BlockDevice;
import io.biostack.block.TableSpec;

/**
 * A device and where on it a target's data starts, the {@code <dev> <offset>} pair of dm tables.
 *
 * @param device the device below (not owned by the target)
 * @param start  bytes into {@code device}
 */
public record Leg(BlockDevice device, long start) {
    /**
     * {@code "<dev> <offset in sectors>"} as a table prints it.
     *
     * @return the device's name and the start in 512-byte sectors, separated by a space
     */
    public String table() {
        return device.name() + " " + Layers.sectors(start);
    }

    /**
     * A leg as a table line names it, before the device is open.
     *
     * @param device the device's name
     * @param start  bytes into it
     */
    public record Named(String device, long start) {
        /**
         * The leg on the open device.
         *
         * @param devices the open devices
         * @return the leg
         */
        public Leg open(TableSpec.Resolver devices) {
            return new Leg(devices.device(device), start);
        }
    }
}
