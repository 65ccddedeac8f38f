package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import io.biostack.block.stats.MirrorResyncEvent;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * RAID1: the same data on every leg (dm-raid1, Documentation/admin-guide/device-mapper; table
 * {@code mirror core <#log args> <region size> [sync|nosync] <#legs> [<dev> <offset>]+
 * [<#features> handle_errors]}).
 *
 * <h2>I/O</h2>
 * Writes, discards, write-zeroes and flushes go to every leg that is in sync or being
 * resynchronised, each as a clone; the caller's bio completes when the last leg has answered,
 * and fails only when no leg took the write. Reads go to one in-sync leg, round robin; a read
 * that fails is retried on another leg. A leg that fails any I/O is dropped (state FAILED, health
 * 'D', 'R' or 'S' in {@link #status()}) and the device keeps serving from the others.
 *
 * <h2>Resynchronisation</h2>
 * {@code message reinstate <leg>} (or a table without {@code nosync}) copies an in-sync leg to the
 * leg region by region on a background thread while I/O goes on; progress is the
 * {@code in-sync/total} region count of the status. To keep a region's copy from racing a
 * write, the copier marks the region it is about to copy and waits until the writes in it have
 * completed; writes that arrive for the marked region wait in a queue until its copy is done.
 * Every write counts itself in the regions it touches (one atomic add) and reads the marked
 * region (one volatile read): the lock is taken only when the two meet.
 *
 * <h2>A leg that comes back</h2>
 * While a leg is down, every write that does not reach it sets the bits of its regions in that
 * leg's dirty-region bitmap (in memory, as dm-raid1's core log and DRBD's bitmap keep them). A leg
 * dropped after an I/O error (not by {@code message fail}) is probed in the background with a
 * one-block read, every {@link #PROBE_MIN_NANOS} at first and backing off to
 * {@link #PROBE_MAX_NANOS}; when it answers (a network leaf that reconnected by itself, a disk
 * that is back) the leg is taken back and only its dirty regions are copied, with no command
 * given. {@code message reinstate} still copies every region (the admin may have replaced the
 * disk). A leg whose FLUSH failed may have lost any write it had acknowledged since its last good
 * flush: it gets, besides its dirty regions, those the disk log marks (see
 * {@link MirrorLog#markedBits}) or, with the core log, those it completed writes in since its last
 * good flush (two bitmaps per leg, see {@code unflushed}: an atomic OR per region the first time a
 * leg completes a write there after a flush, an opaque read after that, and a CAS per flush).
 * A copied leg is flushed before it is called in sync, so a leg that lost such writes while away
 * is caught before it serves a read. Progress is the {@code in-sync/total} count of the status
 * either way.
 *
 * <h2>A disk log</h2>
 * With a {@link MirrorLog} ({@code mirror disk 2|3 LOGDEV REGION [sync|nosync] ...}) a region is
 * marked on the log device, durably, before the first write to it reaches the legs, and cleared
 * lazily once every leg has it, as md's write-intent bitmap. A restart after a crash (or with a
 * leg that was down) copies only the marked regions from the first leg to the others; a leg that
 * is still away gets them when it answers again.
 */
public final class Mirror implements Target {
    /** The state of a leg. */
    public enum LegState {
        /** Holds the mirror's data: takes reads and writes. */
        IN_SYNC,
        /** Being copied to: takes writes, not reads. */
        RESYNCING,
        /** Dropped: takes nothing; writes that miss it are tracked. */
        FAILED
    }

    /** Default region: the copy and write-tracking unit when the table does not say. */
    public static final long DEFAULT_REGION = 512 * 1024;
    /** First wait before a dropped leg is probed again; doubles after each failed probe. */
    static final long PROBE_MIN_NANOS = TimeUnit.MILLISECONDS.toNanos(500);
    /** Longest wait between probes of a dropped leg. */
    static final long PROBE_MAX_NANOS = TimeUnit.SECONDS.toNanos(10);
    private static final VarHandle BITS = MethodHandles.arrayElementVarHandle(long[].class);

    private final String name;
    private final Leg[] legs;
    private final long length;
    private final long region;
    private final int regions;
    private final boolean initialNosync;
    private final QueueLimits limits;
    private final LegState[] state;             // guarded by lock; read racily on the I/O path
    private volatile long stateVersion;         // publishes state[] changes
    private final char[] health;                // guarded by lock
    private final AtomicIntegerArray regionWrites;
    private volatile long window = -1;          // region being copied, -1 when none
    private final ArrayDeque<Bio> deferred = new ArrayDeque<>(); // guarded by lock
    private final ReentrantLock lock = new ReentrantLock();
    private final AtomicInteger robin = new AtomicInteger();
    private final AtomicLong syncedRegions = new AtomicLong();
    private final AtomicLong resyncBytes = new AtomicLong();
    private volatile boolean resyncRunning;
    private volatile boolean closed;
    private Thread worker;                       // guarded by lock
    private Thread prober;                       // guarded by lock
    private final boolean[] autoFailed;          // guarded by lock: dropped after an error, probed
    private final boolean[] fullResync;          // guarded by lock: copy every region, not the dirty ones
    private final boolean[] flushLost;           // guarded by lock: a flush failed: copy what it may have lost too
    private final long[][] dirty;                // per leg, one bit per region; set with getAndBitwiseOr
    /**
     * Core log only (null with a disk log, whose marks say the same): per leg, two bitmaps of the
     * regions it completed writes in. Completed writes go to the current one; a flush sent to
     * the leg while none of these is in flight makes the other current and, once it succeeds,
     * clears the old one (every write in it completed before that flush was sent). So the two
     * hold every region written since the leg's last good flush: what a failed flush may have lost.
     */
    private final long[][][] unflushed;
    /** Per leg and bitmap, a bit per word of {@code unflushed} that may be non-zero: a flush clears only those. */
    private final long[][][] unflushedWords;
    private final AtomicIntegerArray unflushedCur;  // per leg: which bitmap takes completed writes
    private final AtomicIntegerArray clearing;      // per leg: 1 while the flush that clears the other is in flight
    /** In a leg clone's private long, next to the leg index: this flush clears the old bitmap. */
    private static final long CLEARS = 1L << 32;
    private final long[] probeAt;                // prober thread only
    private final long[] probeGap;               // prober thread only
    private long outOfSync;                      // guarded by lock: legs failed and not copied back since

    private final MirrorLog log;                 // null: the core log (memory only)
    private final java.util.function.Consumer<Bio> afterLog = this::afterLog;
    private final EndIo legWriteDone = this::legWriteDone;
    private final EndIo writeDone = this::writeDone;
    private final EndIo readDone = this::readDone;

    /**
     * A mirror of {@code lengthBytes} over {@code legs}. With {@code nosync} the legs are taken to hold the same data already; otherwise every leg after the first is copied from the first in the background.
     *
     * @param name the name (of the device, snapshot or event subject)
     * @param legs the legs
     * @param lengthBytes the mirror's size in bytes
     * @param regionBytes the region size in bytes
     * @param nosync true when the legs hold the same data already
     */
    public Mirror(String name, List<Leg> legs, long lengthBytes, long regionBytes, boolean nosync) {
        this(name, legs, lengthBytes, regionBytes, nosync, null);
    }

    /**
     * A mirror with a dirty-region log on {@code logDevice} (dm-raid1's {@code disk} log). A new
     * (zeroed) log starts as {@code nosync} says; a log that holds marks makes the mirror copy
     * those regions, and only those, from the first leg to the others.
     *
     * @param name        the mirror's name
     * @param legs        the legs
     * @param lengthBytes the mirror's size
     * @param regionBytes the region size
     * @param nosync      for a new log: the legs hold the same data already
     * @param logDevice   the log device, or null for the core (memory) log
     */
    public Mirror(String name, List<Leg> legs, long lengthBytes, long regionBytes, boolean nosync, BlockDevice logDevice) {
        if (legs.size() < 1 || legs.size() > 64) {
            throw new IllegalArgumentException(name + ": a mirror takes 1 to 64 legs, not " + legs.size());
        }
        List<BlockDevice> devs = new ArrayList<>();
        for (Leg l : legs) {
            Layers.checkWindow(name, l.device(), l.start(), lengthBytes);
            devs.add(l.device());
        }
        // From the legs alone (as dm_calculate_queue_limits): a plain builder's "no discard, no
        // FUA" would take them away though every leg has them and dm-raid1 passes them on.
        QueueLimits lim = Layers.stackLegs(devs);
        if (regionBytes < lim.logicalBlockSize() || regionBytes % lim.logicalBlockSize() != 0) {
            throw new IllegalArgumentException(name + ": region size " + regionBytes
                    + " must be a positive multiple of the " + lim.logicalBlockSize() + "-byte logical block");
        }
        long nr = (lengthBytes + regionBytes - 1) / regionBytes;
        if (nr > 1 << 26) {
            throw new IllegalArgumentException(name + ": region size " + regionBytes + " is too small for "
                    + lengthBytes + " bytes (more than 2^26 regions)");
        }
        this.name = name;
        this.legs = legs.toArray(new Leg[0]);
        this.length = lengthBytes;
        this.region = regionBytes;
        this.regions = (int) nr;
        this.initialNosync = nosync;
        this.limits = lim.toBuilder().chunkBytes(0).build();
        this.state = new LegState[this.legs.length];
        this.health = new char[this.legs.length];
        this.regionWrites = new AtomicIntegerArray(Math.max(1, regions));
        this.autoFailed = new boolean[this.legs.length];
        this.fullResync = new boolean[this.legs.length];
        this.flushLost = new boolean[this.legs.length];
        this.dirty = new long[this.legs.length][(regions + 63) / 64];
        this.unflushed = logDevice == null ? new long[this.legs.length][2][(regions + 63) / 64] : null;
        this.unflushedWords = logDevice == null ? new long[this.legs.length][2][((regions + 63) / 64 + 63) / 64] : null;
        this.unflushedCur = new AtomicIntegerArray(this.legs.length);
        this.clearing = new AtomicIntegerArray(this.legs.length);
        this.probeAt = new long[this.legs.length];
        this.probeGap = new long[this.legs.length];
        this.log = logDevice == null ? null : MirrorLog.open(logDevice, regionBytes, regions);
        boolean fromLog = log != null && (!log.isFresh() || !nosync);
        if (log != null && log.isFresh() && !nosync) {
            log.markAll(); // a crash during the first copy must copy everything again
        }
        long[] logged = fromLog ? log.loadedBits() : null;
        // The source of a restart's copy: the first leg the log does not say is out of sync (a
        // leg that was away lacks acknowledged writes; copying from it would undo them).
        long stale = fromLog ? log.loadedOutOfSync() & (this.legs.length == 64 ? -1L : (1L << this.legs.length) - 1) : 0;
        int source = Long.numberOfTrailingZeros(~stale);
        if (source >= this.legs.length) {
            source = 0; // every leg out of sync: nothing better to copy from
        }
        this.outOfSync = stale & ~(1L << source);
        for (int i = 0; i < state.length; i++) {
            if (fromLog) {
                state[i] = i == source ? LegState.IN_SYNC : LegState.RESYNCING;
                System.arraycopy(logged, 0, dirty[i], 0, logged.length);
            } else {
                state[i] = i == 0 || nosync ? LegState.IN_SYNC : LegState.RESYNCING;
                fullResync[i] = state[i] == LegState.RESYNCING;
            }
            health[i] = 'A';
        }
        this.stateVersion = 1;
        syncedRegions.set((nosync && !fromLog) || this.legs.length == 1 ? regions : 0);
        if (log != null) {
            log.outOfSync(outOfSync);
            log.start(afterLog, r -> regionWrites.get(r) == 0, this::allInSync, this::flushLegs);
        }
        if ((!nosync || fromLog) && this.legs.length > 1) {
            startResync();
        }
    }

    private boolean allInSync() {
        if (resyncRunning) {
            return false;
        }
        lock.lock();
        try {
            for (LegState s : state) {
                if (s != LegState.IN_SYNC) {
                    return false;
                }
            }
            return true;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Flushes every leg before the disk log clears bits (the log's thread, synchronously). A leg
     * whose flush fails is dropped as after a failed FLUSH from above (see {@link #flushFailed}).
     *
     * @return true when every leg is in sync and flushed
     */
    private boolean flushLegs() {
        List<java.util.concurrent.CompletableFuture<Void>> fs = new ArrayList<>(legs.length);
        for (Leg l : legs) {
            fs.add(l.device().flush());
        }
        boolean ok = true;
        for (int i = 0; i < legs.length; i++) {
            try {
                fs.get(i).get(60, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            } catch (Exception e) {
                ok = false;
                flushFailed(i);
                legFailed(i, 'D', "flush failed before the log cleared regions: "
                        + (e.getCause() != null ? e.getCause().getMessage() : e.getMessage()));
            }
        }
        return ok && allInSync();
    }

    /** A write whose regions the log has marked durably (or failed to: then it fails here). */
    private void afterLog(Bio bio) {
        if (bio.status() != Status.OK) {
            leaveRegions(bio);
            bio.endIo();
            return;
        }
        writeLegs(bio);
    }

    /**
     * Bytes copied to legs by resyncs since the mirror was made (a restart's cost).
     *
     * @return bytes copied to legs by resyncs since the mirror was made (a restart's cost)
     */
    public long resyncBytes() {
        return resyncBytes.get();
    }

    /**
     * The disk log, or null for the core log.
     *
     * @return the disk log, or null for the core log
     */
    public MirrorLog log() {
        return log;
    }

    /**
     * A mirror whose legs already hold the same data.
     *
     * @param name the name (of the device, snapshot or event subject)
     * @param legs the legs
     * @param lengthBytes the mirror's size in bytes
     * @return the mirror
     */
    public static Mirror inSync(String name, List<Leg> legs, long lengthBytes) {
        return new Mirror(name, legs, lengthBytes, DEFAULT_REGION, true);
    }

    @Override public String name() { return name; }
    @Override public long size() { return length; }
    @Override public QueueLimits limits() { return limits; }

    @Override
    public boolean isReadOnly() {
        for (Leg l : legs) {
            if (l.device().isReadOnly()) {
                return true;
            }
        }
        return false;
    }

    /**
     * The state of leg {@code i}.
     *
     * @param i an index from 0
     * @return the state of leg {@code i}
     */
    public LegState legState(int i) {
        lock.lock();
        try {
            return state[i];
        } finally {
            lock.unlock();
        }
    }

    /**
     * True while a background copy runs.
     *
     * @return true while a background copy runs
     */
    public boolean isResyncing() {
        return resyncRunning;
    }

    /**
     * Regions copied so far of the current resync (all of them when none runs).
     *
     * @return regions copied so far of the current resync (all of them when none runs)
     */
    public long syncedRegions() {
        return syncedRegions.get();
    }

    /**
     * Regions the device is divided into for resync.
     *
     * @return regions the device is divided into for resync
     */
    public int regionCount() {
        return regions;
    }

    // ---- I/O -------------------------------------------------------------------------------

    /**
     * I/O memory of the first leg, registered with its ring when it sits on a loop device (the
     * legs of one process share one file engine, so it serves them all).
     */
    @Override
    public MemorySegment allocateIoMemory(long bytes, Arena owner) {
        return legs[0].device().allocateIoMemory(bytes, owner);
    }

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, length, limits, isReadOnly())) {
            return;
        }
        if (bio.op() == Op.READ) {
            read(bio, -1);
        } else {
            write(bio);
        }
    }

    private long legMask(boolean forWrite) {
        long v = stateVersion; // acquire the latest state[] writes
        long m = 0;
        for (int i = 0; i < state.length && v != 0; i++) {
            LegState s = state[i];
            if (s == LegState.IN_SYNC || forWrite && s == LegState.RESYNCING) {
                m |= 1L << i;
            }
        }
        return m;
    }

    private void read(Bio bio, int skipLeg) {
        long m = legMask(false);
        if (skipLeg >= 0) {
            m &= ~(1L << skipLeg);
        }
        if (m == 0) {
            bio.fail(Status.IOERR, "read on " + name + ": no leg is in sync");
            return;
        }
        int n = Long.bitCount(m);
        int pick = Math.floorMod(robin.getAndIncrement(), n);
        int leg = -1;
        for (int i = 0; i <= pick; i++) {
            leg = Long.numberOfTrailingZeros(m);
            m &= m - 1;
        }
        Bio c = Layers.cloneWith(bio, readDone);
        c.setPrivateLong(leg);
        c.setOffset(legs[leg].start() + bio.offset());
        legs[leg].device().submit(c);
    }

    private void readDone(Bio c) {
        if (c.status() != Status.OK) {
            int leg = (int) c.privateLong();
            legFailed(leg, 'R', c.status() + (c.detail() == null ? "" : ": " + c.detail()));
            if (legMask(false) != 0) {
                Bio parent = (Bio) c.privateData();
                c.put();
                read(parent, leg);
                return;
            }
        }
        Layers.finishClone(c);
    }

    private void write(Bio bio) {
        boolean ranged = bio.op() != Op.FLUSH;
        if (ranged && !enterRegions(bio)) {
            return; // deferred until the region's copy is done
        }
        if (ranged && log != null && log.needsMark(bio.offset(), bio.size())) {
            log.hold(bio); // sent on by afterLog once its regions are marked on the log device
            return;
        }
        writeLegs(bio);
    }

    private void writeLegs(Bio bio) {
        boolean ranged = bio.op() != Op.FLUSH;
        long m = legMask(true);
        if (ranged) {
            long down = ~m & (legs.length == 64 ? -1L : (1L << legs.length) - 1);
            for (; down != 0; down &= down - 1) {
                markDirty(Long.numberOfTrailingZeros(down), bio.offset(), bio.size());
            }
        }
        Bio master = Layers.cloneWith(bio, writeDone);
        master.setPrivateLong(m);
        while (m != 0) {
            int i = Long.numberOfTrailingZeros(m);
            m &= m - 1;
            Bio c = master.cloneShallow(Layers.POOL);
            c.setEndIo(legWriteDone);
            c.setPrivateData(master);
            c.setPrivateLong(i | (startsClearing(i, bio) ? CLEARS : 0));
            if (ranged) {
                c.setOffset(legs[i].start() + bio.offset());
            }
            master.incRemaining();
            legs[i].device().submit(c);
        }
        master.endIo();
    }

    private void legWriteDone(Bio c) {
        Bio master = (Bio) c.privateData();
        int leg = (int) c.privateLong();
        if (c.status() == Status.OK && unflushed != null) {
            Bio parent = (Bio) master.privateData();
            if ((c.privateLong() & CLEARS) != 0) {
                clearOld(leg);
            }
            if (parent.op() != Op.FLUSH) {
                markUnflushed(leg, parent.offset(), parent.size());
            }
        }
        if (c.status() != Status.OK) {
            Bio parent = (Bio) master.privateData();
            if (parent.op() != Op.FLUSH) {
                markDirty(leg, parent.offset(), parent.size());
            }
            if (parent.op() == Op.FLUSH || parent.hasFlag(io.biostack.block.BioFlags.PREFLUSH)) {
                flushFailed(leg);
            }
            if ((c.privateLong() & CLEARS) != 0) {
                clearing.set(leg, 0); // (after flushFailed: the old bitmap is in the dirty bits)
            }
            legFailed(leg, 'D', c.status() + (c.detail() == null ? "" : ": " + c.detail()));
        }
        c.put();
        master.endIo();
    }

    private void writeDone(Bio master) {
        Bio parent = (Bio) master.privateData();
        long m = master.privateLong() & legMask(true);
        master.put();
        if (m == 0) {
            parent.setStatus(Status.IOERR, parent.op() + " on " + name + " failed on every leg");
        }
        if (parent.op() != Op.FLUSH) {
            leaveRegions(parent);
        }
        long missed = ~m & (legs.length == 64 ? -1L : (1L << legs.length) - 1);
        if (log != null && m != 0 && (missed & ~log.outOfSyncRecorded()) != 0) {
            // Acknowledged only once the log says which legs lack it (see MirrorLog). A flush too:
            // a leg whose flush failed may have lost writes it acknowledged, and a restart that
            // still took it for in sync would copy it over the legs that flushed them.
            log.completeWhenRecorded(parent);
            return;
        }
        parent.endIo();
    }

    /** Counts the bio in its regions; false when it was queued behind the region being copied. */
    private boolean enterRegions(Bio bio) {
        long r0 = bio.offset() / region;
        long r1 = (bio.offset() + bio.size() - 1) / region;
        while (true) {
            for (long r = r0; r <= r1; r++) {
                regionWrites.incrementAndGet((int) r);
            }
            long w = window;
            if (w < r0 || w > r1) {
                return true;
            }
            leaveRegions(bio);
            lock.lock();
            try {
                w = window;
                if (w >= r0 && w <= r1) {
                    deferred.add(bio);
                    return false;
                }
            } finally {
                lock.unlock();
            }
        }
    }

    private void leaveRegions(Bio bio) {
        long r0 = bio.offset() / region;
        long r1 = (bio.offset() + bio.size() - 1) / region;
        for (long r = r0; r <= r1; r++) {
            regionWrites.decrementAndGet((int) r);
        }
    }

    /** Marks the regions of [offset, offset + size) dirty for {@code leg}: they must be copied to it. */
    private void markDirty(int leg, long offset, long size) {
        if (size <= 0) {
            return;
        }
        long r0 = offset / region;
        long r1 = (offset + size - 1) / region;
        for (long r = r0; r <= r1; r++) {
            setDirty(leg, (int) r);
        }
    }

    /**
     * Leg {@code leg} failed a flush: any write it acknowledged since its last good flush may be
     * gone (an NBD server that restarted without its cache). A disk log's marks hold them: a
     * region is marked before its first write and goes clean only after every leg has flushed
     * it, and no bit goes while a leg is out of sync; so the marked regions, taken when the copy
     * begins, and the leg's dirty ones are all it may lack (as a restart after a crash copies
     * those alone). The core log's unflushed bitmaps hold them too: they go into the dirty bits
     * now (before a flush that succeeds later clears one; NBD reports a loss to one flush only)
     * and again when the copy begins (a write whose completion ran after this).
     */
    private void flushFailed(int leg) {
        if (log == null) {
            unflushedToDirty(leg);
        }
        lock.lock();
        try {
            flushLost[leg] = true;
        } finally {
            lock.unlock();
        }
    }

    private void unflushedToDirty(int leg) {
        long[] d = dirty[leg];
        for (int w = 0; w < d.length; w++) {
            long u = (long) BITS.getVolatile(unflushed[leg][0], w) | (long) BITS.getVolatile(unflushed[leg][1], w);
            if (u != 0) {
                BITS.getAndBitwiseOr(d, w, u);
            }
        }
    }

    /**
     * For a flush (or a write with PREFLUSH) about to go to leg {@code leg}: when no flush that
     * clears is in flight on it, this one is; completed writes go to the other bitmap from now.
     * A CAS per flush per leg, none per plain write.
     */
    private boolean startsClearing(int leg, Bio bio) {
        if (unflushed == null || (bio.op() != Op.FLUSH && !bio.hasFlag(io.biostack.block.BioFlags.PREFLUSH))
                || !clearing.compareAndSet(leg, 0, 1)) {
            return false;
        }
        unflushedCur.set(leg, 1 - unflushedCur.get(leg));
        return true;
    }

    /**
     * The flush that clears succeeded: the writes in the old bitmap are stable on the leg. Only
     * the words written since the last clear are visited (a flush costs what was written, not
     * the device's size). A bit that a write completed before the flip sets only now stays until
     * the next clear: more to copy, never less.
     */
    private void clearOld(int leg) {
        int b = 1 - unflushedCur.get(leg);
        long[] old = unflushed[leg][b];
        long[] words = unflushedWords[leg][b];
        for (int s = 0; s < words.length; s++) {
            long m = (long) BITS.getAndSet(words, s, 0L);
            for (; m != 0; m &= m - 1) {
                BITS.setVolatile(old, s * 64 + Long.numberOfTrailingZeros(m), 0L);
            }
        }
        clearing.set(leg, 0);
    }

    /** Leg {@code leg} completed a write in [offset, offset + size): unflushed until its next good flush. */
    private void markUnflushed(int leg, long offset, long size) {
        if (size <= 0) {
            return;
        }
        int b = unflushedCur.get(leg);
        long[] u = unflushed[leg][b];
        for (long r = offset / region; r <= (offset + size - 1) / region; r++) {
            long bit = 1L << (r & 63);
            int w = (int) (r >>> 6);
            if (((long) BITS.getOpaque(u, w) & bit) == 0 && (long) BITS.getAndBitwiseOr(u, w, bit) == 0) {
                BITS.getAndBitwiseOr(unflushedWords[leg][b], w >>> 6, 1L << (w & 63)); // the word's first bit
            }
        }
    }

    private void setDirty(int leg, int r) {
        long bit = 1L << (r & 63);
        long[] d = dirty[leg];
        if (((long) BITS.getOpaque(d, r >>> 6) & bit) == 0) {
            long unused = (long) BITS.getAndBitwiseOr(d, r >>> 6, bit);
        }
    }

    private boolean testAndClearDirty(int leg, int r) {
        long bit = 1L << (r & 63);
        long[] d = dirty[leg];
        if (((long) BITS.getVolatile(d, r >>> 6) & bit) == 0) {
            return false;
        }
        return ((long) BITS.getAndBitwiseAnd(d, r >>> 6, ~bit) & bit) != 0;
    }

    /**
     * Regions dirty for leg {@code leg} (the work a resync of it has left).
     *
     * @param leg the leg index
     * @return regions dirty for leg {@code leg} (the work a resync of it has left)
     */
    public long dirtyRegions(int leg) {
        long n = 0;
        for (int w = 0; w < dirty[leg].length; w++) {
            n += Long.bitCount((long) BITS.getVolatile(dirty[leg], w));
        }
        return n;
    }

    private void legFailed(int leg, char why, String detail) {
        legFailed(leg, why, detail, true);
    }

    /** Drops a leg; {@code auto}: after an error, so probe it and take it back when it answers. */
    private void legFailed(int leg, char why, String detail, boolean auto) {
        lock.lock();
        try {
            if (state[leg] == LegState.FAILED) {
                return;
            }
            state[leg] = LegState.FAILED;
            health[leg] = why;
            autoFailed[leg] = auto;
            outOfSync |= 1L << leg;
            if (log != null) {
                log.outOfSync(outOfSync); // before stateVersion: a write that sees the leg down waits for it
            }
            stateVersion++;
            if (auto && prober == null && !closed) {
                prober = Thread.ofPlatform().daemon().name("biostack-mirror-probe-" + name).start(this::probeLoop);
            }
        } finally {
            lock.unlock();
        }
        System.err.println("biostack: mirror " + name + ": leg " + leg + " (" + legs[leg].device().name()
                + ") dropped" + (auto ? " after an error: " : ": ") + detail
                + (auto ? "; writes are tracked, and it is taken back when it answers again" : ""));
    }

    // ---- probing dropped legs ------------------------------------------------------------------

    private void probeLoop() {
        while (!closed) {
            long now = System.nanoTime();
            boolean any = false;
            for (int leg = 0; leg < legs.length && !closed; leg++) {
                boolean watch;
                lock.lock();
                try {
                    watch = state[leg] == LegState.FAILED && autoFailed[leg];
                } finally {
                    lock.unlock();
                }
                if (!watch) {
                    probeGap[leg] = 0;
                    continue;
                }
                any = true;
                if (probeGap[leg] == 0) {
                    probeGap[leg] = PROBE_MIN_NANOS;
                    probeAt[leg] = now + PROBE_MIN_NANOS;
                }
                if (now - probeAt[leg] >= 0) {
                    if (probe(leg)) {
                        probeGap[leg] = 0;
                        takeBack(leg);
                    } else {
                        probeGap[leg] = Math.min(probeGap[leg] * 2, PROBE_MAX_NANOS);
                        probeAt[leg] = System.nanoTime() + probeGap[leg];
                    }
                }
            }
            if (!any) {
                lock.lock();
                try {
                    if (!anyAutoFailedLocked()) {
                        prober = null;
                        return;
                    }
                } finally {
                    lock.unlock();
                }
            }
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(100));
        }
        lock.lock();
        try {
            prober = null;
        } finally {
            lock.unlock();
        }
    }

    private boolean anyAutoFailedLocked() {
        for (int i = 0; i < legs.length; i++) {
            if (state[i] == LegState.FAILED && autoFailed[i]) {
                return true;
            }
        }
        return false;
    }

    /** One block read from the start of the leg's window; its own memory, alive while in flight. */
    private boolean probe(int leg) {
        MemorySegment m = Arena.ofAuto().allocate(legs[leg].device().limits().logicalBlockSize(), 4096);
        return io(legs[leg].device(), Op.READ, legs[leg].start(), m);
    }

    /** The dropped leg answered: resynchronise it, copying only what changed while it was away. */
    private void takeBack(int leg) {
        lock.lock();
        try {
            if (state[leg] != LegState.FAILED || !autoFailed[leg] || closed) {
                return;
            }
            state[leg] = LegState.RESYNCING;
            health[leg] = 'A';
            autoFailed[leg] = false;
            stateVersion++;
        } finally {
            lock.unlock();
        }
        System.err.println("biostack: mirror " + name + ": leg " + leg + " (" + legs[leg].device().name()
                + ") answers again; copying the " + (fullResyncOf(leg) ? "whole device" : dirtyRegions(leg)
                + " region(s) written while it was away" + (flushLostOf(leg) ? " and those its failed flush may have lost" : "")));
        startResync();
    }

    private boolean flushLostOf(int leg) {
        lock.lock();
        try {
            return flushLost[leg];
        } finally {
            lock.unlock();
        }
    }

    private boolean fullResyncOf(int leg) {
        lock.lock();
        try {
            return fullResync[leg];
        } finally {
            lock.unlock();
        }
    }

    // ---- resync ----------------------------------------------------------------------------

    private void startResync() {
        lock.lock();
        try {
            if (worker != null || closed) {
                return; // a running worker looks for new targets before it stops
            }
            resyncRunning = true;
            syncedRegions.set(0);
            worker = Thread.ofPlatform().daemon().name("biostack-mirror-" + name).start(this::resync);
        } finally {
            lock.unlock();
        }
    }

    private void resync() {
        MemorySegment buf = Arena.ofAuto().allocate(Math.min(region, 1 << 20), 4096);
        while (true) {
            long targets;
            lock.lock();
            try {
                targets = targetsLocked();
                if (targets == 0 || closed) {
                    worker = null;
                    resyncRunning = false;
                    syncedRegions.set(regions);
                    return;
                }
            } finally {
                lock.unlock();
            }
            int src = pickSource();
            if (src < 0) {
                failTargets(targets, "no leg in sync to copy from");
                continue;
            }
            long start = System.nanoTime();
            long[] copied = new long[legs.length];
            boolean done = copyAll(src, targets, buf, copied);
            if (done) {
                flushTargets(targets);
                markInSync(targets);
            }
            for (long m = targets; m != 0; m &= m - 1) {
                int t = Long.numberOfTrailingZeros(m);
                LegState st = legState(t);
                MirrorResyncEvent.emit(name, legs[t].device().name(), copied[t],
                        st == LegState.IN_SYNC ? "ok" : closed ? "closed" : "stopped: leg " + t + " is " + st, start);
            }
        }
    }

    /**
     * Copies from leg {@code src} every region a target needs: all of them for a full resync, the
     * dirty ones otherwise, adding the bytes written to each target to {@code copied}. False when
     * the source failed or we closed.
     */
    private boolean copyAll(int src, long targets, MemorySegment buf, long[] copied) {
        long full = 0;
        long lost = 0;
        lock.lock();
        try {
            for (long m = targets; m != 0; m &= m - 1) {
                int t = Long.numberOfTrailingZeros(m);
                if (fullResync[t]) {
                    full |= 1L << t;
                } else if (flushLost[t]) {
                    lost |= 1L << t;
                }
                // (taken now, before the bits are read: a flush that fails later sets it again,
                // and the leg gets another pass; a whole copy covers it)
                flushLost[t] = false;
            }
        } finally {
            lock.unlock();
        }
        for (long m = log == null ? lost : 0; m != 0; m &= m - 1) {
            unflushedToDirty(Long.numberOfTrailingZeros(m)); // see flushFailed
        }
        if (lost != 0 && log != null) {
            // A target whose flush failed gets the log's marked regions too (see flushFailed).
            long[] marks;
            try {
                marks = log.markedBits();
            } catch (IllegalStateException e) {
                marks = null; // no record to trust: every region
            }
            for (long m = lost; m != 0; m &= m - 1) {
                int t = Long.numberOfTrailingZeros(m);
                if (marks == null) {
                    full |= 1L << t;
                    lock.lock();
                    try {
                        fullResync[t] = true; // stays whole if this pass stops early
                    } finally {
                        lock.unlock();
                    }
                    continue;
                }
                for (int w = 0; w < marks.length; w++) {
                    if (marks[w] != 0) {
                        BITS.getAndBitwiseOr(dirty[t], w, marks[w]);
                    }
                }
            }
        }
        long toCopy = regions;
        if (full == 0) {
            toCopy = 0;
            for (int w = 0; w < (regions + 63) / 64; w++) {
                long bits = 0;
                for (long m = targets; m != 0; m &= m - 1) {
                    bits |= (long) BITS.getVolatile(dirty[Long.numberOfTrailingZeros(m)], w);
                }
                toCopy += Long.bitCount(bits);
            }
        }
        long regionsCopied = 0;
        syncedRegions.set(regions - toCopy);
        for (int r = 0; r < regions && !closed; r++) {
            holdWindow(r);
            // After the hold, every write that missed a target in this region has marked it dirty.
            long need = 0;
            for (long m = targets; m != 0; m &= m - 1) {
                int t = Long.numberOfTrailingZeros(m);
                boolean d = testAndClearDirty(t, r);
                if (d || (full & 1L << t) != 0) {
                    if (legState(t) == LegState.RESYNCING) {
                        need |= 1L << t;
                    } else {
                        setDirty(t, r); // away now: it still lacks the region when it comes back
                    }
                }
            }
            if (need == 0) {
                releaseWindow();
                continue;
            }
            long start = (long) r * region;
            long end = Math.min(length, start + region);
            long got = need; // the targets that took every piece of the region
            for (long pos = start; pos < end; pos += buf.byteSize()) {
                int n = (int) Math.min(buf.byteSize(), end - pos);
                MemorySegment piece = buf.asSlice(0, n);
                if (!io(legs[src].device(), Op.READ, legs[src].start() + pos, piece)) {
                    for (long m = need; m != 0; m &= m - 1) {
                        setDirty(Long.numberOfTrailingZeros(m), r);
                    }
                    legFailed(src, 'S', "read failed while copying region " + r);
                    releaseWindow();
                    return false;
                }
                for (long m = need; m != 0; m &= m - 1) {
                    int t = Long.numberOfTrailingZeros(m);
                    if (legState(t) == LegState.RESYNCING) {
                        if (io(legs[t].device(), Op.WRITE, legs[t].start() + pos, piece)) {
                            if (unflushed != null) {
                                markUnflushed(t, pos, n); // lost too if its flush fails
                            }
                            copied[t] += n;
                            resyncBytes.addAndGet(n);
                        } else {
                            got &= ~(1L << t);
                            legFailed(t, 'S', "write failed while copying region " + r);
                        }
                    } else {
                        got &= ~(1L << t);
                    }
                }
            }
            for (long m = need & ~got; m != 0; m &= m - 1) {
                setDirty(Long.numberOfTrailingZeros(m), r); // dropped during the copy: still to do
            }
            releaseWindow();
            regionsCopied++;
            syncedRegions.set(regions - toCopy + Math.min(regionsCopied, toCopy));
        }
        return !closed;
    }

    /**
     * Flushes each target before it is called in sync: the copy must be stable, and a leg whose
     * flush fails may have lost writes it acknowledged before it went away, which no dirty bit
     * records (an NBD leaf whose server restarted without its cache says so here, once): it is
     * dropped and gets what it may have lost when it answers again (see flushFailed), never read
     * from meanwhile.
     */
    private void flushTargets(long targets) {
        for (long m = targets; m != 0; m &= m - 1) {
            int t = Long.numberOfTrailingZeros(m);
            if (legState(t) != LegState.RESYNCING) {
                continue;
            }
            try {
                legs[t].device().flush().get(60, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            } catch (Exception e) {
                flushFailed(t);
                legFailed(t, 'S', "flush failed after copying: " + e.getMessage());
            }
        }
    }

    /** Marks region {@code r} as being copied and waits for the writes in it to finish. */
    private void holdWindow(int r) {
        window = r;
        while (regionWrites.get(r) != 0 && !closed) {
            LockSupport.parkNanos(20_000);
        }
    }

    /** Ends the copy of the marked region and lets the writes that waited for it go. */
    private void releaseWindow() {
        List<Bio> go;
        lock.lock();
        try {
            window = -1;
            go = new ArrayList<>(deferred);
            deferred.clear();
        } finally {
            lock.unlock();
        }
        for (Bio b : go) {
            write(b);
        }
    }

    private static boolean io(BlockDevice dev, Op op, long off, MemorySegment mem) {
        try {
            var f = op == Op.READ ? dev.read(off, mem) : dev.write(off, mem);
            f.get(60, TimeUnit.SECONDS);
            return true;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        } catch (Exception e) {
            return false;
        }
    }

    private int pickSource() {
        lock.lock();
        try {
            for (int i = 0; i < state.length; i++) {
                if (state[i] == LegState.IN_SYNC) {
                    return i;
                }
            }
            return -1;
        } finally {
            lock.unlock();
        }
    }

    private long targetsLocked() {
        long m = 0;
        for (int i = 0; i < state.length; i++) {
            if (state[i] == LegState.RESYNCING) {
                m |= 1L << i;
            }
        }
        return m;
    }

    private long targets() {
        lock.lock();
        try {
            return targetsLocked();
        } finally {
            lock.unlock();
        }
    }

    private void markInSync(long targets) {
        lock.lock();
        try {
            for (long m = targets; m != 0; m &= m - 1) {
                int t = Long.numberOfTrailingZeros(m);
                // A target that was away during the pass and is back has regions it missed
                // (its dirty bits): it stays RESYNCING, and the worker makes another pass.
                // So does one whose flush failed during the pass and is not dropped yet.
                if (state[t] == LegState.RESYNCING && dirtyRegions(t) == 0 && !flushLost[t]) {
                    state[t] = LegState.IN_SYNC;
                    health[t] = 'A';
                    fullResync[t] = false;
                    outOfSync &= ~(1L << t);
                }
            }
            if (log != null) {
                log.outOfSync(outOfSync);
            }
            stateVersion++;
        } finally {
            lock.unlock();
        }
    }

    private void failTargets(long targets, String why) {
        for (long m = targets; m != 0; m &= m - 1) {
            legFailed(Long.numberOfTrailingZeros(m), 'S', why);
        }
    }

    /**
     * Waits until no resync runs (tests, orderly shutdown); false on timeout.
     *
     * @param timeout how long to wait
     * @param unit the unit of {@code timeout}
     * @return true when no resync runs any more, false on timeout
     * @throws InterruptedException when interrupted while waiting
     */
    public boolean awaitResync(long timeout, TimeUnit unit) throws InterruptedException {
        long end = System.nanoTime() + unit.toNanos(timeout);
        while (resyncRunning || !targetsEmpty()) {
            if (System.nanoTime() > end) {
                return false;
            }
            Thread.sleep(2);
        }
        return true;
    }

    private boolean targetsEmpty() {
        return targets() == 0;
    }

    // ---- control ---------------------------------------------------------------------------

    /**
     * {@code fail <leg>} drops a leg; {@code reinstate <leg>} (or {@code add}) takes a dropped
     * leg back and copies the data to it in the background. A leg is its index from 0 or its
     * device's name.
     */
    @Override
    public String message(List<String> argv) {
        if (argv.size() != 2) {
            throw new IllegalArgumentException("mirror messages: fail <leg>, reinstate <leg>");
        }
        int leg = legIndex(argv.get(1));
        switch (argv.get(0)) {
            case "fail" -> {
                if (legState(leg) == LegState.FAILED) {
                    throw new IllegalArgumentException("leg " + argv.get(1) + " has already failed");
                }
                legFailed(leg, 'D', "failed by message", false);
                return "";
            }
            case "reinstate", "add" -> {
                if (legState(leg) != LegState.FAILED) {
                    throw new IllegalArgumentException("leg " + argv.get(1) + " is " + legState(leg)
                            + "; only a failed leg can be reinstated");
                }
                if (log != null) {
                    // The leg is copied whole (it may be a new disk), but the log marks only the
                    // regions written while it was away: a restart after a crash during the copy
                    // would copy those alone and call the leg in sync. Every region is marked first,
                    // as for a new log with sync; the bits go once every leg is in sync again.
                    log.markAllRegions();
                }
                lock.lock();
                try {
                    if (state[leg] != LegState.FAILED) {
                        throw new IllegalArgumentException("leg " + argv.get(1) + " is " + state[leg]
                                + "; only a failed leg can be reinstated");
                    }
                    state[leg] = LegState.RESYNCING;
                    health[leg] = 'A';
                    autoFailed[leg] = false;
                    fullResync[leg] = true;
                    stateVersion++;
                } finally {
                    lock.unlock();
                }
                startResync();
                return "";
            }
            default -> throw new IllegalArgumentException("unknown mirror message '" + argv.get(0)
                    + "' (fail <leg>, reinstate <leg>)");
        }
    }

    private int legIndex(String s) {
        for (int i = 0; i < legs.length; i++) {
            if (legs[i].device().name().equals(s)) {
                return i;
            }
        }
        try {
            int i = Integer.parseInt(s);
            if (i >= 0 && i < legs.length) {
                return i;
            }
        } catch (NumberFormatException e) {
            // fall through
        }
        throw new IllegalArgumentException("no leg '" + s + "' in mirror " + name + " (0.." + (legs.length - 1) + " or a device name)");
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        long m = legMask(false);
        if (m == 0) {
            return Extent.data(Math.min(maxLength, length - offset));
        }
        Leg l = legs[Long.numberOfTrailingZeros(m)];
        return l.device().extentAt(l.start() + offset, Math.min(maxLength, length - offset));
    }

    @Override
    public String targetType() {
        return "mirror";
    }

    @Override
    public String table() {
        StringBuilder sb = log == null ? new StringBuilder("core ").append(initialNosync ? 2 : 1).append(' ')
                : new StringBuilder("disk ").append(initialNosync ? 3 : 2).append(' ').append(log.device().name()).append(' ');
        sb.append(Layers.sectors(region));
        if (initialNosync) {
            sb.append(" nosync");
        }
        sb.append(' ').append(legs.length);
        for (Leg l : legs) {
            sb.append(' ').append(l.table());
        }
        if (log != null && log.clearDelayMs() != MirrorLog.DEFAULT_CLEAR_DELAY_MS) {
            return sb.append(" 2 handle_errors clear_delay=").append(log.clearDelayMs()).append("ms").toString();
        }
        return sb.append(" 1 handle_errors").toString();
    }

    /** {@code <#legs> <dev>... <in-sync>/<total> 1 <health> 1 core}, as dm-raid1 says it. */
    @Override
    public String status() {
        StringBuilder sb = new StringBuilder().append(legs.length);
        for (Leg l : legs) {
            sb.append(' ').append(l.device().name());
        }
        String h;
        lock.lock();
        try {
            h = new String(health);
        } finally {
            lock.unlock();
        }
        return sb.append(' ').append(syncedRegions.get()).append('/').append(regions)
                .append(" 1 ").append(h).append(log == null ? " 1 core"
                        : " 3 disk " + log.device().name() + " " + log.health() + " marked=" + log.markedRegions()
                        + " log_writes=" + log.logWrites() + " resync_bytes=" + resyncBytes.get()).toString();
    }

    /** Stops a running resync; the legs' devices stay open. */
    @Override
    public void close() {
        Thread w;
        Thread p;
        lock.lock();
        try {
            closed = true;
            w = worker;
            p = prober;
        } finally {
            lock.unlock();
        }
        try {
            if (w != null) {
                w.join(10_000);
            }
            if (log != null) {
                log.close();
            }
            if (p != null) {
                LockSupport.unpark(p);
                p.join(10_000);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Reads the table line, as dm-raid1's constructor ({@code mirror_ctr}) does:
     * {@code [core <#args> REGION [sync|nosync] | disk <#args> LOGDEV REGION [sync|nosync]] [N]
     * (DEV OFFSET)+ [<#features> handle_errors]}. One feature is biostack's own:
     * {@code clear_delay=DURATION}, how long a disk log keeps the bit of an idle region (md's
     * {@code mdadm --delay}; {@link MirrorLog#DEFAULT_CLEAR_DELAY_MS} when absent).
     *
     * @param a the arguments after the target name
     * @return what opens the mirror once its legs (and log device) are open
     */
    public static TableSpec parseTable(TableArgs a) {
        long region = DEFAULT_REGION;
        boolean nosync = true;
        String logDev = null;
        int n;
        if (a.hasNext() && (a.peek().equals("core") || a.peek().equals("disk"))) {
            boolean disk = a.next("log type").equals("disk");
            long nargs = a.number("number of log arguments");
            long min = disk ? 2 : 1;
            if (nargs < min || nargs > min + 1) {
                throw a.bad(disk ? "disk log takes 2 or 3 arguments: <log device> <region size> [sync|nosync]"
                        : "core log takes 1 or 2 arguments: <region size> [sync|nosync]");
            }
            if (disk) {
                logDev = a.dev("log device");
            }
            region = a.bytes("region size");
            nosync = false;
            if (nargs == min + 1) {
                String s = a.next("sync|nosync");
                switch (s) {
                    case "nosync" -> nosync = true;
                    case "sync" -> nosync = false;
                    default -> throw a.bad("log argument must be sync or nosync, not '" + s + "'");
                }
            }
            n = (int) a.number("number of legs");
        } else if (a.hasNext() && a.peek().chars().allMatch(Character::isDigit) && a.left() % 2 == 1) {
            n = (int) a.number("number of legs");
        } else {
            n = a.left() / 2;
        }
        if (n < 1) {
            throw a.bad("a mirror needs at least one leg: DEV OFFSET ...");
        }
        List<Leg.Named> legs = Layers.legs(a, n);
        for (Leg.Named l : legs) {
            if (l.device().equals(logDev)) {
                throw a.bad("the log device " + logDev + " can't be a leg too");
            }
        }
        long clearDelay = 0;
        if (a.hasNext()) {
            long nf = a.number("number of features");
            for (int i = 0; i < nf; i++) {
                String f = a.next("feature");
                if (f.startsWith("clear_delay=")) {
                    if (logDev == null) {
                        throw a.bad("clear_delay= is for a disk log; a core log has no bits to clear");
                    }
                    clearDelay = a.duration(new TableArgs.Option(f, "clear_delay", f.substring("clear_delay=".length()))).toMillis();
                } else if (!f.equals("handle_errors")) {
                    throw a.bad("unknown feature '" + f + "' (handle_errors, clear_delay=DURATION)");
                }
            }
        }
        a.end();
        long cd = clearDelay;
        long reg = region;
        boolean ns = nosync;
        String lg = logDev;
        return a.spec((name, len, r) -> {
            List<Leg> ls = Layers.openLegs(legs, r);
            Mirror m = new Mirror(name, ls, Layers.lengthOr(len, Layers.minLeft(ls)), reg, ns,
                    lg == null ? null : r.device(lg));
            if (cd > 0) {
                m.log().clearDelay(cd);
            }
            return m;
        });
    }
}
