package io.biostack.block;

import java.io.IOException;

/**
 * A device over a file that other programs open as a disk image too (qemu, qemu-nbd, qemu-img,
 * a second biostack): a format opened on it (qcow2) takes the locks qemu takes on that file, so
 * that a second writer is refused on either side instead of writing its own metadata over the
 * first's. The locks are qemu's (block/file-posix.c {@code raw_apply_lock_bytes} and
 * {@code raw_check_lock_bytes}), so qemu's tools see biostack as one of their own.
 *
 * <p>Not on the I/O path: taken once at a format's open, given back at its close. Thread-safe.
 */
public interface ImageLocking {
    /** Locks held on an image until {@link #close}; closing twice is harmless. */
    interface Held extends AutoCloseable {
        /** Gives the locks back. */
        @Override
        void close();
    }

    /** Nothing held: for a device that is no file. */
    Held NONE = () -> { };

    /**
     * Takes the image's locks for a format that reads its metadata from this device and, when
     * {@code write}, writes it: refused when another holder of the file writes it or refuses
     * this use.
     *
     * @param write true when the format writes (metadata, allocation, resize)
     * @return the locks, held until closed; the caller owns them
     * @throws IOException when another holder of the file conflicts, naming the file and the
     *                     permission, as qemu words it
     */
    Held lockImage(boolean write) throws IOException;

    /**
     * {@link #lockImage} on {@code dev} when it is over a file, else nothing is held.
     *
     * @param dev   the format's container
     * @param write true when the format writes
     * @return the locks; the caller closes them
     * @throws IOException when another holder of the file conflicts
     */
    static Held lock(BlockDevice dev, boolean write) throws IOException {
        return dev instanceof ImageLocking l ? l.lockImage(write) : NONE;
    }
}
