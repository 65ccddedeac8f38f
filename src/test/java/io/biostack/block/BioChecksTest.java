package io.biostack.block;

import static io.biostack.block.TestMem.patternBytes;
import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** The checks every device makes, seen through a {@link RamDisk} (and directly where it matters). */
class BioChecksTest {
    private static final long SIZE = 1 << 20;

    /** A bio with a callback that records its completions. */
    private static final class Probe {
        final AtomicInteger calls = new AtomicInteger();
        final AtomicReference<Status> status = new AtomicReference<>();
        final AtomicReference<String> detail = new AtomicReference<>();
        final EndIo endIo = b -> {
            calls.incrementAndGet();
            status.set(b.status());
            detail.set(b.detail());
        };
    }

    private static byte[] readBack(RamDisk d, long off, int len) throws Exception {
        byte[] out = new byte[len];
        d.read(off, MemorySegment.ofArray(out)).get();
        return out;
    }

    @Test
    void readBeyondEndIsInvalidAndNamesDeviceAndNumbers() {
        RamDisk d = new RamDisk("ram7", SIZE);
        Probe p = new Probe();
        Bio b = new Bio().init(Op.READ, 0, SIZE - 512, p.endIo).addSegment(MemorySegment.ofArray(new byte[1024]));
        d.submit(b);
        assertThat(p.calls).hasValue(1);
        assertThat(p.status).hasValue(Status.INVAL);
        assertThat(p.detail.get()).contains("ram7", String.valueOf(SIZE - 512), "1024", String.valueOf(SIZE));
    }

    @Test
    void writeBeyondEndIsNoSpaceAndWritesNothing() throws Exception {
        RamDisk d = new RamDisk("ram0", SIZE);
        Probe p = new Probe();
        Bio b = new Bio().init(Op.WRITE, 0, SIZE - 512, p.endIo)
                .addSegment(MemorySegment.ofArray(patternBytes(1024, 1)));
        d.submit(b);
        assertThat(p.calls).hasValue(1);
        assertThat(p.status).hasValue(Status.NOSPC);
        assertThat(p.detail.get()).contains("ram0", "beyond the end", String.valueOf(SIZE));
        assertThat(readBack(d, SIZE - 512, 512)).containsOnly(0);
        assertThat(d.extentAt(SIZE - RamDisk.CHUNK, RamDisk.CHUNK).flags()).isEqualTo(Extent.HOLE | Extent.ZERO);
    }

    @Test
    void writeStartingPastTheEndIsNoSpace() {
        RamDisk d = new RamDisk("ram0", SIZE);
        Probe p = new Probe();
        d.submit(new Bio().init(Op.WRITE, 0, SIZE + 4096, p.endIo).addSegment(MemorySegment.ofArray(new byte[512])));
        assertThat(p.status).hasValue(Status.NOSPC);
    }

    @Test
    void hugeLengthDoesNotOverflowTheRangeCheck() {
        RamDisk d = new RamDisk("ram0", SIZE);
        Probe p = new Probe();
        d.submit(new Bio().init(Op.DISCARD, 0, 4096, p.endIo).setSize(Long.MAX_VALUE & ~511L));
        assertThat(p.status).hasValue(Status.NOSPC);
    }

    @Test
    void misalignedOffsetOrLengthIsInvalidAndWritesNothing() throws Exception {
        RamDisk d = new RamDisk("ram1", SIZE);
        Probe off = new Probe();
        d.submit(new Bio().init(Op.WRITE, 0, 100, off.endIo).addSegment(MemorySegment.ofArray(patternBytes(512, 2))));
        assertThat(off.status).hasValue(Status.INVAL);
        assertThat(off.detail.get()).contains("ram1", "100", "512", "aligned");

        Probe len = new Probe();
        d.submit(new Bio().init(Op.WRITE, 0, 0, len.endIo).addSegment(MemorySegment.ofArray(patternBytes(700, 2))));
        assertThat(len.status).hasValue(Status.INVAL);
        assertThat(len.detail.get()).contains("700");

        assertThat(readBack(d, 0, 4096)).containsOnly(0);
    }

