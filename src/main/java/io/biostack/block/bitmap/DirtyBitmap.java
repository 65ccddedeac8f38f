package io.biostack.block.bitmap;

import io.biostack.block.Extent;
import io.biostack.block.StatusContext;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * One dirty bitmap: a bit per {@code granularity} bytes of a device, set when a write, discard
 * or write-zeroes touches any byte of its chunk, as qemu's {@code BdrvDirtyBitmap} records them.
 *
 * <h2>The I/O path</h2>
 * {@link #mark} is lock-free and allocation-free: the words live in a {@code long[]} changed only
 * by atomic OR ({@link VarHandle#getAndBitwiseOr}); a word whose bits are set already is read, not
 * written, so writes to dirty chunks don't bounce its cache line between cores. Clearing, merging
 * and copying are control-path operations and may race with marks only in the safe direction: a
 * bit set by a concurrent write is never lost by a merge; {@link #clear} is for a bitmap nobody
 * needs to trust about the writes in flight while it runs (qemu's {@code clear} is the same).
 *
 * <h2>State</h2>
 * <ul>
 * <li><b>recording</b>: marks are taken (qemu's {@code enabled});
 * <li><b>persistent</b>: kept in the device's {@link BitmapStore} across restarts;
 * <li><b>consistent</b>: false when a persistent bitmap was loaded in use (biostack stopped
 *     without closing it): its bits can't be trusted, it may only be removed, and an incremental
 *     backup from it is refused (qemu's {@code in_use} / {@code inconsistent});
 * <li><b>busy</b>: frozen for a backup that exports it; no changes until the backup ends;
 * <li><b>backed up</b>: a backup froze it, and it has not recorded since: its bits end at that
 *     backup's instant, the writes since are in the backup's new bitmap alone.
 * </ul>
 * Thread-safe.
 */
public final class DirtyBitmap implements StatusContext {
    /** The smallest granularity: one bit per 4 KiB page. */
    public static final long MIN_GRANULARITY = 4096;
    /** The default granularity, as qemu's (64 KiB, a qcow2 cluster). */
    public static final long DEFAULT_GRANULARITY = 64 * 1024;
    /** Largest granularity taken (qemu: 2^31). */
    public static final long MAX_GRANULARITY = 1L << 31;
    /** NBD {@code qemu:dirty-bitmap} flag: bit 0 set means dirty (qemu docs/interop/nbd.txt). */
    public static final int NBD_DIRTY = 1;

    private static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);

    private final String name;
    private final long granularity;
    private final int shift;
    private final long deviceSize;
    private final long bits;
    private final long[] words;
    private volatile boolean recording;
    private volatile boolean persistent;
    private volatile boolean consistent;
    private volatile String busy;
    private volatile boolean backedUp;

    /**
     * An empty bitmap.
     *
     * @param name        its name (the NBD context is {@code qemu:dirty-bitmap:NAME})
     * @param granularity bytes per bit, a power of two from {@link #MIN_GRANULARITY}
     * @param deviceSize  bytes of the device it tracks
     * @throws IllegalArgumentException for a bad name or granularity
     */
    public DirtyBitmap(String name, long granularity, long deviceSize) {
        checkName(name);
        checkGranularity(granularity);
        this.name = name;
        this.granularity = granularity;
        this.shift = Long.numberOfTrailingZeros(granularity);
        this.deviceSize = deviceSize;
        this.bits = (deviceSize + granularity - 1) >>> shift;
        if (bits > (long) Integer.MAX_VALUE * 64) {
            throw new IllegalArgumentException("bitmap " + name + ": " + bits + " bits is too many; use a larger granularity");
        }
        this.words = new long[(int) ((bits + 63) >>> 6)];
        this.recording = true;
        this.consistent = true;
    }

    /**
     * Checks a bitmap name: 1 to 255 bytes of letters, digits and {@code -_.:@+}.
     *
     * @param name the name to check
     * @throws IllegalArgumentException saying what is wrong
     */
    public static void checkName(String name) {
        if (name == null || name.isEmpty() || name.length() > 255) {
            throw new IllegalArgumentException("a bitmap name is 1 to 255 characters");
        }
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            if (!(Character.isLetterOrDigit(c) && c < 128) && "-_.:@+".indexOf(c) < 0) {
                throw new IllegalArgumentException("bitmap name '" + name + "': only letters, digits and -_.:@+ are allowed");
            }
        }
    }

    /**
     * Checks a granularity: a power of two from 4 KiB to 2 GiB.
     *
     * @param g bytes per bit
     * @throws IllegalArgumentException saying what is wrong
     */
    public static void checkGranularity(long g) {
        if (g < MIN_GRANULARITY || g > MAX_GRANULARITY || Long.bitCount(g) != 1) {
            throw new IllegalArgumentException("granularity " + g + " must be a power of two from 4k to 2G");
        }
    }

    // ---- the I/O path -----------------------------------------------------------------------

    /**
     * Marks every chunk that {@code [offset, offset+length)} touches. Lock-free, allocation-free.
     *
     * @param offset byte offset of the change
     * @param length its bytes (0 marks nothing)
     * @return true when some bit went from clean to dirty (a persistent store must save it)
     */
    public boolean mark(long offset, long length) {
        if (length <= 0 || offset >= deviceSize) {
            return false;
        }
        long first = offset >>> shift;
        long last = (Math.min(offset + length, deviceSize) - 1) >>> shift;
        int w = (int) (first >>> 6);
        if (w == (int) (last >>> 6)) {
            // The common case (any write up to granularity*64 bytes that stays in one word): one
            // plain load, and the atomic OR only when a bit is still clean. Java masks a long
            // shift count to its low 6 bits, so these are the bits first..last of word w.
            long mask = (-1L << first) & (-1L >>> (63 - (last & 63)));
            if (((long) WORD.getOpaque(words, w) & mask) == mask) {
                return false;
            }
            return ((long) WORD.getAndBitwiseOr(words, w, mask) & mask) != mask;
        }
        return markWords(first, last);
    }

    /** {@link #mark} over more than one word. */
    private boolean markWords(long first, long last) {
        boolean changed = false;
        for (long w = first >>> 6; w <= last >>> 6; w++) {
            long mask = wordMask(w, first, last);
            long cur = (long) WORD.getOpaque(words, (int) w);
            if ((cur & mask) != mask) {
                long old = (long) WORD.getAndBitwiseOr(words, (int) w, mask);
                changed |= (old & mask) != mask;
            }
        }
        return changed;
    }

    /**
     * Whether every chunk of {@code [offset, offset+length)} is dirty already.
     *
     * @param offset byte offset
     * @param length bytes
     * @return true when no bit of the range is clean
     */
    public boolean isMarked(long offset, long length) {
        if (length <= 0 || offset >= deviceSize) {
            return true;
        }
        long first = offset >>> shift;
        long last = (Math.min(offset + length, deviceSize) - 1) >>> shift;
        int w = (int) (first >>> 6);
        if (w == (int) (last >>> 6)) {
            long mask = (-1L << first) & (-1L >>> (63 - (last & 63)));
            return ((long) WORD.getAcquire(words, w) & mask) == mask;
        }
        for (long x = first >>> 6; x <= last >>> 6; x++) {
            long mask = wordMask(x, first, last);
            if (((long) WORD.getAcquire(words, (int) x) & mask) != mask) {
                return false;
            }
        }
        return true;
    }

    private static long wordMask(long w, long first, long last) {
        long lo = w == first >>> 6 ? first & 63 : 0;
        long hi = w == last >>> 6 ? last & 63 : 63;
        long upper = hi == 63 ? -1L : (1L << (hi + 1)) - 1;
        return upper & (-1L << lo);
    }

    // ---- control ---------------------------------------------------------------------------

    /**
     * Returns the bitmap's name.
     *
     * @return the bitmap's name
     */
    public String bitmapName() {
        return name;
    }

    /** @return the NBD context name, {@code qemu:dirty-bitmap:NAME} */
    @Override
    public String name() {
        return "qemu:dirty-bitmap:" + name;
    }

    /**
     * Returns bytes per bit.
     *
     * @return bytes per bit
     */
    public long granularity() {
        return granularity;
    }

    /**
     * Returns bytes of the device tracked.
     *
     * @return bytes of the device tracked
     */
    public long deviceSize() {
        return deviceSize;
    }

    /**
     * Returns the number of bits (chunks of the device).
     *
     * @return the number of bits (chunks of the device)
     */
    public long bitCount() {
        return bits;
    }

    /**
     * Whether writes mark this bitmap.
     *
     * @return true while writes mark this bitmap
     */
    public boolean isRecording() {
        return recording;
    }

    /**
     * Sets whether writes mark this bitmap from now on.
     *
     * @param on whether writes mark this bitmap from now on
     */
    public void setRecording(boolean on) {
        recording = on;
    }

    /**
     * Whether the bitmap is kept in the device's store across restarts.
     *
     * @return true when the bitmap is kept in the device's store across restarts
     */
    public boolean isPersistent() {
        return persistent;
    }

    /**
     * Sets whether the bitmap is kept in the device's store.
     *
     * @param on whether the bitmap is kept in the device's store
     */
    public void setPersistent(boolean on) {
        persistent = on;
    }

    /**
     * Whether the bitmap can be trusted (not loaded in use after an unclean stop).
     *
     * @return false when the bitmap was loaded in use after an unclean stop: its bits can't be trusted
     */
    public boolean isConsistent() {
        return consistent;
    }

    /** Marks the bitmap as untrustworthy (loaded in use, or its stored bits were damaged). */
    public void markInconsistent() {
        consistent = false;
        recording = false;
    }

    /**
     * Returns what holds the bitmap frozen (a backup export's name), or null.
     *
     * @return what holds the bitmap frozen (a backup export's name), or null
     */
    public String busy() {
        return busy;
    }

    /**
     * Sets what freezes the bitmap (null thaws it).
     *
     * @param holder what freezes the bitmap (null thaws it)
     */
    public void setBusy(String holder) {
        busy = holder;
    }

    /**
     * Whether a backup froze the bitmap and it has not recorded since (its bits end at that
     * backup's instant).
     *
     * @return whether a backup froze the bitmap and it has not recorded since
     */
    public boolean isBackedUp() {
        return backedUp;
    }

    /**
     * Sets whether a backup froze the bitmap (cleared when it records again).
     *
     * @param on whether a backup froze the bitmap
     */
    public void setBackedUp(boolean on) {
        backedUp = on;
    }

    /**
     * Returns the number of dirty bits (a snapshot; writes may add more meanwhile).
     *
     * @return the number of dirty bits (a snapshot; writes may add more meanwhile)
     */
    public long dirtyBits() {
        long n = 0;
        for (int i = 0; i < words.length; i++) {
            n += Long.bitCount((long) WORD.getOpaque(words, i));
        }
        return n;
    }

    /**
     * Returns the dirty bytes: dirty chunks times the granularity, the last chunk clipped to the device.
     *
     * @return the dirty bytes: dirty chunks times the granularity, the last chunk clipped to the device
     */
    public long dirtyBytes() {
        long n = dirtyBits() * granularity;
        if (bits > 0 && isMarked((bits - 1) << shift, 1)) {
            n -= (bits << shift) - deviceSize;
        }
        return n;
    }

    /** Clears every bit. Writes in flight meanwhile may or may not stay marked. */
    public void clear() {
        for (int i = 0; i < words.length; i++) {
            WORD.setRelease(words, i, 0L);
        }
    }

    /**
     * ORs {@code src}'s bits into this one (qemu's {@code block-dirty-bitmap-merge}).
     *
     * @param src a bitmap of the same granularity over the same size
     * @throws IllegalArgumentException when the granularities or sizes differ
     */
    public void merge(DirtyBitmap src) {
        if (src.granularity != granularity || src.deviceSize != deviceSize) {
            throw new IllegalArgumentException("can't merge " + src.name + " (granularity " + src.granularity + ", "
                    + src.deviceSize + " bytes) into " + name + " (granularity " + granularity + ", " + deviceSize
                    + " bytes): granularities and sizes must match");
        }
        for (int i = 0; i < words.length; i++) {
            long v = (long) WORD.getAcquire(src.words, i);
            if (v != 0) {
                WORD.getAndBitwiseOr(words, i, v);
            }
        }
    }

    /**
     * The bits as little-endian 64-bit words (a copy), for a store to save.
     *
     * @return a copy of the words, bit {@code i} of the device in word {@code i/64}, bit {@code i%64}
     */
    public long[] words() {
        long[] out = new long[words.length];
        for (int i = 0; i < words.length; i++) {
            out[i] = (long) WORD.getAcquire(words, i);
        }
        return out;
    }

    /**
     * One word, for a store that saves a part of the bitmap.
     *
     * @param i word index
     * @return its bits now
     */
    public long word(int i) {
        return (long) WORD.getAcquire(words, i);
    }

    /**
     * Returns the number of 64-bit words.
     *
     * @return the number of 64-bit words
     */
    public int wordCount() {
        return words.length;
    }

    /**
     * Sets the words from a store's copy (ORed into what is there).
     *
     * @param src words as {@link #words()} gives them; extra words are ignored
     */
    public void load(long[] src) {
        for (int i = 0; i < Math.min(src.length, words.length); i++) {
            WORD.getAndBitwiseOr(words, i, src[i]);
        }
        // Bits past the device's end would count as dirty bytes that don't exist.
        if (bits % 64 != 0 && words.length > 0) {
            WORD.getAndBitwiseAnd(words, words.length - 1, (1L << (bits % 64)) - 1);
        }
    }

    /**
     * ORs words into this bitmap from word {@code first} on (a store's durable shadow).
     *
     * @param first index of the first word
     * @param src   the words
     */
    public void orWords(int first, long[] src) {
        for (int i = 0; i < src.length && first + i < words.length; i++) {
            if (src[i] != 0) {
                WORD.getAndBitwiseOr(words, first + i, src[i]);
            }
        }
    }

    /**
     * The first run from {@code offset} whose chunks are all dirty or all clean, in bytes.
     *
     * @param offset    byte offset below the device size
     * @param maxLength the longest run wanted
     * @return the run, flags {@link #NBD_DIRTY} for dirty, 0 for clean
     */
    @Override
    public Extent extentAt(long offset, long maxLength) {
        long end = Math.min(deviceSize, offset + maxLength);
        if (offset >= end) {
            return new Extent(Math.max(1, maxLength), 0);
        }
        long bit = offset >>> shift;
        boolean dirty = bitAt(bit);
        long lastBit = (end - 1) >>> shift;
        long b = bit + 1;
        while (b <= lastBit) {
            long w = (long) WORD.getAcquire(words, (int) (b >>> 6));
            long want = dirty ? -1L : 0L;
            if ((b & 63) == 0 && w == want && b + 63 <= lastBit) {
                b += 64;
                continue;
            }
            if (((w >>> (b & 63)) & 1) != (dirty ? 1 : 0)) {
                break;
            }
            b++;
        }
        long runEnd = Math.min(end, b << shift);
        return new Extent(runEnd - offset, dirty ? NBD_DIRTY : 0);
    }

    private boolean bitAt(long b) {
        return (((long) WORD.getAcquire(words, (int) (b >>> 6)) >>> (b & 63)) & 1) != 0;
    }

    @Override
    public String toString() {
        return "DirtyBitmap[" + name + ", " + granularity + " B/bit, " + dirtyBytes() + " dirty bytes]";
    }
}
