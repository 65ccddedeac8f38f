package io.biostack.block;

import static io.biostack.block.TestMem.bytesOf;
import static io.biostack.block.TestMem.patternBytes;
import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;

class BioSplitterProperties {
    private static final Status[] ERRORS = {Status.IOERR, Status.MEDIUM, Status.TIMEOUT, Status.NOSPC, Status.AGAIN};

    /** What one piece looked like when the splitter handed it on. */
    private record Piece(Bio bio, long offset, long size, byte[] bytes, long segments, long largestSegment) {
    }

    private static Piece capture(Bio p, long maxSegmentSize) {
        long[] segs = {0, 0};
        if (!p.op().hasData()) {
            return new Piece(p, p.offset(), p.size(), null, 0, 0);
        }
        p.forEachSegment((s, off, len) -> {
            segs[0] += maxSegmentSize == 0 ? 1 : (len + maxSegmentSize - 1) / maxSegmentSize;
            segs[1] = Math.max(segs[1], len);
        });
        return new Piece(p, p.offset(), p.size(), p.op().hasData() ? bytesOf(p) : null, segs[0], segs[1]);
    }

    /**
     * Builds the limits from raw numbers: each is "no limit" when 0, else scaled to something
     * sensible for the logical block size.
     */
    private static QueueLimits limits(int lbs, int maxBytesBlocks, int maxBytesOdd, int maxSegments, int maxSegBlocks,
            int chunkBlocks, int maxDiscardBlocks) {
        return QueueLimits.builder()
                .logicalBlockSize(lbs)
                .maxBytes(maxBytesBlocks == 0 ? 0 : (long) maxBytesBlocks * lbs + maxBytesOdd)
                .maxSegments(maxSegments)
                .maxSegmentSize((long) maxSegBlocks * lbs)
                .chunkBytes((long) chunkBlocks * lbs)
                .maxDiscardBytes((long) maxDiscardBlocks * lbs)
                .maxWriteZeroesBytes((long) maxDiscardBlocks * lbs)
                .build();
    }

    /**
     * Completes the pieces in a random order, failing some; checks that the parent's callback runs
     * exactly once, after the last piece, with the first error in completion order.
     */
    private static void completeAndCheck(List<Piece> pieces, AtomicInteger calls, AtomicReference<Status> seen,
            AtomicReference<String> why, long seed) {
        Random rnd = new Random(seed);
        List<Piece> order = new ArrayList<>(pieces);
        Collections.shuffle(order, rnd);
        Status first = Status.OK;
        String firstWhy = null;
        for (int i = 0; i < order.size(); i++) {
            assertThat(calls).as("parent completed before its last piece").hasValue(0);
            Bio b = order.get(i).bio();
            if (rnd.nextInt(4) == 0) {
                Status s = ERRORS[rnd.nextInt(ERRORS.length)];
                String w = "piece " + i;
                if (first == Status.OK) {
                    first = s;
                    firstWhy = w;
                }
                b.fail(s, w);
            } else {
                b.endIo();
            }
        }
        assertThat(calls).hasValue(1);
        assertThat(seen).hasValue(first);
        assertThat(why).hasValue(firstWhy);
    }

    private static void checkCoverage(List<Piece> pieces, long offset, long size, int lbs) {
        long pos = offset;
        for (Piece p : pieces) {
            assertThat(p.offset()).as("pieces are in order without gaps or overlaps").isEqualTo(pos);
            assertThat(p.size()).isPositive();
            assertThat(p.offset() % lbs).as("piece offset block-aligned").isZero();
            assertThat(p.size() % lbs).as("piece size block-aligned").isZero();
            pos += p.size();
        }
        assertThat(pos).isEqualTo(offset + size);
    }

    private static void checkChunk(List<Piece> pieces, long chunk) {
        if (chunk == 0) {
            return;
        }
        for (Piece p : pieces) {
            assertThat(p.offset() / chunk).as("piece %s crosses a chunk boundary", p)
                    .isEqualTo((p.offset() + p.size() - 1) / chunk);
        }
    }

    @Property(tries = 250)
    void dataPiecesAreAlignedCoverTheBioOnceInOrderAndKeepEveryLimit(
            @ForAll boolean bigBlocks,
            @ForAll @Size(min = 1, max = 12) List<@IntRange(min = 1, max = 24) Integer> segBlocks,
            @ForAll @IntRange(min = 0, max = 64) int offsetBlocks,
            @ForAll @IntRange(min = 0, max = 40) int maxBytesBlocks,
            @ForAll @IntRange(min = 0, max = 511) int maxBytesOdd,
            @ForAll @IntRange(min = 0, max = 6) int maxSegments,
            @ForAll @IntRange(min = 0, max = 8) int maxSegBlocks,
            @ForAll @IntRange(min = 0, max = 48) int chunkBlocks,
            @ForAll long seed) {
        int lbs = bigBlocks ? 4096 : 512;
        QueueLimits lim = limits(lbs, maxBytesBlocks, maxBytesOdd, maxSegments, maxSegBlocks, chunkBlocks, 0);
        int total = segBlocks.stream().mapToInt(i -> i * lbs).sum();
        byte[] data = patternBytes(total, (int) seed);
        MemorySegment all = MemorySegment.ofArray(data);
        long offset = (long) offsetBlocks * lbs;

        AtomicInteger calls = new AtomicInteger();
        AtomicReference<Status> seen = new AtomicReference<>();
        AtomicReference<String> why = new AtomicReference<>();
        Bio parent = new Bio().init(seed % 2 == 0 ? Op.WRITE : Op.READ, 0, offset, b -> {
            calls.incrementAndGet();
            seen.set(b.status());
            why.set(b.detail());
        });
        long pos = 0;
        for (int k : segBlocks) {
            parent.addSegment(all.asSlice(pos, (long) k * lbs));
            pos += (long) k * lbs;
        }
        BioPool pool = new BioPool(64);
        List<Piece> pieces = new ArrayList<>();
        BioSplitter.submitSplit(parent, lim, pool, p -> pieces.add(capture(p, lim.maxSegmentSize())));

        checkCoverage(pieces, offset, total, lbs);
        checkChunk(pieces, lim.chunkBytes());
        byte[] joined = new byte[0];
        for (Piece p : pieces) {
            joined = TestMem.concat(joined, p.bytes());
            if (lim.maxBytes() != 0) {
                assertThat(p.size()).as("maxBytes").isLessThanOrEqualTo(lim.maxBytes());
            }
            if (lim.maxSegments() != 0) {
                assertThat(p.segments()).as("segments of %s", p).isLessThanOrEqualTo(lim.maxSegments());
            }
        }
        assertThat(joined).isEqualTo(data);
        assertThat(pieces.get(pieces.size() - 1).bio()).as("the parent goes last").isSameAs(parent);
        assertThat(pool.created()).isEqualTo(pieces.size() - 1);
        completeAndCheck(pieces, calls, seen, why, seed);
    }

