package io.biostack.cli;

import io.biostack.replay.Replayer;
import io.biostack.replay.ReplayException;
import io.biostack.replay.Report;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.Callable;

/**
 * {@code biostack replay LOG --to IMAGE ...}: replays a dm-log-writes log (from the {@code
 * log-writes} target or the kernel's) onto an image file and checks crash points on the way, in
 * order and reordered ({@link Replayer}). Exit 0: every state checked was consistent; 1: a
 * checker failed (the report says where); 2: bad input (the log, the image, the options).
 */
@Command(name = "replay", description = {
        "Replay a dm-log-writes log onto an image and check every crash point, reordered too.",
        "",
        "Example: biostack replay log.img --to fs.img --size 64M --start-mark mkfs --at flush \\",
        "           --recover 'e2fsck -E journal_only -y {}' --check 'e2fsck -fn {}' --reorder 20 --seed 1"})
public final class ReplayCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Parameters(index = "0", paramLabel = "LOG", description = "the log device's contents (a file)")
    Path log;

    @Option(names = "--to", required = true, paramLabel = "IMAGE", description = "image file to replay onto (holds the device as it was when logging began)")
    Path image;

    @Option(names = "--size", paramLabel = "SIZE", description = "create IMAGE empty (sparse) at this size when it is missing, or grow it")
    SizeArg size;

    @Option(names = "--at", paramLabel = "WHEN", description = "crash points: flush (default with --check), fua, write, mark")
    String at;

    @Option(names = "--start-mark", paramLabel = "LABEL", description = "replay up to this mark without checking")
    String startMark;

    @Option(names = "--end-mark", paramLabel = "LABEL", description = "stop at this mark")
    String endMark;

    @Option(names = "--check", paramLabel = "CMD", description = "run at each crash point; {} is the path of a scratch copy of the state; exit 0 = consistent")
    String check;

    @Option(names = "--recover", paramLabel = "CMD", description = "journal recovery run before --check, only on states whose journal has something to replay (ext3/ext4; always on others); its exit status is ignored, e.g. 'e2fsck -E journal_only -y {}'")
    String recover;

    @Option(names = "--check-timeout", paramLabel = "DUR", defaultValue = "10m", description = "kill a checker after this long (500ms, 30s, 2m); counts as a failure (default 10m)")
    String checkTimeout;

    @Option(names = "--keep-going", description = "go on after a failing state")
    boolean keepGoing;

    @Option(names = "--reorder", paramLabel = "N", defaultValue = "0", description = "also check up to N states per crash point where only some writes since the last flush reached the disk")
    int reorder;

    @Option(names = "--seed", paramLabel = "S", defaultValue = "1", description = "seed of the reordered states (same seed, same states)")
    long seed;

    @Option(names = "--torn", description = "with --reorder: writes spanning 4k blocks may be torn at the device's 4k boundaries")
    boolean torn;

    @Option(names = "--scratch-dir", paramLabel = "DIR", description = "where the scratch copies live (default: /dev/shm when it has room, else IMAGE's directory)")
    Path scratchDir;

    @Option(names = {"-j", "--jobs"}, paramLabel = "N", description = "checkers run at once on in-order points (default: one per CPU)")
    Integer jobs;

    @Option(names = "--naive", description = "benchmark baseline: cp the whole image before every check and re-check unchanged points")
    boolean naive;

    @Option(names = "--json", description = "print a machine-readable report")
    boolean json;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        Report r;
        try {
            Replayer.Options o = Replayer.Options.of(log, image)
                    .createSize(size == null ? -1 : size.bytes())
                    .at(at == null ? null : parseAt(at))
                    .marks(startMark, endMark)
                    .check(check, parseDuration(checkTimeout))
                    .keepGoing(keepGoing)
                    .reorder(reorder, seed, torn)
                    .scratchDir(scratchDir)
                    .naive(naive)
                    .recover(recover);
            if (jobs != null) {
                if (jobs < 1) {
                    throw new ReplayException("--jobs must be 1 or more");
                }
                o = o.jobs(jobs);
            }
            if (reorder < 0) {
                throw new ReplayException("--reorder must be 0 or more");
            }
            if (!json && System.console() != null) {
                o = o.progress(new Bar(err));
            }
            r = Replayer.run(o);
        } catch (ReplayException | IOException e) {
            String msg = e.getMessage() == null ? e.toString() : e.getMessage();
            if (json) {
                out.println("{\"result\":\"error\",\"error\":" + Report.quote(msg) + "}");
                out.flush();
            }
            err.println("biostack replay: " + msg);
            err.flush();
            return 2;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            err.println("biostack replay: interrupted");
            return 2;
        }
        out.print(json ? r.toJson() + "\n" : r.toText());
        out.flush();
        return r.passed() ? 0 : 1;
    }

    static Replayer.At parseAt(String s) {
        try {
            return Replayer.At.valueOf(s.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new ReplayException("--at must be flush, fua, write or mark, not '" + s + "'");
        }
    }

    /** 500ms, 30s, 2m, 1h, or plain seconds. */
    static Duration parseDuration(String s) {
        String t = s.trim().toLowerCase(Locale.ROOT);
        try {
            if (t.endsWith("ms")) {
                return Duration.ofMillis(Long.parseLong(t.substring(0, t.length() - 2)));
            }
            long mul = switch (t.isEmpty() ? ' ' : t.charAt(t.length() - 1)) {
                case 's' -> 1;
                case 'm' -> 60;
                case 'h' -> 3600;
                default -> 0;
            };
            long v = Long.parseLong(mul == 0 ? t : t.substring(0, t.length() - 1));
            Duration d = Duration.ofSeconds(v * (mul == 0 ? 1 : mul));
            if (d.isZero() || d.isNegative()) {
                throw new NumberFormatException();
            }
            return d;
        } catch (NumberFormatException e) {
            throw new ReplayException("--check-timeout '" + s + "' is not a duration (500ms, 30s, 2m, 1h)");
        }
    }

    /** A one-line progress bar on the terminal, redrawn at most 10 times a second. */
    private static final class Bar implements Replayer.Progress {
        private final PrintWriter err;
        private long lastDraw;

        Bar(PrintWriter err) {
            this.err = err;
        }

        @Override
        public void update(int entry, int last, int points, int states) {
            long now = System.nanoTime();
            if (entry != last && now - lastDraw < 100_000_000L) {
                return;
            }
            lastDraw = now;
            int width = 30;
            int filled = last <= 0 ? width : (int) ((long) (entry + 1) * width / (last + 1));
            err.print("\r[" + "#".repeat(filled) + ".".repeat(width - filled) + "] entry " + (entry + 1) + "/" + (last + 1)
                    + ", " + points + " points, " + states + " reordered states");
            if (entry == last) {
                err.println();
            }
            err.flush();
        }
    }
}
