package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.BioPool;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * What every layer shares, so that a layer is only its own logic (nbdkit's filters; dm core's
 * {@code __split_and_process_bio}, {@code __send_empty_flush}, {@code dm_set_device_limits}):
 * window checks, limit stacking, splitting at boundaries, fan-out of clones with chained
 * completion, and the table notation.
 *
 * <p>Ownership in every helper: the bio handed in belongs to the layer that calls the helper;
 * the helper passes it (or clones of it, chained to it) on, and the bio completes exactly once.
 */
public final class Layers {
    /** Bios cloned and split by layers come from here; a warm pool allocates nothing. */
    public static final BioPool POOL = new BioPool(4096);

    /** Table offsets and lengths are in 512-byte sectors, as dmsetup's. */
    public static final int SECTOR = 512;

    private Layers() {
    }

    // ---- construction checks -----------------------------------------------------------------

    /**
     * Checks that [start, start + length) lies inside {@code lower} and is aligned to its logical
     * blocks; throws {@link IllegalArgumentException} saying what is wrong otherwise.
     *
     * @param name the device being built, for the message
     * @param lower the device the window is on
     * @param start the window's start on {@code lower}, in bytes
     * @param length the window's length in bytes
     * @throws IllegalArgumentException when the window is negative, misaligned or reaches past the
     *         end of {@code lower}
     */
    public static void checkWindow(String name, BlockDevice lower, long start, long length) {
        int lbs = lower.limits().logicalBlockSize();
        if (start > lower.size()) {
            // before the length: a whole-device line's length (to the end of lower) is negative then
            throw new IllegalArgumentException(name + ": offset " + start + " is beyond the end of "
                    + lower.name() + " (" + lower.size() + " bytes)");
        }
        if (start < 0 || length < 0) {
            throw new IllegalArgumentException(name + ": negative start or length");
        }
        if (start % lbs != 0 || length % lbs != 0) {
            throw new IllegalArgumentException(name + ": start " + start + " and length " + length
                    + " must be multiples of " + lower.name() + "'s " + lbs + "-byte logical blocks");
        }
        if (start > lower.size() || length > lower.size() - start) {
            throw new IllegalArgumentException(name + ": " + length + " bytes at " + start
                    + " go beyond the end of " + lower.name() + " (" + lower.size() + " bytes)");
        }
    }

    /**
     * Limits of a window that starts {@code start} bytes into a device with limits {@code lim}.
     * A chunk boundary of the device below only carries up when the window starts on one (the
     * device below splits at its own boundaries anyway).
     *
     * @param lim the limits of the device below
     * @param start where the window starts on it, in bytes
     * @return the limits the window publishes
     */
    public static QueueLimits shiftLimits(QueueLimits lim, long start) {
        long chunk = lim.chunkBytes();
        if (chunk == 0 || start % chunk == 0) {
            return lim;
        }
        return lim.toBuilder().chunkBytes(0).build();
    }

    /**
     * The limits of a device over all of {@code lowers}, stacked the kernel's way.
     *
     * @param top the upper device's own limits
     * @param lowers the devices it sits on, at least one
     * @return {@code top} stacked on every device of {@code lowers} in turn
     */
    public static QueueLimits stackAll(QueueLimits top, List<? extends BlockDevice> lowers) {
        QueueLimits l = top;
        for (BlockDevice d : lowers) {
            l = QueueLimits.stack(l, d.limits());
        }
        return l;
    }

    /**
     * The limits of a device made of {@code lowers} alone (striped), stacked as dm's
     * {@code dm_calculate_queue_limits} does from {@code blk_set_stacking_limits}: a device with no
     * limits of its own inherits everything, so DISCARD, WRITE_ZEROES and FUA stay when every
     * device below has them. Stacking on a plain {@code QueueLimits.builder()} top instead would
     * AND them with its "none" and take them away.
     *
     * @param lowers the devices the device is made of, at least one
     * @return the first device's limits stacked with every other's
     */
    public static QueueLimits stackLegs(List<? extends BlockDevice> lowers) {
        return stackAll(lowers.getFirst().limits(), lowers.subList(1, lowers.size()));
    }

