package io.biostack.block;

import static io.biostack.block.TestMem.bio;
import static io.biostack.block.TestMem.bytesOf;
import static io.biostack.block.TestMem.concat;
import static io.biostack.block.TestMem.patternBytes;
import static io.biostack.block.TestMem.patternSegments;
import static io.biostack.block.TestMem.sum;
import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import net.jqwik.api.Assume;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;

class BioProperties {

    @Property(tries = 300)
    void splitFrontAndAdvancedRemainderConcatenateToTheOriginalBytes(
            @ForAll @Size(min = 1, max = 8) List<@IntRange(min = 0, max = 700) Integer> lengths,
            @ForAll @IntRange(min = 0, max = 5000) int preAdvance,
            @ForAll @IntRange(min = 1, max = 5000) int splitAt,
            @ForAll @IntRange(min = 0, max = 1 << 20) int offset) {
        int total = sum(lengths);
        Assume.that(preAdvance < total);
        Assume.that(splitAt < total - preAdvance);
        try (Arena arena = Arena.ofConfined()) {
            byte[] all = patternBytes(total, 11);
            Bio parent = bio(Op.WRITE, offset, patternSegments(arena, lengths, 11));
            parent.advance(preAdvance);
            byte[] before = bytesOf(parent);

            Bio front = parent.split(splitAt, null);

            assertThat(front.offset()).isEqualTo(offset + preAdvance);
            assertThat(front.size()).isEqualTo(splitAt);
            assertThat(parent.offset()).isEqualTo(front.offset() + front.size());
            assertThat(front.size() + parent.size()).isEqualTo(total - preAdvance);
            assertThat(concat(bytesOf(front), bytesOf(parent))).isEqualTo(before);
            assertThat(before).isEqualTo(Arrays.copyOfRange(all, preAdvance, total));
        }
    }

    @Property(tries = 300)
    void advanceInStepsMatchesOneAdvanceAndCopyToSeesTheTail(
            @ForAll @Size(min = 1, max = 8) List<@IntRange(min = 0, max = 500) Integer> lengths,
            @ForAll @Size(max = 6) List<@IntRange(min = 0, max = 600) Integer> steps) {
        int total = sum(lengths);
        try (Arena arena = Arena.ofConfined()) {
            byte[] all = patternBytes(total, 12);
            List<MemorySegment> segs = patternSegments(arena, lengths, 12);
            Bio stepped = bio(Op.READ, 0, segs);
            long moved = 0;
            for (int s : steps) {
                if (moved + s > total) {
                    break;
                }
                stepped.advance(s);
                moved += s;
            }
            Bio once = bio(Op.READ, 0, segs);
            once.advance(moved);

            assertThat(stepped.offset()).isEqualTo(moved);
            assertThat(stepped.size()).isEqualTo(total - moved);
            assertThat(bytesOf(stepped)).isEqualTo(Arrays.copyOfRange(all, (int) moved, total));
            assertThat(bytesOf(once)).isEqualTo(bytesOf(stepped));

            // the pieces forEachSegment reports are the same bytes, in order, and no more
            byte[] viaVisitor = new byte[(int) (total - moved)];
            int[] pos = {0};
            stepped.forEachSegment((seg, off, len) -> {
                assertThat(off + len).isLessThanOrEqualTo(seg.byteSize());
                MemorySegment.copy(seg, ValueLayout.JAVA_BYTE, off, viaVisitor, pos[0], (int) len);
                pos[0] += (int) len;
            });
            assertThat(pos[0]).isEqualTo(total - moved);
            assertThat(viaVisitor).isEqualTo(Arrays.copyOfRange(all, (int) moved, total));
        }
    }

    @Property(tries = 200)
    void copyFromThenCopyToRoundTripsAfterAdvanceAndLeavesTheHeadAlone(
            @ForAll @Size(min = 1, max = 6) List<@IntRange(min = 1, max = 400) Integer> lengths,
            @ForAll @IntRange(min = 0, max = 2400) int advanceBy) {
        int total = sum(lengths);
        Assume.that(advanceBy <= total);
        try (Arena arena = Arena.ofConfined()) {
            byte[] all = patternBytes(total, 13);
            List<MemorySegment> segs = patternSegments(arena, lengths, 13);
            Bio b = bio(Op.READ, 0, segs);
            b.advance(advanceBy);
            byte[] src = patternBytes(total - advanceBy, 99);
            b.copyFrom(MemorySegment.ofArray(src));
            assertThat(bytesOf(b)).isEqualTo(src);

            Bio whole = bio(Op.READ, 0, segs);
            byte[] now = bytesOf(whole);
            assertThat(Arrays.copyOfRange(now, 0, advanceBy)).isEqualTo(Arrays.copyOfRange(all, 0, advanceBy));
            assertThat(Arrays.copyOfRange(now, advanceBy, total)).isEqualTo(src);
        }
    }
}
