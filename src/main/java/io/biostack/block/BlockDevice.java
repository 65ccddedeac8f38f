package io.biostack.block;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CompletableFuture;

/**
 * A device that takes bios: a ramdisk, a loop device, or a layer built on other devices.
 *
 * <p>{@link #submit(Bio)} is the whole contract; the {@code CompletableFuture} methods are
 * conveniences built on it for callers who don't want bios (they allocate; the I/O path of the
 * stack itself uses bare bios).
 *
 * <h2>Threads and memory</h2>
 * Any thread may submit. A bio completes, and a future completes, on the thread that finishes
 * the I/O (an io_uring worker, an engine thread, or the submitting thread for memory devices and
 * early errors): end-io callbacks and non-async dependent stages run there and must not block.
 * The memory a caller hands over stays the caller's: it must stay valid and untouched until the
 * bio or future completes, and native memory must come from a shared, automatic or global arena
 * (a loop device fails a confined arena's memory with {@link Status#INVAL}: its engine's threads
 * do the I/O).
 */
public interface BlockDevice extends AutoCloseable {
    /**
     * A short name for messages ("loop0", "disk0p1").
     *
     * @return the name given when the device was opened, never null
     */
    String name();

    /**
     * Capacity in bytes.
     *
     * @return the size in bytes, a multiple of the logical block size
     */
    long size();

    /**
     * What bios this device takes: block sizes, alignment, largest bio, features. Fixed while it is
     * open.
     *
     * @return the device's limits, the same object for as long as it is open
     */
    QueueLimits limits();

    /**
     * True when the device refuses every change (writes fail with {@link Status#READONLY}).
     *
     * @return true when writes, discards and write-zeroes fail
     */
    boolean isReadOnly();

    /**
     * Takes ownership of {@code bio} until it completes: the device calls {@link Bio#endIo()}
     * exactly once, possibly before this method returns (errors, memory devices) or later on
     * another thread. Never blocks on I/O. A bad bio (out of range, misaligned, a change to a
     * read-only device) completes with a clear status and nothing is written.
     *
     * @param bio a set-up bio the caller owns; the device owns it from this call until it completes
     *         it
     */
    void submit(Bio bio);

    /**
     * The allocation state of the bytes from {@code offset}: the first run, at most
     * {@code maxLength} long. Devices that can't tell say "data". Not on the I/O path; may make
     * a syscall.
     *
     * @param offset where to look, in bytes, within the device
     * @param maxLength the longest run to report, in bytes
     * @return the run that starts at {@code offset}, at most {@code maxLength} long
     */
    default Extent extentAt(long offset, long maxLength) {
        return Extent.data(maxLength);
    }

    /**
     * The block-status contexts this device answers beyond {@code base:allocation}
     * ({@code qemu:allocation-depth} of a qcow2 chain, {@code qemu:dirty-bitmap:NAME} of a
     * bitmap recording its writes). A wrapper that adds none passes its inner device's list on;
     * a remapping layer answers none of its own. Not on the I/O path; the list may change while
     * the device runs (a bitmap added or removed).
     *
     * @return the contexts, by default none; the caller must not change the list
     */
    default java.util.List<StatusContext> statusContexts() {
        return java.util.List.of();
    }

    /**
     * Native memory for bios to this device: {@code bytes}, aligned to 4096 and to
     * {@link QueueLimits#dmaAlignment()}. A device may hand out memory it does I/O on more
     * cheaply (a loop device over io_uring: buffers registered with the ring); by default it is
     * plain {@code owner} memory. Layers need not forward it. Not on the I/O path (may wait).
     *
     * <p>Ownership: the memory belongs to {@code owner} (shared or automatic, as bios complete on
     * other threads): closing owner frees it, and the caller closes it only after every bio over
     * the memory has completed. It stays valid after the device is closed.
     *
     * @param bytes how much memory, in bytes
     * @param owner the arena the memory is allocated in and freed with
     * @return native memory of {@code bytes} bytes, aligned for zero-copy I/O to this device
     */
    default MemorySegment allocateIoMemory(long bytes, Arena owner) {
        return owner.allocate(bytes, Math.max(4096, limits().dmaAlignment()));
    }

