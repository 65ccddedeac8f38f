package io.biostack.replay;

import io.biostack.file.FileClone;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * Replays a dm-log-writes log onto an image file and checks crash points on the way, in order and
 * reordered (CrashMonkey's model: after a crash the disk holds every write before the last
 * completed flush, every FUA write, and <em>any subset</em> of the other writes since that flush).
 *
 * <h2>Crash points</h2>
 * {@code --at flush} (entries with the FLUSH flag), {@code fua} (FLUSH or FUA), {@code write}
 * (every write, discard and flush), {@code mark} (every mark), between {@code --start-mark}
 * (replayed, not checked) and {@code --end-mark} (the last point); the end of the replay is always
 * a point. At each point the in-order state is checked (skipped when no write came since the last
 * one checked: the same state), then up to {@code --reorder N} reordered states. A crash at a flush
 * point is taken as a crash just before the flush completed: its reordered states drop writes
 * since the flush before it.
 *
 * <h2>Reordered states without copying the image</h2>
 * The image always holds the in-order state. While replaying, the bytes each write overwrites are
 * kept (in memory, only since the last flush). A reordered state is built on the {@link Scratch}
 * copy: the writes since the last flush are undone there from those saved bytes, in reverse order,
 * then the persisted ones (FUA writes and the chosen subset) are written again in log order. The
 * scratch then goes back to the image by copying back only the chunks touched (see Scratch for the
 * checker's own writes). With {@code --torn}, writes that span more than one physical block
 * (4 KiB) are cut at the device's block boundaries, and each piece may or may not have reached
 * the disk.
 *
 * <h2>Choosing and shrinking states</h2>
 * When the writes since the flush have at most {@code log2(N+1)} pieces, every subset is tried;
 * otherwise first each single piece dropped, then random subsets from a generator seeded with
 * {@code seed} and the entry number, so a seed gives the same states every time. A failing state
 * is shrunk by delta debugging (Zeller's ddmin): first the set of dropped pieces, then the set of
 * persisted ones that the failure needs; both are reported by entry number.
 *
 * <h2>Checkers in parallel</h2>
 * In-order points are checked by up to {@code jobs} checkers at once (default: one per CPU), each
 * on its own scratch copy, while the replay goes on. The reordered states of a point run on every
 * copy at once too, started in their order, none after the first failure seen, and every one
 * started waited for before the replay moves on: the failing state reported is the lowest one,
 * the one a serial run finds, whatever order the checkers end in. Shrinking runs one state at a
 * time on the first copy. Without {@code --keep-going} only the earliest failure is reported, as
 * a serial run would.
 *
 * <h2>Byte-identical states checked once</h2>
 * Each state is named by a key of its bytes ({@link StateKey}: a sum of per-block SHA-256 over
 * the blocks written since the start mark). A state whose key was checked, or is being checked,
 * is not checked again: it gets that run's verdict, failures included (with {@code --keep-going}
 * a bad state that comes back is reported again, at its own entry). A reordered state's key is
 * predicted from the writes since the flush where whole blocks decide it, so a duplicate is not
 * even built. On bench/crash's ext4 log with {@code --reorder 20}, 102 of 307 states were
 * duplicates (mostly the state with every write since a flush lost, which is the state checked at
 * that flush). The naive baseline checks every state.
 *
 * <h2>Journal recovery only where it does something</h2>
 * With {@code --recover CMD}, the recovery runs before the check only on states whose ext3/ext4
 * journal has something to replay ({@link JournalState}); on a clean journal the check runs
 * alone. Measured on bench/crash's ext4 job, that is few states (9 of 303 checks with
 * {@code --reorder 20}): ext4 keeps committed transactions in the journal until a checkpoint.
 *
 * <p>One thread drives the replay; checkers are processes. Bad input (a log that is not one, truncated, out of range for the image, a
 * mark that is not there) throws {@link ReplayException} before anything is checked.
 */
public final class Replayer {
    /** Which entries are crash points. */
    public enum At {
        /** Entries with the FLUSH flag. */
        FLUSH,
        /** Entries with FLUSH or FUA. */
        FUA,
        /** Every write, discard and flush. */
        WRITE,
        /** Every mark. */
        MARK
    }

    /** Called after each entry is replayed (for a progress bar). */
    @FunctionalInterface
    public interface Progress {
        /**
         * One more entry replayed; on the replaying thread, so it must be quick.
         *
         * @param entry  the entry just replayed (0-based)
         * @param last   the last entry that will be replayed
         * @param points crash points checked so far
         * @param states reordered states checked so far
         */
        void update(int entry, int last, int points, int states);
    }

