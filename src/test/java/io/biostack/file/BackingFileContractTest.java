package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.block.BioException;
import io.biostack.block.BioFlags;
import io.biostack.block.IoIter;
import io.biostack.block.Op;
import io.biostack.block.Status;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicInteger;

import static io.biostack.TestData.random;
import static io.biostack.TestData.sparseFile;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The submitFileBio contract, run against both engines on a real file with O_DIRECT: what
 * biostack writes a plain FileChannel reads back and the reverse; every bio completes once.
 */
class BackingFileContractTest {
    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void alignedNativeWriteIsReadBackByFileChannel(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 1 << 20);
        byte[] data = random(64 * 1024, 1);
        try (BackingFile f = BackingFile.open(p, true, false, engine); Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(data.length, 4096);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 0, data.length);
            assertThat(DirectIo.zeroCopy(f, IoIter.of(buf))).isTrue();
            assertThat(DirectIo.write(f, 8192, IoIter.of(buf), 0).get(10, TimeUnit.SECONDS)).isEqualTo(data.length);
        }
        try (FileChannel ch = FileChannel.open(p)) {
            ByteBuffer bb = ByteBuffer.allocate(data.length);
            ch.read(bb, 8192);
            assertThat(bb.array()).isEqualTo(data);
        }
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void heapMemoryIsBouncedBothWays(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 4 << 20);
        byte[] data = random(1 << 20, 2); // bigger than one bounce buffer: split and chained
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(data), 4096);
        }
        try (BackingFile f = BackingFile.open(p, true, false, engine)) {
            byte[] back = new byte[data.length];
            assertThat(DirectIo.zeroCopy(f, IoIter.of(back))).isFalse();
            DirectIo.read(f, 4096, IoIter.of(back)).get(10, TimeUnit.SECONDS);
            assertThat(back).isEqualTo(data);
            byte[] other = random(256 * 1024 + 4096, 3);
            DirectIo.write(f, 1 << 20, IoIter.of(ByteBuffer.wrap(other)), BioFlags.FUA).get(10, TimeUnit.SECONDS);
            try (FileChannel ch = FileChannel.open(p)) {
                ByteBuffer bb = ByteBuffer.allocate(other.length);
                ch.read(bb, 1 << 20);
                assertThat(bb.array()).isEqualTo(other);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void misalignedNativeMemoryIsBounced(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 1 << 20);
        byte[] data = random(8192, 4);
        try (BackingFile f = BackingFile.open(p, true, false, engine); Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(8192 + 8, 4096).asSlice(8, 8192);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 0, data.length);
            assertThat(DirectIo.zeroCopy(f, IoIter.of(buf))).isFalse();
            DirectIo.write(f, 0, IoIter.of(buf), 0).get(10, TimeUnit.SECONDS);
            MemorySegment back = a.allocate(8192 + 8, 4096).asSlice(8, 8192);
            DirectIo.read(f, 0, IoIter.of(back)).get(10, TimeUnit.SECONDS);
            assertThat(back.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).isEqualTo(data);
        }
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void memoryConfinedToTheCallerIsRefusedNotHandedToAnotherThread(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 1 << 20);
        try (BackingFile f = BackingFile.open(p, true, false, engine); Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096).fill((byte) 1);
            CompletableFuture<Long> w = DirectIo.write(f, 0, IoIter.of(buf), 0);
            assertThatThrownBy(() -> w.get(10, TimeUnit.SECONDS)).hasMessageContaining("confined");
        }
        assertThat(Files.readAllBytes(p)).containsOnly(0);
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void misalignedFileOffsetFailsWithInvalAndWritesNothing(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 1 << 20);
        try (BackingFile f = BackingFile.open(p, true, false, engine)) {
            CompletableFuture<Long> w = DirectIo.write(f, 100, IoIter.of(random(4096, 5)), 0);
            assertThatThrownBy(() -> w.get(10, TimeUnit.SECONDS)).hasCauseInstanceOf(BioException.class)
                    .hasMessageContaining("not aligned");
            assertThat(((BioException) w.exceptionNow()).status()).isEqualTo(Status.INVAL);
        }
        assertThat(Files.readAllBytes(p)).containsOnly(0);
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void discardPunchesAHoleAndWriteZeroesZeroes(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 1 << 20);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(random(1 << 20, 6)), 0);
            ch.force(true);
        }
        try (BackingFile f = BackingFile.open(p, true, false, engine)) {
            run(f, new Bio().init(Op.DISCARD, 0, 0, null).setSize(64 * 1024));
            run(f, new Bio().init(Op.WRITE_ZEROES, BioFlags.NOUNMAP, 128 * 1024, null).setSize(64 * 1024));
            run(f, new Bio().init(Op.FLUSH, 0, 0, null));
            assertThat(f.seekData(0)).isGreaterThanOrEqualTo(64 * 1024);
        }
        byte[] all = Files.readAllBytes(p);
        assertThat(all).hasSize(1 << 20);
        for (int i = 0; i < 64 * 1024; i++) {
            assertThat(all[i]).isZero();
            assertThat(all[128 * 1024 + i]).isZero();
        }
        assertThat(all[64 * 1024 + 1] | all[64 * 1024 + 2] | all[64 * 1024 + 3]).isNotZero();
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void readPastEndOfFileReadsZerosNotGarbage(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 8192);
        try (BackingFile f = BackingFile.open(p, true, false, engine); Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(16384, 4096).fill((byte) 0x5a);
            DirectIo.read(f, 0, IoIter.of(buf)).get(10, TimeUnit.SECONDS);
            assertThat(buf.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).containsOnly(0);
        }
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void writeToReadOnlyFileFailsAndWritesNothing(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 8192);
        try (BackingFile f = BackingFile.open(p, true, true, engine)) {
            CompletableFuture<Long> w = DirectIo.write(f, 0, IoIter.of(random(4096, 7)), 0);
            assertThatThrownBy(() -> w.get(10, TimeUnit.SECONDS)).hasMessageContaining("read-only");
        }
        assertThat(Files.readAllBytes(p)).containsOnly(0);
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void manyBiosFromSeveralThreadsEachCompleteExactlyOnce(EngineKind engine) throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 16 << 20);
        int threads = 4;
        int perThread = 2000;
        AtomicIntegerArray done = new AtomicIntegerArray(threads * perThread);
        AtomicInteger errors = new AtomicInteger();
        CountDownLatch all = new CountDownLatch(threads * perThread);
        try (BackingFile f = BackingFile.open(p, true, false, engine); Arena a = Arena.ofShared()) {
            MemorySegment bufs = a.allocate((long) threads * 4096, 4096);
            Thread[] ts = new Thread[threads];
            for (int t = 0; t < threads; t++) {
                int tt = t;
                ts[t] = Thread.ofPlatform().start(() -> {
                    MemorySegment buf = bufs.asSlice(tt * 4096L, 4096);
                    for (int i = 0; i < perThread; i++) {
                        int id = tt * perThread + i;
                        Bio b = new Bio().init(i % 2 == 0 ? Op.WRITE : Op.READ, 0, (long) (id % 4096) * 4096, bio -> {
                            if (done.incrementAndGet((int) bio.privateLong()) != 1) {
                                errors.incrementAndGet();
                            }
                            if (!bio.status().isOk()) {
                                errors.incrementAndGet();
                            }
                            all.countDown();
                        });
                        b.setPrivateLong(id);
                        b.addSegment(buf);
                        f.submitFileBio(b);
                    }
                });
            }
            for (Thread t : ts) {
                t.join();
            }
            assertThat(all.await(30, TimeUnit.SECONDS)).isTrue();
        }
        assertThat(errors.get()).isZero();
        for (int i = 0; i < done.length(); i++) {
            assertThat(done.get(i)).isEqualTo(1);
        }
    }

    private static void run(BackingFile f, Bio bio) throws Exception {
        CompletableFuture<Status> s = new CompletableFuture<>();
        bio.setEndIo(b -> s.complete(b.status()));
        f.submitFileBio(bio);
        assertThat(s.get(10, TimeUnit.SECONDS)).isEqualTo(Status.OK);
    }
}