    // ---- bio helpers -------------------------------------------------------------------------

    /**
     * Whether the bio is an empty FLUSH: it has no range, so a layer sends it to every device
     * below rather than mapping it.
     *
     * @param bio the bio a layer received
     * @return true when its op is {@link Op#FLUSH}
     */
    public static boolean isFlushOnly(Bio bio) {
        return bio.op() == Op.FLUSH;
    }

    /** How many bytes from an offset to the next boundary a layer must split at. */
    @FunctionalInterface
    public interface Boundary {
        /**
         * Bytes from {@code offset} to the next boundary.
         *
         * @param offset an offset on the device, in bytes
         * @return the bytes up to the next boundary, more than 0
         */
        long bytesToBoundary(long offset);
    }

    /**
     * Sends {@code bio} to {@code next} in pieces that do not cross a boundary. Each front piece
     * comes from {@link #POOL} and is chained to {@code bio}; the last piece is {@code bio}
     * itself, so its callback runs once, after every piece, with the first error. Ownership of
     * every piece passes to {@code next}.
     *
     * @param bio the bio to send, owned by the caller until this call
     * @param boundary where the layer must split
     * @param next takes each piece and owns it from then on
     */
    public static void splitAt(Bio bio, Boundary boundary, Consumer<Bio> next) {
        while (true) {
            long n = boundary.bytesToBoundary(bio.offset());
            if (n >= bio.size()) {
                next.accept(bio);
                return;
            }
            Bio front = bio.split(n, POOL);
            front.chain(bio);
            next.accept(front);
        }
    }

    /**
     * Sends a clone of {@code parent} (same op, flags, range and memory) to each device, chained
     * to {@code parent}, then drops the caller's reference: {@code parent} completes after the
     * last clone, with the first error. Used for FLUSH and for writes that every leg must see.
     * With no devices the parent completes at once.
     *
     * @param parent the bio to send everywhere; the caller gives it up
     * @param devices the devices each to get a clone, in order
     */
    public static void fanOut(Bio parent, List<? extends BlockDevice> devices) {
        for (BlockDevice d : devices) {
            Bio c = parent.cloneShallow(POOL);
            c.chain(parent);
            d.submit(c);
        }
        parent.endIo();
    }

    /**
     * A clone of {@code parent} with its own callback and {@code parent} as its private data:
     * the way a layer keeps per-bio state without touching the caller's slots. The callback
     * must end by completing the parent ({@link #finishClone}).
     *
     * @param parent the caller's bio, which the layer owns until the clone's callback completes it
     * @param endIo the clone's callback; it runs once and must end with {@link #finishClone}
     * @return the clone, owned by the caller until it is submitted
     */
    public static Bio cloneWith(Bio parent, EndIo endIo) {
        Bio c = parent.cloneShallow(POOL);
        c.setEndIo(endIo);
        c.setPrivateData(parent);
        return c;
    }

    /**
     * Completes the parent of a clone made by {@link #cloneWith}: passes the clone's error up
     * (first error wins), returns the clone to its pool and completes the parent. Call it once, as
     * the last thing the clone's callback does.
     *
     * @param clone a clone from {@link #cloneWith}, completed; the caller gives it up
     */
    public static void finishClone(Bio clone) {
        Bio parent = (Bio) clone.privateData();
        Status s = clone.status();
        if (s != Status.OK) {
            parent.setStatus(s, clone.detail());
        }
        // The clock reading a counted device below took at completion serves the ones above too.
        parent.setCompletionTime(clone.completionTime());
        clone.put();
        parent.endIo();
    }

