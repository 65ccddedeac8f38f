package io.biostack.replay;

import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.layer.logwrites.LogWrites;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * A program with the classic crash bug, run through the log-writes target: it writes a data
 * block, then a commit record that vouches for it (here: a copy of the data, as a checksum
 * would), with no flush between. After a crash the commit may be on disk without the data. An
 * in-order replay never shows that state; reordering must find it and name exactly those two
 * writes; the program with a flush between them must pass every state.
 */
@Timeout(60)
class CrashUnsafeProgramTest {
    static final long COMMIT = 4096;
    static final long DATA = 8 * 4096;

    @TempDir
    Path dir;
    String check;

    @BeforeEach
    void checker() throws Exception {
        Files.write(dir.resolve("zero"), new byte[4096]);
        // consistent: no commit record, or a commit record that matches the data it vouches for
        // each checker keeps its pieces beside its own state: checkers run in parallel
        check = "dd if={} of={}.commit bs=4096 skip=1 count=1 2>/dev/null && dd if={} of={}.data bs=4096 skip=8 count=1 2>/dev/null"
                + " && { cmp -s {}.commit " + dir.resolve("zero") + " || cmp -s {}.commit {}.data || { echo 'commit and data differ'; false; }; }; r=$?; rm -f {}.commit {}.data; exit $r";
    }

