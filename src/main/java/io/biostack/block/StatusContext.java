package io.biostack.block;

/**
 * A block-status context beyond {@code base:allocation}: a named map of a device's bytes to
 * 32-bit flags, as NBD's metadata contexts carry them (doc/proto.md, "Metadata querying").
 * Examples: {@code qemu:allocation-depth} (a qcow2 chain: 0 unallocated, 1 this image, N the
 * N-1th backing file), {@code qemu:dirty-bitmap:NAME} (bit 0 set: dirty).
 *
 * <p>A device lists the contexts it answers in {@link BlockDevice#statusContexts()}; the NBD
 * server offers those to clients that ask. Not on the I/O path: an answer may read metadata.
 * Thread-safe: the server may ask from any reactor thread while bios are in flight.
 */
public interface StatusContext {
    /**
     * The context's full name as NBD spells it, namespace included.
     *
     * @return the name, for instance {@code qemu:dirty-bitmap:nightly}
     */
    String name();

    /**
     * The first run of bytes from {@code offset} whose flags are the same.
     *
     * @param offset    byte offset in the device, below its size
     * @param maxLength the longest run wanted (the answer may be shorter, never longer, never 0)
     * @return the run's length and its flags, in this context's meaning of the 32 bits
     */
    Extent extentAt(long offset, long maxLength);
}