    /**
     * Every option of a replay; see {@code biostack replay --help}. Start from {@link #of} and
     * change one thing at a time with the methods that return a copy.
     *
     * @param log          the dm-log-writes log file
     * @param image        the image replayed onto (holds the device as logging began)
     * @param createSize   create or grow the image to this many bytes, or -1 to leave it
     * @param at           which entries are crash points, or null (FLUSH when there is a check)
     * @param startMark    replay up to this mark without checking, or null
     * @param endMark      stop at this mark, or null for the end of the log
     * @param check        the check command ({@code {}} is the state's path), or null: replay only
     * @param checkTimeout a checker running longer is killed and counts as a failure
     * @param keepGoing    go on after a failing state
     * @param reorder      reordered states per crash point (0: in order only)
     * @param seed         seed of the reordered states
     * @param torn         writes spanning 4 KiB blocks may be torn at the device's 4 KiB boundaries
     * @param scratchDir   where scratch copies live, or null for /dev/shm when it has room
     * @param progress     told after each entry, or null
     * @param naive        the benchmark baseline: cp the whole image before every check
     * @param jobs         checkers run at once, each on its own scratch copy
     * @param recover      journal recovery run before {@code check} where the journal needs it, or null
     */
    public record Options(Path log, Path image, long createSize, At at, String startMark, String endMark,
                          String check, Duration checkTimeout, boolean keepGoing, int reorder, long seed,
                          boolean torn, Path scratchDir, Progress progress, boolean naive, int jobs, String recover) {
        /**
         * A replay of {@code log} onto {@code image} with every default: no check, one checker
         * per CPU, a 10-minute checker timeout.
         *
         * @param log   the log file
         * @param image the image file
         * @return the options
         */
        public static Options of(Path log, Path image) {
            return new Options(log, image, -1, null, null, null, null, Duration.ofMinutes(10), false, 0, 0, false, null, null, false,
                    Runtime.getRuntime().availableProcessors(), null);
        }

        /**
         * These options with crash points at {@code v}.
         *
         * @param v which entries are crash points
         * @return a copy with that change
         */
        public Options at(At v) {
            return new Options(log, image, createSize, v, startMark, endMark, check, checkTimeout, keepGoing, reorder, seed, torn, scratchDir, progress, naive, jobs, recover);
        }

        /**
         * These options creating (or growing) the image to {@code v} bytes.
         *
         * @param v the size in bytes, or -1 to leave the image as it is
         * @return a copy with that change
         */
        public Options createSize(long v) {
            return new Options(log, image, v, at, startMark, endMark, check, checkTimeout, keepGoing, reorder, seed, torn, scratchDir, progress, naive, jobs, recover);
        }

        /**
         * These options between two marks.
         *
         * @param start replay up to this mark without checking, or null
         * @param end   stop at this mark, or null
         * @return a copy with that change
         */
        public Options marks(String start, String end) {
            return new Options(log, image, createSize, at, start, end, check, checkTimeout, keepGoing, reorder, seed, torn, scratchDir, progress, naive, jobs, recover);
        }

        /**
         * These options with a check command.
         *
         * @param cmd     run by {@code sh -c} with {@code {}} replaced by the state's quoted path; exit 0 = consistent
         * @param timeout a checker running longer is killed
         * @return a copy with that change
         */
        public Options check(String cmd, Duration timeout) {
            return new Options(log, image, createSize, at, startMark, endMark, cmd, timeout, keepGoing, reorder, seed, torn, scratchDir, progress, naive, jobs, recover);
        }

        /**
         * These options going on, or not, after a failing state.
         *
         * @param v true to check every point whatever fails
         * @return a copy with that change
         */
        public Options keepGoing(boolean v) {
            return new Options(log, image, createSize, at, startMark, endMark, check, checkTimeout, v, reorder, seed, torn, scratchDir, progress, naive, jobs, recover);
        }

        /**
         * These options with reordered states.
         *
         * @param n reordered states per crash point
         * @param s the seed (same seed, same states)
         * @param t writes spanning 4 KiB blocks may be torn at the device's 4 KiB boundaries
         * @return a copy with that change
         */
        public Options reorder(int n, long s, boolean t) {
            return new Options(log, image, createSize, at, startMark, endMark, check, checkTimeout, keepGoing, n, s, t, scratchDir, progress, naive, jobs, recover);
        }

        /**
         * These options with scratch copies in {@code v}.
         *
         * @param v a directory, or null for the default
         * @return a copy with that change
         */
        public Options scratchDir(Path v) {
            return new Options(log, image, createSize, at, startMark, endMark, check, checkTimeout, keepGoing, reorder, seed, torn, v, progress, naive, jobs, recover);
        }

        /**
         * The baseline for benchmarks: cp the whole image before every check, re-check unchanged
         * points, always run {@code recover}.
         *
         * @param v true for the baseline
         * @return a copy with that change
         */
        public Options naive(boolean v) {
            return new Options(log, image, createSize, at, startMark, endMark, check, checkTimeout, keepGoing, reorder, seed, torn, scratchDir, progress, v, jobs, recover);
        }

        /**
         * Checkers run at once on crash points and reordered states, each on its own scratch copy.
         *
         * @param v how many, 1 or more
         * @return a copy with that change
         */
        public Options jobs(int v) {
            return new Options(log, image, createSize, at, startMark, endMark, check, checkTimeout, keepGoing, reorder, seed, torn, scratchDir, progress, naive, v, recover);
        }

        /**
         * Journal recovery run on a state before {@code check}, only when its journal has
         * something to replay (ext3/ext4; always on a file system it cannot read): {@code sh -c
         * "RECOVER; CHECK"}, the recovery's exit status ignored.
         *
         * @param cmd the recovery command ({@code {}} as in check), or null for none
         * @return a copy with that change
         */
        public Options recover(String cmd) {
            return new Options(log, image, createSize, at, startMark, endMark, check, checkTimeout, keepGoing, reorder, seed, torn, scratchDir, progress, naive, jobs, cmd);
        }

        /**
         * These options telling {@code v} of each entry replayed.
         *
         * @param v the listener, or null
         * @return a copy with that change
         */
        public Options progress(Progress v) {
            return new Options(log, image, createSize, at, startMark, endMark, check, checkTimeout, keepGoing, reorder, seed, torn, scratchDir, v, naive, jobs, recover);
        }
    }