    /** The program: data, [flush,] commit, flush; through {@code dev}. */
    static void program(BlockDevice dev, int dataBytes, boolean flushBetween) throws Exception {
        MemorySegment data = Arena.ofAuto().allocate(dataBytes, 4096);
        for (int i = 0; i < dataBytes; i++) {
            data.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 7 + 1));
        }
        dev.write(DATA, data).get(5, TimeUnit.SECONDS);
        if (flushBetween) {
            dev.flush().get(5, TimeUnit.SECONDS);
        }
        dev.write(COMMIT, data.asSlice(0, 4096)).get(5, TimeUnit.SECONDS);
        dev.flush().get(5, TimeUnit.SECONDS);
    }

    Path record(int dataBytes, boolean flushBetween) throws Exception {
        Path log = dir.resolve("log-" + dataBytes + "-" + flushBetween);
        try (LoopDevice logDev = LoopDevice.open(log, LoopConfig.defaults().withCreateSize(4 << 20));
             RamDisk disk = new RamDisk("disk", 1 << 20)) {
            LogWrites lw = new LogWrites("lw", disk, logDev);
            program(lw, dataBytes, flushBetween);
            lw.close();
        }
        return log;
    }

    Replayer.Options opts(Path log, String img) {
        return Replayer.Options.of(log, dir.resolve(img)).createSize(1 << 20).check(check, Duration.ofSeconds(20));
    }

    @Test
    void inOrderReplayFindsNothingAtAnyWrite() throws Exception {
        Path log = record(4096, false);
        Report r = Replayer.run(opts(log, "img-a").at(Replayer.At.WRITE));
        assertThat(r.passed()).as(r.toText()).isTrue();
        assertThat(r.points()).isEqualTo(4);   // data, commit, flush, and the end
    }

    @Test
    void reorderingFindsTheCommitWithoutItsDataAndNamesExactlyThoseTwoWrites() throws Exception {
        Path log = record(4096, false);
        Report r = Replayer.run(opts(log, "img-b").reorder(8, 3, false));
        assertThat(r.passed()).isFalse();
        Report.Failure f = r.failures().getFirst();
        assertThat(f.kind()).isEqualTo("reordered");
        assertThat(f.entry()).isEqualTo(2);                     // the flush that followed them
        assertThat(f.dropped()).containsExactly(new Report.Unit(0, DATA, 4096));
        assertThat(f.persisted()).containsExactly(new Report.Unit(1, COMMIT, 4096));
        assertThat(f.output()).contains("differ");
        // the same seed gives the same states and the same answer
        Report again = Replayer.run(opts(log, "img-b2").reorder(8, 3, false));
        assertThat(again.failures()).isEqualTo(r.failures());
        assertThat(again.reorderedStates()).isEqualTo(r.reorderedStates());
        assertThat(r.toJson()).contains("\"dropped\":[{\"entry\":0,\"offset\":32768,\"length\":4096}]")
                .contains("\"persisted\":[{\"entry\":1,\"offset\":4096,\"length\":4096}]");
    }

    @Test
    void tornWritesShrinkToTheOneBlockThatWasLost() throws Exception {
        Path log = record(16384, false);
        Report r = Replayer.run(opts(log, "img-c").reorder(16, 5, true));
        assertThat(r.passed()).isFalse();
        Report.Failure f = r.failures().getFirst();
        assertThat(f.dropped()).containsExactly(new Report.Unit(0, DATA, 4096));
        assertThat(f.persisted()).containsExactly(new Report.Unit(1, COMMIT, 4096));
    }

    /**
     * A write not aligned to 4 KiB tears at the device's 4 KiB boundaries, as a disk writes each
     * physical block whole or not at all: 8 KiB at 30 KiB gives 2, 4 and 2 KiB pieces, and the
     * lost block 8 the commit vouches for is named exactly. Cut every 4 KiB from the write's start,
     * the pieces straddled blocks, states no disk can produce.
     */
    @Test
    void aMisalignedWriteTearsAtTheDevicesBlockBoundaries() throws Exception {
        Path log = dir.resolve("log-misaligned");
        try (LoopDevice logDev = LoopDevice.open(log, LoopConfig.defaults().withCreateSize(4 << 20));
             RamDisk disk = new RamDisk("disk", 1 << 20)) {
            LogWrites lw = new LogWrites("lw", disk, logDev);
            MemorySegment data = Arena.ofAuto().allocate(8192, 4096);
            for (int i = 0; i < 8192; i++) {
                data.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 7 + 1));
            }
            lw.write(DATA - 2048, data).get(5, TimeUnit.SECONDS);
            lw.write(COMMIT, data.asSlice(2048, 4096)).get(5, TimeUnit.SECONDS); // vouches for block 8
            lw.flush().get(5, TimeUnit.SECONDS);
            lw.close();
        }
        Report r = Replayer.run(opts(log, "img-m").reorder(16, 5, true));
        assertThat(r.passed()).isFalse();
        Report.Failure f = r.failures().getFirst();
        assertThat(f.dropped()).containsExactly(new Report.Unit(0, DATA, 4096));
        assertThat(f.persisted()).containsExactly(new Report.Unit(1, COMMIT, 4096));
    }

    @Test
    void reorderedStatesCheckedInParallelFindTheSameFailingStateAsOneAtATime() throws Exception {
        // The commit vouches for the data's last block, so the first failing state is not the
        // first one tried (dropping block 3 of the torn write is the fourth state), and random
        // states after it fail too. The checker sleeps a random 0-90 ms, so parallel checkers
        // end in any order; the failure reported must still be the serial one.
        Path log = record(16384, false);
        String slowCheck = "sleep 0.0$(( $(od -An -N1 -tu1 /dev/urandom) % 10 )); " + check.replace("skip=8", "skip=11");
        Replayer.Options serial = opts(log, "img-s").check(slowCheck, Duration.ofSeconds(20)).reorder(16, 5, true).jobs(1);
        Report one = Replayer.run(serial);
        assertThat(one.passed()).isFalse();
        Report.Failure f = one.failures().getFirst();
        assertThat(f.dropped()).containsExactly(new Report.Unit(0, DATA + 3 * 4096, 4096));
        assertThat(f.persisted()).containsExactly(new Report.Unit(1, COMMIT, 4096));
        assertThat(one.reorderedStates()).isEqualTo(4);
        for (int k = 0; k < 2; k++) {
            Report par = Replayer.run(opts(log, "img-p" + k).check(slowCheck, Duration.ofSeconds(20)).reorder(16, 5, true).jobs(4));
            assertThat(par.failures()).as("parallel run " + k).isEqualTo(one.failures());
            assertThat(par.reorderedStates()).as("parallel run " + k).isEqualTo(one.reorderedStates());
        }
    }

    @Test
    void recoverWithoutCheckIsRefused() throws Exception {
        Path log = record(4096, false);
        assertThatThrownBy(() -> Replayer.run(Replayer.Options.of(log, dir.resolve("img-r")).createSize(1 << 20).recover("true")))
                .isInstanceOf(ReplayException.class).hasMessageContaining("--recover needs --check");
        assertThat(dir.resolve("img-r")).doesNotExist();
    }

    /** Torn writes live in reordered states only: {@code --torn} without {@code --reorder} checked nothing torn and passed. */
    @Test
    void tornWithoutReorderIsRefused() throws Exception {
        Path log = record(16384, false);
        assertThatThrownBy(() -> Replayer.run(opts(log, "img-t").reorder(0, 1, true)))
                .isInstanceOf(ReplayException.class).hasMessageContaining("--torn needs --reorder N");
        assertThat(dir.resolve("img-t")).doesNotExist();
    }

    @Test
    void withAFlushBetweenEveryReorderedStatePasses() throws Exception {
        Path log = record(16384, true);
        Report r = Replayer.run(opts(log, "img-d").reorder(16, 3, true).at(Replayer.At.WRITE));
        assertThat(r.passed()).as(r.toText()).isTrue();
        assertThat(r.reorderedStates()).isGreaterThanOrEqualTo(4);
        assertThat(List.of(r.failures())).containsExactly(List.of());
    }
}
