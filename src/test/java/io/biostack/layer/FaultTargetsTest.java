package io.biostack.layer;

import io.biostack.block.Op;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;

import static io.biostack.layer.TestDevices.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** error, zero, flakey, delay and dust. */
class FaultTargetsTest {
    final RamDisk disk = new RamDisk("disk", 1 << 20);

    @Test
    void errorFailsEveryOpButStillChecksRange() {
        ErrorTarget e = new ErrorTarget("e", 1 << 20);
        assertThat(statusOf(e.read(0, buffer(4096)))).isEqualTo(Status.IOERR);
        assertThat(statusOf(e.write(0, pattern(4096, 1)))).isEqualTo(Status.IOERR);
        assertThat(statusOf(e.read(1 << 20, buffer(4096)))).isEqualTo(Status.INVAL);
    }

    @Test
    void anErrorSegmentFailsOnlyItsOwnRangeNotTheFlushesOfTheWholeDevice() {
        // the classic bad-region table: linear, a few sectors of error, linear. dm sends no flush
        // to the error target (io_err_ctr sets no num_flush_bios), so fsync on the device works
        MappedDevice m = new MappedDevice("m", new MappedDevice.Table("m", List.of(
                new MappedDevice.Segment(0, 65536, new Linear("m", disk, 0, 65536)),
                new MappedDevice.Segment(65536, 4096, new ErrorTarget("m", 4096)),
                new MappedDevice.Segment(69632, 65536, new Linear("m", disk, 69632, 65536)))));
        assertThat(statusOf(m.flush())).isEqualTo(Status.OK);
        assertThat(statusOf(m.write(0, io.biostack.block.IoIter.of(pattern(4096, 15)),
                io.biostack.block.BioFlags.PREFLUSH | io.biostack.block.BioFlags.FUA))).isEqualTo(Status.OK);
        assertThat(read(disk, 0, 4096)).isEqualTo(bytes(pattern(4096, 15)));
        assertThat(statusOf(m.read(65536, buffer(4096)))).isEqualTo(Status.IOERR);
        assertThat(statusOf(m.write(65536 - 4096, pattern(8192, 16)))).isEqualTo(Status.IOERR);
        assertThat(statusOf(new ErrorTarget("e", 4096).flush())).isEqualTo(Status.OK);
    }

    @Test
    void zeroReadsZerosAndSwallowsWrites() {
        Zero z = new Zero("z", 1 << 20);
        MemorySegment m = pattern(4096, 2);
        join(z.write(0, m));
        join(z.read(0, m));
        assertThat(bytes(m)).containsOnly(0);
        assertThat(z.extentAt(0, 1 << 30).length()).isEqualTo(1 << 20);
        assertThat(statusOf(z.write(1 << 20, pattern(512, 1)))).isEqualTo(Status.NOSPC);
    }

    // ---- flakey ----------------------------------------------------------------------------

    private Flakey flakey(boolean down, Flakey.Features f) {
        return new Flakey("f", new Leg(disk, 4096), 65536, down ? 0 : 1000, down ? 1000 : 0, f, () -> 0L);
    }

    @Test
    void flakeyWhileUpIsALinearWindow() {
        Flakey f = flakey(false, Flakey.Features.NONE);
        MemorySegment d = pattern(4096, 3);
        write(f, 0, d);
        assertThat(read(disk, 4096, 4096)).isEqualTo(bytes(d));
        assertThat(f.status()).isEqualTo("up");
        // as dm-flakey's table: the feature count is there when it is 0 too
        Flakey oneSecondUp = new Flakey("f", new Leg(disk, 4096), 65536, 1_000_000_000L, 0, Flakey.Features.NONE,
                () -> 0L);
        assertThat(oneSecondUp.table()).isEqualTo("disk 8 1 0 0");
    }

    @Test
    void flakeyDownWithoutFeaturesFailsEverything() {
        Flakey f = flakey(true, Flakey.Features.NONE);
        assertThat(statusOf(f.read(0, buffer(512)))).isEqualTo(Status.IOERR);
        assertThat(statusOf(f.write(0, pattern(512, 1)))).isEqualTo(Status.IOERR);
        assertThat(read(disk, 4096, 512)).containsOnly(0);
        assertThat(f.status()).isEqualTo("down");
    }