    /** Physical block a write is torn at with {@code --torn} (4 KiB, the common page and disk block). */
    static final int TEAR = 4096;
    /** Checker runs one failure may spend on shrinking. */
    static final int SHRINK_BUDGET = 200;

    private final Options o;
    private final WriteLog log;
    private final Report report = new Report();
    private FileClone imageFile;
    private Scratch scratch;
    private Checker checker;
    /** Scratch copies for checkers running at once on in-order points; slot 0's is {@link #scratch}. */
    private final List<Slot> slots = new ArrayList<>();

    private static final class Slot {
        Scratch scratch;
        Path out;
        Checker.Running running;
        int entry;
        long started;
        /** The index of the reordered state it checks in {@link #pointStates}; -1 for an in-order point. */
        int state = -1;
        /** Where its verdict goes for states byte-identical to the one it checks, or null. */
        Verdict verdict;
    }

    /**
     * What the checker said of a state (null while it runs), and the states found byte-identical
     * to it while it ran: they get its verdict instead of a run of their own.
     */
    private static final class Verdict {
        Checker.Result result;
        final List<Integer> alsoEntries = new ArrayList<>();
        final List<Integer> alsoStates = new ArrayList<>();
    }

    /** Keys of the states as they are replayed; null for the naive baseline, which checks every state. */
    private StateKey keys;
    /** The first entry after the start mark: state keys follow the blocks written from there on. */
    private int firstChecked;
    /** Every state checked or being checked, by its bytes' key. */
    private final Map<StateKey.Key, Verdict> seen = new HashMap<>();
    // the reordered states of the point being checked, and what their checkers said
    private List<BitSet> pointStates = List.of();
    private Map<BitSet, Checker.Result> pointCache = new HashMap<>();
    /** The lowest index in {@link #pointStates} whose state failed, or -1. */
    private int firstFail = -1;
    private final Arena buf = Arena.ofConfined();
    private final MemorySegment zeros;
    // the window: entries with data since the last flush, and the bytes each one overwrote
    private final List<Integer> window = new ArrayList<>();
    private final Map<Integer, MemorySegment> before = new HashMap<>();
    private Arena windowArena = Arena.ofConfined();
    private boolean stop;

    private Replayer(Options o, WriteLog log) {
        this.o = o;
        this.log = log;
        this.zeros = buf.allocate(Scratch.CHUNK, 4096);
    }

