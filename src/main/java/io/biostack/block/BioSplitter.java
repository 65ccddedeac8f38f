package io.biostack.block;

import java.util.function.Consumer;

/**
 * Splits bios that break a lower device's limits ({@code bio_split_to_limits},
 * block/blk-merge.c): the front piece that fits is split off, chained to the parent and sent on;
 * the parent completes when its last piece does, with the first error.
 */
public final class BioSplitter {
    private BioSplitter() {
    }

    /**
     * How many bytes from the start of {@code bio} fit {@code lim}: its size when it fits whole.
     * Always a multiple of the logical block size, and at least one block.
     *
     * @param bio the bio to fit, with its iterator where the next piece starts
     * @param lim the limits of the device the piece goes to
     * @return the bytes of the first piece, at most {@code bio.size()}
     */
    public static long fit(Bio bio, QueueLimits lim) {
        long size = bio.size();
        long max;
        switch (bio.op()) {
            case READ, WRITE -> max = dataFit(bio, lim);
            case DISCARD -> max = lim.maxDiscardBytes() == 0 ? size : lim.maxDiscardBytes();
            case WRITE_ZEROES -> max = lim.maxWriteZeroesBytes() == 0 ? size : lim.maxWriteZeroesBytes();
            default -> {
                return size;
            }
        }
        long chunk = lim.chunkBytes();
        if (chunk > 0) {
            long toBoundary = chunk - Math.floorMod(bio.offset(), chunk);
            max = Math.min(max, toBoundary);
        }
        if (max >= size) {
            return size;
        }
        int lbs = lim.logicalBlockSize();
        long rounded = max / lbs * lbs;
        return Math.max(rounded, lbs);
    }

    private static long dataFit(Bio bio, QueueLimits lim) {
        long size = bio.size();
        long max = lim.maxBytes() == 0 ? size : Math.min(size, lim.maxBytes());
        int maxSegs = lim.maxSegments();
        long maxSeg = lim.maxSegmentSize();
        if (maxSegs == 0 && maxSeg == 0) {
            return max;
        }
        // Walk the segments; each counts ceil(len / maxSegmentSize) pieces.
        BioIter it = bio.iter();
        int i = it.index();
        long skip = it.doneInSegment();
        long bytes = 0;
        long segs = 0;
        while (bytes < max) {
            long len = Math.min(bio.segment(i).byteSize() - skip, max - bytes);
            long pieces = maxSeg == 0 ? 1 : (len + maxSeg - 1) / maxSeg;
            if (maxSegs != 0 && segs + pieces > maxSegs) {
                long room = maxSegs - segs;
                bytes += maxSeg == 0 ? 0 : Math.min(len, room * maxSeg);
                break;
            }
            segs += pieces;
            bytes += len;
            i++;
            skip = 0;
        }
        return Math.min(bytes, max);
    }

    /**
     * Sends {@code bio} to {@code next} in pieces that fit {@code lim}. Each front piece comes from
     * {@code pool} and is chained to {@code bio}, so {@code bio}'s callback runs once, after the
     * last piece, with the first error. Ownership of {@code bio} passes to {@code next}.
     *
     * @param bio the bio to send; owned by the caller until this call, then by {@code next}
     * @param lim the limits each piece must keep
     * @param pool where the front pieces come from; they return to it on completion
     * @param next takes each piece (the last one is {@code bio} itself) and owns it from then on
     */
    public static void submitSplit(Bio bio, QueueLimits lim, BioPool pool, Consumer<Bio> next) {
        while (true) {
            long n = fit(bio, lim);
            if (n >= bio.size()) {
                next.accept(bio);
                return;
            }
            Bio front = bio.split(n, pool);
            front.chain(bio);
            next.accept(front);
        }
    }
}
