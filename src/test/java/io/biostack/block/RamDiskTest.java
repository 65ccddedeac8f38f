package io.biostack.block;

import static io.biostack.block.TestMem.patternBytes;
import static io.biostack.block.TestMem.patternSegments;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

class RamDiskTest {
    private static final int CHUNK = RamDisk.CHUNK;

    private static byte[] read(BlockDevice d, long off, int len) throws Exception {
        byte[] out = new byte[len];
        d.read(off, MemorySegment.ofArray(out)).get(5, TimeUnit.SECONDS);
        return out;
    }

    private static void write(BlockDevice d, long off, byte[] data) throws Exception {
        d.write(off, MemorySegment.ofArray(data)).get(5, TimeUnit.SECONDS);
    }

    private static Extent hole(long len) {
        return Extent.hole(len);
    }

    @Test
    void describesItself() {
        RamDisk d = new RamDisk("ram3", 4L << 20, 4096, false);
        assertThat(d.name()).isEqualTo("ram3");
        assertThat(d.size()).isEqualTo(4L << 20);
        assertThat(d.isReadOnly()).isFalse();
        assertThat(d.limits().logicalBlockSize()).isEqualTo(4096);
        assertThat(d.limits().discard()).isTrue();
        assertThat(d.limits().writeZeroes()).isTrue();
        assertThat(d.limits().fua()).isTrue();
    }

