package io.biostack.block;

import java.io.IOException;

/**
 * A device whose size can grow: a file under a loop device, an RBD image. A format that
 * allocates at its end (qcow2) asks its container to grow through this and nothing else; a
 * device that does not implement it cannot grow, and the format fails the allocation with
 * {@link Status#NOSPC}, saying so (DESIGN.md, "Leaves that can grow say so").
 *
 * <p>Such a format grows its container ahead in large steps, so at a clean close it gives back
 * what it did not use with {@link #shrinkTo}. Shrinking is optional: only a device that says so
 * (a file under a loop device) shrinks; the others keep their size.
 *
 * <p>Not on the I/O path: a resize may make a syscall (ftruncate) or a round trip (rbd_resize).
 * Callers grow in large steps so that it stays rare. Thread-safe.
 */
public interface Resizable {
    /**
     * Grows the device to at least {@code minSize} bytes; a device already that large is left
     * alone (never shrunk). Bios in flight are not disturbed.
     *
     * @param minSize the size wanted, in bytes
     * @return the device's size afterwards, at least {@code minSize}
     * @throws IOException when the device cannot grow (no space, read-only, a size limit)
     */
    long growTo(long minSize) throws IOException;

    /**
     * Shrinks the device to {@code size} bytes (rounded up to its logical block size), dropping
     * what lies past it; a device already that small is left alone (never grown). The caller
     * knows that nothing it needs lies past {@code size} and that no bio is in flight there.
     * The default cannot shrink and changes nothing: a device that can overrides it.
     *
     * @param size the size wanted, in bytes
     * @return true when the device is now at most {@code size} bytes rounded up to its block
     *         size, false when it cannot shrink (nothing changed)
     * @throws IOException when the device can shrink but the shrink failed
     */
    default boolean shrinkTo(long size) throws IOException {
        return false;
    }

    /**
     * Shows the last part block of what lies under the device, when that ends inside a block,
     * without changing it: the block reads as what is there, then zeros (a file that qemu left
     * ending mid-sector, read as qemu reads it). The default has no part block and changes
     * nothing: a device that can overrides it.
     *
     * @return the device's size afterwards, in bytes; -1 when it has no part block to show
     * @throws IOException when the device can show one but finding it failed
     */
    default long showPartBlock() throws IOException {
        return -1;
    }

    /**
     * Grows {@code dev} when it can, or says clearly why not.
     *
     * @param dev     the device to grow
     * @param minSize the size wanted, in bytes
     * @return the device's size afterwards
     * @throws IOException when {@code dev} is not {@link Resizable} or could not grow
     */
    static long grow(BlockDevice dev, long minSize) throws IOException {
        if (dev.size() >= minSize) {
            return dev.size();
        }
        if (dev instanceof Resizable r) {
            return r.growTo(minSize);
        }
        throw new IOException(dev.name() + " cannot grow (" + dev.size() + " bytes, " + minSize
                + " needed): it is not a file or an image that can be resized");
    }

    /**
     * Shows {@code dev}'s last part block when it has one ({@link #showPartBlock}); a device that
     * is not {@link Resizable} is left as it is.
     *
     * @param dev the device
     * @return the device's size afterwards, or -1 when it has no part block to show
     * @throws IOException when the device can show one but finding it failed
     */
    static long showPart(BlockDevice dev) throws IOException {
        return dev instanceof Resizable r ? r.showPartBlock() : -1;
    }

    /**
     * Shrinks {@code dev} to {@code size} bytes when it can ({@link #shrinkTo}); a device that
     * is not {@link Resizable}, or cannot shrink, is left as it is.
     *
     * @param dev  the device to shrink
     * @param size the size wanted, in bytes
     * @return true when {@code dev} is now at most {@code size} bytes (rounded up to its block
     *         size), false when it cannot shrink
     * @throws IOException when the device can shrink but the shrink failed
     */
    static boolean shrink(BlockDevice dev, long size) throws IOException {
        if (size < 0) {
            throw new IllegalArgumentException("cannot shrink " + dev.name() + " to " + size + " bytes");
        }
        return dev instanceof Resizable r && r.shrinkTo(size);
    }
}