    @Test
    void alignmentFollowsTheDevicesLogicalBlockSize() {
        RamDisk d = new RamDisk("ram4k", SIZE, 4096, false);
        Probe p = new Probe();
        d.submit(new Bio().init(Op.READ, 0, 512, p.endIo).addSegment(MemorySegment.ofArray(new byte[4096])));
        assertThat(p.status).hasValue(Status.INVAL);
        assertThat(p.detail.get()).contains("4096");
        Probe ok = new Probe();
        d.submit(new Bio().init(Op.READ, 0, 8192, ok.endIo).addSegment(MemorySegment.ofArray(new byte[4096])));
        assertThat(ok.status).hasValue(Status.OK);
    }

    @Test
    void negativeOffsetIsInvalid() {
        RamDisk d = new RamDisk("ram0", SIZE);
        Probe p = new Probe();
        d.submit(new Bio().init(Op.READ, 0, -512, p.endIo).addSegment(MemorySegment.ofArray(new byte[512])));
        assertThat(p.status).hasValue(Status.INVAL);
    }

    @Test
    void readOnlyDeviceRefusesWriteDiscardAndWriteZeroesButServesReadAndFlush() throws Exception {
        RamDisk d = new RamDisk("ro0", SIZE, 512, true);
        assertThat(d.isReadOnly()).isTrue();
        for (Op op : new Op[] {Op.WRITE, Op.DISCARD, Op.WRITE_ZEROES}) {
            Probe p = new Probe();
            Bio b = new Bio().init(op, 0, 0, p.endIo);
            if (op.hasData()) {
                b.addSegment(MemorySegment.ofArray(patternBytes(512, 3)));
            } else {
                b.setSize(4096);
            }
            d.submit(b);
            assertThat(p.calls).as(op.name()).hasValue(1);
            assertThat(p.status).as(op.name()).hasValue(Status.READONLY);
            assertThat(p.detail.get()).contains("ro0", op.name());
        }
        Probe r = new Probe();
        d.submit(new Bio().init(Op.READ, 0, 0, r.endIo).addSegment(MemorySegment.ofArray(new byte[512])));
        assertThat(r.status).hasValue(Status.OK);
        Probe f = new Probe();
        d.submit(new Bio().init(Op.FLUSH, 0, 0, f.endIo));
        assertThat(f.status).hasValue(Status.OK);
        assertThat(readBack(d, 0, 512)).containsOnly(0);
    }

    @Test
    void zeroLengthBiosCompleteOkOnce() {
        RamDisk d = new RamDisk("ram0", SIZE);
        for (Op op : new Op[] {Op.READ, Op.WRITE, Op.DISCARD, Op.WRITE_ZEROES}) {
            Probe p = new Probe();
            d.submit(new Bio().init(op, 0, 4096, p.endIo));
            assertThat(p.calls).as(op.name()).hasValue(1);
            assertThat(p.status).as(op.name()).hasValue(Status.OK);
        }
        Probe atEnd = new Probe();
        d.submit(new Bio().init(Op.READ, 0, SIZE, atEnd.endIo));
        assertThat(atEnd.status).hasValue(Status.OK);
    }

    @Test
    void admitRefusesUnsupportedDiscardAndWriteZeroes() {
        QueueLimits plain = QueueLimits.builder().build();
        for (Op op : new Op[] {Op.DISCARD, Op.WRITE_ZEROES}) {
            Probe p = new Probe();
            Bio b = new Bio().init(op, 0, 0, p.endIo).setSize(4096);
            assertThat(BioChecks.admit(b, "plain0", SIZE, plain, false)).isFalse();
            assertThat(p.status).hasValue(Status.NOTSUPP);
            assertThat(p.detail.get()).contains("plain0", op.name());
        }
    }

    @Test
    void admitPassesAGoodBioWithoutCompletingIt() {
        Probe p = new Probe();
        Bio b = new Bio().init(Op.WRITE, 0, 4096, p.endIo).addSegment(MemorySegment.ofArray(new byte[4096]));
        assertThat(BioChecks.admit(b, "d", SIZE, QueueLimits.builder().build(), false)).isTrue();
        assertThat(p.calls).hasValue(0);
        assertThat(b.status()).isEqualTo(Status.OK);
        Bio last = new Bio().init(Op.READ, 0, SIZE - 512, p.endIo).addSegment(MemorySegment.ofArray(new byte[512]));
        assertThat(BioChecks.admit(last, "d", SIZE, QueueLimits.builder().build(), false)).isTrue();
        Bio flush = new Bio().init(Op.FLUSH, 0, 0, p.endIo);
        assertThat(BioChecks.admit(flush, "d", SIZE, QueueLimits.builder().build(), true)).isTrue();
        assertThat(p.calls).hasValue(0);
    }
}