    @Test
    void flakeyAlternatesBetweenIntervals() {
        AtomicLong now = new AtomicLong();
        Flakey f = new Flakey("f", new Leg(disk, 0), 65536, 10, 5, Flakey.Features.NONE, now::get);
        assertThat(f.isDown()).isFalse();
        now.set(12);
        assertThat(f.isDown()).isTrue();
        now.set(16);
        assertThat(f.isDown()).isFalse();
    }

    @Test
    void flakeyErrorReadsFailsReadsOnlyAndDropWritesDropsThem() {
        Flakey f = flakey(true, Flakey.Features.parse(List.of("error_reads", "drop_writes")));
        assertThat(statusOf(f.read(0, buffer(512)))).isEqualTo(Status.IOERR);
        assertThat(statusOf(f.write(0, pattern(512, 4)))).isEqualTo(Status.OK);
        assertThat(read(disk, 4096, 512)).containsOnly(0);
    }

    @Test
    void flakeyErrorWritesFailsWritesAndLetsReadsThrough() {
        write(disk, 4096, pattern(512, 5));
        Flakey f = flakey(true, Flakey.Features.parse(List.of("error_writes")));
        assertThat(statusOf(f.write(0, pattern(512, 6)))).isEqualTo(Status.IOERR);
        assertThat(read(f, 0, 512)).isEqualTo(bytes(pattern(512, 5)));
    }

    @Test
    void flakeyErrorWritesFailsFlushesAndDropWritesDropsThem() {
        // dm hands a target an empty flush as a WRITE with PREFLUSH: error_writes fails it, so an
        // fsync while the device is down reports the error (drop_writes drops it: reported done)
        var below = new TestDevices.Probe(disk);
        Flakey ew = new Flakey("f", new Leg(below, 4096), 65536, 0, 1000,
                Flakey.Features.parse(List.of("error_writes")), () -> 0L);
        assertThat(statusOf(ew.flush())).isEqualTo(Status.IOERR);
        Flakey dw = new Flakey("f", new Leg(below, 4096), 65536, 0, 1000,
                Flakey.Features.parse(List.of("drop_writes")), () -> 0L);
        assertThat(statusOf(dw.flush())).isEqualTo(Status.OK);
        assertThat(below.count(Op.FLUSH)).isZero();
    }

    @Test
    void flakeyCorruptsTheNthByteOfReads() {
        MemorySegment d = pattern(4096, 7);
        write(disk, 4096, d);
        Flakey f = flakey(true, Flakey.Features.parse(List.of("corrupt_bio_byte", "10", "r", "255", "0")));
        byte[] got = read(f, 0, 4096);
        byte[] want = bytes(d);
        want[9] = (byte) 255;
        assertThat(got).isEqualTo(want);
        assertThat(read(disk, 4096, 4096)).isEqualTo(bytes(d));
    }

    @Test
    void flakeyCorruptsWritesInACopyNotInTheCallersMemory() {
        MemorySegment d = pattern(4096, 8);
        byte[] before = bytes(d);
        Flakey f = flakey(true, Flakey.Features.parse(List.of("corrupt_bio_byte", "1", "w", "0", "0")));
        write(f, 0, d);
        assertThat(bytes(d)).isEqualTo(before);
        byte[] want = before.clone();
        want[0] = 0;
        assertThat(read(disk, 4096, 4096)).isEqualTo(want);
    }

    @Test
    void flakeyWithNoUpAndNoDownIntervalIsRefusedAsDmRefusesIt() throws Exception {
        // flakey_ctr: "Total (up + down) interval is zero"; it used to make a plain window
        var spec = Flakey.parseTable(new io.biostack.block.TableArgs("flakey", List.of("disk", "0", "0", "0")));
        assertThatThrownBy(() -> spec.open("f", -1, n -> disk)).hasMessageContaining("up + down interval is zero");
    }

    @Test
    void flakeyFeatureErrorsSayWhatIsWrong() {
        assertThatThrownBy(() -> Flakey.Features.parse(List.of("explode"))).hasMessageContaining("unknown flakey feature 'explode'");
        assertThatThrownBy(() -> Flakey.Features.parse(List.of("corrupt_bio_byte", "1"))).hasMessageContaining("takes");
        assertThatThrownBy(() -> Flakey.Features.parse(List.of("corrupt_bio_byte", "1", "x", "0", "0"))).hasMessageContaining("r or w");
        assertThatThrownBy(() -> Flakey.Features.parse(List.of("drop_writes", "error_writes"))).hasMessageContaining("exclusive");
    }

