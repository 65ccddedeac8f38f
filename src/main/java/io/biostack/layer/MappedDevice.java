package io.biostack.layer;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioFlags;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.StatusContext;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A device made of a table of targets, as device-mapper's {@code struct mapped_device}
 * (drivers/md/dm.c): segments laid end to end (a concatenation when there are several), a live
 * table and an inactive one loaded by {@link #reload}, and a suspend gate.
 *
 * <h2>A bio's way through</h2>
 * Each bio is cloned (from {@link Layers#POOL}; dm's {@code dm_io}) so the device can count it in
 * flight without touching the caller's slots; the clone is split at segment boundaries, moved to
 * its segment's offsets and handed to that segment's target. When the clone completes, the
 * caller's bio completes with the first error. FLUSH goes to every target; a write with PREFLUSH
 * flushes every target first and is mapped once they all completed, as dm core sends it.
 *
 * <h2>Suspend, reload, resume</h2>
 * {@link #suspend} stops new bios (they wait in a queue; NOWAIT bios fail with AGAIN), waits
 * until every bio in flight has completed, and flushes the targets (dm's postsuspend). {@link #reload} loads an inactive table; {@link #resume}
 * swaps it in (suspending first if needed), closes the old table's targets and sends the waiting
 * bios to the new table. While the device runs, the submit path is lock-free: one atomic
 * increment and one volatile read decide between the fast path and the queue (a Dekker pair with
 * suspend's write of the state and read of the count; both are sequentially consistent).
 *
 * <p>Closing the device closes its tables' targets, not the devices they are built on.
 */
public final class MappedDevice implements BlockDevice {
    /**
     * One line of a table: {@code length} bytes from {@code start} mapped by {@code target}.
     *
     * @param start where the segment starts on the mapped device, in bytes
     * @param length the segment's length in bytes
     * @param target the target that serves those bytes; its offset 0 is the segment's start
     */
    public record Segment(long start, long length, Target target) {
    }

    /** An immutable table: segments from 0 with no gaps, and what they add up to. */
    public static final class Table {
        private final Segment[] segs;
        private final long size;
        private final QueueLimits limits;
        private final boolean readOnly;
        private final List<Target> targets;

        /**
         * Checks that the segments start at 0, leave no gaps and fit their targets.
         *
         * @param device the mapped device's name, for the messages
         * @param segments the lines in device order; the table does not copy the targets, it refers
         *         to them
         * @throws IllegalArgumentException when the list is empty, leaves a gap or an overlap, or a
         *         segment is longer than its target
         */
        public Table(String device, List<Segment> segments) {
            if (segments.isEmpty()) {
                throw new IllegalArgumentException(device + ": a table needs at least one segment");
            }
            this.segs = segments.toArray(new Segment[0]);
            long pos = 0;
            List<Target> ts = new ArrayList<>();
            QueueLimits lim = null;
            boolean ro = false;
            for (Segment s : segs) {
                if (s.start() != pos) {
                    throw new IllegalArgumentException(device + ": segment at sector " + s.start() / Layers.SECTOR
                            + (s.start() < pos ? " overlaps the one before" : " leaves a gap after sector " + pos / Layers.SECTOR)
                            + " (segments must follow each other from 0)");
                }
                if (s.length() <= 0) {
                    throw new IllegalArgumentException(device + ": segment at sector " + s.start() / Layers.SECTOR + " is empty");
                }
                if (s.target().size() != s.length()) {
                    throw new IllegalArgumentException(device + ": target " + s.target().targetType() + " is "
                            + s.target().size() + " bytes, its segment " + s.length());
                }
                lim = lim == null ? s.target().limits() : QueueLimits.stack(lim, s.target().limits());
                ro |= s.target().isReadOnly();
                ts.add(s.target());
                pos += s.length();
            }
            for (Segment s : segs) {
                if (s.start() % lim.logicalBlockSize() != 0) {
                    throw new IllegalArgumentException(device + ": segment at sector " + s.start() / Layers.SECTOR
                            + " is not aligned to the table's " + lim.logicalBlockSize() + "-byte logical blocks");
                }
            }
            if (pos % lim.logicalBlockSize() != 0) {
                // validate_hardware_logical_block_alignment: the end is a boundary too; a tail
                // shorter than a block could never be read or written
                throw new IllegalArgumentException(device + ": the table ends at sector " + pos / Layers.SECTOR
                        + ", not on one of its " + lim.logicalBlockSize() + "-byte logical blocks");
            }
            if (segs.length > 1 && lim.chunkBytes() != 0) {
                lim = lim.toBuilder().chunkBytes(0).build();
            }
            this.size = pos;
            this.limits = lim;
            this.readOnly = ro;
            this.targets = List.copyOf(ts);
        }

        /**
         * A table of one target over the whole device.
         *
         * @param device the mapped device's name, for the messages
         * @param target the one target, from offset 0 to its size
         * @return a table of one segment
         */
        public static Table of(String device, Target target) {
            return new Table(device, List.of(new Segment(0, target.size(), target)));
        }

        /**
         * The segments in device order.
         *
         * @return the segments, an unmodifiable list
         */
        public List<Segment> segments() {
            return List.of(segs);
        }

        /**
         * Bytes covered by the segments.
         *
         * @return the sum of the segments' lengths in bytes
         */
        public long size() {
            return size;
        }

        List<Target> targets() {
            return targets;
        }

        int find(long offset) {
            int lo = 0;
            int hi = segs.length - 1;
            while (lo < hi) {
                int mid = (lo + hi + 1) >>> 1;
                if (segs[mid].start() <= offset) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            return lo;
        }

        void close() {
            for (Target t : targets) {
                t.close();
            }
        }
    }

    /** The device's state ({@code DMF_SUSPENDED}, ...), an explicit machine as STYLE.md asks. */
    public enum State {
        /** Bios go to the live table's targets as they come. */
        RUNNING,
        /** New bios wait until {@link #resume} (a NOWAIT bio fails with AGAIN); none is in flight. */
        SUSPENDED,
        /** The targets are closed; every new bio fails with IOERR. */
        CLOSED
    }

    private final String name;
    private volatile Table live;
    private Table inactive;                          // guarded by lock
    private volatile State state = State.RUNNING;
    private final AtomicLong inFlight = new AtomicLong();
    private final ReentrantLock lock;
    private final ArrayDeque<Bio> waiting = new ArrayDeque<>(); // guarded by lock
    /** The last suspend's wait: true once its bios in flight completed, false when a resume came first. */
    private volatile CompletableFuture<Boolean> drained = CompletableFuture.completedFuture(true);
    private final EndIo cloneDone = this::cloneDone;
    private final EndIo preflushed = this::preflushed;

    /**
     * A device whose live table is {@code table}; it takes ownership of the table's targets.
     *
     * @param name the device's name, as {@code dmsetup ls} shows it
     * @param table the first live table; the device owns its targets and closes them on
     *         {@link #close}
     */
    public MappedDevice(String name, Table table) {
        this(name, table, new ReentrantLock());
    }

    /**
     * A device guarded by {@code lock}: tests pass a lock that stops a thread at a chosen
     * acquisition, to force an interleaving between two sections.
     */
    MappedDevice(String name, Table table, ReentrantLock lock) {
        this.name = name;
        this.live = table;
        this.lock = lock;
    }

    @Override public String name() { return name; }
    @Override public long size() { return live.size; }
    @Override public QueueLimits limits() { return live.limits; }
    @Override public boolean isReadOnly() { return live.readOnly; }

    /**
     * Running, suspended or closed.
     *
     * @return the state now
     */
    public State state() {
        return state;
    }

    /**
     * The live table.
     *
     * @return the table bios go to now
     */
    public Table liveTable() {
        return live;
    }

    /**
     * True when a table has been loaded by {@link #reload} and not yet swapped in.
     *
     * @return true when {@link #resume} would swap a new table in
     */
    public boolean hasInactiveTable() {
        lock.lock();
        try {
            return inactive != null;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Bios handed to targets and not yet completed.
     *
     * @return the count of bios between submit to a target and completion, now
     */
    public long inFlight() {
        return inFlight.get();
    }

    /**
     * Bios waiting for {@link #resume}.
     *
     * @return the count of bios queued while suspended, now
     */
    public int waiting() {
        lock.lock();
        try {
            return waiting.size();
        } finally {
            lock.unlock();
        }
    }

    // ---- I/O -------------------------------------------------------------------------------

    /** I/O memory of the first segment's target: registered with its ring when it sits on a loop device. */
    @Override
    public MemorySegment allocateIoMemory(long bytes, Arena owner) {
        return live.segs[0].target().allocateIoMemory(bytes, owner);
    }

    /** Takes ownership of {@code bio}; see {@link BlockDevice#submit}. Never blocks. */
    @Override
    public void submit(Bio bio) {
        while (true) {
            inFlight.incrementAndGet();
            if (state == State.RUNNING) {
                dispatch(bio, live);
                return;
            }
            dropInFlight();
            if (queue(bio)) {
                return;
            }
        }
    }

    /** Slow path: queues the bio while suspended; false when the device resumed meanwhile. */
    private boolean queue(Bio bio) {
        lock.lock();
        try {
            switch (state) {
                case RUNNING:
                    return false;
                case CLOSED:
                    break;
                default:
                    if (!bio.hasFlag(BioFlags.NOWAIT)) {
                        waiting.add(bio);
                        return true;
                    }
            }
        } finally {
            lock.unlock();
        }
        if (state == State.CLOSED) {
            bio.fail(Status.IOERR, name + " is closed");
        } else {
            bio.fail(Status.AGAIN, name + " is suspended and the bio asked not to wait");
        }
        return true;
    }

    private void dispatch(Bio bio, Table t) {
        if (!BioChecks.admit(bio, name, t.size, t.limits, t.readOnly)) {
            dropInFlight();
            return;
        }
        Bio clone = Layers.cloneWith(bio, cloneDone);
        Segment[] segs = t.segs;
        if (segs.length == 1) {
            segs[0].target().submit(clone);
            return;
        }
        if (clone.op() == Op.FLUSH) {
            Layers.fanOut(clone, t.targets);
            return;
        }
        if (Layers.preflushFirst(clone, t.targets, preflushed)) {
            return;
        }
        mapSegments(clone, t);
    }

    /** Every target's flush ahead of a write with PREFLUSH completed: now its data. */
    private void preflushed(Bio flush) {
        Bio clone = Layers.afterPreflush(flush);
        if (clone != null) {
            // the table it was admitted by: a swap waits for the bios in flight, this one too
            mapSegments(clone, live);
        }
    }

    /** Splits the clone at segment boundaries and hands each piece to its segment's target. */
    private void mapSegments(Bio clone, Table t) {
        Segment[] segs = t.segs;
        Layers.splitAt(clone, off -> {
            Segment s = segs[t.find(off)];
            return s.start() + s.length() - off;
        }, piece -> {
            Segment s = segs[t.find(piece.offset())];
            piece.setOffset(piece.offset() - s.start());
            s.target().submit(piece);
        });
    }

    private void cloneDone(Bio clone) {
        Layers.finishClone(clone);
        dropInFlight();
    }

    private void dropInFlight() {
        if (inFlight.decrementAndGet() == 0 && state != State.RUNNING) {
            drained.complete(true);
        }
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        Table t = live;
        if (offset < 0 || offset >= t.size) {
            return Extent.data(0);
        }
        Segment s = t.segs[t.find(offset)];
        long n = Math.min(maxLength, s.start() + s.length() - offset);
        return s.target().extentAt(offset - s.start(), n);
    }

    /**
     * The named contexts of a table that is one target over the whole device (a stack's
     * {@code qcow2} line: its {@code qemu:allocation-depth}), asked of the live table's target at
     * each call, so that a reload answers from the new one (a context it does not have fails that
     * request). A table of several segments offers none: a name may mean something else in each.
     *
     * @return the target's contexts, or none
     */
    @Override
    public List<StatusContext> statusContexts() {
        Segment[] segs = live.segs;
        if (segs.length != 1 || segs[0].start() != 0) {
            return List.of();
        }
        List<StatusContext> out = new ArrayList<>();
        for (StatusContext c : segs[0].target().statusContexts()) {
            String n = c.name();
            out.add(new StatusContext() {
                @Override
                public String name() {
                    return n;
                }

                @Override
                public Extent extentAt(long offset, long maxLength) {
                    Segment[] now = live.segs;
                    if (now.length == 1 && now[0].start() == 0) {
                        for (StatusContext d : now[0].target().statusContexts()) {
                            if (d.name().equals(n)) {
                                return d.extentAt(offset, maxLength);
                            }
                        }
                    }
                    throw new IllegalStateException(name + " no longer answers " + n + " (its table was reloaded)");
                }
            });
        }
        return List.copyOf(out);
    }

    // ---- control ---------------------------------------------------------------------------

    /**
     * Stops new bios (they queue), waits until every bio in flight has completed
     * ({@code dm_suspend}), then flushes every target of the live table, so that what they keep
     * in memory (a qcow2 target's metadata) is on the devices below while the device is
     * suspended. Suspending a suspended device flushes again. When bios or the flushes are still
     * in flight after {@code timeout}, throws {@link TimeoutException}; the device stays
     * suspended.
     *
     * @param timeout the longest wait for bios in flight to complete
     * @param unit the unit of {@code timeout}
     * @throws TimeoutException when bios are still in flight after {@code timeout}
     * @throws InterruptedException when the waiting thread is interrupted; the device stays
     *         suspended
     * @throws IllegalStateException when the device is closed, a {@link #resume} came before
     *         the bios in flight completed (the device runs then), or a target's flush failed
     *         (the device stays suspended)
     */
    public void suspend(long timeout, TimeUnit unit) throws TimeoutException, InterruptedException {
        long deadline = System.nanoTime() + unit.toNanos(timeout);
        if (!awaitSuspended(timeout, unit)) {
            // dm serialises suspend and resume; here a resume is the way out of a stuck suspend,
            // and the device runs again: saying that it stays suspended would be wrong.
            throw resumedMeanwhile();
        }
        // What the targets keep in memory goes to the devices below, as dm's postsuspend commits
        // a thin pool's or a cache's metadata (and a filesystem above is synced by lockfs): a
        // qcow2 target's L2 tables and refcounts, without which a copy of its image taken while
        // the device is suspended lacks the last writes. Counted in flight, so that a table swap
        // waits for them as for any bio.
        List<Target> targets;
        CompletableFuture<Boolean> d;
        lock.lock();
        try {
            if (state != State.SUSPENDED) {
                throw state == State.CLOSED ? new IllegalStateException(name + " is closed") : resumedMeanwhile();
            }
            targets = live.targets;
            d = drained = new CompletableFuture<>();
            inFlight.addAndGet(targets.size());
        } finally {
            lock.unlock();
        }
        List<CompletableFuture<Void>> flushes = new ArrayList<>();
        for (Target t : targets) {
            flushes.add(t.flush().whenComplete((v, e) -> dropInFlight()));
        }
        boolean suspended;
        try {
            suspended = d.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (ExecutionException e) {
            throw new IllegalStateException(e);
        } catch (TimeoutException e) {
            throw new TimeoutException(name + ": suspended, and the flush of its targets still runs after "
                    + unit.toMillis(timeout) + " ms; the device stays suspended");
        }
        if (!suspended) {
            throw resumedMeanwhile();
        }
        for (int i = 0; i < flushes.size(); i++) {
            if (flushes.get(i).isCompletedExceptionally()) {
                Throwable why = flushes.get(i).exceptionNow();
                throw new IllegalStateException(name + " is suspended, but the flush of its target "
                        + targets.get(i).targetType() + " failed: " + (why.getMessage() == null ? why : why.getMessage())
                        + "; what it holds in memory may not be on the devices below");
            }
        }
    }

    private IllegalStateException resumedMeanwhile() {
        return new IllegalStateException(name + " was resumed while the suspend waited for " + inFlight.get()
                + " bios in flight; it runs");
    }

    /** Suspends; true once the bios in flight completed, false when a resume came first. */
    private boolean awaitSuspended(long timeout, TimeUnit unit) throws TimeoutException, InterruptedException {
        CompletableFuture<Boolean> d;
        lock.lock();
        try {
            if (state == State.CLOSED) {
                throw new IllegalStateException(name + " is closed");
            }
            if (state == State.RUNNING) {
                drained = new CompletableFuture<>();
                state = State.SUSPENDED;
            }
            d = drained;
        } finally {
            lock.unlock();
        }
        if (inFlight.get() == 0) {
            d.complete(true);
        }
        try {
            return d.get(timeout, unit);
        } catch (ExecutionException e) {
            throw new IllegalStateException(e);
        } catch (TimeoutException e) {
            throw new TimeoutException(name + ": " + inFlight.get() + " bios still in flight after "
                    + unit.toMillis(timeout) + " ms; the device stays suspended");
        }
    }

    /**
     * Loads {@code table} as the inactive table ({@code DM_TABLE_LOAD}); it goes live at the next
     * {@link #resume}. A table loaded before and not yet resumed is closed and replaced.
     *
     * @param table the table to load; the device owns it from now on (and closes it if it is
     *         replaced before it goes live)
     */
    public void reload(Table table) {
        Table old;
        lock.lock();
        try {
            if (state == State.CLOSED) {
                throw new IllegalStateException(name + " is closed");
            }
            old = inactive;
            inactive = table;
        } finally {
            lock.unlock();
        }
        if (old != null) {
            old.close();
        }
    }

    /** Drops a loaded, not yet resumed table ({@code dmsetup clear}). */
    public void clear() {
        reload(null);
    }

    /**
     * Swaps in the inactive table, if there is one (suspending first, so that no bio runs on the
     * table being replaced), and lets the waiting bios go on to the live table
     * ({@code dm_resume}). Resuming a running device without a new table does nothing.
     *
     * @param timeout the longest wait for the suspend that comes before a table swap
     * @param unit the unit of {@code timeout}
     * @throws TimeoutException when bios on the old table are still in flight after
     *         {@code timeout}; the old table stays live and the device suspended
     * @throws InterruptedException when the waiting thread is interrupted
     */
    public void resume(long timeout, TimeUnit unit) throws TimeoutException, InterruptedException {
        Table old = null;
        List<Bio> go = null;
        while (go == null) {
            lock.lock();
            try {
                if (state == State.CLOSED) {
                    throw new IllegalStateException(name + " is closed");
                }
                // Whether to swap is decided in the section that swaps: decided apart, a table
                // loaded in between went live on a running device, and the old table's targets
                // were closed under the bios still in flight on them.
                if (inactive == null || state == State.SUSPENDED && drained.isDone()) {
                    if (inactive != null) {
                        old = live;
                        live = inactive;
                        inactive = null;
                    }
                    state = State.RUNNING;
                    drained.complete(false); // a suspend still waiting for its bios hears of it
                    go = new ArrayList<>(waiting);
                    waiting.clear();
                }
            } finally {
                lock.unlock();
            }
            if (go == null) {
                awaitSuspended(timeout, unit); // then decide again: the table may have changed meanwhile
            }
        }
        if (old != null) {
            old.close();
        }
        for (Bio b : go) {
            submit(b);
        }
    }

    /**
     * Lines of {@code dmsetup table}: "START LENGTH TARGET ARGS", in sectors.
     *
     * @return one line per segment, in device order
     */
    public List<String> table() {
        List<String> out = new ArrayList<>();
        for (Segment s : live.segs) {
            out.add(Layers.sectors(s.start()) + " " + Layers.sectors(s.length()) + " "
                    + s.target().targetType() + " " + s.target().table());
        }
        return out;
    }

    /**
     * Lines of {@code dmsetup status}: "START LENGTH TARGET STATUS", in sectors.
     *
     * @return one line per segment, in device order
     */
    public List<String> status() {
        List<String> out = new ArrayList<>();
        for (Segment s : live.segs) {
            String st = s.target().status();
            out.add(Layers.sectors(s.start()) + " " + Layers.sectors(s.length()) + " "
                    + s.target().targetType() + (st.isEmpty() ? "" : " " + st));
        }
        return out;
    }

    /**
     * Sends a message to the target at byte {@code offset} ({@code dmsetup message DEV SECTOR
     * MSG}); returns its answer.
     *
     * @param offset a byte offset inside the segment of the target to talk to
     * @param argv the message's words, as {@code dmsetup message} passes them
     * @return the target's answer, empty when it has nothing to say
     * @throws IllegalArgumentException when {@code offset} is outside the device, or the target
     *         refuses the message (the exception's text says why)
     */
    public String message(long offset, List<String> argv) {
        Table t = live;
        if (offset < 0 || offset >= t.size) {
            throw new IllegalArgumentException(name + ": no target at sector " + offset / Layers.SECTOR);
        }
        return t.segs[t.find(offset)].target().message(argv);
    }

    /**
     * Closes the tables' targets. Bios still queued fail with IOERR; bios must no longer be in
     * flight.
     */
    @Override
    public void close() {
        Table l;
        Table in;
        List<Bio> fail;
        lock.lock();
        try {
            if (state == State.CLOSED) {
                return;
            }
            state = State.CLOSED;
            l = live;
            in = inactive;
            inactive = null;
            fail = new ArrayList<>(waiting);
            waiting.clear();
        } finally {
            lock.unlock();
        }
        for (Bio b : fail) {
            b.fail(Status.IOERR, name + " closed while the bio waited for resume");
        }
        if (in != null) {
            in.close();
        }
        l.close();
    }

    @Override
    public String toString() {
        return "MappedDevice[" + name + " " + state + " " + live.size + " bytes, " + live.segs.length + " segments]";
    }
}