    /** Releases what the device holds. Bios must no longer be in flight. */
    @Override
    void close();

    // ---- conveniences ------------------------------------------------------------------------

    /**
     * Reads {@code dst.count()} bytes at {@code offset} into the caller's memory.
     *
     * @param offset the device offset in bytes, aligned to the logical block size
     * @param dst the memory to read into; heap memory is bounced, native memory must stay valid
     *         until the future completes
     * @return a future that completes when the data is in {@code dst}, or exceptionally with a
     *         {@link BioException} that carries the status
     */
    default CompletableFuture<Void> read(long offset, IoIter dst) {
        return FutureBio.submit(this, Op.READ, 0, offset, dst, dst.count());
    }

    /**
     * Reads {@code dst.byteSize()} bytes at {@code offset} into {@code dst} (from a shared or
     * automatic arena).
     *
     * @param offset the device offset in bytes, aligned to the logical block size
     * @param dst the memory to read into; it must stay valid until the future completes
     * @return a future that completes when the data is in {@code dst}, or exceptionally with a
     *         {@link BioException}
     */
    default CompletableFuture<Void> read(long offset, MemorySegment dst) {
        return read(offset, IoIter.of(dst));
    }

    /**
     * Writes the caller's memory at {@code offset}; {@code flags} may hold FUA.
     *
     * @param offset the device offset in bytes, aligned to the logical block size
     * @param src the memory to write; heap memory is bounced, native memory must stay valid and
     *         unchanged until the future completes
     * @param flags {@link BioFlags} bits (FUA, PREFLUSH), 0 for none
     * @return a future that completes when the write is done (durable only with FUA or a later
     *         flush), or exceptionally with a {@link BioException}
     */
    default CompletableFuture<Void> write(long offset, IoIter src, int flags) {
        return FutureBio.submit(this, Op.WRITE, flags, offset, src, src.count());
    }

    /**
     * Writes {@code src} at {@code offset} (from a shared or automatic arena).
     *
     * @param offset the device offset in bytes, aligned to the logical block size
     * @param src the memory to write; it must stay valid and unchanged until the future completes
     * @return a future that completes when the write is done (not yet durable: see
     *         {@link #flush()}), or exceptionally with a {@link BioException}
     */
    default CompletableFuture<Void> write(long offset, MemorySegment src) {
        return write(offset, IoIter.of(src), 0);
    }

    /**
     * Makes every completed write durable.
     *
     * @return a future that completes when the writes completed before the call are durable
     */
    default CompletableFuture<Void> flush() {
        return FutureBio.submit(this, Op.FLUSH, 0, 0, null, 0);
    }

    /**
     * Tells the device the range is no longer needed (it may read back as zeros or as before).
     *
     * @param offset the start in bytes, aligned to the logical block size
     * @param length the length in bytes, a multiple of the logical block size
     * @return a future that completes when the device has taken the discard, or exceptionally with
     *         a {@link BioException} (NOTSUPP where the device has no DISCARD)
     */
    default CompletableFuture<Void> discard(long offset, long length) {
        return FutureBio.submit(this, Op.DISCARD, 0, offset, null, length);
    }

    /**
     * Zeroes the range; with {@code noUnmap} the blocks stay allocated.
     *
     * @param offset the start in bytes, aligned to the logical block size
     * @param length the length in bytes, a multiple of the logical block size
     * @param noUnmap true to keep the blocks allocated (fallocate's ZERO_RANGE), false to let the
     *         device free them
     * @return a future that completes when the range reads back as zeros, or exceptionally with a
     *         {@link BioException}
     */
    default CompletableFuture<Void> writeZeroes(long offset, long length, boolean noUnmap) {
        return FutureBio.submit(this, Op.WRITE_ZEROES, noUnmap ? BioFlags.NOUNMAP : 0, offset, null, length);
    }
}
