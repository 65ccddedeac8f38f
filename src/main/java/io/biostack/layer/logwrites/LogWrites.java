package io.biostack.layer.logwrites;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioFlags;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Extent;
import io.biostack.block.MpmcRing;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Resizable;
import io.biostack.block.Status;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import io.biostack.layer.Layers;
import io.biostack.layer.Target;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

/**
 * Passes I/O to a device and records every write (with its data), discard, flush and FUA on a
 * log device, in dm-log-writes' on-disk format ({@link LogFormat}), so that {@code biostack replay}
 * (or xfstests' {@code replay-log}) can rebuild the device as it was at any point.
 *
 * <p>Table: {@code log-writes DEV LOGDEV} (drivers/md/dm-log-writes.c, {@code log_writes_ctr}).
 * Message: {@code mark LABEL} adds a mark entry and returns once it and the super block are on
 * the log device. Status: {@code <logged entries> <highest log sector>} plus {@code
 * logging_disabled} after a log error or when the log device is full, as the kernel's.
 *
 * <h2>Order</h2>
 * The log holds entries in the order the upper layer could observe. A write, discard or
 * write-zeroes is put in line when DEV completes it, before its caller hears of the completion.
 * A flush (an empty FLUSH or a write with PREFLUSH) is put in line when it is <em>submitted</em>,
 * so it comes after every write that had completed before it was issued and before every write
 * that completes after: the kernel's rule ("only completed WRITEs, at the time the REQ_PREFLUSH
 * is issued, are added", log-writes.rst). Its entry is written once DEV completes the flush; a
 * flush that fails is left out. A FUA write is logged at its completion, as the kernel does. A
 * write-zeroes is logged as a discard entry (the replayer writes zeros for both).
 *
 * <h2>Threads and memory</h2>
 * End-io callbacks copy the data into a pooled, page-aligned log buffer with the entry sector in
 * front of it and push it on a lock-free (Treiber) stack; one logger thread per target (the
 * kernel's {@code log-write} kthread) takes the stack, puts it back in order, gives each record
 * its place in the log and gathers the records that are next to each other in the log into one
 * log bio to LOGDEV (a segment per record, up to LOGDEV's limits): one sequential write for many
 * records. Nothing blocks on the data
 * path and a warm pool allocates nothing. After a flush, FUA or mark entry the logger waits for
 * the log bios before it, then rewrites the super block with PREFLUSH|FUA, so a log read after a
 * crash is consistent up to its last flush, FUA or mark. A log bio that fails disables logging
 * (the kernel's {@code logging_enabled = false}); the data path goes on.
 *
 * <h2>Growth</h2>
 * When DEV can grow ({@link Resizable}: a file under a loop device), so can this target: a format
 * above it that allocates at its end (qcow2) grows it through {@link #growTo}. dm-log-writes'
 * format has no entry for a size change, so the growth is logged as a mark
 * {@code biostack-resize BYTES} ({@link #RESIZE_MARK}), put in line before any write past the old
 * end can complete. A replay reproduces the size at entry {@code i} as the largest such mark
 * before it; a replayer that ignores these marks (xfstests' {@code replay-log}, biostack's replay
 * today) replays onto an image of the final size ({@code --size}), which differs from a true crash
 * state only in zeros past the end of the file at that point: a reference into that region would
 * have pointed past the end of the file, and reads as an unwritten (zero) block instead.
 *
 * <p>It does not shrink ({@link Resizable#shrinkTo} keeps its default): a replay takes the size
 * at an entry as the largest resize mark before it, so a shrink logged the same way would be
 * replayed as no change, and the final image would keep a tail the true one dropped. qcow2 above
 * it keeps the container as grown at close, which its check counts as unused space only.
 *
 * <p>Ownership: the caller's bio is completed exactly once, after DEV completed its clone; its
 * memory is read only before that. Log buffers belong to the target and go back to its pool when
 * their log bio completes. DEV and LOGDEV belong to whoever opened them; {@link #close()} writes a
 * last mark {@code dm-log-writes-end} (as the kernel's destructor) when anything was logged, and
 * stops the logger.
 */
