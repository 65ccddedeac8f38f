package io.biostack.block.bitmap;

import java.io.IOException;
import java.util.List;

/**
 * Where a device's persistent bitmaps live between runs: a side file ({@link SideFileStore},
 * {@code bitmap-file=PATH}) or, for an image format that has a place for them, the image itself
 * (qcow2's bitmaps extension: {@code io.biostack.layer.qcow2.Qcow2BitmapStore}).
 * {@link DeviceBitmaps} drives it; a store only reads and writes.
 *
 * <h2>The contract, as md's write-intent bitmap and qemu's {@code in_use} flag make it</h2>
 * <ul>
 * <li>{@link #saveLayout} writes which bitmaps exist, with every recording one marked in use,
 *     durably, before the device takes a write that they record, and every one a backup holds
 *     ({@link DirtyBitmap#busy()}) or held until its {@code backup-end} and not removed since
 *     ({@link DirtyBitmap#isBackedUp()}) too: after a crash the writes since its instant were in
 *     the new bitmap only, so the frozen one alone must not pass for a basis;
 * <li>{@link #saveWords} makes some words of one bitmap durable before the writes that set them
 *     go down (FUA/DSYNC, not a later flush), for a store whose {@link #durableWords()} says so;
 * <li>{@link #closeClean} saves every bit, checksums them, and clears the in-use marks: only then
 *     does the next {@link #load} find them consistent.
 * </ul>
 *
 * <h2>Two models of a crash</h2>
 * The in-use mark alone already makes a bitmap that was recording at a crash load
 * inconsistent, so for backups the bits written before the crash are never trusted and need not
 * be durable. qemu's qcow2 bitmaps stop there: a store with {@link #durableWords()} false gets no
 * {@link #saveWords} calls, and no write waits for a metadata write. A store that says true
 * (the side file) also keeps each mark durable before its write, so that what was marked at the
 * crash is on disk for a resync that wants it (md's write-intent bitmap).
 * Calls are serialised by the caller (one at a time); they may block on I/O and are never made
 * on an I/O completion path.
 */
public interface BitmapStore extends AutoCloseable {
    /**
     * Reads the saved bitmaps. One saved in use (an unclean stop) or whose bits fail their
     * checksum comes back {@linkplain DirtyBitmap#isConsistent() inconsistent}, with the reason in
     * {@code problems}.
     *
     * @param deviceSize the device's bytes (a store made for another size is refused)
     * @param problems   receives one line per bitmap loaded inconsistent, saying why
     * @return the bitmaps, persistent, in their saved order
     * @throws IOException when the store can't be read at all (truncated header, bad checksum,
     *                     another device's store): the message says which and what to do
     */
    List<DirtyBitmap> load(long deviceSize, List<String> problems) throws IOException;

    /**
     * Saves which persistent bitmaps exist and their bits, recording and busy ones marked in use.
     *
     * @param bitmaps every persistent bitmap of the device
     * @throws IOException when the store can't be written
     */
    void saveLayout(List<DirtyBitmap> bitmaps) throws IOException;

    /**
     * Makes words {@code [first, last]} of {@code b} durable as they are now (the whole store
     * blocks that hold them).
     *
     * @param b     a bitmap of the last saved layout
     * @param first first word index
     * @param last  last word index, inclusive
     * @throws IOException when the write fails
     */
    void saveWords(DirtyBitmap b, int first, int last) throws IOException;

    /**
     * Saves every bit with its checksum and clears the in-use marks (a clean stop).
     *
     * @param bitmaps every persistent bitmap of the device
     * @throws IOException when the store can't be written
     */
    void closeClean(List<DirtyBitmap> bitmaps) throws IOException;

    /**
     * Whether marks must be durable before their writes go down ({@link #saveWords}); false for
     * a store whose bitmaps are only the in-use mark's until a clean close (qemu's qcow2
     * bitmaps), which then never gets a {@link #saveWords} call.
     *
     * @return true when {@link DeviceBitmaps} holds a write until its marks are saved
     */
    default boolean durableWords() {
        return true;
    }

    /**
     * Checks that this store can keep a new persistent bitmap of this name and granularity (a
     * name too long for its format, a bitmap too large for it), before anything changes.
     *
     * @param name        the bitmap's name
     * @param granularity its bytes per bit
     * @param deviceSize  the device's bytes
     * @throws IllegalArgumentException saying what the store can't keep
     */
    default void checkPersistent(String name, long granularity, long deviceSize) {
    }

    /**
     * Words per store block: a {@link #saveWords} call writes whole blocks.
     *
     * @return how many 64-bit words one metadata write covers
     */
    int wordsPerBlock();

    /**
     * Metadata writes made so far (for status and the benchmark).
     *
     * @return the count of {@link #saveWords} block writes
     */
    long metadataWrites();

    /**
     * Returns a short description for status lines, such as {@code file=/var/lib/disk.bitmaps}.
     *
     * @return a short description for status lines, such as {@code file=/var/lib/disk.bitmaps}
     */
    String describe();

    /** Releases the store's file; does not save (see {@link #closeClean}). */
    @Override
    void close();
}