    /**
     * Replays and checks.
     *
     * @param o what to replay and check
     * @return the report, failures inside
     * @throws ReplayException on bad input (the log, the image, the options), before anything is checked
     * @throws IOException when reading the log or writing the image or a scratch copy fails
     * @throws InterruptedException when interrupted while waiting for a checker
     */
    public static Report run(Options o) throws IOException, InterruptedException {
        if (o.reorder() > 0 && o.check() == null) {
            throw new ReplayException("--reorder needs --check: reordered states are only built to be checked");
        }
        if (o.recover() != null && o.check() == null) {
            throw new ReplayException("--recover needs --check: recovery only prepares a state for its check");
        }
        if (o.at() != null && o.check() == null) {
            throw new ReplayException("--at needs --check");
        }
        // torn writes are cut only into reordered states: alone, --torn would check nothing torn
        // and report every state consistent
        if (o.torn() && o.reorder() == 0) {
            throw new ReplayException("--torn needs --reorder N: torn writes are checked in reordered states only");
        }
        try (WriteLog log = WriteLog.open(o.log())) {
            Replayer r = new Replayer(o, log);
            try {
                return r.replay();
            } finally {
                r.close();
            }
        }
    }

    private Report replay() throws IOException, InterruptedException {
        long t0 = System.nanoTime();
        report.log = o.log().toString();
        report.image = o.image().toString();
        report.entries = log.size();
        int first = o.startMark() == null ? 0 : log.findMark(o.startMark()) + 1;
        firstChecked = first;
        int last = o.endMark() == null ? log.size() - 1 : log.findMark(o.endMark());
        if (last < first - 1) {
            throw new ReplayException("--end-mark '" + o.endMark() + "' (entry " + last + ") comes before --start-mark '"
                    + o.startMark() + "' (entry " + (first - 1) + ")");
        }
        openImage(last);
        At at = o.at() == null && o.check() != null ? At.FLUSH : o.at();
        if (o.check() != null) {
            Path dir = o.scratchDir() != null ? o.scratchDir() : scratchDir(o.image(), Math.max(1, o.jobs()), o.naive());
            checker = new Checker(o.check(), o.recover(), o.checkTimeout(), dir);
            for (int k = 0; k < Math.max(1, o.jobs()); k++) {
                Slot sl = new Slot();
                sl.scratch = new Scratch(o.image(), imageFile, dir, o.naive());
                sl.out = checker.newOutFile();
                slots.add(sl);
            }
            scratch = slots.getFirst().scratch;
            report.scratchMode = scratch.mode().name().toLowerCase();
            if (!o.naive()) {
                keys = new StateKey(Files.size(o.image()), o.reorder() > 0);
            }
        }
        boolean changedSinceCheck = true;
        for (int i = 0; i <= last && !stop; i++) {
            boolean point = checker != null && i >= first && (isPoint(at, i) || i == last);
            if (log.isFlush(i)) {
                if (point && o.reorder() > 0) {
                    reordered(i);
                }
                clearWindow();
            }
            if (log.changesData(i)) {
                apply(i);
                changedSinceCheck = true;
            }
            report.replayedTo = i;
            if (point && !stop) {
                report.points++;
                if (changedSinceCheck || o.naive()) {
                    inOrder(i);
                    changedSinceCheck = false;
                } else {
                    report.sameStates++;
                }
                if (!log.isFlush(i) && o.reorder() > 0 && !stop) {
                    reordered(i);
                }
            }
            if (o.progress() != null) {
                o.progress().update(i, last, report.points, report.reorderedStates);
            }
        }
        if (checker != null && first > last && log.size() > 0) {
            // Only the start mark and nothing after it: check the state it leaves.
            report.points++;
            inOrder(last);
        }
        drain();
        report.failures.sort(java.util.Comparator.comparingInt(Report.Failure::entry));
        if (!o.keepGoing() && report.failures.size() > 1) {
            // checkers ran ahead in parallel: the first failure is the one a serial run stops at
            report.failures.subList(1, report.failures.size()).clear();
        }
        imageFile.datasync();
        for (Slot sl : slots) {
            report.scratchBytesCopied += sl.scratch.bytesCopied();
            report.scratchBytesCompared += sl.scratch.bytesCompared();
            report.checkerWrote += sl.scratch.checkerWrote();
        }
        if (checker != null) {
            report.checks = checker.runs();
        }
        report.millis = (System.nanoTime() - t0) / 1_000_000;
        return report;
    }

    /**
     * Where scratch copies live unless {@code --scratch-dir} says: in memory ({@code /dev/shm},
     * when it is a tmpfs with room for {@code jobs} copies of the whole image twice over), so a
     * checker's fsync (journal recovery does one) costs nothing and no crash state is written to
     * a disk; else beside the image. The naive baseline copies beside the image, as a script would.
     */
    static Path scratchDir(Path image, int jobs, boolean naive) throws IOException {
        Path beside = image.toAbsolutePath().getParent();
        Path shm = Path.of("/dev/shm");
        if (naive || !Files.isDirectory(shm) || !Files.isWritable(shm)) {
            return beside;
        }
        java.nio.file.FileStore fs = Files.getFileStore(shm);
        if ("tmpfs".equals(fs.type()) && fs.getUsableSpace() / 2 > Files.size(image) * jobs) {
            return shm;
        }
        return beside;
    }

