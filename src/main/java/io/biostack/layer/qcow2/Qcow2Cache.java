package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;

import java.lang.foreign.Arena;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Consumer;

/**
 * The bounded cache of L2 tables (qemu's {@code qcow2-cache.c}): whole table clusters in native
 * memory, least recently used first out, dirty tables kept until {@link Qcow2Writeback} has
 * written them in order. A table not cached is read with a bio and the caller continues in the
 * callback ({@link #load}); nobody waits on a reactor thread.
 *
 * <p>Guarded by the device's metadata monitor: every method is called with it held, except the
 * lock-free read side below. The memory is the cache's, freed at {@link #close}.
 *
 * <h2>Lock-free lookups</h2>
 * A bio that hits a cached table reads it without the monitor (the house rule: no lock and no
 * allocation per I/O). Two things make that safe:
 * <ul>
 *   <li>Tables are published by L1 index in an array ({@link #published}), read with acquire: no
 *       hashing, no boxing. The reader checks that the entry's offset is the one its L1 entry
 *       names, so a slot that still points at an older table is a miss, not a wrong mapping.</li>
 *   <li>Each entry is a seqlock ({@link Entry#readBegin}, {@link Entry#readValid}), as the
 *       kernel's {@code seqcount_t} and the JDK's {@code StampedLock.tryOptimisticRead}: every
 *       change of a word makes the count odd while it lasts, and an entry that leaves the cache
 *       is made odd for ever ({@link Entry#kill}) <em>before</em> its memory goes back to the
 *       free list, where another table may be read into it. A reader that saw an odd count, or a
 *       count that changed under it, discards what it read and takes the monitor.</li>
 * </ul>
 * A lock-free hit does not reorder the LRU list (that would be a write to shared state); it sets
 * the entry's {@code used} bit, and eviction gives such an entry a second chance (CLOCK).
 */
final class Qcow2Cache {
    /** Big-endian 64-bit words, as every qcow2 table holds them. */
    static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /** One cached table cluster. */
    static final class Entry {
        /** The count of a table that left the cache: odd, and never even again. */
        private static final long DEAD = -1L;
        private static final VarHandle SEQ;

