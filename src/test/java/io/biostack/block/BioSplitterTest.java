package io.biostack.block;

import static io.biostack.block.TestMem.bytesOf;
import static io.biostack.block.TestMem.patternBytes;
import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

class BioSplitterTest {

    /** A bio over one heap array cut into segments of the given lengths. */
    private static Bio dataBio(Op op, long offset, int... lengths) {
        int total = 0;
        for (int l : lengths) {
            total += l;
        }
        MemorySegment all = MemorySegment.ofArray(patternBytes(total, 31));
        Bio b = new Bio().init(op, 0, offset, null);
        long pos = 0;
        for (int l : lengths) {
            b.addSegment(all.asSlice(pos, l));
            pos += l;
        }
        return b;
    }

    private static QueueLimits.Builder lim() {
        return QueueLimits.builder();
    }

    @Test
    void fitIsTheWholeBioWithoutLimits() {
        assertThat(BioSplitter.fit(dataBio(Op.WRITE, 0, 1 << 20, 1 << 20), lim().build())).isEqualTo(2 << 20);
    }

    @Test
    void fitCapsAtMaxBytes() {
        assertThat(BioSplitter.fit(dataBio(Op.WRITE, 0, 1 << 20), lim().maxBytes(128 << 10).build())).isEqualTo(128 << 10);
        assertThat(BioSplitter.fit(dataBio(Op.READ, 0, 4096), lim().maxBytes(128 << 10).build())).isEqualTo(4096);
    }

    @Test
    void fitRoundsDownToTheLogicalBlockSize() {
        assertThat(BioSplitter.fit(dataBio(Op.WRITE, 0, 1 << 20), lim().maxBytes(130_000).build())).isEqualTo(253 * 512);
        assertThat(BioSplitter.fit(dataBio(Op.WRITE, 0, 1 << 20), lim().logicalBlockSize(4096).maxBytes(130_000).build()))
                .isEqualTo(31 * 4096);
    }

    @Test
    void fitIsAtLeastOneBlock() {
        assertThat(BioSplitter.fit(dataBio(Op.WRITE, 0, 8192), lim().maxBytes(100).build())).isEqualTo(512);
    }

    @Test
    void fitCountsSegmentsAgainstMaxSegments() {
        Bio b = dataBio(Op.WRITE, 0, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096);
        assertThat(BioSplitter.fit(b, lim().maxSegments(3).build())).isEqualTo(3 * 4096);
        assertThat(BioSplitter.fit(b, lim().maxSegments(8).build())).isEqualTo(8 * 4096);
    }

    @Test
    void fitCountsLargeSegmentsAsSeveralAgainstMaxSegmentSize() {
        Bio b = dataBio(Op.WRITE, 0, 65536, 65536);
        // 64 KiB at 4 KiB per segment is 16 segments; 4 fit
        assertThat(BioSplitter.fit(b, lim().maxSegments(4).maxSegmentSize(4096).build())).isEqualTo(16384);
        // maxSegmentSize alone never splits: the device cuts memory, not the bio
        assertThat(BioSplitter.fit(b, lim().maxSegmentSize(4096).build())).isEqualTo(131072);
        assertThat(BioSplitter.fit(b, lim().maxSegments(32).maxSegmentSize(4096).build())).isEqualTo(131072);
        assertThat(BioSplitter.fit(b, lim().maxSegments(17).maxSegmentSize(4096).build())).isEqualTo(65536 + 4096);
    }

    @Test
    void fitOfOddSegmentsRoundsTheFittingBytesDownToBlocks() {
        Bio b = dataBio(Op.WRITE, 0, 700, 700, 700, 2, 970);
        assertThat(BioSplitter.fit(b, lim().maxSegments(2).build())).isEqualTo(1024);
    }

    @Test
    void fitStartsFromTheIteratorsPosition() {
        Bio b = dataBio(Op.WRITE, 0, 4096, 4096, 4096, 4096);
        b.advance(6144); // now in the middle of segment 1: 2048 + 4096 + 4096 left
        assertThat(BioSplitter.fit(b, lim().maxSegments(2).build())).isEqualTo(2048 + 4096);
    }

    @Test
    void fitStopsAtTheNextChunkBoundary() {
        QueueLimits l = lim().chunkBytes(65536).build();
        assertThat(BioSplitter.fit(dataBio(Op.WRITE, 61440, 16384), l)).isEqualTo(4096);
        assertThat(BioSplitter.fit(dataBio(Op.WRITE, 65536, 131072), l)).isEqualTo(65536);
        assertThat(BioSplitter.fit(dataBio(Op.WRITE, 65536 + 512, 4096), l)).isEqualTo(4096);
        Bio d = new Bio().init(Op.DISCARD, 0, 3 * 65536 - 8192, null).setSize(1 << 20);
        assertThat(BioSplitter.fit(d, lim().chunkBytes(65536).maxDiscardBytes(1L << 30).build())).isEqualTo(8192);
    }