    private boolean isPoint(At at, int i) {
        if (at == null) {
            return false;
        }
        return switch (at) {
            case FLUSH -> log.isFlush(i);
            case FUA -> log.isFlush(i) || log.isFua(i);
            case WRITE -> !log.isMark(i);
            case MARK -> log.isMark(i);
        };
    }

    private void openImage(int last) throws IOException {
        Path img = o.image();
        if (!Files.exists(img)) {
            if (o.createSize() <= 0) {
                throw new ReplayException(img + ": no such image (give --size to create an empty one)");
            }
            Files.createFile(img);
        }
        try {
            imageFile = FileClone.open(img);
        } catch (IOException e) {
            throw new ReplayException(e.getMessage());
        }
        if (o.createSize() > 0 && Files.size(img) < o.createSize()) {
            imageFile.setSize(o.createSize());
        }
        long size = Files.size(img);
        for (int i = 0; i <= last; i++) {
            if (log.changesData(i) && (log.offset(i) < 0 || log.length(i) < 0 || log.offset(i) + log.length(i) > size)) {
                throw new ReplayException(o.log() + ": entry " + i + " writes " + log.length(i) + " bytes at " + log.offset(i)
                        + ", beyond the end of " + img + " (" + size + " bytes)");
            }
        }
    }

    // ---- in order --------------------------------------------------------------------------------

    private void apply(int i) throws IOException {
        long off = log.offset(i);
        long len = log.length(i);
        if (o.reorder() > 0) {
            MemorySegment old = windowArena.allocate(len, 4096);
            imageFile.read(old, len, off);
            before.put(i, old);
        }
        window.add(i);
        boolean keyed = keys != null && i >= firstChecked;
        if (keyed) {
            keys.beforeWrite(imageFile, off, len);
        }
        if (log.isDiscard(i)) {
            imageFile.zero(off, len, zeros);
        } else {
            MemorySegment d = log.data(i);
            imageFile.write(d, len, off);
        }
        if (keyed) {
            keys.afterWrite(imageFile, off, len, log.isDiscard(i), i);
        } else if (keys != null) {
            keys.untrackedWrite();
        }
        for (Slot sl : slots) {
            sl.scratch.imageChanged(off, len);
        }
    }

    private void clearWindow() {
        window.clear();
        if (keys != null) {
            keys.windowCleared();
        }
        before.clear();
        windowArena.close();
        windowArena = Arena.ofConfined();
    }

    /**
     * Checks the in-order state at entry {@code i} on a free slot's scratch, without waiting for
     * the checker: up to {@code jobs} run at once while the replay goes on. A failure found for
     * an earlier point than others still running is the one reported (see {@link #drain()}).
     */
    private void inOrder(int i) throws IOException, InterruptedException {
        StateKey.Key k = keys == null ? null : keys.key();
        Verdict same = k == null ? null : seen.get(k);
        if (same != null) {
            report.duplicateStates++;
            if (same.result == null) {
                same.alsoEntries.add(i);
            } else if (!same.result.ok()) {
                inOrderFailure(i, same.result);
            }
            return;
        }
        Slot free = freeSlot();
        if (stop) {
            return;
        }
        free.scratch.reset();
        free.scratch.seal();
        start(free, i, -1);
        if (k != null) {
            free.verdict = new Verdict();
            seen.put(k, free.verdict);
        }
    }

    private void inOrderFailure(int entry, Checker.Result r) {
        report.failures.add(new Report.Failure(entry, log.markBefore(entry), "in-order", List.of(), List.of(),
                r.reason(), r.output()));
        stop = !o.keepGoing();
    }

    /** A reordered state of the point being checked gets its verdict. */
    private void bookState(int state, Checker.Result r) {
        pointCache.put(pointStates.get(state), r);
        if (!r.ok() && (firstFail < 0 || state < firstFail)) {
            firstFail = state;
        }
    }

    private void start(Slot sl, int entry, int state) throws IOException {
        sl.running = checker.start(sl.scratch.path(), sl.out, recovering(sl.scratch));
        sl.entry = entry;
        sl.state = state;
        sl.started = System.nanoTime();
    }

    /**
     * Whether {@code --recover} runs on the state on {@code s}: always for the naive baseline
     * (a script runs its whole check), else only when the state's journal has something to replay.
     */
    private boolean recovering(Scratch s) throws IOException {
        if (o.recover() == null) {
            return false;
        }
        if (o.naive() || s.journal() == JournalState.DIRTY) {
            report.recoveries++;
            return true;
        }
        report.recoveriesSkipped++;
        return false;
    }

