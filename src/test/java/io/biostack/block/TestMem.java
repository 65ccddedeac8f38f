package io.biostack.block;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/** Helpers shared by the block tests: patterned memory and byte extraction. */
final class TestMem {
    private TestMem() {
    }

    /** A byte that depends on its position and a seed, never a long run of one value. */
    static byte pattern(long pos, int seed) {
        long x = pos * 0x9E3779B97F4A7C15L + seed * 0x632BE59BD9B4E019L;
        x ^= x >>> 29;
        return (byte) (x ^ (x >>> 17));
    }

    static byte[] patternBytes(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = pattern(i, seed);
        }
        return b;
    }

    /**
     * Native segments of the given lengths whose concatenation is {@code patternBytes(sum, seed)}.
     */
    static List<MemorySegment> patternSegments(Arena arena, List<Integer> lengths, int seed) {
        List<MemorySegment> out = new ArrayList<>();
        long pos = 0;
        for (int len : lengths) {
            MemorySegment s = arena.allocate(Math.max(len, 1), 8).asSlice(0, len);
            for (int i = 0; i < len; i++) {
                s.set(ValueLayout.JAVA_BYTE, i, pattern(pos + i, seed));
            }
            pos += len;
            out.add(s);
        }
        return out;
    }

    /** A bio with the given op, offset and segments (no callback). */
    static Bio bio(Op op, long offset, List<MemorySegment> segs) {
        Bio b = new Bio().init(op, 0, offset, null);
        for (MemorySegment s : segs) {
            b.addSegment(s);
        }
        return b;
    }

    /** The bytes the bio's iterator covers now, through {@link Bio#copyTo}. */
    static byte[] bytesOf(Bio bio) {
        byte[] out = new byte[Math.toIntExact(bio.size())];
        bio.copyTo(MemorySegment.ofArray(out));
        return out;
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] out = new byte[a.length + b.length];
        System.arraycopy(a, 0, out, 0, a.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    static int sum(List<Integer> xs) {
        int s = 0;
        for (int x : xs) {
            s += x;
        }
        return s;
    }
}
