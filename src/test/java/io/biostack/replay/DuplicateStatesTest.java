package io.biostack.replay;

import io.biostack.replay.ReplayTest.KernelLog;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Random;

import static io.biostack.replay.ReplayTest.fill;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * A state that holds the same bytes as one already checked is not checked again, and gets that
 * state's verdict: a bad state is still reported wherever it comes back, and states that differ
 * in one byte are both checked. The naive baseline checks every state and is the reference.
 */
@Timeout(120)
class DuplicateStatesTest {
    @TempDir
    Path dir;

    /** Fails (exit 1) when sector 1 starts with 0x02 and sector 9 does not start with 0x03: a commit without its data. */
    static final String CHECK = "a=$(dd if={} bs=512 skip=1 count=1 2>/dev/null | od -An -tx1 -N1);"
            + " b=$(dd if={} bs=512 skip=9 count=1 2>/dev/null | od -An -tx1 -N1);"
            + " [ \"$a\" != ' 02' ] || [ \"$b\" = ' 03' ] || { echo \"commit without data: $a $b\"; exit 1; }";

    Path write(String name, byte[] b) throws Exception {
        return Files.write(dir.resolve(name), b);
    }

    Replayer.Options opts(Path log, String img) {
        return Replayer.Options.of(log, dir.resolve(img)).createSize(16 << 10).check(CHECK, Duration.ofSeconds(20));
    }

    @Test
    void reorderedStateThatLosesEveryWriteSinceTheFlushIsTheStateCheckedAtThatFlush() throws Exception {
        Path log = write("log", new KernelLog(512)
                .entry(0, 1, 0, null, fill(512, 1)).entry(0, 0, 1, null, null)
                .entry(1, 1, 0, null, fill(512, 1)).entry(0, 0, 1, null, null).bytes());
        Report r = Replayer.run(opts(log, "a").reorder(4, 1, false).jobs(1));
        assertThat(r.passed()).as(r.toText()).isTrue();
        // at entry 1: the write lost (zeros), then the in-order state; at entry 3 the write lost
        // is the state of entry 1, already checked; then the in-order state
        assertThat(r.reorderedStates()).isEqualTo(2);
        assertThat(r.duplicateStates()).isEqualTo(1);
        assertThat(r.checks()).isEqualTo(3);
        assertThat(r.toJson()).contains("\"duplicate_states\":1");
        Report naive = Replayer.run(opts(log, "b").reorder(4, 1, false).jobs(1).naive(true));
        assertThat(naive.checks()).isEqualTo(4);
        assertThat(naive.duplicateStates()).isZero();
    }

    @Test
    void badStateThatComesBackIsReportedEachTimeWithKeepGoingWithoutRunningTheCheckerAgain() throws Exception {
        // entry 1: commit without data (bad); entry 3: the same sector rewritten with the same
        // bytes, a new write but the same state; entry 5: the data lands, good; entry 7: the data
        // sector overwritten with zeros, so the bad state of entry 1 is back
        Path log = write("log", new KernelLog(512)
                .entry(1, 1, 0, null, fill(512, 2)).entry(0, 0, 1, null, null)
                .entry(1, 1, 0, null, fill(512, 2)).entry(0, 0, 1, null, null)
                .entry(9, 1, 0, null, fill(512, 3)).entry(0, 0, 1, null, null)
                .entry(9, 1, 0, null, fill(512, 0)).entry(0, 0, 1, null, null).bytes());
        for (int jobs : new int[] {1, 3}) {
            Report all = Replayer.run(opts(log, "all" + jobs).jobs(jobs).keepGoing(true));
            assertThat(all.failures()).as(all.toText()).extracting(Report.Failure::entry).containsExactly(1, 3, 7);
            assertThat(all.failures()).extracting(Report.Failure::output).allMatch(s -> s.contains("commit without data:  02  00"));
            assertThat(all.duplicateStates()).isEqualTo(2);
            assertThat(all.checks()).isEqualTo(2);
            Report first = Replayer.run(opts(log, "first" + jobs).jobs(jobs));
            assertThat(first.failures()).extracting(Report.Failure::entry).containsExactly(1);
        }
    }

