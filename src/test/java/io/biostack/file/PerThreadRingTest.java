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
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Per-thread file rings (blk-mq style): a bio submitted on a reactor thread that attached the file
 * engine goes down that thread's ring and completes on that same thread; the bytes land in the
 * file; a bio from any other thread still completes on the worker.
 */
class PerThreadRingTest {
    @TempDir
    Path dir;

    @Test
    void bioSubmittedOnReactorCompletesOnThatReactorWithTheRightBytes() throws Exception {
        TestEnv.require(IoUring.isAvailable(), "io_uring");
        Path p = dir.resolve("f.img");
        BackingFile.createSparse(p, 1 << 20);
        RingLoop loop = RingLoop.start("test-reactor", 64, FileRings::attach);
        try (BackingFile f = BackingFile.open(p, true, false, EngineKind.URING); Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(8192, 4096);
            for (int i = 0; i < 8192 / 8; i++) {
                buf.setAtIndex(ValueLayout.JAVA_LONG, i, 0x1234_5678_0000L + i);
            }
            CompletableFuture<Thread> wrote = new CompletableFuture<>();
            loop.execute(() -> DirectIo.write(f, 4096, IoIter.of(buf), 0)
                    .whenComplete((n, e) -> wrote.complete(Thread.currentThread())));
            assertThat(wrote.get(10, TimeUnit.SECONDS)).isInstanceOf(io.biostack.uring.RingThread.class);
            assertThat(wrote.get().getName()).isEqualTo("test-reactor");

            MemorySegment back = a.allocate(8192, 4096);
            CompletableFuture<Thread> read = new CompletableFuture<>();
            loop.execute(() -> DirectIo.read(f, 4096, IoIter.of(back))
                    .whenComplete((n, e) -> read.complete(Thread.currentThread())));
            assertThat(read.get(10, TimeUnit.SECONDS).getName()).isEqualTo("test-reactor");
            assertThat(back.mismatch(buf)).isEqualTo(-1);

            // From a plain thread: the shared worker, not the reactor.
            CompletableFuture<Thread> other = new CompletableFuture<>();
            DirectIo.read(f, 0, IoIter.of(back)).whenComplete((n, e) -> other.complete(Thread.currentThread()));
            assertThat(other.get(10, TimeUnit.SECONDS).getName()).isNotEqualTo("test-reactor");
        } finally {
            loop.stop(null);
            assertThat(loop.awaitStopped(5000)).isTrue();
        }
    }
}
