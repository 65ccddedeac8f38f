package io.biostack.file;

import io.biostack.TestEnv;
import io.biostack.block.IoIter;
import io.biostack.file.reactor.FileRings;
import io.biostack.uring.IoUring;
import io.biostack.uring.RingLoop;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Fixed buffers on a reactor's own ring ({@link FileRings#registerBuffer}): I/O inside any of
 * hundreds of registered buffers goes down fixed (the lookup finds the right one among many,
 * after some were dropped), I/O outside them goes down plain, and both land the right bytes.
 */
class ReactorFixedBuffersTest {
    @TempDir
    Path dir;

    /** Runs {@code c} on the loop thread and waits for its answer. */
    private static <T> T onLoop(RingLoop loop, Callable<T> c) throws Exception {
        CompletableFuture<T> f = new CompletableFuture<>();
        loop.execute(() -> {
            try {
                f.complete(c.call());
            } catch (Throwable t) {
                f.completeExceptionally(t);
            }
        });
        return f.get(10, TimeUnit.SECONDS);
    }

    /** Writes {@code buf} at {@code pos} from the loop thread (its ring) and waits. */
    private static void write(RingLoop loop, BackingFile f, long pos, MemorySegment buf) throws Exception {
        CompletableFuture<Long> done = onLoop(loop, () -> DirectIo.write(f, pos, IoIter.of(buf), 0));
        assertThat(done.get(10, TimeUnit.SECONDS)).isEqualTo(buf.byteSize());
    }

    private static void read(RingLoop loop, BackingFile f, long pos, MemorySegment buf) throws Exception {
        CompletableFuture<Long> done = onLoop(loop, () -> DirectIo.read(f, pos, IoIter.of(buf)));
        assertThat(done.get(10, TimeUnit.SECONDS)).isEqualTo(buf.byteSize());
    }

    @Test
    void ioInsideAnyOfManyRegisteredBuffersGoesDownFixedAndOutsideGoesDownPlain() throws Exception {
        TestEnv.require(IoUring.isAvailable(), "io_uring");
        Path p = dir.resolve("f.img");
        BackingFile.createSparse(p, 4 << 20);
        RingLoop loop = RingLoop.start("fixed-reactor", 64, FileRings::attach);
        try (BackingFile f = BackingFile.open(p, true, false, EngineKind.URING); Arena a = Arena.ofShared()) {
            TestEnv.require(FileRings.fixedBuffers(loop), "a sparse fixed-buffer table (5.19)");
            int n = 300;
            MemorySegment[] bufs = new MemorySegment[n];
            int[] slots = new int[n];
            Set<Integer> distinct = new HashSet<>();
            for (int i = 0; i < n; i++) {
                bufs[i] = a.allocate(4096L << (i % 3), 4096);
                MemorySegment b = bufs[i];
                slots[i] = onLoop(loop, () -> FileRings.registerBuffer(loop, b));
                assertThat(slots[i]).isBetween(0, FileRings.BUFFER_SLOTS - 1);
                distinct.add(slots[i]);
            }
            assertThat(distinct).hasSize(n);
            // Drop every third: their slots are reused, and their memory is no longer fixed.
            for (int i = 0; i < n; i += 3) {
                int s = slots[i];
                onLoop(loop, () -> {
                    FileRings.unregisterBuffer(loop, s);
                    return null;
                });
            }
            assertThat(onLoop(loop, () -> FileRings.registeredBuffers(loop))).isEqualTo(n - 100);
            MemorySegment again = a.allocate(8192, 4096);
            assertThat(onLoop(loop, () -> FileRings.registerBuffer(loop, again))).isGreaterThanOrEqualTo(0);

            Random rnd = new Random(9);
            long fixed0 = FileRings.fixedIos(loop);
            int expectFixed = 0;
            for (int k = 0; k < 60; k++) {
                int i = rnd.nextInt(n);
                MemorySegment b = bufs[i];
                byte[] data = new byte[(int) b.byteSize()];
                rnd.nextBytes(data);
                MemorySegment.copy(MemorySegment.ofArray(data), 0, b, 0, data.length);
                long pos = (long) rnd.nextInt(4 << 20 >> 15) << 15;
                write(loop, f, pos, b);
                b.fill((byte) 0);
                read(loop, f, pos, b);
                assertThat(b.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).isEqualTo(data);
                expectFixed += i % 3 == 0 ? 0 : 2;
            }
            MemorySegment plain = a.allocate(4096, 4096); // never registered
            write(loop, f, 0, plain);
            assertThat(FileRings.fixedIos(loop) - fixed0).isEqualTo(expectFixed);

            assertThatThrownBy(() -> FileRings.registerBuffer(loop, plain)).isInstanceOf(IllegalStateException.class);
        } finally {
            loop.stop(null);
            assertThat(loop.awaitStopped(5000)).isTrue();
        }
    }
}