    @Test
    void fitCapsDiscardAndWriteZeroesAtTheirOwnMaxima() {
        QueueLimits l = lim().maxBytes(4096).maxDiscardBytes(1 << 20).maxWriteZeroesBytes(256 << 10).build();
        Bio d = new Bio().init(Op.DISCARD, 0, 0, null).setSize(3 << 20);
        assertThat(BioSplitter.fit(d, l)).isEqualTo(1 << 20);
        Bio z = new Bio().init(Op.WRITE_ZEROES, 0, 0, null).setSize(3 << 20);
        assertThat(BioSplitter.fit(z, l)).isEqualTo(256 << 10);
        // maxBytes is for data bios only
        Bio small = new Bio().init(Op.DISCARD, 0, 0, null).setSize(8192);
        assertThat(BioSplitter.fit(small, l)).isEqualTo(8192);
    }

    @Test
    void fitOfFlushIsItsSize() {
        assertThat(BioSplitter.fit(new Bio().init(Op.FLUSH, 0, 0, null), lim().maxBytes(4096).chunkBytes(4096).build()))
                .isZero();
    }

    @Test
    void submitSplitSendsABioThatFitsAsItIs() {
        Bio b = dataBio(Op.WRITE, 0, 4096);
        List<Bio> sent = new ArrayList<>();
        BioSplitter.submitSplit(b, lim().maxBytes(8192).build(), new BioPool(4), sent::add);
        assertThat(sent).containsExactly(b);
    }

    @Test
    void submitSplitThroughARamDiskWritesEverythingAndCompletesTheParentOnce() throws Exception {
        RamDisk disk = new RamDisk("ram0", 4L << 20);
        QueueLimits l = lim().maxBytes(48 << 10).maxSegments(3).chunkBytes(64 << 10).build();
        byte[] data = patternBytes(1 << 20, 32);
        MemorySegment all = MemorySegment.ofArray(data);
        Bio parent = new Bio();
        AtomicInteger calls = new AtomicInteger();
        AtomicReference<Status> st = new AtomicReference<>();
        parent.init(Op.WRITE, BioFlags.FUA, 8192, b -> {
            calls.incrementAndGet();
            st.set(b.status());
        });
        for (int pos = 0; pos < data.length; pos += 20480) {
            parent.addSegment(all.asSlice(pos, Math.min(20480, data.length - pos)));
        }
        BioPool pool = new BioPool(8);
        AtomicInteger pieces = new AtomicInteger();
        BioSplitter.submitSplit(parent, l, pool, piece -> {
            pieces.incrementAndGet();
            assertThat(piece.flags()).isEqualTo(BioFlags.FUA);
            disk.submit(piece);
        });
        assertThat(calls).hasValue(1);
        assertThat(st).hasValue(Status.OK);
        assertThat(pieces.get()).isGreaterThan(20);
        assertThat(pool.created()).as("fronts are reused once completed").isEqualTo(1);
        byte[] back = new byte[data.length];
        disk.read(8192, MemorySegment.ofArray(back)).get();
        assertThat(back).isEqualTo(data);
    }

    @Test
    void submitSplitParentGetsTheFirstErrorOfItsPieces() {
        AtomicInteger calls = new AtomicInteger();
        AtomicReference<Status> st = new AtomicReference<>();
        AtomicReference<String> why = new AtomicReference<>();
        Bio parent = dataBio(Op.READ, 0, 16384);
        parent.setEndIo(b -> {
            calls.incrementAndGet();
            st.set(b.status());
            why.set(b.detail());
        });
        List<Bio> sent = new ArrayList<>();
        BioSplitter.submitSplit(parent, lim().maxBytes(4096).build(), new BioPool(8), sent::add);
        assertThat(sent).hasSize(4);
        assertThat(sent.get(3)).isSameAs(parent);
        assertThat(sent.stream().map(Bio::offset)).containsExactly(0L, 4096L, 8192L, 12288L);

        sent.get(0).endIo();
        sent.get(2).fail(Status.MEDIUM, "piece 2");
        sent.get(3).endIo();
        assertThat(calls).hasValue(0);
        sent.get(1).fail(Status.IOERR, "piece 1");
        assertThat(calls).hasValue(1);
        assertThat(st).hasValue(Status.MEDIUM);
        assertThat(why).hasValue("piece 2");
    }

    @Test
    void submitSplitOfDiscardCoversTheRangeInCappedPieces() {
        Bio d = new Bio().init(Op.DISCARD, 0, 4096, null).setSize(5L << 20);
        List<long[]> seen = new ArrayList<>();
        BioSplitter.submitSplit(d, lim().maxDiscardBytes(2 << 20).build(), new BioPool(4), p -> {
            seen.add(new long[] {p.offset(), p.size()});
            p.endIo();
        });
        assertThat(seen).hasSize(3);
        assertThat(seen.get(0)).containsExactly(4096, 2 << 20);
        assertThat(seen.get(1)).containsExactly(4096 + (2 << 20), 2 << 20);
        assertThat(seen.get(2)).containsExactly(4096 + (4 << 20), 1 << 20);
    }

    @Test
    void splitPiecesCarryTheRightBytes() {
        Bio parent = dataBio(Op.WRITE, 0, 3000, 5192);
        List<byte[]> got = new ArrayList<>();
        BioSplitter.submitSplit(parent, lim().maxBytes(2048).build(), null, p -> got.add(bytesOf(p)));
        byte[] joined = new byte[0];
        for (byte[] g : got) {
            joined = TestMem.concat(joined, g);
        }
        assertThat(joined).isEqualTo(patternBytes(8192, 31));
        assertThat(got).hasSize(4);
    }
}