public final class LogWrites implements Target, Resizable {
    private static final System.Logger LOG = System.getLogger("biostack.layer.logwrites");
    /** The kernel's destructor logs this mark (log_writes_dtr). */
    public static final String END_MARK = "dm-log-writes-end";
    /**
     * Label prefix of the mark logged when the device grows; the new size in bytes follows, in
     * decimal ({@code biostack-resize 8388608}).
     */
    public static final String RESIZE_MARK = "biostack-resize ";
    /** Largest write the log buffers take in one piece; bigger bios are split by the limits. */
    static final int MAX_DATA = 1 << 20;
    /** Largest log bio the logger gathers records into (a few MiB: sequential, not a stall). */
    static final long MAX_LOG_BIO = 4L << 20;
    /** Size classes of the buffer pool: 4 KiB, 8 KiB, ... up to MAX_DATA plus the entry sector. */
    private static final int CLASSES = 10;

    private final String name;
    private final BlockDevice dev;
    private final BlockDevice logDev;
    private final int sectorSize;
    private final QueueLimits limits;
    private final long logSize;

    private final MpmcRing<Record>[] pool;
    private final AtomicReference<Record> pushed = new AtomicReference<>();
    private final AtomicInteger inflight = new AtomicInteger();
    private final Thread logger;
    private volatile boolean parked;
    private volatile boolean running = true;
    private volatile boolean enabled = true;
    /** Set by the first entry put in line: until then nothing is written to LOGDEV. */
    private volatile boolean used;
    /** The logger has written the fresh super block (logger thread only). */
    private boolean started;
    private volatile String disabledWhy;
    private volatile long loggedEntries;
    private volatile long nextByte;
    private final Object superLock = new Object();
    private final Object growLock = new Object();
    private final long maxLogBio;
    private final int maxLogSegs;
    // the group of records gathered into the next log bio (logger thread only)
    private Record groupFirst;
    private Record groupLast;
    private long groupAt;
    private long groupBytes;
    private int groupSegs;

    // callbacks cached once: the I/O path creates none
    private final EndIo writeDone = this::writeDone;
    private final EndIo flushDone = this::flushDone;
    private final EndIo logDone = this::logDone;
    private final Layers.Boundary splitBoundary = off -> limits().maxBytes();
    private final java.util.function.Consumer<Bio> logged = this::submitLogged;

    /**
     * A log-writes device over {@code dev}, logging to {@code logDev} from its first byte; starts
     * the logger thread. Nothing is written to {@code logDev} until the first entry (a write, a
     * flush, a mark): dm-log-writes' constructor writes nothing either, and a table that never
     * goes live (a reload whose other line fails, a loaded table cleared) must leave the log the
     * live table is writing as it was.
     *
     * @param name   the device's name
     * @param dev    the device written through (not owned)
     * @param logDev the log device (not owned), at least two sectors of {@code dev}'s block size
     * @throws IllegalArgumentException when the log device is read-only, too small, or has larger
     *                                  blocks than {@code dev}
     */
    @SuppressWarnings("unchecked")
    public LogWrites(String name, BlockDevice dev, BlockDevice logDev) {
        this.name = name;
        this.dev = dev;
        this.logDev = logDev;
        this.sectorSize = dev.limits().logicalBlockSize();
        int logLbs = logDev.limits().logicalBlockSize();
        if (sectorSize % logLbs != 0) {
            throw new IllegalArgumentException(name + ": the log device " + logDev.name() + " has " + logLbs
                    + "-byte blocks, larger than " + dev.name() + "'s " + sectorSize);
        }
        if (logDev.isReadOnly()) {
            throw new IllegalArgumentException(name + ": the log device " + logDev.name() + " is read-only");
        }
        this.logSize = logDev.size() / sectorSize * sectorSize;
        if (logSize < 2L * sectorSize) {
            throw new IllegalArgumentException(name + ": the log device " + logDev.name() + " is too small");
        }
        QueueLimits d = dev.limits();
        QueueLimits l = logDev.limits();
        // A log bio segment is the entry sector plus the data: keep it within LOGDEV's and our
        // buffers' limits (0 in a limit means none, as in QueueLimits).
        long logMax = unlimited(l.maxBytes());
        if (l.maxSegmentSize() > 0) {
            logMax = Math.min(logMax, l.maxSegmentSize());
        }
        long max = Math.min(Math.min(unlimited(d.maxBytes()), MAX_DATA), logMax - sectorSize);
        int unit = Math.max(sectorSize, d.physicalBlockSize());
        max = Math.max(sectorSize, max / unit * unit);
        this.limits = d.toBuilder().maxBytes(max).build();
        this.pool = new MpmcRing[CLASSES];
        for (int i = 0; i < CLASSES; i++) {
            pool[i] = new MpmcRing<>(i < 2 ? 256 : 32);
        }
        this.nextByte = sectorSize;
        this.maxLogBio = Math.min(unlimited(l.maxBytes()), MAX_LOG_BIO);
        this.maxLogSegs = l.maxSegments() > 0 ? Math.min(l.maxSegments(), 256) : 256;
        this.logger = Thread.ofPlatform().daemon().name("biostack-log-writes-" + name).start(this::loggerLoop);
    }

