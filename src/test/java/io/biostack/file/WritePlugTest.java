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
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The write plug of a reactor's file ring (issue 19): the WRITEs that one pass of a reactor
 * submits go to the kernel together, in one {@code io_uring_enter} per
 * {@link ReactorQueue#WRITE_PLUG} of them, instead of one enter each. What must hold: every byte
 * of every write lands where it belongs, reads and flushes between them still see and order what
 * came before, and the writes were in fact held (not submitted one at a time).
 */
class WritePlugTest {
    private static final int BLOCK = 4096;
    private static final int WRITES = 100;

    @TempDir
    Path dir;

    private static void fill(MemorySegment s, long seed) {
        for (long i = 0; i < s.byteSize() / 8; i++) {
            s.setAtIndex(ValueLayout.JAVA_LONG, i, seed * 0x9E37_79B9_7F4A_7C15L + i);
        }
    }

    @Test
    void writesOfOnePassAreHeldAndEveryByteLandsWhereItBelongs() throws Exception {
        TestEnv.require(IoUring.isAvailable(), "io_uring");
        assertThat(ReactorQueue.WRITE_PLUG).as("the plug is on by default").isGreaterThan(1);
        Path p = dir.resolve("f.img");
        long fileSize = 4L << 20;
        BackingFile.createSparse(p, fileSize);
        RingLoop loop = RingLoop.start("plug-reactor", 256, FileRings::attach);
        try (BackingFile f = BackingFile.open(p, true, false, EngineKind.URING); Arena a = Arena.ofShared()) {
            // Distinct blocks in a scattered order (a stride coprime to the block count). Two
            // writes of one block in flight at once have no order, with or without the plug.
            int blocks = (int) (fileSize / BLOCK);
            MemorySegment[] bufs = new MemorySegment[WRITES];
            long[] offsets = new long[WRITES];
            for (int i = 0; i < WRITES; i++) {
                bufs[i] = a.allocate(BLOCK, 4096);
                fill(bufs[i], i + 1);
                offsets[i] = (long) (i * 37 % blocks) * BLOCK;
            }
            // Then, once they all completed, a READ of one of them.
            MemorySegment back = a.allocate(BLOCK, 4096);
            long heldBefore = FileRings.heldWrites(loop);
            CompletableFuture<Void> all = new CompletableFuture<>();
            loop.execute(() -> {
                List<CompletableFuture<?>> fs = new ArrayList<>();
                for (int i = 0; i < WRITES; i++) {
                    fs.add(DirectIo.write(f, offsets[i], IoIter.of(bufs[i]), 0));
                }
                CompletableFuture.allOf(fs.toArray(CompletableFuture[]::new)).whenComplete((v, e) -> {
                    if (e != null) {
                        all.completeExceptionally(e);
                        return;
                    }
                    DirectIo.read(f, offsets[5], IoIter.of(back))
                            .whenComplete((n, e2) -> {
                                if (e2 != null) {
                                    all.completeExceptionally(e2);
                                } else {
                                    all.complete(null);
                                }
                            });
                });
            });
            all.get(20, TimeUnit.SECONDS);
            long held = FileRings.heldWrites(loop) - heldBefore;
            // Every write of the pass was held: the plug takes WRITE_PLUG of them per enter.
            assertThat(held).isEqualTo(WRITES);
            assertThat(back.mismatch(bufs[5])).isEqualTo(-1);

            // Every byte of the file: each written block holds its write, the rest zeros.
            byte[] want = new byte[(int) fileSize];
            for (int i = 0; i < WRITES; i++) {
                MemorySegment.copy(bufs[i], ValueLayout.JAVA_BYTE, 0, want, (int) offsets[i], BLOCK);
            }
            byte[] got = Files.readAllBytes(p);
            assertThat(got.length).isEqualTo(want.length);
            assertThat(java.util.Arrays.mismatch(got, want)).as("first differing byte").isEqualTo(-1);
        } finally {
            loop.stop(null);
            assertThat(loop.awaitStopped(5000)).isTrue();
        }
    }

    @Test
    void readsBetweenWritesAreNotHeldAndSeeNothingStale() throws Exception {
        TestEnv.require(IoUring.isAvailable(), "io_uring");
        Path p = dir.resolve("g.img");
        BackingFile.createSparse(p, 1 << 20);
        RingLoop loop = RingLoop.start("plug-reactor-2", 64, FileRings::attach);
        try (BackingFile f = BackingFile.open(p, true, false, EngineKind.URING); Arena a = Arena.ofShared()) {
            MemorySegment w1 = a.allocate(BLOCK, 4096);
            MemorySegment w2 = a.allocate(BLOCK, 4096);
            MemorySegment r = a.allocate(BLOCK, 4096);
            fill(w1, 7);
            fill(w2, 8);
            long heldBefore = FileRings.heldWrites(loop);
            CompletableFuture<Void> done = new CompletableFuture<>();
            loop.execute(() -> {
                // write, read of another block (a hole), write: the read ends the first plug.
                CompletableFuture<?> a1 = DirectIo.write(f, 0, IoIter.of(w1), 0);
                CompletableFuture<?> r1 = DirectIo.read(f, 8 * BLOCK, IoIter.of(r));
                CompletableFuture<?> a2 = DirectIo.write(f, BLOCK, IoIter.of(w2), 0);
                CompletableFuture.allOf(a1, r1, a2).whenComplete((v, e) -> {
                    if (e != null) {
                        done.completeExceptionally(e);
                    } else {
                        done.complete(null);
                    }
                });
            });
            done.get(20, TimeUnit.SECONDS);
            assertThat(FileRings.heldWrites(loop) - heldBefore).isEqualTo(2);
            assertThat(r.mismatch(a.allocate(BLOCK))).as("the hole reads as zeros").isEqualTo(-1);
            byte[] got = Files.readAllBytes(p);
            assertThat(MemorySegment.ofArray(got).asSlice(0, BLOCK).mismatch(w1)).isEqualTo(-1);
            assertThat(MemorySegment.ofArray(got).asSlice(BLOCK, BLOCK).mismatch(w2)).isEqualTo(-1);
        } finally {
            loop.stop(null);
            assertThat(loop.awaitStopped(5000)).isTrue();
        }
    }
}
