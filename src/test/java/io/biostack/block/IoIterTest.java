package io.biostack.block;

import static io.biostack.block.TestMem.bytesOf;
import static io.biostack.block.TestMem.patternBytes;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class IoIterTest {
    private Arena arena;

    @BeforeEach
    void open() {
        arena = Arena.ofConfined();
    }

    @AfterEach
    void close() {
        arena.close();
    }

    private static byte[] read(IoIter it) {
        byte[] out = new byte[Math.toIntExact(it.count())];
        it.copyTo(MemorySegment.ofArray(out), 0, out.length);
        return out;
    }

    @Test
    void ofByteArrayCoversTheWholeArray() {
        byte[] a = patternBytes(1000, 1);
        IoIter it = IoIter.of(a);
        assertThat(it.count()).isEqualTo(1000);
        assertThat(read(it)).isEqualTo(a);
    }

    @Test
    void ofByteArrayRangeCoversOnlyTheRange() {
        byte[] a = patternBytes(1000, 1);
        IoIter it = IoIter.of(a, 100, 300);
        assertThat(it.count()).isEqualTo(300);
        assertThat(read(it)).isEqualTo(Arrays.copyOfRange(a, 100, 400));
        assertThatThrownBy(() -> IoIter.of(a, 900, 200)).isInstanceOf(IndexOutOfBoundsException.class);
    }

    @Test
    void ofHeapByteBufferRespectsPositionAndLimitAndLeavesPosition() {
        byte[] a = patternBytes(1000, 2);
        ByteBuffer buf = ByteBuffer.wrap(a);
        buf.position(10).limit(110);
        IoIter it = IoIter.of(buf);
        assertThat(it.count()).isEqualTo(100);
        assertThat(read(it)).isEqualTo(Arrays.copyOfRange(a, 10, 110));
        assertThat(buf.position()).isEqualTo(10);
        assertThat(buf.limit()).isEqualTo(110);
        assertThat(it.kernelSafe()).isFalse();
    }

    @Test
    void ofDirectByteBufferRespectsPositionAndLimitAndIsKernelSafe() {
        byte[] a = patternBytes(4096, 3);
        ByteBuffer buf = ByteBuffer.allocateDirect(4096);
        buf.put(a).clear();
        buf.position(512).limit(2048);
        IoIter it = IoIter.of(buf);
        assertThat(it.count()).isEqualTo(1536);
        assertThat(read(it)).isEqualTo(Arrays.copyOfRange(a, 512, 2048));
        assertThat(buf.position()).isEqualTo(512);
        assertThat(it.kernelSafe()).isTrue();
    }

    @Test
    void ofSegmentsCountsAllAndReadsInOrder() {
        MemorySegment a = arena.allocate(100);
        MemorySegment b = arena.allocate(200);
        a.fill((byte) 1);
        b.fill((byte) 2);
        IoIter it = IoIter.of(a, b);
        assertThat(it.count()).isEqualTo(300);
        byte[] got = read(it);
        assertThat(Arrays.copyOfRange(got, 0, 100)).containsOnly(1);
        assertThat(Arrays.copyOfRange(got, 100, 300)).containsOnly(2);
    }

    @Test
    void ofSegmentsDoesNotShareTheCallersArray() {
        MemorySegment a = arena.allocate(100);
        MemorySegment[] arr = {a};
        IoIter it = IoIter.of(arr);
        arr[0] = arena.allocate(50);
        assertThat(it.count()).isEqualTo(100);
    }

    // ---- alignment ------------------------------------------------------------------------------

    @Test
    void alignedNativeSegmentIsAlignedToItsAlignmentAndSliceOnlyTo512() {
        MemorySegment s = arena.allocate(8192, 4096);
        IoIter whole = IoIter.of(s);
        assertThat(whole.isAligned(4096)).isTrue();
        assertThat(whole.alignment() & 4095).isZero();

        IoIter slice = IoIter.of(s.asSlice(512, 4096));
        assertThat(slice.isAligned(512)).isTrue();
        assertThat(slice.isAligned(1024)).isFalse();
        assertThat(Long.lowestOneBit(slice.alignment())).isEqualTo(512);
    }

    @Test
    void alignmentIsTheOrOfAddressesAndLengths() {
        MemorySegment s = arena.allocate(16384, 4096);
        // aligned addresses, but one length is only 1024-aligned
        IoIter it = IoIter.of(s.asSlice(0, 4096), s.asSlice(8192, 1024));
        assertThat(it.isAligned(1024)).isTrue();
        assertThat(it.isAligned(2048)).isFalse();
        assertThat(it.alignment()).isEqualTo(s.address() | 4096 | (s.address() + 8192) | 1024);
        // an odd length anywhere ruins it
        assertThat(IoIter.of(s.asSlice(0, 4096), s.asSlice(4096, 7)).isAligned(2)).isFalse();
    }

    @Test
    void alignmentAfterAdvanceUsesTheAdvancedAddress() {
        MemorySegment s = arena.allocate(8192, 4096);
        IoIter it = IoIter.of(s);
        it.advance(4096);
        assertThat(it.isAligned(4096)).isTrue();
        it.advance(512);
        assertThat(Long.lowestOneBit(it.alignment())).isEqualTo(512);
    }

    @Test
    void heapAlignmentUsesOffsetsWithinTheArray() {
        byte[] a = new byte[8192];
        assertThat(IoIter.of(a).isAligned(4096)).isTrue();
        assertThat(Long.lowestOneBit(IoIter.of(a, 512, 1024).alignment())).isEqualTo(512);
    }

    @Test
    void emptyIteratorIsAlignedToAnything() {
        IoIter it = IoIter.of(new byte[0]);
        assertThat(it.count()).isZero();
        assertThat(it.alignment()).isZero();
        assertThat(it.isAligned(1 << 20)).isTrue();
    }

    // ---- kernelSafe ---------------------------------------------------------------------------

    @Test
    void kernelSafeIsTrueForNativeAndFalseForHeapMemory() {
        assertThat(IoIter.of(arena.allocate(4096)).kernelSafe()).isTrue();
        assertThat(IoIter.of(new byte[4096]).kernelSafe()).isFalse();
        assertThat(IoIter.of(arena.allocate(4096), MemorySegment.ofArray(new byte[512])).kernelSafe()).isFalse();
    }

    @Test
    void kernelSafeIsFalseForAClosedArenasSegment() {
        Arena other = Arena.ofShared();
        MemorySegment s = other.allocate(4096);
        IoIter it = IoIter.of(s);
        assertThat(it.kernelSafe()).isTrue();
        other.close();
        assertThat(it.kernelSafe()).isFalse();
    }

    @Test
    void kernelSafeLooksOnlyAtWhatIsLeft() {
        IoIter it = IoIter.of(MemorySegment.ofArray(new byte[512]), arena.allocate(512));
        assertThat(it.kernelSafe()).isFalse();
        it.advance(512);
        assertThat(it.kernelSafe()).isTrue();
    }

    // ---- advance, copy, addTo -----------------------------------------------------------------

    @Test
    void advanceAcrossSegmentsThenCopyToReadsTheTail() {
        byte[] a = patternBytes(300, 4);
        IoIter it = IoIter.of(MemorySegment.ofArray(a).asSlice(0, 100), MemorySegment.ofArray(a).asSlice(100, 200));
        it.advance(150);
        assertThat(it.count()).isEqualTo(150);
        assertThat(read(it)).isEqualTo(Arrays.copyOfRange(a, 150, 300));
        assertThatThrownBy(() -> it.advance(151)).isInstanceOf(IllegalArgumentException.class);
        assertThat(it.count()).isEqualTo(150);
    }

    @Test
    void copyToDoesNotAdvanceAndHonoursDstOffset() {
        byte[] a = patternBytes(64, 5);
        IoIter it = IoIter.of(a);
        byte[] dst = new byte[80];
        it.copyTo(MemorySegment.ofArray(dst), 16, 64);
        assertThat(Arrays.copyOfRange(dst, 16, 80)).isEqualTo(a);
        assertThat(Arrays.copyOfRange(dst, 0, 16)).containsOnly(0);
        assertThat(it.count()).isEqualTo(64);
    }

    @Test
    void copyFromWritesTheNextBytesWithoutAdvancing() {
        byte[] a = new byte[300];
        IoIter it = IoIter.of(MemorySegment.ofArray(a).asSlice(0, 100), MemorySegment.ofArray(a).asSlice(100, 200));
        it.advance(50);
        byte[] src = patternBytes(220, 6);
        it.copyFrom(MemorySegment.ofArray(src), 20, 200);
        assertThat(Arrays.copyOfRange(a, 0, 50)).containsOnly(0);
        assertThat(Arrays.copyOfRange(a, 50, 250)).isEqualTo(Arrays.copyOfRange(src, 20, 220));
        assertThat(Arrays.copyOfRange(a, 250, 300)).containsOnly(0);
        assertThat(it.count()).isEqualTo(250);
    }

    @Test
    void copyIsIndependent() {
        byte[] a = patternBytes(100, 7);
        IoIter it = IoIter.of(a);
        IoIter c = it.copy();
        c.advance(60);
        assertThat(it.count()).isEqualTo(100);
        assertThat(read(c)).isEqualTo(Arrays.copyOfRange(a, 60, 100));
    }

    @Test
    void addToPutsSlicesInTheBioAndAdvances() {
        byte[] a = patternBytes(1536, 8);
        MemorySegment whole = MemorySegment.ofArray(a);
        IoIter it = IoIter.of(whole.asSlice(0, 512), whole.asSlice(512, 1024));
        it.advance(256);
        Bio bio = new Bio().init(Op.WRITE, 0, 0, null);
        it.addTo(bio, 768);
        assertThat(bio.size()).isEqualTo(768);
        assertThat(bio.segmentCount()).isEqualTo(2);
        assertThat(bio.segment(0).byteSize()).isEqualTo(256);
        assertThat(bio.segment(1).byteSize()).isEqualTo(512);
        assertThat(bytesOf(bio)).isEqualTo(Arrays.copyOfRange(a, 256, 1024));
        assertThat(it.count()).isEqualTo(512);
        assertThat(read(it)).isEqualTo(Arrays.copyOfRange(a, 1024, 1536));
        assertThatThrownBy(() -> it.addTo(bio, 513)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void addToReferencesTheCallersMemoryWithoutCopying() {
        byte[] a = new byte[512];
        Bio bio = new Bio().init(Op.READ, 0, 0, null);
        IoIter.of(a).addTo(bio, 512);
        bio.copyFrom(MemorySegment.ofArray(patternBytes(512, 9)));
        assertThat(a).isEqualTo(patternBytes(512, 9));
    }

    @Test
    void addToSkipsEmptySegmentsInTheMiddle() throws Exception {
        // In-process first the part that can't hang: an empty segment at the very end.
        byte[] a = patternBytes(1024, 10);
        MemorySegment whole = MemorySegment.ofArray(a);
        Bio tail = new Bio().init(Op.WRITE, 0, 0, null);
        IoIter.of(whole, MemorySegment.ofArray(new byte[0])).addTo(tail, 1024);
        assertThat(bytesOf(tail)).isEqualTo(a);

        // An empty segment in the middle: when addTo does not step over it, it spins adding empty
        // segments forever. So run it in a child JVM with a 32 MiB heap, which dies quickly then.
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "-Xmx32m", "-cp", System.getProperty("java.class.path"),
                AddToEmptySegmentProbe.class.getName())
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                .start();
        boolean ended = p.waitFor(20, TimeUnit.SECONDS);
        if (!ended) {
            p.destroyForcibly().waitFor();
        }
        assertThat(ended && p.exitValue() == 0)
                .as("IoIter.addTo over segments of [512, 0, 512] bytes ends with 1024 bytes in the bio "
                        + "(ended=%s, exit=%s)", ended, ended ? p.exitValue() : "-")
                .isTrue();
    }

    @Test
    void advanceStepsOverEmptySegmentsSoKernelSafeSeesOnlyRealMemory() {
        IoIter it = IoIter.of(arena.allocate(512), MemorySegment.ofArray(new byte[0]), arena.allocate(512));
        it.advance(512);
        assertThat(it.count()).isEqualTo(512);
        assertThat(it.kernelSafe()).as("only native memory is left").isTrue();
    }

    @Test
    void ofBioCoversWhatTheBiosIteratorCoversNow() {
        byte[] a = patternBytes(1000, 11);
        MemorySegment whole = MemorySegment.ofArray(a);
        Bio bio = new Bio().init(Op.WRITE, 0, 0, null)
                .addSegment(whole.asSlice(0, 300))
                .addSegment(whole.asSlice(300, 700));
        bio.advance(400);
        IoIter it = IoIter.ofBio(bio);
        assertThat(it.count()).isEqualTo(600);
        assertThat(read(it)).isEqualTo(Arrays.copyOfRange(a, 400, 1000));
        // a front piece of a split stops at its own size
        Bio src = new Bio().init(Op.WRITE, 0, 0, null).addSegment(whole);
        Bio front = src.split(100, null);
        assertThat(read(IoIter.ofBio(front))).isEqualTo(Arrays.copyOfRange(a, 0, 100));
    }

    @Test
    void ofBioOfADatalessBioIsEmpty() {
        Bio d = new Bio().init(Op.DISCARD, 0, 0, null).setSize(4096);
        assertThat(IoIter.ofBio(d).count()).isZero();
    }

    @Test
    void ofBioOfNativeAlignedMemoryIsKernelSafeAndAligned() {
        MemorySegment s = arena.allocate(8192, 4096);
        s.fill((byte) 0x5a);
        Bio bio = new Bio().init(Op.WRITE, 0, 0, null).addSegment(s);
        IoIter it = IoIter.ofBio(bio);
        assertThat(it.kernelSafe()).isTrue();
        assertThat(it.isAligned(4096)).isTrue();
        byte[] out = read(it);
        assertThat(out).containsOnly(0x5a);
        assertThat(s.get(ValueLayout.JAVA_BYTE, 0)).isEqualTo((byte) 0x5a);
    }
}