    @Property(tries = 200)
    void piecesOfOddlyCutMemoryStillCoverTheBioWithItsBytes(
            @ForAll @Size(min = 1, max = 10) List<@IntRange(min = 1, max = 3000) Integer> lengths,
            @ForAll @IntRange(min = 0, max = 20) int maxBytesBlocks,
            @ForAll @IntRange(min = 0, max = 5) int maxSegments,
            @ForAll @IntRange(min = 0, max = 16) int chunkBlocks,
            @ForAll long seed) {
        int lbs = 512;
        List<Integer> lens = new ArrayList<>(lengths);
        int total = lens.stream().mapToInt(Integer::intValue).sum();
        if (total % lbs != 0) {
            lens.add(lbs - total % lbs);
            total += lbs - total % lbs;
        }
        QueueLimits lim = limits(lbs, maxBytesBlocks, 0, maxSegments, 0, chunkBlocks, 0);
        byte[] data = patternBytes(total, (int) seed);
        MemorySegment all = MemorySegment.ofArray(data);
        AtomicInteger calls = new AtomicInteger();
        AtomicReference<Status> seen = new AtomicReference<>();
        AtomicReference<String> why = new AtomicReference<>();
        Bio parent = new Bio().init(Op.WRITE, 0, 1 << 20, b -> {
            calls.incrementAndGet();
            seen.set(b.status());
            why.set(b.detail());
        });
        long pos = 0;
        for (int l : lens) {
            parent.addSegment(all.asSlice(pos, l));
            pos += l;
        }
        List<Piece> pieces = new ArrayList<>();
        BioSplitter.submitSplit(parent, lim, new BioPool(16), p -> pieces.add(capture(p, 0)));

        checkCoverage(pieces, 1 << 20, total, lbs);
        checkChunk(pieces, lim.chunkBytes());
        byte[] joined = new byte[0];
        for (Piece p : pieces) {
            joined = TestMem.concat(joined, p.bytes());
            if (lim.maxBytes() != 0) {
                assertThat(p.size()).isLessThanOrEqualTo(lim.maxBytes());
            }
        }
        assertThat(joined).isEqualTo(data);
        completeAndCheck(pieces, calls, seen, why, seed);
    }

    @Property(tries = 200)
    void discardAndWriteZeroesPiecesAreCappedAlignedAndCoverTheRange(
            @ForAll boolean writeZeroes,
            @ForAll boolean bigBlocks,
            @ForAll @IntRange(min = 1, max = 4000) int sizeBlocks,
            @ForAll @IntRange(min = 0, max = 1000) int offsetBlocks,
            @ForAll @IntRange(min = 0, max = 700) int maxBlocks,
            @ForAll @IntRange(min = 0, max = 300) int chunkBlocks,
            @ForAll long seed) {
        int lbs = bigBlocks ? 4096 : 512;
        QueueLimits lim = limits(lbs, 1, 0, 1, 1, chunkBlocks, maxBlocks);
        long offset = (long) offsetBlocks * lbs;
        long size = (long) sizeBlocks * lbs;
        AtomicInteger calls = new AtomicInteger();
        AtomicReference<Status> seen = new AtomicReference<>();
        AtomicReference<String> why = new AtomicReference<>();
        Bio parent = new Bio().init(writeZeroes ? Op.WRITE_ZEROES : Op.DISCARD, BioFlags.NOUNMAP, offset, b -> {
            calls.incrementAndGet();
            seen.set(b.status());
            why.set(b.detail());
        }).setSize(size);
        List<Piece> pieces = new ArrayList<>();
        BioSplitter.submitSplit(parent, lim, new BioPool(16), p -> pieces.add(capture(p, 0)));

        checkCoverage(pieces, offset, size, lbs);
        checkChunk(pieces, lim.chunkBytes());
        long cap = writeZeroes ? lim.maxWriteZeroesBytes() : lim.maxDiscardBytes();
        for (Piece p : pieces) {
            assertThat(p.bio().op()).isEqualTo(parent.op());
            assertThat(p.bio().flags()).isEqualTo(BioFlags.NOUNMAP);
            if (cap != 0) {
                assertThat(p.size()).as("op cap").isLessThanOrEqualTo(cap);
            }
            assertThat(p.segments()).isZero();
        }
        if (cap == 0 && lim.chunkBytes() == 0) {
            assertThat(pieces).hasSize(1); // unsupported: passed on whole, the device refuses it
        }
        completeAndCheck(pieces, calls, seen, why, seed);
    }
}
