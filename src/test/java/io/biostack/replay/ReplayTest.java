package io.biostack.replay;

import io.biostack.cli.CliRun;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Replay of logs written here byte by byte with the structure the kernel documents
 * (dm-log-writes.c: struct log_write_super at sector 0, one struct log_write_entry per sector,
 * then the data; little-endian), and its answers to bad input.
 */
@Timeout(60)
class ReplayTest {
    @TempDir
    Path dir;

    /** Builds a log by hand: the super block and entries, as the kernel lays them out. */
    static final class KernelLog {
        final int ss;
        final ByteBuffer b = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
        int n;

        KernelLog(int sectorSize) {
            ss = sectorSize;
            b.position(ss);
        }

        KernelLog entry(long sector, long nr, long flags, String mark, byte[] data) {
            int at = b.position();
            b.putLong(at, sector).putLong(at + 8, nr).putLong(at + 16, flags)
                    .putLong(at + 24, mark == null ? 0 : mark.length());
            if (mark != null) {
                b.put(at + 32, mark.getBytes(StandardCharsets.US_ASCII));
            }
            b.position(at + ss);
            if (data != null) {
                b.put(data);
            }
            n++;
            return this;
        }

        byte[] bytes(long magic, long version, long nrEntries) {
            b.putLong(0, magic).putLong(8, version).putLong(16, nrEntries).putInt(24, ss);
            return Arrays.copyOf(b.array(), b.position());
        }

        byte[] bytes() {
            return bytes(0x6a736677736872L, 1, n);
        }
    }

    static byte[] fill(int len, int v) {
        byte[] d = new byte[len];
        Arrays.fill(d, (byte) v);
        return d;
    }

    Path write(String name, byte[] b) throws Exception {
        return Files.write(dir.resolve(name), b);
    }

    @Test
    void logInTheKernelsLayoutReplaysWritesDiscardsAndStopsAtTheEndMark() throws Exception {
        KernelLog k = new KernelLog(512)
                .entry(2, 2, 0, null, fill(1024, 0xaa))      // write sectors 2-3
                .entry(0, 1, 2, null, fill(512, 0xbb))       // FUA write sector 0
                .entry(0, 0, 1, null, null)                  // flush
                .entry(3, 1, 4, null, null)                  // discard sector 3 (no data follows)
                .entry(0, 0, 8, "one", null)                 // mark "one"
                .entry(5, 1, 0, null, fill(512, 0xcc));      // after the mark
        Path log = write("log", k.bytes());
        Path img = dir.resolve("img");
        Report r = Replayer.run(Replayer.Options.of(log, img).createSize(8 << 10).marks(null, "one"));
        assertThat(r.passed()).isTrue();
        assertThat(r.replayedTo()).isEqualTo(4);
        byte[] got = Files.readAllBytes(img);
        assertThat(got).hasSize(8 << 10);
        assertThat(Arrays.copyOfRange(got, 0, 512)).isEqualTo(fill(512, 0xbb));
        assertThat(Arrays.copyOfRange(got, 1024, 1536)).isEqualTo(fill(512, 0xaa));
        assertThat(Arrays.copyOfRange(got, 1536, 2048)).isEqualTo(fill(512, 0));    // discarded
        assertThat(Arrays.copyOfRange(got, 2560, 3072)).isEqualTo(fill(512, 0));    // after the mark: not replayed
    }

    @Test
    void fourKSectorLogsAddressInSectorSizeUnits() throws Exception {
        KernelLog k = new KernelLog(4096).entry(3, 1, 0, null, fill(4096, 0x5a)).entry(0, 0, 1, null, null);
        Path img = dir.resolve("img");
        Report r = Replayer.run(Replayer.Options.of(write("log", k.bytes()), img).createSize(32 << 10)
                .check("exit 0", Duration.ofSeconds(10)));
        assertThat(r.passed()).isTrue();
        assertThat(r.points()).isEqualTo(1);
        assertThat(Arrays.copyOfRange(Files.readAllBytes(img), 12288, 16384)).isEqualTo(fill(4096, 0x5a));
    }

