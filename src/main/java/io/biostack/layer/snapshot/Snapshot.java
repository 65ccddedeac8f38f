package io.biostack.layer.snapshot;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioPool;
import io.biostack.block.BioSplitter;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import io.biostack.block.stats.SnapshotMergeEvent;
import io.biostack.layer.Target;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * A copy-on-write snapshot of a device, after device-mapper's {@code snapshot} target
 * (Documentation/admin-guide/device-mapper/snapshot.rst, drivers/md/dm-snap.c).
 *
 * <p>The snapshot device reads like the origin did when it was taken. Its own writes, and
 * writes to the origin made through the {@link SnapshotOrigin} handler, first copy the chunk
 * they touch from the origin into a free chunk of the COW device ("copy-out") and record the
 * remapping in the {@link ExceptionStore}; reads of remapped chunks go to the COW device, others
 * to the origin. Writes made to the origin device directly, around the handler, are not seen:
 * as with dm, the origin must be used through {@code snapshot-origin}.
 *
 * <h2>Per-chunk ordering, without blocking</h2>
 * A chunk being copied out or merged is <em>busy</em>: bios for it wait in a queue (they are
 * re-dispatched when it frees), no thread waits. Snapshot bios that read or write a chunk where
 * it is are counted <em>in flight</em> on that chunk; an origin write that has just copied a
 * chunk out goes on only when the snapshot's reads of that chunk from the origin have finished,
 * and a merge copies a chunk back only when nothing is in flight on it (dm's
 * {@code track_chunk} and {@code __check_for_conflicting_io}). A bio that spans chunks is split
 * at chunk boundaries; its pieces are chained and the first error wins.
 *
 * <h2>Overflow</h2>
 * When the COW device is full, the snapshot becomes invalid (the header says so on disk): the bio
 * that needed the chunk fails with NOSPC, every later snapshot bio with IOERR, and the origin
 * goes on without it, as dm does.
 *
 * <h2>Merge</h2>
 * {@link #merge} copies every exception's chunk back to the origin in the background with
 * progress, after which the origin holds the snapshot's data, the store is empty, and the
 * snapshot device passes its bios straight to the origin. During the merge, reads of unmerged
 * chunks still come from the COW device, and any write (to the snapshot, or to the origin through
 * the handler) to a chunk not yet merged merges that chunk first and then goes to the origin.
 * With a persistent store each merged chunk is flushed on the origin and dropped from the store
 * on disk before the chunk takes writes, so that a merge stopped half way (a crash, a restart)
 * goes on from the chunks left and never copies an old chunk over what was written since.
 */
public final class Snapshot implements Target {
    /** dm-snapshot's states, plus the end of a merge. */
    public enum State {
        /** Taking copy-outs; reads see the origin as it was. */
        ACTIVE,
        /** The COW device filled up or a copy failed: snapshot bios fail. */
        INVALID,
        /** Copying exceptions back into the origin. */
        MERGING,
        /** The origin holds the snapshot's data; bios pass straight to it. */
        MERGED
    }

    /**
     * Progress of a merge: chunks copied back so far, out of how many.
     *
     * @param mergedChunks chunks merged so far
     * @param totalChunks chunks to merge in all
     */
    public record MergeProgress(long mergedChunks, long totalChunks) {
    }

    /**
     * The COW device of every open snapshot. A second snapshot on a COW device in use would
     * allocate the same free chunks and write the same table slots as the first: each would
     * overwrite the other's copied-out data. dm lets a new table take a live snapshot's place at
     * resume (snapshot_ctr's handover); here the first must be closed before another opens.
     */
    private static final Map<BlockDevice, Snapshot> COW_IN_USE = Collections.synchronizedMap(new IdentityHashMap<>());

    private final String name;
    private final BlockDevice origin;
    private final BlockDevice cow;
    private final ExceptionStore store;
    private final long chunk;
    private final int shift;
    private final QueueLimits limits;
    private final BioPool pool = new BioPool(256);

    private final Object lock = new Object();
    // guarded by lock. Primitive-keyed tables and recycled chunk states: a read through the
    // snapshot (a backup view's) looks up and tracks its chunk without allocating.
    private final LongMap<Long> exceptions = new LongMap<>();
    private final LongMap<ChunkState> chunks = new LongMap<>();
    /** Idle chunk states for reuse, at most {@link #SPARE_STATES}. */
    private final ArrayDeque<ChunkState> spare = new ArrayDeque<>();
    private static final int SPARE_STATES = 1024;
    private volatile State state = State.ACTIVE;
    private String invalidWhy;

    private final AtomicLong merged = new AtomicLong();
    private volatile long mergeTotal;
    private CompletableFuture<Void> mergeFuture;

    private final EndIo trackedDone = this::trackedDone;
    private final Consumer<Bio> dispatch = this::dispatch;

    /** Per busy or in-use chunk: exclusive work on it, and bios in flight on it. */
    private static final class ChunkState {
        boolean busy;
        int inflight;
        final ArrayDeque<Runnable> waiters = new ArrayDeque<>(2);
        Runnable onIdle;
    }

    private Snapshot(String name, BlockDevice origin, BlockDevice cow, boolean persistent, long chunkBytes) {
        int lbs = Math.max(origin.limits().logicalBlockSize(), cow.limits().logicalBlockSize());
        if (chunkBytes < 512 || Long.bitCount(chunkBytes) != 1 || chunkBytes < lbs) {
            throw new IllegalArgumentException("snapshot chunk size must be a power of two of at least " + lbs
                    + " bytes, not " + chunkBytes);
        }
        this.name = name;
        this.origin = origin;
        this.cow = cow;
        Snapshot user = COW_IN_USE.putIfAbsent(cow, this);
        if (user != null) {
            throw new IllegalArgumentException("the COW device " + cow.name() + " is in use by snapshot " + user.name
                    + " (load another table into " + user.name + " and resume it first; two snapshots on one COW"
                    + " device would overwrite each other's chunks)");
        }
        try {
            this.store = ExceptionStore.open(cow, persistent, chunkBytes, exceptions);
        } catch (RuntimeException e) {
            COW_IN_USE.remove(cow, this);
            throw e;
        }
        this.chunk = store.chunkBytes();
        this.shift = Long.numberOfTrailingZeros(chunk);
        if (!store.valid()) {
            state = State.INVALID;
            invalidWhy = "the COW store on " + cow.name() + " was marked invalid";
        }
        QueueLimits top = QueueLimits.builder().logicalBlockSize(lbs).chunkBytes(chunk).build();
        this.limits = QueueLimits.stack(QueueLimits.stack(top, origin.limits()), cow.limits()).toBuilder()
                .maxDiscardBytes(0).maxWriteZeroesBytes(0).build();
    }

    /**
     * A snapshot of {@code origin} with its exceptions on {@code cow}, as the dm table {@code snapshot <origin> <COW device> <persistent?> <chunksize>}. A persistent store on a COW device that already holds one is loaded (its chunk size wins); a zeroed one is formatted. Register writes to the origin through {@link SnapshotOrigin#of(String, BlockDevice)}.
     *
     * @param name the name (of the device, snapshot or event subject)
     * @param origin the origin device
     * @param cow the COW device
     * @param persistent true for a persistent (on-disk) exception store
     * @param chunkBytes the chunk size in bytes
     * @return the snapshot, registered with its origin
     */
    public static Snapshot create(String name, BlockDevice origin, BlockDevice cow, boolean persistent,
                                  long chunkBytes) {
        Snapshot s = new Snapshot(name, origin, cow, persistent, chunkBytes);
        SnapshotOrigin.register(origin, s);
        return s;
    }

    /**
     * Starts merging {@code snapshot} back into its origin (dm's {@code snapshot-merge}). The future completes when the origin holds the snapshot's data; {@code progress} is called with (merged, total) chunks after each chunk, on the merging thread.
     *
     * @param snapshot the snapshot device
     * @param progress called with the progress
     * @return a future completed when the origin holds the snapshot's data
     */
    public static CompletableFuture<Void> merge(BlockDevice snapshot, Consumer<MergeProgress> progress) {
        if (!(snapshot instanceof Snapshot s)) {
            throw new IllegalArgumentException(snapshot.name() + " is not a snapshot");
        }
        return s.merge(progress);
    }

    @Override public String name() { return name; }
    @Override public long size() { return origin.size(); }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return origin.isReadOnly() || cow.isReadOnly(); }
    @Override public String targetType() { return state == State.MERGING ? "snapshot-merge" : "snapshot"; }

    /**
     * The origin device (not owned by the snapshot).
     *
     * @return the origin device (not owned by the snapshot)
     */
    public BlockDevice origin() {
        return origin;
    }

    /**
     * Active, invalid (a copy to the COW device failed, or its store was marked so), merging or merged.
     *
     * @return active, invalid (a copy to the COW device failed, or its store was marked so), merging or merged
     */
    public State state() {
        return state;
    }

    /**
     * Bytes per chunk, the unit copied on write.
     *
     * @return bytes per chunk, the unit copied on write
     */
    public long chunkBytes() {
        return chunk;
    }

    /**
     * How many chunks are remapped to the COW device.
     *
     * @return how many chunks are remapped to the COW device
     */
    public long exceptionCount() {
        synchronized (lock) {
            return exceptions.size();
        }
    }

    /**
     * Chunks merged back into the origin so far, of those to merge.
     *
     * @return chunks merged back into the origin so far, of those to merge
     */
    public MergeProgress mergeProgress() {
        return new MergeProgress(merged.get(), mergeTotal);
    }

    @Override
    public String table() {
        return origin.name() + " " + cow.name() + " " + (store.persistent() ? "P" : "N") + " " + chunk / 512;
    }

    /** dm's snapshot status: {@code <sectors allocated>/<total sectors> <metadata sectors>}, or Invalid / Merged. */
    @Override
    public String status() {
        if (state == State.INVALID) {
            return "Invalid";
        }
        long s = chunk / 512;
        String base = store.allocatedChunks() * s + "/" + store.totalChunks() * s + " " + store.metadataChunks() * s;
        if (state == State.MERGING) {
            return base + " merging " + merged.get() + "/" + mergeTotal;
        }
        return base;
    }

    /** {@code merge}: starts a merge (as loading a snapshot-merge table would). */
    @Override
    public String message(List<String> argv) {
        if (argv.size() == 1 && argv.get(0).equals("merge")) {
            merge(p -> { });
            return "merging " + mergeTotal + " chunks";
        }
        throw new IllegalArgumentException("snapshot takes the message 'merge'");
    }

    // ---- submit --------------------------------------------------------------------------------

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, size(), limits, isReadOnly())) {
            return;
        }
        if (bio.op() == Op.FLUSH) {
            flush(bio);
            return;
        }
        if (bio.op() != Op.READ && bio.op() != Op.WRITE) {
            bio.fail(Status.NOTSUPP, bio.op() + " is not supported by snapshot " + name);
            return;
        }
        BioSplitter.submitSplit(bio, limits, pool, dispatch);
    }

    private void flush(Bio bio) {
        Bio a = bio.cloneShallow(pool);
        a.chain(bio);
        Bio b = bio.cloneShallow(pool);
        b.chain(bio);
        origin.submit(a);
        cow.submit(b);
        bio.endIo();
    }

    /** One piece that lies inside one chunk. */
    private void dispatch(Bio piece) {
        State st = state;
        if (st == State.MERGED) {
            origin.submit(piece);
            return;
        }
        long c = piece.offset() >>> shift;
        boolean write = piece.op() == Op.WRITE;
        Long where;
        long fresh = -1;
        synchronized (lock) {
            st = state;
            if (st == State.INVALID) {
                where = null;
            } else if (isBusy(c)) {
                chunks.get(c).waiters.add(() -> dispatch(piece)); // the retry is made only when needed
                return;
            } else {
                where = exceptions.get(c);
                if (where != null || !write || st == State.MERGED) {
                    track(c);
                } else if (st == State.ACTIVE) {
                    fresh = store.allocate();
                    if (fresh < 0) {
                        invalidateLocked("the COW device " + cow.name() + " is full");
                    } else {
                        chunkState(c).busy = true;
                    }
                } else { // MERGING, no exception: the origin is the snapshot now
                    track(c);
                }
            }
        }
        if (st == State.INVALID) {
            piece.fail(Status.IOERR, "snapshot " + name + " is invalid: " + invalidWhy);
            return;
        }
        if (where != null) {
            if (st == State.MERGING && write) {
                untrack(c);
                mergeThen(c, () -> dispatch(piece), piece);
                return;
            }
            remap(piece, cow, (where << shift) | (piece.offset() & (chunk - 1)), c);
        } else if (!write || st != State.ACTIVE) {
            remap(piece, origin, piece.offset(), c);
        } else if (fresh < 0) {
            piece.fail(Status.NOSPC, "snapshot " + name + ": the COW device " + cow.name() + " is full");
        } else {
            copyOutForWrite(piece, c, fresh);
        }
    }

    /** A clone of {@code piece} at {@code offset} of {@code dev}, counted in flight on chunk {@code c}. */
    private void remap(Bio piece, BlockDevice dev, long offset, long c) {
        Bio clone = piece.cloneShallow(pool);
        clone.setOffset(offset);
        clone.setPrivateData(piece);
        clone.setPrivateLong(c);
        clone.setEndIo(trackedDone);
        dev.submit(clone);
    }

    private void trackedDone(Bio clone) {
        Bio piece = (Bio) clone.privateData();
        long c = clone.privateLong();
        piece.setStatus(clone.status(), clone.detail());
        clone.put();
        untrack(c);
        piece.endIo();
    }

    // ---- copy-out ------------------------------------------------------------------------------

    /** A snapshot write to a chunk not yet remapped (the chunk is busy, {@code fresh} allocated). */
    private void copyOutForWrite(Bio piece, long c, long fresh) {
        long cowOff = fresh << shift;
        if (piece.size() == chunk) {
            // dm's __snapshot_bio_covers_whole_chunk: the bio's data is the whole new chunk
            Bio clone = piece.cloneShallow(pool);
            clone.setOffset(cowOff);
            clone.setEndIo(w -> {
                Status s = w.status();
                String why = w.detail();
                w.put();
                if (!s.isOk()) {
                    copyFailed(c, "writing chunk " + c + " to " + cow.name() + ": " + why);
                    piece.fail(s, why);
                    return;
                }
                commitException(c, fresh, piece, piece::endIo);
            });
            cow.submit(clone);
            return;
        }
        copyChunk(origin, c << shift, cow, cowOff, s -> {
            if (!s.isOk()) {
                copyFailed(c, "copying chunk " + c + " to " + cow.name() + ": " + s.text());
                piece.fail(Status.IOERR, "snapshot " + name + ": copy-out of chunk " + c + " failed");
                return;
            }
            commitException(c, fresh, piece, () -> dispatch(piece)); // the piece now finds the exception
        });
    }

    /**
     * Records chunk {@code c}'s new exception at {@code fresh} in the store, publishes it, wakes
     * the bios waiting on the chunk and runs {@code then}; fails {@code piece} when the commit
     * fails.
     */
    private void commitException(long c, long fresh, Bio piece, Runnable then) {
        store.commit(c, fresh, cs -> {
            if (!cs.isOk()) {
                copyFailed(c, "committing an exception to " + cow.name());
                piece.fail(cs, "snapshot " + name + ": committing the exception failed");
                return;
            }
            synchronized (lock) {
                exceptions.put(c, fresh);
            }
            release(c);
            then.run();
        });
    }

    /**
     * Called by the origin handler before a write to chunk {@code c} of the origin: copies the
     * chunk out (or merges it back while merging) and runs {@code proceed} when the origin write
     * may go on. Never blocks; {@code proceed} may run on another thread.
     */
    void beforeOriginWrite(long c, Runnable proceed) {
        long fresh;
        State st;
        synchronized (lock) {
            st = state;
            if (st == State.INVALID || st == State.MERGED) {
                fresh = -2;
            } else if (isBusy(c)) {
                chunks.get(c).waiters.add(() -> beforeOriginWrite(c, proceed));
                return;
            } else if (exceptions.containsKey(c)) {
                fresh = st == State.MERGING ? -3 : -2;
            } else if (st == State.MERGING) {
                fresh = -2;
            } else {
                fresh = store.allocate();
                if (fresh < 0) {
                    invalidateLocked("the COW device " + cow.name() + " is full");
                    fresh = -2;
                } else {
                    chunkState(c).busy = true;
                }
            }
        }
        if (fresh == -2) {
            proceed.run();
            return;
        }
        if (fresh == -3) {
            mergeThen(c, proceed, null);
            return;
        }
        long dest = fresh;
        copyChunk(origin, c << shift, cow, dest << shift, s -> {
            if (!s.isOk()) {
                copyFailed(c, "copying chunk " + c + " to " + cow.name() + ": " + s.text());
                proceed.run();
                return;
            }
            store.commit(c, dest, cs -> {
                if (!cs.isOk()) {
                    copyFailed(c, "committing an exception to " + cow.name());
                    proceed.run();
                    return;
                }
                Runnable go = () -> {
                    release(c);
                    proceed.run();
                };
                boolean now;
                synchronized (lock) {
                    exceptions.put(c, dest);
                    ChunkState cs2 = chunks.get(c);
                    now = cs2.inflight == 0;
                    if (!now) {
                        cs2.onIdle = go; // snapshot reads of this chunk from the origin finish first
                    }
                }
                if (now) {
                    go.run();
                }
            });
        });
    }

    /** A copy-out or commit failed: the snapshot can no longer be trusted (dm invalidates it too). */
    private void copyFailed(long c, String why) {
        synchronized (lock) {
            invalidateLocked(why);
        }
        release(c);
    }

    private void invalidateLocked(String why) {
        if (state == State.INVALID) {
            return;
        }
        state = State.INVALID;
        invalidWhy = why;
        store.invalidate();
    }

    // ---- merge ---------------------------------------------------------------------------------

    /**
     * Starts merging this snapshot back into its origin; see the class comment. Calling it again while a merge runs returns the same future.
     *
     * @param progress called with the progress
     * @return a future completed when the origin holds the snapshot's data
     */
    public CompletableFuture<Void> merge(Consumer<MergeProgress> progress) {
        List<Long> todo;
        synchronized (lock) {
            if (mergeFuture != null) {
                return mergeFuture;
            }
            if (state == State.INVALID) {
                return CompletableFuture.failedFuture(new IllegalStateException("snapshot " + name
                        + " is invalid and can't be merged: " + invalidWhy));
            }
            mergeFuture = new CompletableFuture<>();
            state = State.MERGING;
            long[] keys = exceptions.keys();
            Arrays.sort(keys);
            todo = new ArrayList<>(keys.length);
            for (long k : keys) {
                todo.add(k);
            }
            mergeTotal = todo.size();
        }
        CompletableFuture<Void> f = mergeFuture;
        Thread.ofVirtual().name("merge-" + name).start(() -> runMerge(todo, progress, f));
        return f;
    }

    /** The merge driver, like kcopyd's: one chunk at a time; waiting here holds no I/O thread. */
    private void runMerge(List<Long> todo, Consumer<MergeProgress> progress, CompletableFuture<Void> f) {
        long start = System.nanoTime();
        try {
            for (long c : todo) {
                CompletableFuture<Status> one = new CompletableFuture<>();
                mergeThen(c, () -> one.complete(Status.OK), null, one);
                Status s = one.join();
                if (!s.isOk()) {
                    throw new IllegalStateException("merging chunk " + c + " of " + name + " failed: " + s.text());
                }
                progress.accept(mergeProgress());
            }
            origin.flush().join();
            store.clear();
            synchronized (lock) {
                state = State.MERGED;
            }
            SnapshotOrigin.unregister(origin, this);
            SnapshotMergeEvent.emit(name, origin.name(), merged.get(), merged.get() * chunk, "ok", start);
            f.complete(null);
        } catch (RuntimeException e) {
            SnapshotMergeEvent.emit(name, origin.name(), merged.get(), merged.get() * chunk, e.getMessage(), start);
            f.completeExceptionally(e);
        }
    }

    private void mergeThen(long c, Runnable then, Bio failIfError) {
        mergeThen(c, then, failIfError, null);
    }

    /**
     * Merges chunk {@code c} back (if it still has an exception) with the chunk held busy, then
     * runs {@code then}. On a copy error: fails {@code failIfError} or completes {@code result}.
     */
    private void mergeThen(long c, Runnable then, Bio failIfError, CompletableFuture<Status> result) {
        Long from;
        synchronized (lock) {
            if (isBusy(c)) {
                chunks.get(c).waiters.add(() -> mergeThen(c, then, failIfError, result));
                return;
            }
            from = exceptions.get(c);
            if (from != null) {
                chunkState(c).busy = true;
            }
        }
        if (from == null) {
            then.run(); // merged meanwhile
            return;
        }
        Runnable copy = () -> copyChunk(cow, from << shift, origin, c << shift, copied -> {
            if (copied.isOk()) {
                dropMerged(c, s -> mergeDone(c, s, then, failIfError, result));
            } else {
                mergeDone(c, copied, then, failIfError, result);
            }
        });
        boolean now;
        synchronized (lock) {
            ChunkState cs = chunks.get(c);
            now = cs.inflight == 0;
            if (!now) {
                cs.onIdle = copy;
            }
        }
        if (now) {
            copy.run();
        }
    }

    /**
     * Chunk {@code c} is back on the origin: makes it durable there, then drops its exception
     * from the store (dm's merge_callback: flush the origin, then commit_merge), so that a merge
     * stopped after this point does not copy the old chunk back over writes that come next.
     */
    private void dropMerged(long c, Consumer<Status> done) {
        if (!store.persistent()) {
            done.accept(Status.OK);
            return;
        }
        Bio f = new Bio().init(Op.FLUSH, 0, 0, fb -> {
            Status s = fb.status();
            if (!s.isOk()) {
                done.accept(s);
                return;
            }
            store.remove(c, done);
        });
        origin.submit(f);
    }

    /** The end of chunk {@code c}'s merge: frees the chunk and runs {@code then}, or reports {@code s}. */
    private void mergeDone(long c, Status s, Runnable then, Bio failIfError, CompletableFuture<Status> result) {
        if (s.isOk()) {
            synchronized (lock) {
                exceptions.remove(c);
            }
            merged.incrementAndGet();
        }
        release(c);
        if (s.isOk()) {
            then.run();
        } else if (failIfError != null) {
            failIfError.fail(s, "snapshot " + name + ": merging chunk " + c + " back failed");
        } else if (result != null) {
            result.complete(s);
        } else {
            then.run();
        }
    }

    // ---- chunk states --------------------------------------------------------------------------

    private ChunkState chunkState(long c) {
        ChunkState s = chunks.get(c);
        if (s == null) {
            s = spare.poll();
            if (s == null) {
                s = new ChunkState();
            }
            chunks.put(c, s);
        }
        return s;
    }

    /** Under lock: chunk {@code c} is idle (not busy, nothing in flight or waiting); drops its state. */
    private void forget(long c) {
        ChunkState s = chunks.remove(c);
        if (s != null && spare.size() < SPARE_STATES) {
            s.busy = false;
            s.inflight = 0;
            s.onIdle = null;
            s.waiters.clear();
            spare.push(s);
        }
    }

    /**
     * Under lock: whether chunk {@code c} is busy (copied out or merged now); the caller then
     * queues its retry on the chunk's waiters. The retry closure is built only in that case, so
     * that a bio for an idle chunk allocates nothing.
     */
    private boolean isBusy(long c) {
        ChunkState s = chunks.get(c);
        return s != null && s.busy;
    }

    private void track(long c) {
        chunkState(c).inflight++;
    }

    private void untrack(long c) {
        Runnable idle = null;
        synchronized (lock) {
            ChunkState s = chunks.get(c);
            s.inflight--;
            if (s.inflight == 0) {
                idle = s.onIdle;
                s.onIdle = null;
                if (idle == null && !s.busy && s.waiters.isEmpty()) {
                    forget(c);
                }
            }
        }
        if (idle != null) {
            idle.run();
        }
    }

    /** Frees a busy chunk and re-dispatches what waited for it. */
    private void release(long c) {
        List<Runnable> retry;
        synchronized (lock) {
            ChunkState s = chunks.get(c);
            s.busy = false;
            retry = new ArrayList<>(s.waiters);
            s.waiters.clear();
            if (s.inflight == 0) {
                forget(c);
            }
        }
        for (Runnable r : retry) {
            r.run();
        }
    }

    /** Copies one chunk from {@code src} to {@code dst} through a buffer (the slow path: it allocates). */
    private void copyChunk(BlockDevice src, long srcOff, BlockDevice dst, long dstOff, Consumer<Status> done) {
        // The origin's last chunk may be partial (a size that is no multiple of the chunk): the
        // copy stops at its end, as dm-snap's start_copy clips it (count = min(chunk_size,
        // dev_size - sector)); a whole chunk there was an invalid request that made the snapshot
        // invalid at the first write to the origin's tail.
        long len = Math.min(chunk, Math.min(src.size() - srcOff, dst.size() - dstOff));
        MemorySegment buf = Arena.ofAuto().allocate(chunk, 4096).asSlice(0, len);
        Bio r = new Bio().init(Op.READ, 0, srcOff, rb -> {
            Status s = rb.status();
            if (!s.isOk()) {
                done.accept(s);
                return;
            }
            Bio w = new Bio().init(Op.WRITE, 0, dstOff, wb -> done.accept(wb.status()));
            w.addSegment(buf);
            dst.submit(w);
        });
        r.addSegment(buf);
        src.submit(r);
    }

    Map<Long, Long> exceptionsForTest() {
        synchronized (lock) {
            Map<Long, Long> m = new HashMap<>();
            for (long k : exceptions.keys()) {
                m.put(k, exceptions.get(k));
            }
            return Map.copyOf(m);
        }
    }

    /** Drops this snapshot from its origin's handler and frees its COW device for another snapshot; the COW device and origin stay open. */
    @Override
    public void close() {
        SnapshotOrigin.unregister(origin, this);
        COW_IN_USE.remove(cow, this);
    }

    @Override
    public String toString() {
        return "Snapshot[" + name + " of " + origin.name() + " on " + cow.name() + " " + state + " chunk=" + chunk + "]";
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The table line {@code snapshot ORIGIN COW P|N CHUNK} (dm-snapshot's {@code snapshot_ctr}:
     * persistent or not, the chunk in sectors or a size).
     *
     * @param a the line's arguments
     * @return the spec, to open once ORIGIN and COW are
     */
    public static TableSpec parseTable(TableArgs a) {
        String origin = a.dev("ORIGIN");
        String cow = a.dev("COW");
        String p = a.next("P|N");
        if (!p.equalsIgnoreCase("P") && !p.equalsIgnoreCase("N")) {
            throw a.bad("persistence must be P or N, not '" + p + "'");
        }
        long chunk = a.bytes("CHUNK");
        a.end();
        boolean persistent = p.equalsIgnoreCase("P");
        return a.spec((name, len, r) -> create(name, r.device(origin), r.device(cow), persistent, chunk));
    }
}