    @Test
    void constructorRefusesSizesThatAreNotWholeBlocks() {
        assertThatThrownBy(() -> new RamDisk("x", 1000)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("1000");
        assertThatThrownBy(() -> new RamDisk("x", 8192, 4096 + 512, false)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new RamDisk("x", -512)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void writeThenReadRoundTripsAcrossChunkBoundaries() throws Exception {
        RamDisk d = new RamDisk("ram0", 4L * CHUNK);
        long off = CHUNK - 1024;
        byte[] data = patternBytes(CHUNK + 4096, 1); // spans chunks 0, 1 and 2
        write(d, off, data);
        assertThat(read(d, off, data.length)).isEqualTo(data);
        // around it: still zeros
        assertThat(read(d, 0, (int) off)).containsOnly(0);
        assertThat(read(d, off + data.length, 4096)).containsOnly(0);
        // a read that starts mid-write and ends past it
        byte[] mixed = read(d, 2L * CHUNK, 8192);
        int into = (int) (2L * CHUNK - off);
        assertThat(Arrays.copyOfRange(mixed, 0, data.length - into)).isEqualTo(Arrays.copyOfRange(data, into, data.length));
        assertThat(Arrays.copyOfRange(mixed, data.length - into, 8192)).containsOnly(0);
    }

    @Test
    void multiSegmentBiosScatterAndGatherInOrder() {
        RamDisk d = new RamDisk("ram0", 4L * CHUNK);
        try (Arena arena = Arena.ofConfined()) {
            List<Integer> lens = List.of(1000, 24, 65536, 3536); // 70096 bytes, not 512-aligned segments
            int total = 1000 + 24 + 65536 + 3536;
            int pad = 512 - total % 512;
            List<Integer> padded = new ArrayList<>(lens);
            padded.add(pad);
            List<MemorySegment> src = patternSegments(arena, padded, 2);
            AtomicReference<Status> st = new AtomicReference<>();
            Bio w = TestMem.bio(Op.WRITE, CHUNK / 2, src);
            w.setEndIo(b -> st.set(b.status()));
            d.submit(w);
            assertThat(st).hasValue(Status.OK);

            List<MemorySegment> dst = patternSegments(arena, List.of(7, 505, total + pad - 512), 99);
            Bio r = TestMem.bio(Op.READ, CHUNK / 2, dst);
            r.setEndIo(b -> st.set(b.status()));
            d.submit(r);
            assertThat(st).hasValue(Status.OK);
            byte[] got = TestMem.bytesOf(TestMem.bio(Op.READ, 0, dst));
            assertThat(got).isEqualTo(patternBytes(total + pad, 2));
        }
    }

    @Test
    void submitHonoursAnAdvancedIterator() {
        RamDisk d = new RamDisk("ram0", 4L * CHUNK);
        byte[] mem = patternBytes(2048, 3);
        Bio w = new Bio().init(Op.WRITE, 0, 0, null).addSegment(MemorySegment.ofArray(mem));
        w.advance(1024); // now covers mem[1024, 2048) at device offset 1024
        AtomicReference<Status> st = new AtomicReference<>();
        w.setEndIo(b -> st.set(b.status()));
        d.submit(w);
        assertThat(st).hasValue(Status.OK);

        byte[] back = new byte[2048];
        Arrays.fill(back, (byte) 0x77);
        Bio r = new Bio().init(Op.READ, 0, 0, null).addSegment(MemorySegment.ofArray(back));
        r.advance(512); // reads device [512, 2048) into back[512, 2048)
        d.submit(r);
        assertThat(Arrays.copyOfRange(back, 0, 512)).containsOnly(0x77);
        assertThat(Arrays.copyOfRange(back, 512, 1024)).containsOnly(0);
        assertThat(Arrays.copyOfRange(back, 1024, 2048)).isEqualTo(Arrays.copyOfRange(mem, 1024, 2048));
    }

    @Test
    void holesReadAsZerosEvenIntoDirtyMemory() throws Exception {
        RamDisk d = new RamDisk("ram0", 4L * CHUNK);
        byte[] dirty = patternBytes(3 * CHUNK, 4);
        d.read(512, MemorySegment.ofArray(dirty)).get();
        assertThat(dirty).containsOnly(0);
    }

    @Test
    void extentAtReportsHolesAndDataRuns() throws Exception {
        RamDisk d = new RamDisk("ram0", 8L * CHUNK);
        assertThat(d.extentAt(0, 8L * CHUNK)).isEqualTo(hole(8L * CHUNK));
        write(d, 2L * CHUNK + 512, patternBytes(CHUNK, 5)); // dirties chunks 2 and 3
        assertThat(d.extentAt(0, 8L * CHUNK)).isEqualTo(hole(2L * CHUNK));
        assertThat(d.extentAt(2L * CHUNK, 8L * CHUNK)).isEqualTo(Extent.data(2L * CHUNK));
        assertThat(d.extentAt(4L * CHUNK, 8L * CHUNK)).isEqualTo(hole(4L * CHUNK));
        // from the middle of a run, and capped by maxLength
        assertThat(d.extentAt(CHUNK + 4096, 8L * CHUNK)).isEqualTo(hole(CHUNK - 4096));
        assertThat(d.extentAt(2L * CHUNK + 100, 1000)).isEqualTo(Extent.data(1000));
        assertThat(d.extentAt(0, 4096)).isEqualTo(hole(4096));
        // at or past the end: nothing
        assertThat(d.extentAt(8L * CHUNK, 4096).length()).isZero();
    }

    @Test
    void extentAtAcceptsAnUnboundedMaxLength() throws Exception {
        RamDisk d = new RamDisk("ram0", 4L * CHUNK);
        write(d, 0, patternBytes(4096, 6));
        assertThat(d.extentAt(0, Long.MAX_VALUE)).isEqualTo(Extent.data(CHUNK));
        assertThat(d.extentAt(CHUNK, Long.MAX_VALUE)).isEqualTo(hole(3L * CHUNK));
    }

    @Test
    void extentOnANonChunkMultipleDeviceStopsAtTheEnd() {
        RamDisk d = new RamDisk("ram0", CHUNK + 4096);
        assertThat(d.extentAt(0, Long.MAX_VALUE / 2)).isEqualTo(hole(CHUNK + 4096));
    }

    @Test
    void discardOfAWholeChunkReturnsItToAHole() throws Exception {
        RamDisk d = new RamDisk("ram0", 4L * CHUNK);
        write(d, CHUNK, patternBytes(2 * CHUNK, 7));
        d.discard(CHUNK, CHUNK).get();
        assertThat(d.extentAt(CHUNK, CHUNK)).isEqualTo(hole(CHUNK));
        assertThat(d.extentAt(2L * CHUNK, CHUNK)).isEqualTo(Extent.data(CHUNK));
        assertThat(read(d, CHUNK, CHUNK)).containsOnly(0);
        assertThat(read(d, 2L * CHUNK, CHUNK)).isEqualTo(Arrays.copyOfRange(patternBytes(2 * CHUNK, 7), CHUNK, 2 * CHUNK));
    }

    @Test
    void partialDiscardZeroesTheRangeAndKeepsTheRestOfTheChunk() throws Exception {
        RamDisk d = new RamDisk("ram0", 2L * CHUNK);
        byte[] data = patternBytes(CHUNK, 8);
        write(d, 0, data);
        d.discard(4096, 8192).get();
        byte[] back = read(d, 0, CHUNK);
        byte[] expected = data.clone();
        Arrays.fill(expected, 4096, 4096 + 8192, (byte) 0);
        assertThat(back).isEqualTo(expected);
        assertThat(d.extentAt(0, CHUNK)).isEqualTo(Extent.data(CHUNK));
    }

    @Test
    void discardOfTheWholeDeviceLeavesOnlyHolesEvenInAShortLastChunk() throws Exception {
        long size = 2L * CHUNK + 8192; // the last chunk holds only 8 KiB of the device
        RamDisk d = new RamDisk("ram0", size);
        write(d, 0, patternBytes((int) size, 9));
        d.discard(0, size).get();
        assertThat(read(d, 0, (int) size)).containsOnly(0);
        assertThat(d.extentAt(0, size)).isEqualTo(hole(size));
    }

    @Test
    void writeZeroesWithoutNoUnmapFreesWholeChunks() throws Exception {
        RamDisk d = new RamDisk("ram0", 2L * CHUNK);
        write(d, 0, patternBytes(2 * CHUNK, 10));
        d.writeZeroes(0, CHUNK, false).get();
        assertThat(d.extentAt(0, CHUNK)).isEqualTo(hole(CHUNK));
        assertThat(read(d, 0, CHUNK)).containsOnly(0);
        assertThat(read(d, CHUNK, 512)).isEqualTo(Arrays.copyOfRange(patternBytes(2 * CHUNK, 10), CHUNK, CHUNK + 512));
    }

    @Test
    void writeZeroesWithNoUnmapStaysAllocatedAndReadsZeros() throws Exception {
        RamDisk d = new RamDisk("ram0", 4L * CHUNK);
        write(d, 0, patternBytes(CHUNK, 11));
        d.writeZeroes(0, 2L * CHUNK, true).get(); // chunk 0 had data, chunk 1 was a hole
        assertThat(d.extentAt(0, 4L * CHUNK)).isEqualTo(Extent.data(2L * CHUNK));
        assertThat(read(d, 0, 2 * CHUNK)).containsOnly(0);
        assertThat(d.extentAt(2L * CHUNK, 2L * CHUNK)).isEqualTo(hole(2L * CHUNK));
    }

    @Test
    void partialWriteZeroesOfAHoleAllocatesNothingWithoutNoUnmap() throws Exception {
        RamDisk d = new RamDisk("ram0", 2L * CHUNK);
        d.writeZeroes(4096, 4096, false).get();
        assertThat(d.extentAt(0, 2L * CHUNK)).isEqualTo(hole(2L * CHUNK));
    }

    @Test
    void fuaWriteAndFlushCompleteOk() throws Exception {
        RamDisk d = new RamDisk("ram0", 2L * CHUNK);
        byte[] data = patternBytes(4096, 12);
        d.write(8192, IoIter.of(data), BioFlags.FUA).get(5, TimeUnit.SECONDS);
        d.flush().get(5, TimeUnit.SECONDS);
        assertThat(read(d, 8192, 4096)).isEqualTo(data);

        AtomicReference<Status> st = new AtomicReference<>();
        Bio preflush = new Bio().init(Op.WRITE, BioFlags.PREFLUSH | BioFlags.FUA, 0, b -> st.set(b.status()))
                .addSegment(MemorySegment.ofArray(data));
        d.submit(preflush);
        assertThat(st).hasValue(Status.OK);
        assertThat(read(d, 0, 4096)).isEqualTo(data);
    }

    @Test
    void futureConveniencesFailWithBioExceptionCarryingTheStatus() {
        RamDisk d = new RamDisk("ram9", 2L * CHUNK);
        CompletableFuture<Void> w = d.write(2L * CHUNK, MemorySegment.ofArray(new byte[512]));
        assertThat(w).isCompletedExceptionally();
        assertThatThrownBy(w::get).isInstanceOf(ExecutionException.class)
                .cause().isInstanceOfSatisfying(BioException.class, e -> {
                    assertThat(e.status()).isEqualTo(Status.NOSPC);
                    assertThat(e.getMessage()).contains("ram9").contains(Status.NOSPC.text());
                });

        CompletableFuture<Void> r = d.read(100, MemorySegment.ofArray(new byte[512]));
        assertThatThrownBy(r::get).cause().isInstanceOfSatisfying(BioException.class,
                e -> assertThat(e.status()).isEqualTo(Status.INVAL));

        RamDisk ro = new RamDisk("ro", 2L * CHUNK, 512, true);
        for (CompletableFuture<Void> f : List.of(ro.discard(0, 4096), ro.writeZeroes(0, 4096, true),
                ro.write(0, MemorySegment.ofArray(new byte[512])))) {
            assertThatThrownBy(f::get).cause().isInstanceOfSatisfying(BioException.class,
                    e -> assertThat(e.status()).isEqualTo(Status.READONLY));
        }
        assertThat(ro.flush()).isCompleted().isNotCompletedExceptionally();
    }

    @Test
    void futureConveniencesTakeAnyMemory() throws Exception {
        RamDisk d = new RamDisk("ram0", 2L * CHUNK);
        byte[] data = patternBytes(8192, 13);
        ByteBuffer direct = ByteBuffer.allocateDirect(8192);
        direct.put(data).flip();
        d.write(0, IoIter.of(direct), 0).get();
        byte[] back = new byte[4096];
        d.read(4096, IoIter.of(ByteBuffer.wrap(back))).get();
        assertThat(back).isEqualTo(Arrays.copyOfRange(data, 4096, 8192));
        assertThat(direct.position()).isZero(); // the caller's buffer is not consumed
    }

    @Test
    void futureOfABioExceptionWithoutDetailUsesTheStatusText() {
        BioException e = new BioException(Status.MEDIUM, null);
        assertThat(e.getMessage()).isEqualTo(Status.MEDIUM.text());
        assertThat(new BioException(Status.IOERR, "disk on fire").getMessage()).isEqualTo("disk on fire (I/O error)");
    }

    /** {@code threads} threads write 4 KiB each, at {@code base + t * stride}, released together. */
    private static void writeAtOnce(RamDisk d, int threads, long base, long stride, int round) throws Exception {
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            long off = base + t * stride;
            byte[] data = patternBytes(4096, round * 10 + t);
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                    write(d, off, data);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            }));
        }
        go.countDown();
        for (Thread t : ts) {
            t.join();
        }
    }

    @Test
    void concurrentFirstWritesToOneChunkAllSurvive() throws Exception {
        RamDisk d = new RamDisk("ram0", 64L * CHUNK);
        int threads = 4;
        for (int round = 0; round < 64; round++) {
            long base = (long) round * CHUNK;
            writeAtOnce(d, threads, base, 4096, round);
            for (int t = 0; t < threads; t++) {
                assertThat(read(d, base + (long) t * 4096, 4096)).as("round %d thread %d", round, t)
                        .isEqualTo(patternBytes(4096, round * 10 + t));
            }
        }
    }

    @Test
    void concurrentFirstWritesToADiscardedChunkAllSurviveAndTheRestReadsZero() throws Exception {
        // A discarded chunk is cleaned by its next first writer; a second first writer must wait
        // for that, not clean again over the first one's data.
        RamDisk d = new RamDisk("ram0", 8L * CHUNK);
        int threads = 4;
        for (int round = 0; round < 64; round++) {
            long base = (long) (round % 8) * CHUNK;
            write(d, base, patternBytes(CHUNK, 99));
            d.discard(base, CHUNK).get(5, TimeUnit.SECONDS);
            writeAtOnce(d, threads, base, 8192, round);
            for (int t = 0; t < threads; t++) {
                assertThat(read(d, base + (long) t * 8192, 4096)).as("round %d thread %d", round, t)
                        .isEqualTo(patternBytes(4096, round * 10 + t));
                assertThat(read(d, base + (long) t * 8192 + 4096, 4096)).as("gap after thread %d", t).containsOnly(0);
            }
        }
    }

    @Test
    void writtenMemoryIsNotDirectBufferMemory() throws Exception {
        // The JDK counts Arena allocations against MaxDirectMemorySize (the heap's maximum by
        // default) and stalls the allocating thread in a GC near it; a ramdisk must not, or one
        // larger than the heap fails its writes. Its memory is an anonymous mapping instead.
        var direct = java.lang.management.ManagementFactory.getPlatformMXBeans(java.lang.management.BufferPoolMXBean.class)
                .stream().filter(b -> b.getName().equals("direct")).findFirst().orElseThrow();
        long before = direct.getMemoryUsed();
        RamDisk d = new RamDisk("ram0", 64L << 20);
        byte[] data = patternBytes(1 << 20, 3);
        for (long off = 0; off < (64L << 20); off += data.length) {
            write(d, off, data);
        }
        assertThat(read(d, 63L << 20, 1 << 20)).isEqualTo(data);
        assertThat(direct.getMemoryUsed() - before).as("direct memory taken by 64 MiB of writes").isLessThan(8L << 20);
        d.close();
    }

    @Test
    void aRamdiskFarLargerThanTheHeapTakesWritesAnywhere() throws Exception {
        // 256 GiB against the suite's 2 GiB heap: only the pages written are taken.
        long size = 256L << 30;
        RamDisk d = new RamDisk("ram0", size);
        long[] offsets = {0, size / 3 / 4096 * 4096, size - 4096};
        for (int i = 0; i < offsets.length; i++) {
            write(d, offsets[i], patternBytes(4096, 40 + i));
        }
        for (int i = 0; i < offsets.length; i++) {
            assertThat(read(d, offsets[i], 4096)).isEqualTo(patternBytes(4096, 40 + i));
        }
        assertThat(read(d, size - 8192, 4096)).containsOnly(0);
        d.close();
    }

    @Test
    void closeDropsTheData() throws Exception {
        RamDisk d = new RamDisk("ram0", 2L * CHUNK);
        write(d, 0, patternBytes(4096, 14));
        d.close();
        assertThat(d.extentAt(0, 2L * CHUNK)).isEqualTo(hole(2L * CHUNK));
    }
}