    @Test
    void checkerWritingToItsCopyLeavesTheReplayImageAsTheLogSays() throws Exception {
        KernelLog k = new KernelLog(512)
                .entry(0, 1, 0, null, fill(512, 1)).entry(0, 0, 1, null, null)
                .entry(1, 1, 0, null, fill(512, 2)).entry(0, 0, 1, null, null);
        Path img = dir.resolve("img");
        // each check looks at sectors 2-7 (never written: zeros in every state), then scribbles
        // over the first 4 KiB of its copy; the next check must see the state again, not that
        Path zero = Files.write(dir.resolve("zero"), new byte[3072]);
        String cmd = "dd if={} bs=512 skip=2 count=6 2>/dev/null | cmp - " + zero
                + " && dd if=/dev/urandom of={} bs=4096 count=1 conv=notrunc 2>/dev/null";
        Report r = Replayer.run(Replayer.Options.of(write("log", k.bytes()), img).createSize(64 << 10)
                .check(cmd, Duration.ofSeconds(10)).reorder(4, 1, false));
        assertThat(r.toText()).contains("all crash states consistent");
        assertThat(r.passed()).isTrue();
        assertThat(r.points()).isEqualTo(2);
        // two in-order points, and at each the write before it lost; at the second that is the
        // state of the first point, already checked: three runs
        assertThat(r.checks()).isEqualTo(3);
        assertThat(r.duplicateStates()).isEqualTo(1);
        byte[] got = Files.readAllBytes(img);
        assertThat(Arrays.copyOfRange(got, 0, 512)).isEqualTo(fill(512, 1));
        assertThat(Arrays.copyOfRange(got, 512, 1024)).isEqualTo(fill(512, 2));
        assertThat(Arrays.copyOfRange(got, 1024, 64 << 10)).isEqualTo(new byte[(64 << 10) - 1024]);
    }

    @Test
    void parallelCheckersReportTheFirstFailureAsASerialRunWouldOrAllWithKeepGoing() throws Exception {
        KernelLog k = new KernelLog(512)
                .entry(0, 1, 0, null, fill(512, 1)).entry(0, 0, 1, null, null)
                .entry(1, 1, 0, null, fill(512, 2)).entry(0, 0, 1, null, null)
                .entry(2, 1, 0, null, fill(512, 3)).entry(0, 0, 1, null, null);
        Path log = write("log", k.bytes());
        Path zero = Files.write(dir.resolve("zero"), new byte[512]);
        // inconsistent once sector 1 is written: from the flush at entry 3 on
        String cmd = "sleep 0.2; dd if={} bs=512 skip=1 count=1 2>/dev/null | cmp - " + zero;
        Report first = Replayer.run(Replayer.Options.of(log, dir.resolve("a")).createSize(4096)
                .check(cmd, Duration.ofSeconds(10)).jobs(3));
        assertThat(first.failures()).extracting(Report.Failure::entry).containsExactly(3);
        Report all = Replayer.run(Replayer.Options.of(log, dir.resolve("b")).createSize(4096)
                .check(cmd, Duration.ofSeconds(10)).jobs(3).keepGoing(true));
        assertThat(all.failures()).extracting(Report.Failure::entry).containsExactly(3, 5);
        assertThat(all.failures()).extracting(Report.Failure::mark).containsOnlyNulls();
    }

    // ---- bad input ---------------------------------------------------------------------------

    @Test
    void truncatedLogIsRefusedWhole() throws Exception {
        byte[] full = new KernelLog(512).entry(0, 4, 0, null, fill(2048, 1)).entry(0, 0, 1, null, null).bytes();
        Path log = write("log", Arrays.copyOf(full, full.length - 1024));
        assertThatThrownBy(() -> Replayer.run(Replayer.Options.of(log, dir.resolve("img")).createSize(1 << 20)))
                .isInstanceOf(ReplayException.class).hasMessageContaining("truncated");
        assertThat(Files.exists(dir.resolve("img"))).isFalse();
        Path shortLog = write("short", new byte[10]);
        assertThatThrownBy(() -> Replayer.run(Replayer.Options.of(shortLog, dir.resolve("img")).createSize(1 << 20)))
                .isInstanceOf(ReplayException.class).hasMessageContaining("too short");
    }

