package io.biostack.file;

import io.biostack.block.BioFlags;
import io.biostack.block.IoIter;
import io.biostack.sys.AnonymousMemory;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static io.biostack.TestData.random;
import static io.biostack.TestData.sparseFile;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * The bounce slab is made by the first bio that needs it, not when the file opens: a file whose
 * bios are all zero-copy never pays for it, and the first bounced bios (even many at once, from
 * many threads) still copy heap memory both ways, byte for byte. I/O memory of a huge page and
 * more comes zeroed, aligned, and works for O_DIRECT on both engines.
 */
class LazyBounceSlabTest {
    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void zeroCopyIoMakesNoBounceSlab(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 1 << 20);
        byte[] data = random(64 * 1024, 1);
        try (BackingFile f = BackingFile.open(p, true, false, engine); Arena a = Arena.ofShared()) {
            assertThat(f.hasBounceSlab()).isFalse();
            MemorySegment buf = f.allocateIoBuffers(data.length, a);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 0, data.length);
            DirectIo.write(f, 4096, IoIter.of(buf), 0).get(10, TimeUnit.SECONDS);
            buf.fill((byte) 0);
            DirectIo.read(f, 4096, IoIter.of(buf)).get(10, TimeUnit.SECONDS);
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(data);
            assertThat(f.hasBounceSlab()).isFalse();
        }
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void firstHeapBioMakesTheSlabAndBouncesBothWays(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 4 << 20);
        byte[] data = random(1 << 20, 2); // four bounce buffers: split, chained
        try (BackingFile f = BackingFile.open(p, true, false, engine)) {
            assertThat(f.hasBounceSlab()).isFalse();
            DirectIo.write(f, 8192, IoIter.of(ByteBuffer.wrap(data)), BioFlags.FUA).get(10, TimeUnit.SECONDS);
            assertThat(f.hasBounceSlab()).isTrue();
            byte[] back = new byte[data.length];
            DirectIo.read(f, 8192, IoIter.of(back)).get(10, TimeUnit.SECONDS);
            assertThat(back).isEqualTo(data);
            assertThat(f.bounceOverflows()).isZero();
        }
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer bb = ByteBuffer.allocate(data.length);
            ch.read(bb, 8192);
            assertThat(bb.array()).isEqualTo(data);
        }
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void manyThreadsBouncingFirstAtOnceShareOneSlab(EngineKind engine) throws Exception {
        int threads = 8;
        int each = 128 * 1024;
        Path p = sparseFile(dir.resolve("f.img"), (long) threads * each);
        try (BackingFile f = BackingFile.open(p, true, false, engine)) {
            CountDownLatch go = new CountDownLatch(1);
            List<CompletableFuture<Long>> writes = new ArrayList<>();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int i = t;
                CompletableFuture<Long> w = new CompletableFuture<>();
                writes.add(w);
                ts.add(Thread.ofPlatform().start(() -> {
                    try {
                        go.await();
                        DirectIo.write(f, (long) i * each, IoIter.of(random(each, 10 + i)), 0)
                                .whenComplete((r, e) -> {
                                    if (e != null) {
                                        w.completeExceptionally(e);
                                    } else {
                                        w.complete(r);
                                    }
                                });
                    } catch (Exception e) {
                        w.completeExceptionally(e);
                    }
                }));
            }
            go.countDown();
            for (CompletableFuture<Long> w : writes) {
                assertThat(w.get(10, TimeUnit.SECONDS)).isEqualTo((long) each);
            }
            for (Thread t : ts) {
                t.join();
            }
            // Eight bounces at most in flight, 64 buffers: one slab served them all.
            assertThat(f.bounceOverflows()).isZero();
            for (int t = 0; t < threads; t++) {
                byte[] back = new byte[each];
                DirectIo.read(f, (long) t * each, IoIter.of(back)).get(10, TimeUnit.SECONDS);
                assertThat(back).as("thread %d's write", t).isEqualTo(random(each, 10 + t));
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void ioMemoryOfHugePagesIsZeroedAlignedAndCarriesODirect(EngineKind engine) throws Exception {
        int size = (int) (2 * AnonymousMemory.HUGE_PAGE + 8192); // huge pages and a tail of small ones
        Path p = sparseFile(dir.resolve("f.img"), size);
        byte[] data = random(size, 5);
        try (BackingFile f = BackingFile.open(p, true, false, engine); Arena a = Arena.ofShared()) {
            MemorySegment buf = f.allocateIoBuffers(size, a);
            assertThat(buf.byteSize()).isEqualTo(size);
            assertThat(buf.address() % 4096).isZero();
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).containsOnly((byte) 0);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 0, size);
            DirectIo.write(f, 0, IoIter.of(buf), 0).get(10, TimeUnit.SECONDS);
            buf.fill((byte) 0);
            DirectIo.read(f, 0, IoIter.of(buf)).get(10, TimeUnit.SECONDS);
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(data);
            assertThat(f.hasBounceSlab()).isFalse();
        }
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer bb = ByteBuffer.allocate(size);
            ch.read(bb, 0);
            assertThat(bb.array()).isEqualTo(data);
        }
    }
}
