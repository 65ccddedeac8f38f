package io.biostack.block;

import static io.biostack.block.TestMem.bytesOf;
import static io.biostack.block.TestMem.patternBytes;
import static io.biostack.block.TestMem.sum;
import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;
import net.jqwik.api.Assume;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;

class IoIterProperties {

    /** Non-empty slices of one patterned array, back to back, so the expected bytes are known. */
    private static IoIter slices(byte[] all, List<Integer> lengths) {
        MemorySegment whole = MemorySegment.ofArray(all);
        MemorySegment[] segs = new MemorySegment[lengths.size()];
        long pos = 0;
        for (int i = 0; i < segs.length; i++) {
            segs[i] = whole.asSlice(pos, lengths.get(i));
            pos += lengths.get(i);
        }
        return IoIter.of(segs);
    }

    @Property(tries = 300)
    void advanceThenCopyToReadsTheBytesAfterTheAdvance(
            @ForAll @Size(min = 1, max = 8) List<@IntRange(min = 1, max = 300) Integer> lengths,
            @ForAll @Size(max = 5) List<@IntRange(min = 0, max = 400) Integer> steps) {
        int total = sum(lengths);
        byte[] all = patternBytes(total, 21);
        IoIter it = slices(all, lengths);
        int moved = 0;
        for (int s : steps) {
            if (moved + s > total) {
                break;
            }
            it.advance(s);
            moved += s;
            assertThat(it.count()).isEqualTo(total - moved);
        }
        byte[] out = new byte[total - moved];
        it.copyTo(MemorySegment.ofArray(out), 0, out.length);
        assertThat(out).isEqualTo(Arrays.copyOfRange(all, moved, total));
    }

    @Property(tries = 300)
    void addToInPiecesBuildsBiosWhoseBytesConcatenateToTheSource(
            @ForAll @Size(min = 1, max = 8) List<@IntRange(min = 1, max = 300) Integer> lengths,
            @ForAll @Size(min = 1, max = 6) List<@IntRange(min = 1, max = 500) Integer> pieces) {
        int total = sum(lengths);
        byte[] all = patternBytes(total, 22);
        IoIter it = slices(all, lengths);
        int pos = 0;
        for (int p : pieces) {
            int n = Math.min(p, total - pos);
            if (n == 0) {
                break;
            }
            Bio bio = new Bio().init(Op.WRITE, pos, 0, null);
            it.addTo(bio, n);
            assertThat(bio.size()).isEqualTo(n);
            assertThat(bytesOf(bio)).isEqualTo(Arrays.copyOfRange(all, pos, pos + n));
            pos += n;
            assertThat(it.count()).isEqualTo(total - pos);
        }
    }

    @Property(tries = 200)
    void copyFromThenCopyToRoundTripsAtAnyPosition(
            @ForAll @Size(min = 1, max = 6) List<@IntRange(min = 1, max = 300) Integer> lengths,
            @ForAll @IntRange(min = 0, max = 1800) int skip) {
        int total = sum(lengths);
        Assume.that(skip <= total);
        byte[] backing = new byte[total];
        IoIter it = slices(backing, lengths);
        it.advance(skip);
        byte[] src = patternBytes(total - skip, 23);
        it.copyFrom(MemorySegment.ofArray(src), 0, src.length);
        byte[] back = new byte[src.length];
        it.copyTo(MemorySegment.ofArray(back), 0, back.length);
        assertThat(back).isEqualTo(src);
        assertThat(Arrays.copyOfRange(backing, 0, skip)).isEqualTo(new byte[skip]);
        assertThat(Arrays.copyOfRange(backing, skip, total)).isEqualTo(src);
    }

    @Property(tries = 200)
    void alignmentIsTheOrOfEveryRemainingAddressAndLength(
            @ForAll @Size(min = 1, max = 6) List<@IntRange(min = 1, max = 8) Integer> blocks,
            @ForAll @IntRange(min = 0, max = 3) int shift) {
        // lengths are multiples of 512 << shift, so the array offsets are too
        int unit = 512 << shift;
        List<Integer> lengths = blocks.stream().map(b -> b * unit).toList();
        IoIter it = slices(new byte[sum(lengths)], lengths);
        long expected = 0;
        long pos = 0;
        for (int len : lengths) {
            expected |= pos | len;
            pos += len;
        }
        assertThat(it.alignment()).isEqualTo(expected);
        assertThat(it.isAligned(unit)).isTrue();
    }
}