    @Test
    void wrongMagicOrVersionIsNotALog() throws Exception {
        KernelLog k = new KernelLog(512).entry(0, 1, 0, null, fill(512, 1));
        Path bad = write("magic", k.bytes(0x1234, 1, 1));
        assertThatThrownBy(() -> Replayer.run(Replayer.Options.of(bad, dir.resolve("img")).createSize(1 << 20)))
                .isInstanceOf(ReplayException.class).hasMessageContaining("bad magic 0x1234");
        Path v2 = write("v2", k.bytes(0x6a736677736872L, 2, 1));
        assertThatThrownBy(() -> Replayer.run(Replayer.Options.of(v2, dir.resolve("img")).createSize(1 << 20)))
                .isInstanceOf(ReplayException.class).hasMessageContaining("version 2");
    }

    @Test
    void entryPastTheEndOfTheImageIsRefusedBeforeAnythingIsWritten() throws Exception {
        Path log = write("log", new KernelLog(512).entry(0, 1, 0, null, fill(512, 7)).entry(100, 1, 0, null, fill(512, 7)).bytes());
        Path img = dir.resolve("img");
        Files.write(img, new byte[4096]);
        assertThatThrownBy(() -> Replayer.run(Replayer.Options.of(log, img)))
                .isInstanceOf(ReplayException.class).hasMessageContaining("entry 1").hasMessageContaining("beyond the end");
        assertThat(Files.readAllBytes(img)).isEqualTo(new byte[4096]);
    }

    @Test
    void missingMarkAndMissingImageAreNamed() throws Exception {
        Path log = write("log", new KernelLog(512).entry(0, 0, 8, "there", null).bytes());
        assertThatThrownBy(() -> Replayer.run(Replayer.Options.of(log, dir.resolve("img")).createSize(4096).marks("nothere", null)))
                .hasMessageContaining("no mark 'nothere'").hasMessageContaining("there");
        assertThatThrownBy(() -> Replayer.run(Replayer.Options.of(log, dir.resolve("none"))))
                .hasMessageContaining("no such image");
    }

    @Test
    void hangingCheckerIsKilledAndReportedAsAFailureNeverAsGood() throws Exception {
        Path log = write("log", new KernelLog(512).entry(0, 1, 0, null, fill(512, 1)).entry(0, 0, 1, null, null).bytes());
        long t0 = System.nanoTime();
        Report r = Replayer.run(Replayer.Options.of(log, dir.resolve("img")).createSize(4096)
                .check("echo started; sleep 600", Duration.ofMillis(500)));
        assertThat(System.nanoTime() - t0).isLessThan(Duration.ofSeconds(20).toNanos());
        assertThat(r.passed()).isFalse();
        assertThat(r.failures().getFirst().reason()).isEqualTo("checker timed out");
        assertThat(r.failures().getFirst().output()).contains("started").contains("killed after 500 ms");
    }

    @Test
    void checkerWithASyntaxErrorFailsItsStateAndTheNextStateIsCheckedAsUsual() throws Exception {
        Path log = write("log", new KernelLog(512)
                .entry(0, 1, 0, null, fill(512, 1)).entry(0, 0, 1, null, null)
                .entry(0, 1, 0, null, fill(512, 2)).entry(0, 0, 1, null, null).bytes());
        // the first state (sector 0 holds 0x01) reaches an unterminated quote; the second exits 0
        String cmd = "b=$(od -An -tx1 -N1 {}); if [ \"$b\" = ' 01' ]; then eval 'echo \"unterminated'; fi; exit 0";
        Report r = Replayer.run(Replayer.Options.of(log, dir.resolve("img")).createSize(4096)
                .check(cmd, Duration.ofSeconds(10)).keepGoing(true).jobs(1));
        assertThat(r.failures()).as(r.toText()).extracting(Report.Failure::entry).containsExactly(1);
        assertThat(r.failures().getFirst().reason()).isEqualTo("checker exited 2");
        assertThat(r.checks()).isEqualTo(2);
        // a command that does not parse at all fails every state alike, and nothing hangs
        Report bad = Replayer.run(Replayer.Options.of(log, dir.resolve("img2")).createSize(4096)
                .check("if then (", Duration.ofSeconds(10)).keepGoing(true).jobs(2));
        assertThat(bad.failures()).extracting(Report.Failure::entry).containsExactly(1, 3);
        assertThat(bad.failures()).extracting(Report.Failure::reason).containsOnly("checker exited 2");
    }

