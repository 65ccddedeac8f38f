package io.biostack.block;

import java.io.IOException;

/**
 * A device whose size can grow: a file under a loop device, an RBD image. A format that
 * allocates at its end (qcow2) asks its container to grow through this and nothing else; a
 * device that does not implement it cannot grow, and the format fails the allocation with
 * {@link Status#NOSPC}, saying so (DESIGN.md, "Leaves that can grow say so").
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
}