    @Override public String name() { return name; }
    @Override public long size() { return dev.size(); }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return dev.isReadOnly(); }
    @Override public String targetType() { return "log-writes"; }
    @Override public String table() { return dev.name() + " " + logDev.name(); }

    @Override
    public String status() {
        return loggedEntries + " " + (nextByte / Layers.SECTOR - 1) + (enabled ? "" : " logging_disabled");
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        return dev.extentAt(offset, maxLength);
    }

    /**
     * Grows DEV to at least {@code minSize} bytes and logs the new size as a mark
     * ({@link #RESIZE_MARK}), without waiting for the log: this may run in a completion callback
     * of a layer above, on the thread that would complete the log write.
     *
     * @param minSize the size wanted, in bytes
     * @return DEV's size afterwards
     * @throws IOException when DEV cannot grow (it is not {@link Resizable}, or its file cannot)
     */
    @Override
    public long growTo(long minSize) throws IOException {
        synchronized (growLock) {
            long before = dev.size();
            long after = Resizable.grow(dev, minSize);
            if (after != before && enabled && running) {
                // Under the lock, so the marks of two growths are in line in size order.
                push(markRecord(RESIZE_MARK + after, null));
            }
            return after;
        }
    }

    /**
     * Shows DEV's last part block ({@link Resizable#showPartBlock}) and logs the new size as a
     * mark, as {@link #growTo} does, so a replay sees the size the layers above saw.
     *
     * @return DEV's size afterwards, or -1 when it has no part block to show
     * @throws IOException when DEV can show one but finding it failed
     */
    @Override
    public long showPartBlock() throws IOException {
        synchronized (growLock) {
            long before = dev.size();
            long after = Resizable.showPart(dev);
            if (after > before && enabled && running) {
                push(markRecord(RESIZE_MARK + after, null));
            }
            return after;
        }
    }

    // ---- data path -----------------------------------------------------------------------------

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, dev.size(), limits, dev.isReadOnly())) {
            return;
        }
        Op op = bio.op();
        if (op == Op.READ || !enabled) {
            dev.submit(bio);
            return;
        }
        if (op == Op.WRITE && bio.size() > limits.maxBytes()) {
            // a caller that ignored our limits: log it in pieces that fit a log buffer (slow path)
            Layers.splitAt(bio, splitBoundary, logged);
            return;
        }
        submitLogged(bio);
    }

    /** A write, discard, write-zeroes or flush that fits the limits: pass it down, log it. */
    private void submitLogged(Bio bio) {
        Op op = bio.op();
        boolean preflush = op == Op.FLUSH || bio.hasFlag(BioFlags.PREFLUSH);
        Bio c = bio.cloneShallow(Layers.POOL);
        if (preflush) {
            // In line now: after the writes that completed before it was issued (log-writes.rst).
            Record r = record(bio, true);
            c.setPrivateData(r);
            c.setEndIo(flushDone);
            push(r);
        } else {
            c.setPrivateData(bio);
            c.setEndIo(writeDone);
        }
        dev.submit(c);
    }

    /** A write, discard or write-zeroes completed on DEV: log it, then complete the caller's bio. */
    private void writeDone(Bio c) {
        Bio parent = (Bio) c.privateData();
        Status s = c.status();
        if (s == Status.OK) {
            if (enabled) {
                push(record(parent, false));
            }
        } else {
            parent.setStatus(s, c.detail());
        }
        c.put();
        parent.endIo();
    }

    /** A flush completed on DEV: its entry may now be written (or dropped when it failed). */
    private void flushDone(Bio c) {
        Record r = (Record) c.privateData();
        Bio parent = r.parent;
        r.parent = null;
        Status s = c.status();
        if (s != Status.OK) {
            parent.setStatus(s, c.detail());
            r.failed = true;
        }
        c.put();
        r.ready = true;
        wakeLogger();
        parent.endIo();
    }

    /** Builds the log record of {@code bio}: entry sector, then the data (copied now). */
    private Record record(Bio bio, boolean flush) {
        Op op = bio.op();
        long flags = 0;
        if (flush) {
            flags |= LogFormat.FLUSH;
        }
        if (bio.hasFlag(BioFlags.FUA) && op == Op.WRITE) {
            flags |= LogFormat.FUA;
        }
        long data = 0;
        long nr = 0;
        if (op == Op.WRITE) {
            data = bio.size();
            nr = data / sectorSize;
        } else if (op == Op.DISCARD || op == Op.WRITE_ZEROES) {
            flags |= LogFormat.DISCARD;
            nr = bio.size() / sectorSize;
        }
        Record r = take(sectorSize + data);
        r.bytes = sectorSize + data;
        r.flags = flags;
        LogFormat.writeEntry(r.buf, 0, sectorSize, op == Op.FLUSH ? 0 : bio.offset() / sectorSize, nr, flags, null);
        if (data > 0) {
            bio.copyTo(r.buf.asSlice(sectorSize, data));
        }
        r.ready = !flush;
        r.failed = false;
        r.parent = flush ? bio : null;
        r.done = null;
        return r;
    }

    private Record take(long bytes) {
        int cls = classOf(bytes);
        Record r = pool[cls].poll();
        if (r == null) {
            r = new Record(cls, Arena.ofAuto().allocate(4096L << cls, 4096));
        }
        return r;
    }

    private static long unlimited(long limit) {
        return limit > 0 ? limit : Long.MAX_VALUE;
    }

    private static int classOf(long bytes) {
        int cls = 0;
        while ((4096L << cls) < bytes) {
            cls++;
        }
        if (cls >= CLASSES) {
            throw new IllegalStateException("log record of " + bytes + " bytes is larger than the log buffers");
        }
        return cls;
    }

    private void recycle(Record r) {
        r.groupNext = null;
        r.parent = null;
        r.done = null;
        r.next = null;
        pool[r.cls].offer(r);
    }

    /** Treiber push: lock-free, no allocation; the logger reverses what it takes. */
    private void push(Record r) {
        if (!used) {
            used = true;
        }
        Record h;
        do {
            h = pushed.get();
            r.next = h;
        } while (!pushed.compareAndSet(h, r));
        wakeLogger();
    }

    private void wakeLogger() {
        if (parked) {
            LockSupport.unpark(logger);
        }
    }

    // ---- the logger thread ---------------------------------------------------------------------

    private void loggerLoop() {
        Record batch = null;
        while (true) {
            if (batch == null) {
                Record taken = pushed.getAndSet(null);
                if (taken == null) {
                    submitGroup();
                    if (!running) {
                        return;
                    }
                    parked = true;
                    if (pushed.get() == null && running) {
                        LockSupport.parkNanos(this, 100_000_000L);
                    }
                    parked = false;
                    continue;
                }
                batch = reverse(taken);
            }
            Record r = batch;
            batch = r.next;
            r.next = null;
            log(r);
        }
    }

    private static Record reverse(Record h) {
        Record prev = null;
        while (h != null) {
            Record n = h.next;
            h.next = prev;
            prev = h;
            h = n;
        }
        return prev;
    }

    /**
     * Gives a record its place in the log and adds it to the group of records being gathered
     * into one log bio (they are contiguous in the log: one sequential write instead of one per
     * record). Runs on the logger thread only.
     */
    private void log(Record r) {
        if (!r.ready) {
            submitGroup();
            while (!r.ready) {
                parked = true;
                if (!r.ready) {
                    LockSupport.parkNanos(this, 10_000_000L);
                }
                parked = false;
            }
        }
        CountDownLatch done = r.done;
        if (r.failed || !enabled) {
            recycle(r);
            if (done != null) {
                done.countDown();
            }
            return;
        }
        if (!started) {
            // A fresh super block (0 entries) before the first entry lands over an older log, so
            // a log read after a crash before the first flush is empty, not the older one's count
            // over new entries (the kernel leaves the old super until its first FUA or mark).
            started = true;
            writeSuperNow(0);
            if (!enabled) {
                recycle(r);
                if (done != null) {
                    done.countDown();
                }
                return;
            }
        }
        long at = nextByte;
        if (at + r.bytes > logSize) {
            submitGroup();
            disable("ran out of space on the log device " + logDev.name());
            recycle(r);
            if (done != null) {
                done.countDown();
            }
            return;
        }
        if (groupFirst != null && (groupBytes + r.bytes > maxLogBio || groupSegs == maxLogSegs)) {
            submitGroup();
        }
        nextByte = at + r.bytes;
        loggedEntries++;
        if (groupFirst == null) {
            groupFirst = r;
            groupAt = at;
        } else {
            groupLast.groupNext = r;
        }
        groupLast = r;
        groupBytes += r.bytes;
        groupSegs++;
        if ((r.flags & (LogFormat.FLUSH | LogFormat.FUA | LogFormat.MARK)) != 0) {
            submitGroup();
            awaitLogBios();
            if (enabled) {
                writeSuperNow(loggedEntries);
            }
        }
        if (done != null) {
            done.countDown();
        }
    }

    /** Sends the gathered records to LOGDEV as one bio, a segment per record. */
    private void submitGroup() {
        Record first = groupFirst;
        if (first == null) {
            return;
        }
        inflight.incrementAndGet();
        Bio b = Layers.POOL.get().init(Op.WRITE, 0, groupAt, logDone);
        for (Record r = first; r != null; r = r.groupNext) {
            b.addSegment(r.slice());
        }
        b.setPrivateData(first);
        groupFirst = null;
        groupLast = null;
        groupBytes = 0;
        groupSegs = 0;
        logDev.submit(b);
    }

    private void logDone(Bio b) {
        Record r = (Record) b.privateData();
        if (b.status() != Status.OK) {
            disable("log write failed: " + b.status() + (b.detail() == null ? "" : " (" + b.detail() + ")"));
        }
        b.put();
        while (r != null) {
            Record n = r.groupNext;
            recycle(r);
            r = n;
        }
        inflight.decrementAndGet();
        wakeLogger();
    }

    private void awaitLogBios() {
        while (inflight.get() > 0) {
            parked = true;
            if (inflight.get() > 0) {
                LockSupport.parkNanos(this, 10_000_000L);
            }
            parked = false;
        }
    }

    private void disable(String why) {
        if (enabled) {
            enabled = false;
            disabledWhy = why;
            LOG.log(System.Logger.Level.WARNING, name + ": logging disabled: " + why);
        }
    }

    /**
     * Writes the super block with {@code nr} entries, PREFLUSH|FUA so the entries it counts are on
     * LOGDEV before it, and waits (the kernel waits too: an older super must not land after it).
     * Runs on the logger thread.
     */
    private void writeSuperNow(long nr) {
        synchronized (superLock) {
            try {
                MemorySegment m = logDev.allocateIoMemory(sectorSize, Arena.ofAuto());
                LogFormat.writeSuper(m, 0, nr, sectorSize);
                logDev.write(LogFormat.SUPER_OFFSET, io.biostack.block.IoIter.of(m), BioFlags.FUA | BioFlags.PREFLUSH)
                        .get(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                disable("super block write failed: " + e.getMessage());
            }
        }
    }

    // ---- messages and life cycle ---------------------------------------------------------------

    @Override
    public String message(List<String> argv) {
        if (argv.size() != 2 || !argv.getFirst().equalsIgnoreCase("mark")) {
            throw new IllegalArgumentException("log-writes takes one message: mark LABEL (got '" + String.join(" ", argv) + "')");
        }
        if (!enabled) {
            throw new IllegalArgumentException(name + ": logging is disabled: " + disabledWhy);
        }
        mark(argv.get(1));
        return "";
    }

    /**
     * Adds a mark and waits until it and the super block counting it are on the log device.
     * Not on the I/O path. The text is cut to what an entry sector holds, as the kernel does.
     *
     * @param label the mark's text
     * @throws IllegalStateException when the mark was not logged within 30 s, or the wait was
     *                               interrupted
     */
    public void mark(String label) {
        CountDownLatch done = new CountDownLatch(1);
        push(markRecord(label, done));
        try {
            if (!done.await(30, TimeUnit.SECONDS)) {
                throw new IllegalStateException(name + ": mark not logged within 30 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(name + ": interrupted while logging a mark");
        }
    }

    /** A mark entry for {@code label} (cut to what an entry sector holds); {@code done} may be null. */
    private Record markRecord(String label, CountDownLatch done) {
        byte[] text = label.getBytes(StandardCharsets.UTF_8);
        int max = LogFormat.maxMarkBytes(sectorSize);
        if (text.length > max) {
            text = java.util.Arrays.copyOf(text, max);
        }
        Record r = take(sectorSize);
        r.bytes = sectorSize;
        r.flags = LogFormat.MARK;
        LogFormat.writeEntry(r.buf, 0, sectorSize, 0, 0, LogFormat.MARK, text);
        r.ready = true;
        r.failed = false;
        r.parent = null;
        r.done = done;
        return r;
    }

    /**
     * Entries logged so far.
     *
     * @return the count
     */
    public long loggedEntries() {
        return loggedEntries;
    }

    /**
     * True until a log write failed or the log device filled up.
     *
     * @return whether writes are still logged
     */
    public boolean loggingEnabled() {
        return enabled;
    }

    @Override
    public void close() {
        if (!running) {
            return;
        }
        if (enabled && used) {
            // The kernel's destructor logs the end mark even for a table that never went live;
            // here a target that logged nothing ends nothing, so a failed reload writes nothing.
            try {
                mark(END_MARK);
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, name + ": " + e.getMessage());
            }
        }
        running = false;
        LockSupport.unpark(logger);
        try {
            logger.join(30_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** One entry on its way to the log: a pooled buffer with the entry sector and the data. */
    private static final class Record {
        final int cls;
        final MemorySegment buf;
        long bytes;
        long flags;
        volatile boolean ready;
        boolean failed;
        Bio parent;
        CountDownLatch done;
        Record next;
        /** The next record in the same log bio (logger thread, then the log bio's end-io). */
        Record groupNext;
        private MemorySegment slice;

        Record(int cls, MemorySegment buf) {
            this.cls = cls;
            this.buf = buf;
        }

        /** The first {@code bytes} of the buffer; the last slice is kept, so same-size records allocate nothing. */
        MemorySegment slice() {
            MemorySegment s = slice;
            if (s == null || s.byteSize() != bytes) {
                s = buf.asSlice(0, bytes);
                slice = s;
            }
            return s;
        }
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The table line {@code log-writes DEV LOGDEV}, as dm-log-writes' {@code log_writes_ctr}
     * (exactly a device and a log device). The device is as large as DEV; a segment of another
     * length is refused.
     *
     * @param a the line's arguments
     * @return the spec, to open once DEV and LOGDEV are
     */
    public static TableSpec parseTable(TableArgs a) {
        String dev = a.dev("DEV");
        String log = a.dev("LOGDEV");
        a.end();
        if (dev.equals(log)) {
            throw a.bad("DEV and LOGDEV must be different devices");
        }
        return a.spec((name, len, r) -> {
            LogWrites lw = new LogWrites(name, r.device(dev), r.device(log));
            if (len >= 0 && len != lw.size()) {
                long have = lw.size();
                lw.close();
                throw new IllegalArgumentException("log-writes covers all of " + dev + " (" + have / Layers.SECTOR
                        + " sectors), the segment is " + len / Layers.SECTOR + " sectors");
            }
            return lw;
        });
    }
}