    @Test
    void commandLineExitsNonZeroOnBadInputAndOnFailureAndSaysWhy() throws Exception {
        Path log = write("log", new KernelLog(512).entry(0, 1, 0, null, fill(512, 1)).entry(0, 0, 1, null, null).entry(0, 0, 8, "m", null).bytes());
        Path trunc = write("trunc", Arrays.copyOf(Files.readAllBytes(log), 700));
        CliRun r = CliRun.of("replay", trunc.toString(), "--to", dir.resolve("a").toString(), "--size", "64k", "--json");
        assertThat(r.code()).isEqualTo(2);
        assertThat(r.out()).contains("\"result\":\"error\"").contains("truncated").doesNotContain("pass");
        r = CliRun.of("replay", log.toString(), "--to", dir.resolve("b").toString(), "--size", "64k",
                "--check", "echo broken; exit 3", "--json");
        assertThat(r.code()).isEqualTo(1);
        assertThat(r.out()).contains("\"result\":\"fail\"").contains("\"entry\":1").contains("broken").contains("checker exited 3");
        r = CliRun.of("replay", log.toString(), "--to", dir.resolve("c").toString(), "--size", "64k",
                "--check", "exit 0", "--at", "mark");
        assertThat(r.code()).isEqualTo(0);
        assertThat(r.out()).contains("all crash states consistent");
        r = CliRun.of("replay", log.toString(), "--to", dir.resolve("d").toString(), "--size", "64k",
                "--check", "exit 0", "--check-timeout", "soon");
        assertThat(r.code()).isEqualTo(2);
    }

    @Test
    void recoverRunsBeforeTheCheckOnAStateItCannotReadAndIsRefusedWithoutACheck() throws Exception {
        Path log = write("log", new KernelLog(512).entry(0, 1, 0, null, fill(512, 3)).entry(0, 0, 1, null, null).bytes());
        // not a file system this replayer knows: its journal state is unknown, so recovery runs
        CliRun r = CliRun.of("replay", log.toString(), "--to", dir.resolve("r").toString(), "--size", "64k",
                "--recover", "echo recovered > {}.r", "--check", "test -f {}.r && rm {}.r", "--json");
        assertThat(r.code()).as(r.out() + r.err()).isZero();
        assertThat(r.out()).contains("\"result\":\"pass\"").contains("\"recoveries\":1").contains("\"recoveries_skipped\":0");
        r = CliRun.of("replay", log.toString(), "--to", dir.resolve("s").toString(), "--size", "64k",
                "--recover", "true", "--json");
        assertThat(r.code()).isEqualTo(2);
        assertThat(r.out()).contains("--recover needs --check");
        assertThat(dir.resolve("s")).doesNotExist();
    }

    @Test
    void replayWithoutACheckSaysItCheckedNothingAndWritesTheImage() throws Exception {
        Path log = write("log", new KernelLog(512).entry(0, 1, 0, null, fill(512, 7)).entry(0, 0, 1, null, null).bytes());
        Path img = dir.resolve("plain");
        CliRun r = CliRun.of("replay", log.toString(), "--to", img.toString(), "--size", "64k");
        assertThat(r.code()).isZero();
        assertThat(r.out()).contains("replayed 2 entries and checked nothing").doesNotContain("consistent");
        assertThat(Arrays.copyOf(Files.readAllBytes(img), 512)).isEqualTo(fill(512, 7));
    }
}