        static {
            try {
                SEQ = MethodHandles.lookup().findVarHandle(Entry.class, "seq", long.class);
            } catch (ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        final long offset;
        final MemorySegment mem;
        boolean dirty;
        boolean loading;
        Throwable error;
        List<Consumer<Throwable>> waiters;
        /** The seqlock's count: even while the words are stable. Written under the monitor. */
        @SuppressWarnings("unused")
        private volatile long seq;
        /** Set by lock-free hits (racy on purpose: a hint for eviction's second chance). */
        boolean used;
        /**
         * Non-zero while the waiters of its load have not looked at it yet: eviction passes it
         * over, or a cache smaller than the tables wanted at once would evict every table before
         * its waiters used it, and read it again, for ever (a livelock). Monitor.
         */
        int pins;
        /** The L1 index this entry is published at, or -1. Monitor. */
        int l1Index = -1;

        Entry(long offset, MemorySegment mem) {
            this.offset = offset;
            this.mem = mem;
        }

        long word(int i) {
            return mem.get(BE64, (long) i * 8);
        }

        /** Changes one word (monitor held); lock-free readers see the change whole or retry. */
        void setWord(int i, long v) {
            long s = beginWrite();
            mem.set(BE64, (long) i * 8, v);
            endWrite(s);
        }

        /** Changes two words at once (an extended L2 entry and its bitmap); monitor held. */
        void setWords(int i, long v0, long v1) {
            long s = beginWrite();
            mem.set(BE64, (long) i * 8, v0);
            mem.set(BE64, (long) i * 8 + 8, v1);
            endWrite(s);
        }

        /** Makes the count odd before a change: returns the even count it had. Monitor held. */
        long beginWrite() {
            long s = (long) SEQ.getOpaque(this);
            SEQ.setOpaque(this, s + 1);
            // the odd count must be visible before any word changes (seqcount's smp_wmb)
            VarHandle.storeStoreFence();
            return s;
        }

        /** Ends a change begun with {@link #beginWrite}: the words are published with release. */
        void endWrite(long s) {
            SEQ.setRelease(this, s + 2);
        }

        /**
         * Starts a lock-free read: the count to give {@link #readValid}, or -1 when the entry is
         * being changed or has left the cache (then take the monitor).
         */
        long readBegin() {
            long s = (long) SEQ.getAcquire(this);
            return (s & 1) != 0 ? -1 : s;
        }

        /** True when nothing changed the words since {@link #readBegin} returned {@code s}. */
        boolean readValid(long s) {
            // the words read must be read before the count is read again (seqcount's smp_rmb)
            VarHandle.loadLoadFence();
            return (long) SEQ.getOpaque(this) == s;
        }

        /** Marks the entry gone for lock-free readers, before its memory is reused. Monitor held. */
        void kill() {
            SEQ.setVolatile(this, DEAD);
        }
    }

    /** Published tables by L1 index, read without the monitor ({@link #published}). */
    private static final VarHandle SLOTS = MethodHandles.arrayElementVarHandle(Entry[].class);

    /**
     * Aligned native memory for metadata bios. Not the container's allocateIoMemory: that may
     * wait for the container's engine thread, and this runs in its completion callbacks.
     */
    static MemorySegment ioMemory(long bytes, Arena owner) {
        return owner.allocate(bytes, 4096);
    }

    private final BlockDevice container;
    private final int clusterSize;
    private final int capacity;
    private final Arena arena = Arena.ofShared();
    private final ArrayDeque<MemorySegment> free = new ArrayDeque<>();
    private final LinkedHashMap<Long, Entry> map = new LinkedHashMap<>(64, 0.75f, true);
    private final Entry[] slots;
    private long hits;
    private final LongAdder fastHits = new LongAdder();
    private long misses;

    /**
     * @param container where the tables are read from
     * @param clusterSize bytes of one table
     * @param capacityBytes the bound, in bytes (at least two tables)
     * @param l1Size entries of the L1 table (the slots of lock-free lookups)
     */
    Qcow2Cache(BlockDevice container, int clusterSize, long capacityBytes, int l1Size) {
        this.container = container;
        this.clusterSize = clusterSize;
        this.capacity = (int) Math.max(2, Math.min(Integer.MAX_VALUE, capacityBytes / clusterSize));
        this.slots = new Entry[l1Size];
    }

    /** The cached, loaded table at {@code offset}, or null (counted as a hit or a miss). */
    Entry lookup(long offset) {
        Entry e = map.get(offset);
        if (e != null && !e.loading && e.error == null) {
            hits++;
            return e;
        }
        return null;
    }

    /**
     * Lock-free: the table last published for L1 index {@code l1i}, or null. The caller checks
     * its offset against the L1 entry and reads it inside {@link Entry#readBegin}/{@link
     * Entry#readValid}.
     */
    Entry published(int l1i) {
        return (Entry) SLOTS.getAcquire(slots, l1i);
    }

    /** Counts a lock-free hit (no lock; a LongAdder's cells are made once, under contention). */
    void countFastHit(Entry e) {
        if (!e.used) {
            e.used = true; // written only when clear: a hit does not dirty the line each time
        }
        fastHits.increment();
    }

    /**
     * Publishes the loaded table {@code e} at L1 index {@code l1i} for lock-free lookups
     * (monitor held). A table is published at one index at most: a hostile image whose L1
     * names one table twice gets the monitor's path for the other index.
     */
    void publish(int l1i, Entry e) {
        if (l1i < 0 || l1i >= slots.length || e.l1Index == l1i) {
            return;
        }
        unpublish(e);
        Entry old = slots[l1i];
        if (old != null) {
            old.l1Index = -1;
        }
        e.l1Index = l1i;
        // release: the table's words (read by the kernel or copied) are seen before the entry
        SLOTS.setRelease(slots, l1i, e);
    }

    private void unpublish(Entry e) {
        if (e.l1Index >= 0 && slots[e.l1Index] == e) {
            SLOTS.setRelease(slots, e.l1Index, (Entry) null);
        }
        e.l1Index = -1;
    }

    /**
     * Reads the table at {@code offset} with a bio, then calls {@code then} (null on success,
     * the error otherwise) without the monitor held... by the completing thread, which takes
     * the monitor itself. A load already under way gets another waiter.
     */
    void load(long offset, Object monitor, Consumer<Throwable> then) {
        Entry e = map.get(offset);
        if (e != null && e.loading) {
            e.waiters.add(then);
            return;
        }
        if (e != null) {
            map.remove(offset);
            release(e);
        }
        misses++;
        Entry n = new Entry(offset, segment());
        n.loading = true;
        n.waiters = new ArrayList<>(2);
        n.waiters.add(then);
        map.put(offset, n);
        container.read(offset, n.mem).whenComplete((v, t) -> {
            List<Consumer<Throwable>> w;
            synchronized (monitor) {
                n.loading = false;
                w = n.waiters;
                n.waiters = null;
                if (t != null) {
                    map.remove(offset, n);
                    release(n);
                } else {
                    n.pins++;
                }
                evict();
            }
            try {
                for (Consumer<Throwable> c : w) {
                    c.accept(t);
                }
            } finally {
                if (t == null) {
                    // the waiters have done their lookups (they run to their submit): evictable
                    synchronized (monitor) {
                        n.pins--;
                        evict();
                    }
                }
            }
        });
    }

    /** A new table at {@code offset}, zeroed and dirty (a table just allocated). */
    Entry create(long offset) {
        Entry e = new Entry(offset, segment());
        e.mem.fill((byte) 0);
        e.dirty = true;
        Entry old = map.put(offset, e);
        if (old != null && !old.loading) {
            // a freed table's cluster allocated again as a table: the old entry is stale
            release(old);
        }
        evict();
        return e;
    }

    /** The dirty tables, in no order (the writeback writes them together). */
    List<Entry> dirty() {
        List<Entry> d = new ArrayList<>();
        for (Entry e : map.values()) {
            if (e.dirty) {
                d.add(e);
            }
        }
        return d;
    }

    /** Number of dirty tables. */
    int dirtyCount() {
        int n = 0;
        for (Entry e : map.values()) {
            if (e.dirty) {
                n++;
            }
        }
        return n;
    }

    private MemorySegment segment() {
        MemorySegment m = free.poll();
        return m != null ? m : Qcow2Cache.ioMemory(clusterSize, arena);
    }

    /**
     * Takes {@code e} out of the lock-free view and frees its memory for another table. The
     * entry is killed first: a reader still inside it sees the count change and retries.
     */
    private void release(Entry e) {
        unpublish(e);
        e.kill();
        free.push(e.mem);
    }

    /**
     * Drops clean tables, least recently used first, while more than the bound are cached. A
     * table hit lock-free since the last pass ({@code used}) is passed over once (CLOCK's second
     * chance); a second pass takes what it must. Two passes at most.
     */
    void evict() {
        for (int pass = 0; pass < 2 && map.size() > capacity; pass++) {
            Iterator<Entry> it = map.values().iterator();
            while (map.size() > capacity && it.hasNext()) {
                Entry e = it.next();
                if (e.dirty || e.loading || e.pins > 0) {
                    continue;
                }
                if (pass == 0 && e.used) {
                    e.used = false;
                    continue;
                }
                it.remove();
                release(e);
            }
        }
    }

    /** Tables the bound allows. */
    int capacityTables() {
        return capacity;
    }

    /** Tables cached now. */
    int size() {
        return map.size();
    }

    long hits() {
        return hits + fastHits.sum();
    }

    /** Bytes of native memory the cache holds now: its tables and its free list. */
    long memoryBytes() {
        return (long) (map.size() + free.size()) * clusterSize;
    }

    long misses() {
        return misses;
    }

    /** Frees the memory: no bio may be in flight on it. */
    void close() {
        for (Entry e : map.values()) {
            unpublish(e);
            e.kill();
        }
        map.clear();
        free.clear();
        arena.close();
    }
}