    /** A slot with no checker running: an idle one, else the oldest one once its checker is done. */
    private Slot freeSlot() throws IOException, InterruptedException {
        for (Slot sl : slots) {
            if (sl.running == null) {
                return sl;
            }
        }
        return finishOldest();
    }

    private Slot finishOldest() throws IOException, InterruptedException {
        Slot oldest = null;
        for (Slot sl : slots) {
            if (sl.running != null && (oldest == null || sl.started < oldest.started)) {
                oldest = sl;
            }
        }
        if (oldest == null) {
            return slots.getFirst();
        }
        finish(oldest);
        return oldest;
    }

    /** Waits for the slot's checker and books its verdict: an in-order failure, or a reordered state's result. */
    private void finish(Slot sl) throws IOException, InterruptedException {
        Checker.Result r = checker.finish(sl.running);
        sl.running = null;
        sl.scratch.afterChecker();
        if (sl.state >= 0) {
            bookState(sl.state, r);
            sl.state = -1;
        } else if (!r.ok()) {
            inOrderFailure(sl.entry, r);
        }
        Verdict v = sl.verdict;
        sl.verdict = null;
        if (v != null) {
            v.result = r;
            for (int e : v.alsoEntries) {
                if (!r.ok()) {
                    inOrderFailure(e, r);
                }
            }
            for (int st : v.alsoStates) {
                bookState(st, r);
            }
            v.alsoEntries.clear();
            v.alsoStates.clear();
        }
    }

    /** Waits for every running checker. */
    private void drain() throws IOException, InterruptedException {
        for (int k = 0; k < slots.size(); k++) {
            finishOldest();
        }
    }

    // ---- reordered -------------------------------------------------------------------------------

    private List<Report.Unit> units() {
        List<Report.Unit> us = new ArrayList<>();
        for (int e : window) {
            if (log.isFua(e)) {
                continue;
            }
            long off = log.offset(e);
            long len = log.length(e);
            if (o.torn() && !log.isDiscard(e) && off / TEAR != (off + len - 1) / TEAR) {
                // cut at the device's block boundaries, not every 4 KiB from the write's start: a
                // disk writes each physical block whole or not at all, so a write not aligned to
                // them tears at them (its first and last pieces shorter), and nowhere else
                for (long p = off; p < off + len; ) {
                    long end = Math.min(off + len, (p / TEAR + 1) * TEAR);
                    us.add(new Report.Unit(e, p, end - p));
                    p = end;
                }
            } else {
                us.add(new Report.Unit(e, off, len));
            }
        }
        return us;
    }

    /**
     * Checks the reordered states of a point on every slot at once. States are started in their
     * order and none after the first failure seen; all started ones are waited for, so the
     * failure reported is the lowest failing state, as a serial run would find, whatever the
     * order the checkers end in. In-order checkers of earlier points keep running meanwhile.
     */
    private void reordered(int point) throws IOException, InterruptedException {
        if (stop) {
            return;
        }
        List<Report.Unit> us = units();
        int u = us.size();
        if (u == 0) {
            return;
        }
        pointStates = states(u, point);
        pointCache = new HashMap<>();
        firstFail = -1;
        int next = 0;
        // bounded: one pass per state
        List<long[]> ranges = windowRanges();
        while (next < pointStates.size() && firstFail < 0 && !stop) {
            // a state whose key is known without building it, and seen before, costs nothing
            StateKey.Key k = key(us, pointStates.get(next), null, ranges);
            if (k != null && sameAsChecked(k, next)) {
                next++;
                continue;
            }
            Slot sl = freeSlot();
            if (firstFail >= 0 || stop) {
                break;
            }
            buildState(sl.scratch, us, pointStates.get(next));
            if (k == null && keys != null) {
                k = key(us, pointStates.get(next), sl.scratch, ranges);
                if (k != null && sameAsChecked(k, next)) {
                    next++;
                    continue;
                }
            }
            start(sl, point, next);
            if (k != null) {
                sl.verdict = new Verdict();
                seen.put(k, sl.verdict);
            }
            next++;
        }
        for (Slot sl : slots) {
            if (sl.running != null && (sl.state >= 0 || sl.verdict != null && !sl.verdict.alsoStates.isEmpty())) {
                finish(sl);
            }
        }
        report.reorderedStates += firstFail >= 0 ? firstFail + 1 : next;
        if (firstFail >= 0 && !stop) {
            Slot first = slots.getFirst();
            if (first.running != null) {
                finish(first);
            }
            if (!stop) {
                shrinkAndReport(point, us, pointStates.get(firstFail), pointCache);
            }
        }
    }