    @Test
    void reorderedStateEqualToABadInOrderStateIsReportedAndShrunk() throws Exception {
        // entry 1 is bad (commit, no data); entry 3 brings the data, so its in-order state is
        // good, but losing that write gives the bad state of entry 1 back
        Path log = write("log", new KernelLog(512)
                .entry(1, 1, 0, null, fill(512, 2)).entry(0, 0, 1, null, null)
                .entry(9, 1, 0, null, fill(512, 3)).entry(0, 0, 1, null, null).bytes());
        Report r = Replayer.run(opts(log, "a").reorder(4, 1, false).keepGoing(true).jobs(2));
        assertThat(r.failures()).as(r.toText()).extracting(Report.Failure::entry, Report.Failure::kind)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(1, "in-order"), org.assertj.core.groups.Tuple.tuple(3, "reordered"));
        Report.Failure f = r.failures().get(1);
        assertThat(f.dropped()).extracting(Report.Unit::entry).containsExactly(2);
        assertThat(f.output()).contains("commit without data");
        assertThat(r.duplicateStates()).isGreaterThanOrEqualTo(1);
    }

    @Test
    void statesThatDifferInOneByteAreBothChecked() throws Exception {
        byte[] a = fill(4096, 1);
        byte[] b = fill(4096, 1);
        b[4095] = 2;   // the last byte of the block
        Path log = write("log", new KernelLog(512)
                .entry(8, 8, 0, null, a).entry(0, 0, 1, null, null)
                .entry(8, 8, 0, null, b).entry(0, 0, 1, null, null)
                .entry(8, 8, 0, null, a).entry(0, 0, 1, null, null).bytes());
        Report r = Replayer.run(opts(log, "a").jobs(1));
        assertThat(r.checks()).as(r.toText()).isEqualTo(2);   // a, b; the third state is a again
        assertThat(r.duplicateStates()).isEqualTo(1);
    }

    @Test
    void duplicateSkippingNeverChangesTheFailureFoundOnRandomLogs() throws Exception {
        Random rnd = new Random(19);
        int[] sectors = {1, 9, 2, 10};
        int compared = 0;
        int fewer = 0;
        for (int round = 0; round < 16; round++) {
            KernelLog k = new KernelLog(512);
            int n = 6 + rnd.nextInt(8);
            int mark = round % 2 == 0 ? -1 : rnd.nextInt(3);                       // half the logs check after a mark only
            for (int i = 0; i < n; i++) {
                if (i == mark) {
                    k.entry(0, 0, 8, "start", null);
                }
                int p = rnd.nextInt(12);
                if (p < 3) {
                    k.entry(0, 0, 1, null, null);                                   // flush
                } else if (p >= 10) {
                    k.entry(rnd.nextInt(12), 1 + rnd.nextInt(8), 4, null, null);    // discard
                } else {
                    long flags = p == 9 ? 2 : 0;                                    // now and then FUA
                    k.entry(sectors[rnd.nextInt(sectors.length)], 1, flags, null, fill(512, rnd.nextInt(4)));
                }
            }
            k.entry(0, 0, 1, null, null);
            Path log = write("log" + round, k.bytes());
            boolean torn = rnd.nextBoolean();
            String start = mark >= 0 ? "start" : null;
            Report ours = Replayer.run(opts(log, "o" + round).marks(start, null).reorder(8, round, torn).jobs(2));
            Report naive = Replayer.run(opts(log, "n" + round).marks(start, null).reorder(8, round, torn).jobs(2).naive(true));
            assertThat(ours.passed()).as("round %d: %s / %s", round, ours.toText(), naive.toText()).isEqualTo(naive.passed());
            if (!naive.passed()) {
                Report.Failure a = ours.failures().getFirst();
                Report.Failure b = naive.failures().getFirst();
                assertThat(a.entry()).as("round %d", round).isEqualTo(b.entry());
                assertThat(a.kind()).isEqualTo(b.kind());
                assertThat(a.dropped()).isEqualTo(b.dropped());
                assertThat(a.persisted()).isEqualTo(b.persisted());
                compared++;
            }
            assertThat(ours.checks()).isLessThanOrEqualTo(naive.checks());
            if (ours.checks() < naive.checks()) {
                fewer++;
            }
        }
        assertThat(compared).as("some random logs fail the check").isGreaterThanOrEqualTo(3);
        assertThat(fewer).as("some random logs have duplicate states").isGreaterThanOrEqualTo(3);
    }
}
