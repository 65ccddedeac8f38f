package io.biostack.block;

import java.lang.foreign.MemorySegment;

/**
 * Run in a child JVM with a small heap by {@link IoIterTest}: {@link IoIter#addTo} over memory
 * with an empty segment in the middle. Exits 0 when the bio got exactly the 1024 bytes; a spin
 * that keeps adding empty segments runs out of the small heap and exits non-zero instead of
 * hanging the test run.
 */
final class AddToEmptySegmentProbe {
    private AddToEmptySegmentProbe() {
    }

    public static void main(String[] args) {
        MemorySegment whole = MemorySegment.ofArray(new byte[1024]);
        IoIter it = IoIter.of(whole.asSlice(0, 512), MemorySegment.ofArray(new byte[0]), whole.asSlice(512, 512));
        Bio bio = new Bio().init(Op.WRITE, 0, 0, null);
        it.addTo(bio, 1024);
        System.exit(bio.size() == 1024 && it.count() == 0 ? 0 : 2);
    }
}