    /**
     * The key of a reordered state: predicted from the writes since the flush, else (with
     * {@code built}, the scratch holding it) read from the scratch. Null without keys, or when
     * it cannot be told. With {@link StateKey#VERIFY} (tests), a prediction is checked against
     * the built state.
     */
    private StateKey.Key key(List<Report.Unit> us, BitSet persisted, Scratch built, List<long[]> ranges) throws IOException {
        if (keys == null) {
            return null;
        }
        StateKey.Key p = keys.predict(us, persisted, log::isFua);
        if (built == null) {
            if (p != null && StateKey.VERIFY) {
                Slot s = slots.getLast();
                if (s.running == null) {
                    buildState(s.scratch, us, persisted);
                    StateKey.Key r = keys.keyOf(s.scratch.file(), ranges);
                    if (!p.equals(r)) {
                        throw new IllegalStateException("predicted key " + p + " but the state built has " + r);
                    }
                }
            }
            return p;
        }
        return keys.keyOf(built.file(), ranges);
    }

    /** When a state with key {@code k} was checked or is being checked, reordered state {@code state} shares its verdict. */
    private boolean sameAsChecked(StateKey.Key k, int state) {
        Verdict same = seen.get(k);
        if (same == null) {
            return false;
        }
        report.duplicateStates++;
        if (same.result == null) {
            same.alsoStates.add(state);
        } else {
            bookState(state, same.result);
        }
        return true;
    }

    /** The ranges the entries since the last flush wrote: a reordered state differs from the image only there. */
    private List<long[]> windowRanges() {
        List<long[]> rs = new ArrayList<>();
        for (int e : window) {
            rs.add(new long[] {log.offset(e), log.length(e)});
        }
        return rs;
    }

    /** The persisted sets to try at a point: all proper subsets when few, else drops-one then random. */
    private List<BitSet> states(int u, int point) {
        int n = o.reorder();
        Set<BitSet> out = new LinkedHashSet<>();
        if (u < 31 && (1L << u) - 1 <= n) {
            for (long m = 0; m < (1L << u) - 1; m++) {
                out.add(BitSet.valueOf(new long[] {m}));
            }
            return new ArrayList<>(out);
        }
        BitSet all = new BitSet();
        all.set(0, u);
        for (int k = 0; k < u && out.size() < n / 2; k++) {
            BitSet s = (BitSet) all.clone();
            s.clear(k);
            out.add(s);
        }
        SplittableRandom rnd = new SplittableRandom(o.seed() * 0x9E3779B97F4A7C15L + point);
        for (int tries = 0; out.size() < n && tries < 4 * n; tries++) {
            BitSet s = new BitSet();
            for (int k = 0; k < u; k++) {
                if (rnd.nextBoolean()) {
                    s.set(k);
                }
            }
            if (!s.equals(all)) {
                out.add(s);
            }
        }
        return new ArrayList<>(out);
    }

    /** Builds the state on the first slot's scratch and checks it, serially (for shrinking). */
    private Checker.Result checkState(List<Report.Unit> us, BitSet persisted, Map<BitSet, Checker.Result> cache)
            throws IOException, InterruptedException {
        Checker.Result cached = cache.get(persisted);
        if (cached != null) {
            return cached;
        }
        List<long[]> ranges = windowRanges();
        StateKey.Key k = key(us, persisted, null, ranges);
        buildState(scratch, us, persisted);
        if (k == null) {
            k = key(us, persisted, scratch, ranges);
        }
        Verdict same = k == null ? null : seen.get(k);
        if (same != null && same.result == null) {
            for (Slot sl : slots) {
                if (sl.verdict == same) {
                    finish(sl);
                }
            }
        }
        if (same != null && same.result != null) {
            report.duplicateStates++;
            cache.put((BitSet) persisted.clone(), same.result);
            return same.result;
        }
        Checker.Result r = checker.run(scratch.path(), recovering(scratch));
        scratch.afterChecker();
        cache.put((BitSet) persisted.clone(), r);
        if (k != null) {
            Verdict v = new Verdict();
            v.result = r;
            seen.put(k, v);
        }
        return r;
    }

    /**
     * Makes {@code s} hold a reordered state: the image (the in-order state), the window undone
     * from the saved bytes in reverse order, then the FUA writes and the persisted units redone
     * in log order. Sealed, ready for a checker.
     */
    private void buildState(Scratch s, List<Report.Unit> us, BitSet persisted) throws IOException {
        s.reset();
        for (int k = window.size() - 1; k >= 0; k--) {
            int e = window.get(k);
            s.write(log.offset(e), before.get(e));
        }
        int next = 0;
        for (int e : window) {
            if (log.isFua(e)) {
                writeUnit(s, new Report.Unit(e, log.offset(e), log.length(e)));
                continue;
            }
            while (next < us.size() && us.get(next).entry() == e) {
                if (persisted.get(next)) {
                    writeUnit(s, us.get(next));
                }
                next++;
            }
        }
        s.seal();
    }

