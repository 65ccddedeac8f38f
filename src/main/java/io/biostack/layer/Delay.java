package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioFlags;
import io.biostack.block.EndIo;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;

/**
 * Holds bios back for a while before passing them down, per op (dm-delay,
 * Documentation/admin-guide/device-mapper/delay.rst).
 *
 * <p>Table: {@code delay <dev> <offset> <delay ms> [<write dev> <write offset> <write delay ms>
 * [<flush dev> <flush offset> <flush delay ms>]]}. Reads use the first triple; writes, discards
 * and write-zeroes the second (the first when absent); flushes the third (else the second). A
 * write with PREFLUSH goes as dm core sends it: an empty flush on the flush path, then, once it
 * completed, the data without PREFLUSH on the write path.
 *
 * <p>Bios wait on one shared scheduler thread (no thread per bio, no sleeping): each is handed to
 * the scheduler and sent down, moved in place, when its time comes. A bio without delay goes
 * straight down. Delayed bios count as in flight, so a suspend waits for them.
 */
public final class Delay implements Target {
    /**
     * One class of ops: where it goes and how long it waits.
     *
     * @param leg the device below and where on it the window starts (not owned)
     * @param delayMillis how long each bio of this class waits before it goes down, in milliseconds
     */
    public record Path(Leg leg, long delayMillis) {
    }

    private static final ScheduledExecutorService TIMER = timer();

    private final String name;
    private final long length;
    private final Linear read;
    private final Linear write;
    private final Linear flush;
    private final Path[] paths;
    private final QueueLimits limits;
    private final EndIo preflushDone = this::preflushDone;
    /** Bios of each class waiting for their time (dm-delay's {@code delay_class.ops}), for {@link #status()}. */
    private final AtomicIntegerArray held = new AtomicIntegerArray(3);

    /**
     * {@code paths} holds 1 to 3 entries: read, write, flush, as the table's triples.
     *
     * @param name the device's name
     * @param length the window's length in bytes, on every path's device
     * @param paths the read path, then optionally the write path, then optionally the flush path
     */
    public Delay(String name, long length, List<Path> paths) {
        if (paths.isEmpty() || paths.size() > 3) {
            throw new IllegalArgumentException(name + ": delay takes 1 to 3 <dev> <offset> <delay> triples");
        }
        for (Path p : paths) {
            if (p.delayMillis() < 0) {
                throw new IllegalArgumentException(name + ": negative delay " + p.delayMillis());
            }
        }
        Path r = paths.get(0);
        Path w = paths.size() > 1 ? paths.get(1) : r;
        Path f = paths.size() > 2 ? paths.get(2) : w;
        this.name = name;
        this.length = length;
        this.paths = new Path[] {r, w, f};
        this.read = new Linear(name, r.leg().device(), r.leg().start(), length);
        this.write = w == r ? read : new Linear(name, w.leg().device(), w.leg().start(), length);
        this.flush = f == w ? write : new Linear(name, f.leg().device(), f.leg().start(), length);
        QueueLimits l = QueueLimits.stack(read.limits(), write.limits());
        this.limits = QueueLimits.stack(l, flush.limits());
    }

    @Override public String name() { return name; }
    @Override public long size() { return length; }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return write.isReadOnly(); }

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, length, limits, isReadOnly())) {
            return;
        }
        Op op = bio.op();
        if (op != Op.FLUSH && bio.hasFlag(BioFlags.PREFLUSH)) {
            // dm core sends a write with PREFLUSH as an empty flush and, once that completed, the
            // data without PREFLUSH (dm_split_and_process_bio, __dm_io_complete): delay_map puts
            // the flush in the flush class and the data in the write class
            Bio f = Layers.POOL.get().init(Op.FLUSH, 0, 0, preflushDone);
            f.setPrivateData(bio);
            route(f, 2);
            return;
        }
        route(bio, op == Op.READ ? 0 : op == Op.FLUSH ? 2 : 1);
    }

    /** Sends {@code bio} down the path of class {@code cls} (read, write, flush) after its delay. */
    private void route(Bio bio, int cls) {
        Linear to = cls == 0 ? read : cls == 1 ? write : flush;
        long ms = paths[cls].delayMillis();
        if (ms == 0) {
            to.submit(bio);
        } else {
            held.incrementAndGet(cls);
            TIMER.schedule(() -> {
                held.decrementAndGet(cls);
                to.submit(bio);
            }, ms, TimeUnit.MILLISECONDS);
        }
    }

    /** The flush in front of a write with PREFLUSH completed: the data goes next, or the error up. */
    private void preflushDone(Bio f) {
        Bio bio = Layers.afterPreflush(f);
        if (bio != null) {
            route(bio, 1);
        }
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        return read.extentAt(offset, maxLength);
    }

    @Override
    public String targetType() {
        return "delay";
    }

    @Override
    public String table() {
        List<String> parts = new ArrayList<>();
        int n = paths[2] != paths[1] ? 3 : paths[1] != paths[0] ? 2 : 1;
        for (int i = 0; i < n; i++) {
            parts.add(paths[i].leg().table() + " " + paths[i].delayMillis());
        }
        return String.join(" ", parts);
    }

    /**
     * The bios of each class held back now: {@code READS WRITES FLUSHES}, as dm-delay's
     * {@code delay_status} prints them ({@code dc->read.ops, dc->write.ops, dc->flush.ops}).
     */
    @Override
    public String status() {
        return held.get(0) + " " + held.get(1) + " " + held.get(2);
    }

    @Override
    public void close() {
        // The shared timer lives as long as the JVM; bios are drained by suspend before a swap.
    }

    private static ScheduledExecutorService timer() {
        ScheduledThreadPoolExecutor t = new ScheduledThreadPoolExecutor(1, r -> {
            Thread th = new Thread(r, "biostack-delay");
            th.setDaemon(true);
            return th;
        });
        t.setRemoveOnCancelPolicy(true);
        return t;
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The table line {@code delay DEV OFFSET MS [DEV OFFSET MS [DEV OFFSET MS]]} (dm-delay's
     * {@code delay_ctr}: read, write and flush triples). On a whole-device line the length is
     * the room left on the smallest of them.
     *
     * @param a the line's arguments
     * @return the spec, to open once the devices named are
     */
    public static TableSpec parseTable(TableArgs a) {
        List<Leg.Named> legs = new ArrayList<>();
        List<Long> millis = new ArrayList<>();
        while (a.hasNext() || legs.isEmpty()) {
            if (legs.size() == 3) {
                throw a.bad("takes at most 3 <dev> <offset> <delay> triples (read, write, flush)");
            }
            String d = a.dev("DEV");
            legs.add(new Leg.Named(d, a.bytes("OFFSET")));
            millis.add(a.number("delay (ms)"));
        }
        return a.spec((name, len, r) -> {
            List<Leg> ls = Layers.openLegs(legs, r);
            List<Path> ps = new ArrayList<>();
            for (int i = 0; i < ls.size(); i++) {
                ps.add(new Path(ls.get(i), millis.get(i)));
            }
            return new Delay(name, Layers.lengthOr(len, Layers.minLeft(ls)), ps);
        });
    }
}
