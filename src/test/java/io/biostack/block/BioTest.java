package io.biostack.block;

import static io.biostack.block.TestMem.bio;
import static io.biostack.block.TestMem.bytesOf;
import static io.biostack.block.TestMem.concat;
import static io.biostack.block.TestMem.patternBytes;
import static io.biostack.block.TestMem.patternSegments;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class BioTest {
    private Arena arena;

    @BeforeEach
    void open() {
        arena = Arena.ofConfined();
    }

    @AfterEach
    void close() {
        arena.close();
    }

    // ---- init and segments -------------------------------------------------------------------

    @Test
    void initSetsOpFlagsOffsetAndClearsSizeSegmentsAndStatus() {
        Bio b = new Bio().init(Op.WRITE, BioFlags.FUA, 4096, null);
        b.addSegment(arena.allocate(512));
        b.setStatus(Status.IOERR, "boom");

        EndIo cb = x -> { };
        b.init(Op.READ, BioFlags.PREFLUSH, 8192, cb);

        assertThat(b.op()).isEqualTo(Op.READ);
        assertThat(b.flags()).isEqualTo(BioFlags.PREFLUSH);
        assertThat(b.hasFlag(BioFlags.PREFLUSH)).isTrue();
        assertThat(b.hasFlag(BioFlags.FUA)).isFalse();
        assertThat(b.offset()).isEqualTo(8192);
        assertThat(b.size()).isZero();
        assertThat(b.segmentCount()).isZero();
        assertThat(b.status()).isEqualTo(Status.OK);
        assertThat(b.detail()).isNull();
        assertThat(b.endIoCallback()).isSameAs(cb);
        assertThat(b.iter().index()).isZero();
        assertThat(b.iter().doneInSegment()).isZero();
    }

    @Test
    void addSegmentGrowsSizeBySegmentLengthsBeyondInitialCapacity() {
        Bio b = new Bio().init(Op.WRITE, 0, 0, null);
        long expected = 0;
        for (int i = 1; i <= 11; i++) { // more than the 4 initial vec slots
            MemorySegment s = arena.allocate(i * 100L);
            b.addSegment(s);
            expected += i * 100L;
            assertThat(b.segment(i - 1)).isSameAs(s);
        }
        assertThat(b.segmentCount()).isEqualTo(11);
        assertThat(b.size()).isEqualTo(expected);
        assertThat(b.iter().size()).isEqualTo(expected);
        assertThatThrownBy(() -> b.segment(11)).isInstanceOf(IndexOutOfBoundsException.class);
    }

    @Test
    void setSizeIsForDatalessOpsOnly() {
        Bio d = new Bio().init(Op.DISCARD, 0, 0, null).setSize(1 << 20);
        assertThat(d.size()).isEqualTo(1 << 20);
        Bio w = new Bio().init(Op.WRITE, 0, 0, null);
        assertThatThrownBy(() -> w.setSize(512)).isInstanceOf(IllegalStateException.class);
    }

    // ---- advance ------------------------------------------------------------------------------

    @Test
    void advanceAcrossSegmentBoundariesTracksIndexAndDoneInSegment() {
        Bio b = bio(Op.WRITE, 1000, patternSegments(arena, List.of(100, 200, 300), 1));

        b.advance(50);
        assertThat(b.iter().index()).isZero();
        assertThat(b.iter().doneInSegment()).isEqualTo(50);
        assertThat(b.offset()).isEqualTo(1050);
        assertThat(b.size()).isEqualTo(550);

        b.advance(50); // exactly to the end of segment 0
        assertThat(b.iter().index()).isEqualTo(1);
        assertThat(b.iter().doneInSegment()).isZero();

        b.advance(250); // 200 of segment 1 and 50 of segment 2
        assertThat(b.iter().index()).isEqualTo(2);
        assertThat(b.iter().doneInSegment()).isEqualTo(50);
        assertThat(b.offset()).isEqualTo(1350);
        assertThat(b.size()).isEqualTo(250);

        b.advance(250);
        assertThat(b.size()).isZero();
        assertThat(b.offset()).isEqualTo(1600);
    }

    @Test
    void advancePastSizeIsRefused() {
        Bio b = bio(Op.READ, 0, patternSegments(arena, List.of(512), 1));
        assertThatThrownBy(() -> b.advance(513)).isInstanceOf(IllegalArgumentException.class);
        assertThat(b.size()).isEqualTo(512);
    }

    @Test
    void advanceOfDatalessBioMovesOnlyTheRange() {
        Bio b = new Bio().init(Op.DISCARD, 0, 4096, null).setSize(8192);
        b.advance(4096);
        assertThat(b.offset()).isEqualTo(8192);
        assertThat(b.size()).isEqualTo(4096);
        assertThat(b.iter().index()).isZero();
    }

    // ---- data movement honours the iterator --------------------------------------------------

    @Test
    void copyToAfterAdvanceStartsAtIterPosition() {
        byte[] all = patternBytes(600, 2);
        Bio b = bio(Op.WRITE, 0, patternSegments(arena, List.of(100, 200, 300), 2));
        b.advance(130);
        assertThat(bytesOf(b)).isEqualTo(Arrays.copyOfRange(all, 130, 600));
    }

    @Test
    void copyFromAfterAdvanceFillsOnlyTheRemainingBytes() {
        List<MemorySegment> segs = patternSegments(arena, List.of(100, 200, 300), 3);
        byte[] before = patternBytes(600, 3);
        Bio b = bio(Op.READ, 0, segs);
        b.advance(250);
        byte[] src = patternBytes(350, 77);
        b.copyFrom(MemorySegment.ofArray(src));

        byte[] after = gather(segs);
        assertThat(Arrays.copyOfRange(after, 0, 250)).isEqualTo(Arrays.copyOfRange(before, 0, 250));
        assertThat(Arrays.copyOfRange(after, 250, 600)).isEqualTo(src);
    }

    @Test
    void copyFromOfAShortenedCloneStopsAtItsSize() {
        List<MemorySegment> segs = patternSegments(arena, List.of(100, 200, 300), 3);
        byte[] before = patternBytes(600, 3);
        Bio parent = bio(Op.READ, 0, segs);
        parent.advance(50);
        Bio front = parent.split(200, null); // covers bytes [50, 250)
        front.copyFrom(MemorySegment.ofArray(new byte[200]));
        byte[] after = gather(segs);
        byte[] expected = before.clone();
        Arrays.fill(expected, 50, 250, (byte) 0);
        assertThat(after).isEqualTo(expected);
    }

    @Test
    void zeroFillAfterAdvanceZeroesOnlyTheRemainingBytes() {
        List<MemorySegment> segs = patternSegments(arena, List.of(100, 200, 300), 4);
        byte[] before = patternBytes(600, 4);
        Bio b = bio(Op.READ, 0, segs);
        b.advance(150);
        b.zeroFill();
        byte[] expected = before.clone();
        Arrays.fill(expected, 150, 600, (byte) 0);
        assertThat(gather(segs)).isEqualTo(expected);
    }

    @Test
    void forEachSegmentVisitsTheRemainingPiecesWithOffsets() {
        List<MemorySegment> segs = patternSegments(arena, List.of(100, 200, 300), 5);
        Bio b = bio(Op.WRITE, 0, segs);
        b.advance(120);
        List<long[]> seen = new ArrayList<>();
        List<MemorySegment> seenSegs = new ArrayList<>();
        b.forEachSegment((s, off, len) -> {
            seenSegs.add(s);
            seen.add(new long[] {off, len});
        });
        assertThat(seenSegs).containsExactly(segs.get(1), segs.get(2));
        assertThat(seen.get(0)).containsExactly(20, 180);
        assertThat(seen.get(1)).containsExactly(0, 300);
        assertThat(b.size()).isEqualTo(480); // not advanced
    }

    // ---- split and clone ---------------------------------------------------------------------

    @Test
    void splitFrontCoversFirstBytesAndParentAdvances() {
        byte[] all = patternBytes(1536, 6);
        Bio parent = bio(Op.WRITE, 4096, patternSegments(arena, List.of(512, 512, 512), 6));
        parent.setFlags(BioFlags.FUA);

        Bio front = parent.split(700, null);

        assertThat(front.op()).isEqualTo(Op.WRITE);
        assertThat(front.flags()).isEqualTo(BioFlags.FUA);
        assertThat(front.offset()).isEqualTo(4096);
        assertThat(front.size()).isEqualTo(700);
        assertThat(front.endIoCallback()).isNull();
        assertThat(bytesOf(front)).isEqualTo(Arrays.copyOfRange(all, 0, 700));

        assertThat(parent.offset()).isEqualTo(4096 + 700);
        assertThat(parent.size()).isEqualTo(1536 - 700);
        assertThat(parent.iter().index()).isEqualTo(1);
        assertThat(parent.iter().doneInSegment()).isEqualTo(188);
        assertThat(bytesOf(parent)).isEqualTo(Arrays.copyOfRange(all, 700, 1536));
    }

    @Test
    void splitRefusesZeroAndWholeSize() {
        Bio parent = bio(Op.WRITE, 0, patternSegments(arena, List.of(1024), 6));
        assertThatThrownBy(() -> parent.split(0, null)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> parent.split(1024, null)).isInstanceOf(IllegalArgumentException.class);
        assertThat(parent.size()).isEqualTo(1024);
    }

    @Test
    void splitOfDiscardSplitsTheRangeOnly() {
        Bio parent = new Bio().init(Op.DISCARD, 0, 1 << 20, null).setSize(1 << 20);
        Bio front = parent.split(4096, null);
        assertThat(front.op()).isEqualTo(Op.DISCARD);
        assertThat(front.offset()).isEqualTo(1 << 20);
        assertThat(front.size()).isEqualTo(4096);
        assertThat(parent.offset()).isEqualTo((1 << 20) + 4096);
        assertThat(parent.size()).isEqualTo((1 << 20) - 4096);
    }

    @Test
    void splitFrontComesFromTheGivenPool() {
        BioPool pool = new BioPool(8);
        Bio warm = pool.get();
        warm.put();
        Bio parent = bio(Op.READ, 0, patternSegments(arena, List.of(2048), 6));
        Bio front = parent.split(512, pool);
        assertThat(front).isSameAs(warm);
        assertThat(pool.created()).isEqualTo(1);
    }

    @Test
    void cloneShallowSharesMemoryCopiesIteratorAndAdvancesIndependently() {
        List<MemorySegment> segs = patternSegments(arena, List.of(300, 300), 7);
        byte[] all = patternBytes(600, 7);
        Bio orig = bio(Op.WRITE, 512, segs);
        orig.setFlags(BioFlags.FUA | BioFlags.PREFLUSH);
        orig.setPrivateData("mine");
        orig.setPrivateLong(42);
        orig.setEndIo(x -> { });
        orig.setStatus(Status.IOERR, "earlier");
        orig.advance(100);

        Bio c = orig.cloneShallow(null);
        assertThat(c.op()).isEqualTo(Op.WRITE);
        assertThat(c.flags()).isEqualTo(BioFlags.FUA | BioFlags.PREFLUSH);
        assertThat(c.offset()).isEqualTo(612);
        assertThat(c.size()).isEqualTo(500);
        assertThat(c.iter().index()).isEqualTo(orig.iter().index());
        assertThat(c.iter().doneInSegment()).isEqualTo(100);
        assertThat(c.segment(0)).isSameAs(segs.get(0));
        assertThat(c.segment(1)).isSameAs(segs.get(1));
        assertThat(c.endIoCallback()).isNull();
        assertThat(c.privateData()).isNull();
        assertThat(c.privateLong()).isZero();
        assertThat(c.status()).isEqualTo(Status.OK);
        assertThat(c.detail()).isNull();

        // independent iterators
        c.advance(350);
        assertThat(orig.offset()).isEqualTo(612);
        assertThat(orig.size()).isEqualTo(500);
        assertThat(bytesOf(orig)).isEqualTo(Arrays.copyOfRange(all, 100, 600));
        assertThat(bytesOf(c)).isEqualTo(Arrays.copyOfRange(all, 450, 600));

        // shared memory: a write through the clone shows through the original
        c.zeroFill();
        byte[] expected = Arrays.copyOfRange(all, 100, 600);
        Arrays.fill(expected, 350, 500, (byte) 0);
        assertThat(bytesOf(orig)).isEqualTo(expected);
    }

    @Test
    void cloneFromPoolWithFewerVecSlotsGetsAllSegments() {
        BioPool pool = new BioPool(4, 1);
        List<MemorySegment> segs = patternSegments(arena, List.of(10, 20, 30, 40, 50, 60), 8);
        Bio orig = bio(Op.WRITE, 0, segs);
        Bio c = orig.cloneShallow(pool);
        assertThat(c.segmentCount()).isEqualTo(6);
        assertThat(bytesOf(c)).isEqualTo(patternBytes(210, 8));
    }

    // ---- completion ----------------------------------------------------------------------------

    @Test
    void endIoRunsCallbackOnceAndCompletingTwiceThrows() {
        AtomicInteger calls = new AtomicInteger();
        Bio b = new Bio().init(Op.FLUSH, 0, 0, x -> calls.incrementAndGet());
        b.endIo();
        assertThat(calls).hasValue(1);
        assertThatThrownBy(b::endIo).isInstanceOf(IllegalStateException.class);
        assertThat(calls).hasValue(1);
    }

    @Test
    void failRecordsStatusAndDetailThenCompletes() {
        AtomicReference<Status> seen = new AtomicReference<>();
        AtomicReference<String> why = new AtomicReference<>();
        Bio b = new Bio().init(Op.READ, 0, 0, x -> {
            seen.set(x.status());
            why.set(x.detail());
        });
        b.fail(Status.MEDIUM, "bad sector 7");
        assertThat(seen).hasValue(Status.MEDIUM);
        assertThat(why).hasValue("bad sector 7");
    }

    @Test
    void incRemainingDelaysCompletionByOneEndIo() {
        AtomicInteger calls = new AtomicInteger();
        Bio b = new Bio().init(Op.FLUSH, 0, 0, x -> calls.incrementAndGet());
        b.incRemaining();
        b.endIo();
        assertThat(calls).hasValue(0);
        b.endIo();
        assertThat(calls).hasValue(1);
    }

    @Test
    void setStatusFirstErrorWinsAndOkNeverOverwrites() {
        Bio b = new Bio().init(Op.READ, 0, 0, null);
        b.setStatus(Status.OK, "ignored");
        assertThat(b.status()).isEqualTo(Status.OK);
        assertThat(b.detail()).isNull();
        b.setStatus(Status.TIMEOUT, "first");
        b.setStatus(Status.IOERR, "second");
        b.setStatus(Status.OK);
        assertThat(b.status()).isEqualTo(Status.TIMEOUT);
        assertThat(b.detail()).isEqualTo("first");
    }

    @Test
    void setStatusUnderConcurrentThreadsKeepsExactlyOneWinnerWithItsDetail() throws Exception {
        Status[] errors = {Status.IOERR, Status.MEDIUM, Status.TIMEOUT, Status.NOSPC};
        for (int round = 0; round < 200; round++) {
            Bio b = new Bio().init(Op.WRITE, 0, 0, null);
            CyclicBarrier start = new CyclicBarrier(errors.length);
            List<Thread> ts = new ArrayList<>();
            for (Status s : errors) {
                Thread t = Thread.ofPlatform().start(() -> {
                    try {
                        start.await();
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                    b.setStatus(s, "by " + s.name());
                });
                ts.add(t);
            }
            for (Thread t : ts) {
                t.join();
            }
            assertThat(b.status()).isIn((Object[]) errors);
            assertThat(b.detail()).isEqualTo("by " + b.status().name());
        }
    }

    // ---- chain ---------------------------------------------------------------------------------

    @Test
    void chainedParentCompletesAfterLastChildWithFirstError() {
        AtomicInteger calls = new AtomicInteger();
        AtomicReference<Status> seen = new AtomicReference<>();
        AtomicReference<String> why = new AtomicReference<>();
        Bio parent = new Bio().init(Op.WRITE, 0, 0, x -> {
            calls.incrementAndGet();
            seen.set(x.status());
            why.set(x.detail());
        });
        Bio c1 = new Bio().init(Op.WRITE, 0, 0, null);
        Bio c2 = new Bio().init(Op.WRITE, 0, 0, null);
        Bio c3 = new Bio().init(Op.WRITE, 0, 0, null);
        c1.chain(parent);
        c2.chain(parent);
        c3.chain(parent);

        parent.endIo(); // the parent's own completion comes first here
        assertThat(calls).hasValue(0);
        c2.fail(Status.MEDIUM, "child two");
        assertThat(calls).hasValue(0);
        c1.fail(Status.IOERR, "child one");
        assertThat(calls).hasValue(0);
        c3.endIo();
        assertThat(calls).hasValue(1);
        assertThat(seen).hasValue(Status.MEDIUM);
        assertThat(why).hasValue("child two");
        assertThat(parent.status()).isEqualTo(Status.MEDIUM);
        assertThatThrownBy(parent::endIo).isInstanceOf(IllegalStateException.class);
        assertThat(calls).hasValue(1);
    }

    @Test
    void parentErrorSetBeforeChildErrorsWins() {
        AtomicReference<Status> seen = new AtomicReference<>();
        Bio parent = new Bio().init(Op.READ, 0, 0, x -> seen.set(x.status()));
        Bio child = new Bio().init(Op.READ, 0, 0, null);
        child.chain(parent);
        parent.fail(Status.TIMEOUT, "parent");
        child.fail(Status.IOERR, "child");
        assertThat(seen).hasValue(Status.TIMEOUT);
        assertThat(parent.detail()).isEqualTo("parent");
    }

    @Test
    void chainedChildrenArePutBackInTheirPool() {
        BioPool pool = new BioPool(16);
        AtomicInteger calls = new AtomicInteger();
        Bio parent = new Bio().init(Op.WRITE, 0, 0, x -> calls.incrementAndGet());
        List<Bio> kids = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            Bio c = pool.get().init(Op.WRITE, 0, 0, null);
            c.chain(parent);
            kids.add(c);
        }
        assertThat(pool.created()).isEqualTo(4);
        for (Bio c : kids) {
            c.endIo();
        }
        parent.endIo();
        assertThat(calls).hasValue(1);
        // the four children are back: four more gets create nothing new
        List<Bio> again = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            again.add(pool.get());
        }
        assertThat(pool.created()).isEqualTo(4);
        assertThat(again).containsExactlyInAnyOrderElementsOf(kids);
    }

    @Test
    void chainingTwiceIsRefused() {
        Bio p1 = new Bio().init(Op.WRITE, 0, 0, null);
        Bio p2 = new Bio().init(Op.WRITE, 0, 0, null);
        Bio c = new Bio().init(Op.WRITE, 0, 0, null);
        c.chain(p1);
        assertThatThrownBy(() -> c.chain(p2)).isInstanceOf(IllegalStateException.class);
    }

    @Test
    void chainOfChainsCompletesTheRootOnceWithTheDeepestError() {
        AtomicInteger calls = new AtomicInteger();
        AtomicReference<String> why = new AtomicReference<>();
        Bio root = new Bio().init(Op.WRITE, 0, 0, x -> {
            calls.incrementAndGet();
            why.set(x.detail());
        });
        Bio mid = new Bio().init(Op.WRITE, 0, 0, null);
        mid.chain(root);
        Bio leaf = new Bio().init(Op.WRITE, 0, 0, null);
        leaf.chain(mid);
        root.endIo();
        mid.endIo();
        assertThat(calls).hasValue(0);
        leaf.fail(Status.NOSPC, "leaf full");
        assertThat(calls).hasValue(1);
        assertThat(why).hasValue("leaf full");
        assertThat(root.status()).isEqualTo(Status.NOSPC);
    }

    @Test
    void chainedChildrenCompletedOnManyThreadsCompleteParentExactlyOnce() throws Exception {
        for (int round = 0; round < 50; round++) {
            AtomicInteger calls = new AtomicInteger();
            Bio parent = new Bio().init(Op.WRITE, 0, 0, x -> calls.incrementAndGet());
            BioPool pool = new BioPool(64);
            List<Bio> kids = new ArrayList<>();
            for (int i = 0; i < 32; i++) {
                Bio c = pool.get().init(Op.WRITE, 0, 0, null);
                c.chain(parent);
                kids.add(c);
            }
            CountDownLatch go = new CountDownLatch(1);
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                int from = t * 8;
                ts.add(Thread.ofPlatform().start(() -> {
                    try {
                        go.await();
                    } catch (InterruptedException e) {
                        return;
                    }
                    for (int i = from; i < from + 8; i++) {
                        kids.get(i).endIo();
                    }
                }));
            }
            go.countDown();
            parent.endIo();
            for (Thread t : ts) {
                t.join();
            }
            assertThat(calls).hasValue(1);
        }
    }

    @Test
    void forEachSegmentOfADatalessBioVisitsNothing() {
        Bio d = new Bio().init(Op.DISCARD, 0, 0, null).setSize(8192);
        List<Long> seen = new ArrayList<>();
        d.forEachSegment((s, off, len) -> seen.add(len));
        assertThat(seen).isEmpty();
    }

    @Test
    void trimShrinksTheRangeButKeepsTheSegmentsAndStart() {
        byte[] all = patternBytes(1024, 9);
        Bio b = bio(Op.WRITE, 4096, patternSegments(arena, List.of(512, 512), 9));
        b.advance(100);
        assertThat(b.trim(600)).isSameAs(b);
        assertThat(b.size()).isEqualTo(600);
        assertThat(b.offset()).isEqualTo(4196);
        assertThat(b.segmentCount()).isEqualTo(2);
        assertThat(bytesOf(b)).isEqualTo(Arrays.copyOfRange(all, 100, 700));
        assertThatThrownBy(() -> b.trim(601)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> b.trim(-1)).isInstanceOf(IllegalArgumentException.class);
        assertThat(b.trim(0).size()).isZero();
    }

    @Test
    void driverDataIsClearedByInitCloneAndPut() {
        BioPool pool = new BioPool(4);
        Bio b = pool.get().init(Op.READ, 0, 0, null);
        b.setDriverData("file");
        assertThat(b.driverData()).isEqualTo("file");
        assertThat(b.cloneShallow(null).driverData()).isNull();
        b.init(Op.READ, 0, 0, null);
        assertThat(b.driverData()).isNull();
        b.setDriverData("file");
        b.put();
        assertThat(pool.get().driverData()).isNull();
    }

    @Test
    void putTwiceOfAPooledBioThrows() {
        BioPool pool = new BioPool(4);
        Bio b = pool.get();
        b.put();
        assertThatThrownBy(b::put).isInstanceOf(IllegalStateException.class);
    }

    @Test
    void toStringNamesOpOffsetSizeAndStatus() {
        Bio b = new Bio().init(Op.DISCARD, BioFlags.NOUNMAP, 4096, null).setSize(512);
        assertThat(b.toString()).contains("DISCARD", "NOUNMAP", "offset=4096", "size=512", "status=OK");
    }

    private static byte[] gather(List<MemorySegment> segs) {
        byte[] out = new byte[0];
        for (MemorySegment s : segs) {
            out = concat(out, s.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
        }
        return out;
    }
}