    /**
     * A write with PREFLUSH on a layer over several devices, sent as dm core sends it
     * ({@code dm_split_and_process_bio}, {@code __dm_io_complete}): an empty FLUSH to every device
     * first, and the data only once they all completed, so that nothing of the write is on a disk
     * before what completed ahead of it is durable on all of them (a journal's commit block must
     * not land before its blocks are safe on another stripe). When the flushes are done,
     * {@code flushed} runs with the flush bio, from which {@link #afterPreflush} gives {@code bio}
     * back, without PREFLUSH, for the layer to map as any write.
     *
     * @param bio a bio the layer owns
     * @param devices every device the layer sits on
     * @param flushed the layer's continuation (cached once: it runs on a completion thread and must
     *         not block)
     * @return false when {@code bio} has no PREFLUSH (the caller goes on with it); true when it
     *         was taken: the caller must not touch it again
     */
    public static boolean preflushFirst(Bio bio, List<? extends BlockDevice> devices, EndIo flushed) {
        if (!bio.hasFlag(BioFlags.PREFLUSH) || bio.op() == Op.FLUSH) {
            return false;
        }
        Bio f = POOL.get().init(Op.FLUSH, 0, 0, flushed);
        f.setPrivateData(bio);
        fanOut(f, devices);
        return true;
    }

    /**
     * In the continuation of {@link #preflushFirst}: the write whose flushes completed, without
     * PREFLUSH, for the caller to map and submit; or null when a flush failed, and the write has
     * been completed with that error (its data written nowhere).
     *
     * @param flush the flush bio the continuation was given; the caller gives it up
     * @return the write, owned by the caller, or null
     */
    public static Bio afterPreflush(Bio flush) {
        Bio bio = (Bio) flush.privateData();
        Status s = flush.status();
        String why = flush.detail();
        flush.put();
        if (s != Status.OK) {
            bio.fail(s, why);
            return null;
        }
        bio.setFlags(bio.flags() & ~BioFlags.PREFLUSH);
        return bio;
    }

    // ---- table notation ----------------------------------------------------------------------

    /**
     * Bytes as dmsetup's 512-byte sectors.
     *
     * @param bytes a byte count, a multiple of 512 in a table
     * @return the count of whole 512-byte sectors, as decimal text
     */
    public static String sectors(long bytes) {
        return Long.toString(bytes / SECTOR);
    }

    /**
     * The length of a target being opened: the segment's {@code length}, or {@code natural} on a
     * whole-device line, where the table gives no length (-1).
     *
     * @param length  the segment's bytes, or -1
     * @param natural the bytes the target has on its own (to the end of the device below)
     * @return the length to build the target with
     */
    public static long lengthOr(long length, long natural) {
        return length < 0 ? natural : length;
    }

    /**
     * Refuses a whole-device line for a target that has no size of its own ({@code error},
     * {@code zero}).
     *
     * @param length the segment's bytes, or -1 on a whole-device line
     * @return {@code length}, not negative
     */
    public static long needLength(long length) {
        if (length < 0) {
            throw new IllegalArgumentException("needs a length: write 'NAME: 0 LENGTH TARGET'");
        }
        return length;
    }

    /**
     * Reads {@code n} {@code <dev> <offset>} pairs of a table line (striped, mirror), counting the
     * devices as the line's dependencies.
     *
     * @param a the line
     * @param n how many legs
     * @return the legs, named, to open with {@link #openLegs}
     */
    public static List<Leg.Named> legs(TableArgs a, int n) {
        List<Leg.Named> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            String d = a.dev("DEV of leg " + (i + 1));
            out.add(new Leg.Named(d, a.bytes("OFFSET of leg " + (i + 1))));
        }
        return out;
    }

    /**
     * The legs {@code named} on devices that are open.
     *
     * @param named   legs read by {@link #legs}
     * @param devices the open devices
     * @return the legs, in order
     */
    public static List<Leg> openLegs(List<Leg.Named> named, TableSpec.Resolver devices) {
        List<Leg> out = new ArrayList<>(named.size());
        for (Leg.Named l : named) {
            out.add(l.open(devices));
        }
        return out;
    }

    /**
     * The bytes every leg has from its start to the end of its device: the natural length of a
     * target that spans them all.
     *
     * @param legs open legs
     * @return the smallest room left on any leg
     */
    public static long minLeft(List<Leg> legs) {
        long m = Long.MAX_VALUE;
        for (Leg l : legs) {
            m = Math.min(m, l.device().size() - l.start());
        }
        return m;
    }
}