    // ---- delay -----------------------------------------------------------------------------

    @Test
    void delayHoldsReadsAndLetsUndelayedWritesThrough() throws Exception {
        Delay d = new Delay("d", 65536, List.of(new Delay.Path(new Leg(disk, 0), 250), new Delay.Path(new Leg(disk, 0), 0)));
        // 250 ms against a bound of 200 for the undelayed write: its first use took 87 ms on a
        // machine at load 9, over the 60 ms bound this had against an 80 ms delay.
        long t0 = System.nanoTime();
        join(d.write(0, pattern(4096, 9)));
        long w = System.nanoTime() - t0;
        t0 = System.nanoTime();
        List<CompletableFuture<Void>> fs = new ArrayList<>();
        for (int i = 0; i < 200; i++) {
            fs.add(d.read(0, buffer(4096)));
            if (i == 0) {
                // dm-delay's status: the reads, writes and flushes held back now
                assertThat(d.status()).isEqualTo("1 0 0");
            }
        }
        CompletableFuture.allOf(fs.toArray(new CompletableFuture[0])).get();
        assertThat(d.status()).isEqualTo("0 0 0");
        long r = System.nanoTime() - t0;
        assertThat(w).isLessThan(200_000_000L);
        assertThat(r).isGreaterThanOrEqualTo(250_000_000L).isLessThan(2_000_000_000L);
        assertThat(d.table()).isEqualTo("disk 0 250 disk 0 0");
    }

    @Test
    void delayPerOpDevicesAndFlush() {
        var probe = new TestDevices.Probe(disk);
        Delay d = new Delay("d", 65536, List.of(new Delay.Path(new Leg(disk, 0), 0),
                new Delay.Path(new Leg(disk, 0), 0), new Delay.Path(new Leg(probe, 0), 20)));
        join(d.flush());
        assertThat(probe.count(Op.FLUSH)).isEqualTo(1);
        assertThatThrownBy(() -> new Delay("d", 65536, List.of())).hasMessageContaining("1 to 3");
        assertThatThrownBy(() -> new Delay("d", 65536, List.of(new Delay.Path(new Leg(disk, 0), -1)))).hasMessageContaining("negative");
    }

    @Test
    void delayTakesTheFlushOfAWriteWithPreflushThroughTheFlushPathThenItsDataThroughTheWritePath() {
        // dm core splits a write with PREFLUSH into an empty flush, which dm-delay's delay_map
        // puts in the flush class, and then the data without PREFLUSH, in the write class
        var probe = new TestDevices.Probe(disk);
        Delay d = new Delay("d", 65536, List.of(new Delay.Path(new Leg(disk, 0), 0),
                new Delay.Path(new Leg(disk, 0), 80), new Delay.Path(new Leg(probe, 0), 150)));
        long t0 = System.nanoTime();
        join(d.write(0, io.biostack.block.IoIter.of(pattern(4096, 12)), io.biostack.block.BioFlags.PREFLUSH));
        assertThat(System.nanoTime() - t0).isGreaterThanOrEqualTo(230_000_000L);
        assertThat(probe.count(Op.FLUSH)).isEqualTo(1);
        assertThat(probe.count(Op.WRITE)).isZero();
        assertThat(read(disk, 0, 4096)).isEqualTo(bytes(pattern(4096, 12)));
        join(d.write(0, pattern(4096, 13)));
        assertThat(probe.count(Op.WRITE)).isZero();
        assertThat(read(disk, 0, 4096)).isEqualTo(bytes(pattern(4096, 13)));
    }

    // ---- dust ------------------------------------------------------------------------------