    private void writeUnit(Scratch s, Report.Unit unit) throws IOException {
        int e = unit.entry();
        if (log.isDiscard(e)) {
            s.zero(unit.offset(), unit.length());
        } else {
            s.write(unit.offset(), log.data(e).asSlice(unit.offset() - log.offset(e), unit.length()));
        }
    }

    private void shrinkAndReport(int point, List<Report.Unit> us, BitSet failing, Map<BitSet, Checker.Result> cache)
            throws IOException, InterruptedException {
        int u = us.size();
        int budget = checker.runs() + SHRINK_BUDGET;
        List<Integer> dropped = new ArrayList<>();
        for (int k = 0; k < u; k++) {
            if (!failing.get(k)) {
                dropped.add(k);
            }
        }
        // 1. the fewest dropped pieces (everything else persisted) that still fail
        dropped = ddmin(dropped, d -> {
            BitSet p = new BitSet();
            p.set(0, u);
            d.forEach(p::clear);
            return p;
        }, us, cache, budget);
        // 2. with those dropped, the fewest persisted pieces the failure needs
        List<Integer> persisted = new ArrayList<>();
        for (int k = 0; k < u; k++) {
            if (!dropped.contains(k)) {
                persisted.add(k);
            }
        }
        if (!persisted.isEmpty()) {
            if (!checkState(us, new BitSet(), cache).ok()) {
                persisted = List.of();
            } else {
                persisted = ddmin(persisted, p -> {
                    BitSet s = new BitSet();
                    p.forEach(s::set);
                    return s;
                }, us, cache, budget);
            }
        }
        BitSet fin = new BitSet();
        persisted.forEach(fin::set);
        Checker.Result r = checkState(us, fin, cache);
        if (r.ok()) {
            // Shrinking ran out of budget on a flaky checker: report the state first found.
            fin = failing;
            r = checkState(us, failing, cache);
            dropped = new ArrayList<>();
            persisted = new ArrayList<>();
            for (int k = 0; k < u; k++) {
                (failing.get(k) ? persisted : dropped).add(k);
            }
        }
        report.failures.add(new Report.Failure(point, log.markBefore(point), "reordered",
                dropped.stream().map(us::get).toList(), persisted.stream().map(us::get).toList(), r.reason(), r.output()));
        stop = !o.keepGoing();
    }

    @FunctionalInterface
    private interface ToState {
        BitSet state(List<Integer> pieces);
    }

    /** Zeller's ddmin: a smaller list of pieces whose state still fails; stops at the budget. */
    private List<Integer> ddmin(List<Integer> items, ToState toState, List<Report.Unit> us,
                                Map<BitSet, Checker.Result> cache, int budget) throws IOException, InterruptedException {
        int n = 2;
        while (items.size() >= 2 && checker.runs() < budget) {
            List<List<Integer>> parts = split(items, n);
            boolean found = false;
            for (List<Integer> c : parts) {
                if (!checkState(us, toState.state(c), cache).ok()) {
                    items = c;
                    n = 2;
                    found = true;
                    break;
                }
            }
            if (!found && n > 2) {
                for (List<Integer> c : parts) {
                    List<Integer> comp = new ArrayList<>(items);
                    comp.removeAll(c);
                    if (!checkState(us, toState.state(comp), cache).ok()) {
                        items = comp;
                        n = Math.max(n - 1, 2);
                        found = true;
                        break;
                    }
                }
            }
            if (!found) {
                if (n >= items.size()) {
                    break;
                }
                n = Math.min(items.size(), 2 * n);
            }
        }
        return items;
    }

    private static List<List<Integer>> split(List<Integer> items, int n) {
        List<List<Integer>> out = new ArrayList<>();
        int size = items.size();
        for (int k = 0; k < n; k++) {
            int a = k * size / n;
            int b = (k + 1) * size / n;
            if (a < b) {
                out.add(new ArrayList<>(items.subList(a, b)));
            }
        }
        return out;
    }

    private void close() throws IOException {
        for (Slot sl : slots) {
            if (sl.running != null) {
                sl.running.kill();
            }
            sl.scratch.close();
        }
        if (checker != null) {
            checker.close();
        }
        if (imageFile != null) {
            imageFile.close();
        }
        if (keys != null) {
            keys.close();
        }
        windowArena.close();
        buf.close();
    }
}
