package io.biostack.layer;

import io.biostack.block.Op;
import io.biostack.block.RamDisk;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;

import static io.biostack.layer.TestDevices.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class StripedTest {
    static final int CHUNK = 8192;

    @Test
    void chunksGoRoundRobinOverTheStripes() {
        RamDisk a = new RamDisk("a", 1 << 20);
        RamDisk b = new RamDisk("b", 1 << 20);
        Striped s = new Striped("s", List.of(new Leg(a, 4096), new Leg(b, 0)), CHUNK, 4 * CHUNK);
        MemorySegment data = pattern(4 * CHUNK, 5);
        write(s, 0, data); // one bio across 4 chunks: split at every boundary
        byte[] all = bytes(data);
        assertThat(read(a, 4096, CHUNK)).isEqualTo(Arrays.copyOfRange(all, 0, CHUNK));
        assertThat(read(b, 0, CHUNK)).isEqualTo(Arrays.copyOfRange(all, CHUNK, 2 * CHUNK));
        assertThat(read(a, 4096 + CHUNK, CHUNK)).isEqualTo(Arrays.copyOfRange(all, 2 * CHUNK, 3 * CHUNK));
        assertThat(read(b, CHUNK, CHUNK)).isEqualTo(Arrays.copyOfRange(all, 3 * CHUNK, 4 * CHUNK));
        assertThat(read(s, 512, 3 * CHUNK)).isEqualTo(Arrays.copyOfRange(all, 512, 512 + 3 * CHUNK));
    }

    @Test
    void publishesIoMinAndIoOptAsTheKernelDoes() {
        Striped s = new Striped("s", List.of(new Leg(new RamDisk("a", 1 << 20), 0),
                new Leg(new RamDisk("b", 1 << 20), 0), new Leg(new RamDisk("c", 1 << 20), 0)), 65536, 3 * 65536);
        assertThat(s.limits().ioMin()).isEqualTo(65536);
        assertThat(s.limits().ioOpt()).isEqualTo(3 * 65536);
        assertThat(s.table()).isEqualTo("3 128 a 0 b 0 c 0");
    }

    @Test
    void lengthsThatDoNotDivideAreRefused() {
        List<Leg> legs = List.of(new Leg(new RamDisk("a", 1 << 20), 0), new Leg(new RamDisk("b", 1 << 20), 0));
        assertThatThrownBy(() -> new Striped("s", legs, CHUNK, 3 * 512)).hasMessageContaining("does not divide by 2 stripes");
        assertThatThrownBy(() -> new Striped("s", legs, CHUNK, 2 * 4096)).hasMessageContaining("chunk size");
        assertThatThrownBy(() -> new Striped("s", legs, 100, 2 * 4096)).hasMessageContaining("multiple");
        assertThatThrownBy(() -> new Striped("s", legs, CHUNK, 4 << 20)).hasMessageContaining("beyond the end");
        assertThatThrownBy(() -> new Striped("s", List.of(), CHUNK, CHUNK)).hasMessageContaining("at least one");
    }

    @Test
    void flushAndPreflushReachEveryStripe() {
        var a = new TestDevices.Probe(new RamDisk("a", 1 << 20));
        var b = new TestDevices.Probe(new RamDisk("b", 1 << 20));
        Striped s = new Striped("s", List.of(new Leg(a, 0), new Leg(b, 0)), CHUNK, 1 << 20);
        join(s.flush());
        assertThat(a.count(Op.FLUSH)).isEqualTo(1);
        assertThat(b.count(Op.FLUSH)).isEqualTo(1);
        join(s.write(0, io.biostack.block.IoIter.of(pattern(4096, 6)), io.biostack.block.BioFlags.PREFLUSH));
        assertThat(a.count(Op.FLUSH)).isEqualTo(2);
        assertThat(b.count(Op.FLUSH)).isEqualTo(2);
        assertThat(a.count(Op.WRITE)).isEqualTo(1);
        assertThat(b.count(Op.WRITE)).isZero();
    }

    @Test
    void anErrorOnOneStripeFailsTheBioThatTouchedIt() {
        var a = new TestDevices.Probe(new RamDisk("a", 1 << 20));
        var b = new TestDevices.Probe(new RamDisk("b", 1 << 20));
        Striped s = new Striped("s", List.of(new Leg(a, 0), new Leg(b, 0)), CHUNK, 1 << 20);
        b.failing = true;
        assertThat(statusOf(s.write(0, pattern(2 * CHUNK, 7)))).isEqualTo(io.biostack.block.Status.IOERR);
        assertThat(statusOf(s.write(2 * CHUNK, pattern(CHUNK, 7)))).isEqualTo(io.biostack.block.Status.OK);
    }

    @Test
    void discardAndWriteZeroesReachTheStripesWhenEveryStripeTakesThem() {
        RamDisk a = new RamDisk("a", 1 << 20);
        RamDisk b = new RamDisk("b", 1 << 20);
        Striped s = new Striped("s", List.of(new Leg(a, 0), new Leg(b, 0)), CHUNK, 1 << 20);
        // dm-stripe takes both (num_discard_bios = stripes); so must an export over it (NBD TRIM)
        assertThat(s.limits().discard()).isTrue();
        assertThat(s.limits().writeZeroes()).isTrue();
        assertThat(s.limits().fua()).isTrue();
        write(s, 0, pattern(4 * CHUNK, 8));
        assertThat(statusOf(s.discard(0, 2 * CHUNK))).isEqualTo(io.biostack.block.Status.OK);
        assertThat(statusOf(s.writeZeroes(2 * CHUNK, 2 * CHUNK, true))).isEqualTo(io.biostack.block.Status.OK);
        assertThat(read(a, 0, 2 * CHUNK)).containsOnly(0);
        assertThat(read(b, 0, 2 * CHUNK)).containsOnly(0);
        assertThat(read(s, 0, 4 * CHUNK)).containsOnly(0);
    }

    @Test
    void aStripeWithoutDiscardTakesItAwayFromTheStripedDevice() {
        RamDisk a = new RamDisk("a", 1 << 20);
        RamDisk b = new RamDisk("b", 1 << 20);
        io.biostack.block.BlockDevice noDiscard = new io.biostack.block.BlockDevice() {
            @Override public String name() { return "b"; }
            @Override public long size() { return b.size(); }
            @Override public io.biostack.block.QueueLimits limits() {
                return b.limits().toBuilder().maxDiscardBytes(0).build();
            }
            @Override public boolean isReadOnly() { return false; }
            @Override public io.biostack.block.Extent extentAt(long o, long n) { return b.extentAt(o, n); }
            @Override public void submit(io.biostack.block.Bio bio) { b.submit(bio); }
            @Override public void close() { }
        };
        Striped s = new Striped("s", List.of(new Leg(a, 0), new Leg(noDiscard, 0)), CHUNK, 1 << 20);
        assertThat(s.limits().discard()).isFalse();
        assertThat(statusOf(s.discard(0, 2 * CHUNK))).isEqualTo(io.biostack.block.Status.NOTSUPP);
    }

    @Test
    void theDataOfAWriteWithPreflushGoesDownOnlyAfterEveryStripesFlushCompleted() {
        // dm core sends the empty flush first and the data once it completed: a commit block
        // written with PREFLUSH|FUA must not be durable on one stripe while the journal blocks
        // before it still sit in another stripe's cache
        RamDisk ra = new RamDisk("a", 1 << 20);
        RamDisk rb = new RamDisk("b", 1 << 20);
        java.util.List<io.biostack.block.Bio> held = new java.util.concurrent.CopyOnWriteArrayList<>();
        java.util.concurrent.atomic.AtomicInteger writes = new java.util.concurrent.atomic.AtomicInteger();
        class Holding implements io.biostack.block.BlockDevice {
            final RamDisk d;
            Holding(RamDisk d) { this.d = d; }
            @Override public String name() { return d.name(); }
            @Override public long size() { return d.size(); }
            @Override public io.biostack.block.QueueLimits limits() { return d.limits(); }
            @Override public boolean isReadOnly() { return false; }
            @Override public io.biostack.block.Extent extentAt(long o, long n) { return d.extentAt(o, n); }
            @Override public void submit(io.biostack.block.Bio bio) {
                if (bio.op() == Op.FLUSH) {
                    held.add(bio); // a slow cache flush: completes when the test says
                } else {
                    writes.incrementAndGet();
                    d.submit(bio);
                }
            }
            @Override public void close() { }
        }
        Striped s = new Striped("s", List.of(new Leg(new Holding(ra), 0), new Leg(new Holding(rb), 0)), CHUNK, 1 << 20);
        var f = s.write(0, io.biostack.block.IoIter.of(pattern(4096, 9)),
                io.biostack.block.BioFlags.PREFLUSH | io.biostack.block.BioFlags.FUA);
        assertThat(held).hasSize(2);
        assertThat(writes.get()).isZero();
        held.get(0).endIo();
        assertThat(writes.get()).isZero();
        assertThat(f).isNotDone();
        held.get(1).endIo();
        join(f);
        assertThat(writes.get()).isEqualTo(1);
        assertThat(read(ra, 0, 4096)).isEqualTo(bytes(pattern(4096, 9)));
    }
}