    @Test
    void dustFailsReadsOfBadBlocksOnlyWhenEnabled() {
        Dust d = new Dust("d", new Leg(disk, 0), 65536, 4096);
        d.message(List.of("addbadblock", "2"));
        assertThat(statusOf(d.read(8192, buffer(4096)))).isEqualTo(Status.OK);
        d.message(List.of("enable"));
        assertThat(statusOf(d.read(8192, buffer(8192)))).isEqualTo(Status.MEDIUM);
        assertThat(statusOf(d.read(0, buffer(8192)))).isEqualTo(Status.OK);
        assertThat(d.status()).isEqualTo("disk fail_read_on_bad_block verbose");
        d.message(List.of("disable"));
        assertThat(statusOf(d.read(8192, buffer(4096)))).isEqualTo(Status.OK);
    }

    @Test
    void dustWriteToABadBlockClearsItAfterItsWriteFailures() {
        Dust d = new Dust("d", new Leg(disk, 0), 65536, 4096);
        d.message(List.of("enable"));
        d.message(List.of("addbadblock", "1", "1"));
        assertThat(statusOf(d.write(4096, pattern(4096, 1)))).isEqualTo(Status.IOERR);
        assertThat(statusOf(d.write(4096, pattern(4096, 1)))).isEqualTo(Status.OK);
        assertThat(d.message(List.of("countbadblocks"))).isEqualTo("countbadblocks: 0 badblock(s) found");
        assertThat(statusOf(d.read(4096, buffer(4096)))).isEqualTo(Status.OK);
    }

    @Test
    void dustWriteOverSeveralBlocksFailsOnlyItsBadBlocksAsDmDoes() {
        // dm-dust maps a block per bio (max_io_len = its block size): a write over good and bad
        // blocks writes the good ones, and each bad one spends one of its own write failures
        Dust d = new Dust("d", new Leg(disk, 0), 65536, 4096);
        d.message(List.of("enable"));
        d.message(List.of("addbadblock", "1", "1"));
        d.message(List.of("addbadblock", "3", "1"));
        MemorySegment data = pattern(4 * 4096, 14);
        assertThat(statusOf(d.write(0, data))).isEqualTo(Status.IOERR);
        byte[] all = bytes(data);
        assertThat(read(disk, 0, 4096)).isEqualTo(java.util.Arrays.copyOfRange(all, 0, 4096));
        assertThat(read(disk, 4096, 4096)).containsOnly(0);
        assertThat(read(disk, 8192, 4096)).isEqualTo(java.util.Arrays.copyOfRange(all, 8192, 12288));
        assertThat(read(disk, 12288, 4096)).containsOnly(0);
        // both spent their one failure: the next write goes through and clears them
        assertThat(statusOf(d.write(0, data))).isEqualTo(Status.OK);
        assertThat(d.message(List.of("countbadblocks"))).isEqualTo("countbadblocks: 0 badblock(s) found");
        assertThat(read(disk, 0, 4 * 4096)).isEqualTo(all);
    }

    @Test
    void dustMessagesListQueryAndRefuseBadInput() {
        Dust d = new Dust("d", new Leg(disk, 0), 65536, 4096);
        d.message(List.of("addbadblock", "3"));
        d.message(List.of("addbadblock", "5"));
        assertThat(d.message(List.of("listbadblocks"))).isEqualTo("3\n5");
        assertThat(d.message(List.of("queryblock", "3"))).contains("found in badblocklist").doesNotContain("not");
        d.message(List.of("removebadblock", "3"));
        assertThat(d.message(List.of("queryblock", "3"))).contains("not found");
        assertThatThrownBy(() -> d.message(List.of("addbadblock", "5"))).hasMessageContaining("already");
        assertThatThrownBy(() -> d.message(List.of("removebadblock", "9"))).hasMessageContaining("not found");
        assertThatThrownBy(() -> d.message(List.of("addbadblock", "16"))).hasMessageContaining("beyond");
        assertThatThrownBy(() -> d.message(List.of("addbadblock", "x"))).hasMessageContaining("not a block");
        assertThatThrownBy(() -> d.message(List.of("frobnicate"))).hasMessageContaining("unknown message");
        assertThat(d.message(List.of("clearbadblocks"))).contains("cleared");
        assertThat(d.message(List.of("listbadblocks"))).isEqualTo("No blocks in badblocklist");
        assertThatThrownBy(() -> new Dust("d", new Leg(disk, 0), 65536, 1000)).hasMessageContaining("power of two");
        assertThat(Collections.emptyList()).isEmpty();
    }
}
