package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.function.Consumer;

/**
 * The bounded cache of L2 tables (qemu's {@code qcow2-cache.c}): whole table clusters in native
 * memory, least recently used first out, dirty tables kept until {@link Qcow2Writeback} has
 * written them in order. A table not cached is read with a bio and the caller continues in the
 * callback ({@link #load}); nobody waits on a reactor thread.
 *
 * <p>Guarded by the device's metadata monitor: every method is called with it held. The memory
 * is the cache's, freed at {@link #close}.
 */
final class Qcow2Cache {
    /** Big-endian 64-bit words, as every qcow2 table holds them. */
    static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /** One cached table cluster. */
    static final class Entry {
        final long offset;
        final MemorySegment mem;
        boolean dirty;
        boolean loading;
        Throwable error;
        List<Consumer<Throwable>> waiters;

        Entry(long offset, MemorySegment mem) {
            this.offset = offset;
            this.mem = mem;
        }

        long word(int i) {
            return mem.get(BE64, (long) i * 8);
        }

        void setWord(int i, long v) {
            mem.set(BE64, (long) i * 8, v);
        }
    }

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
    private long hits;
    private long misses;

    /**
     * @param container where the tables are read from
     * @param clusterSize bytes of one table
     * @param capacityBytes the bound, in bytes (at least two tables)
     */
    Qcow2Cache(BlockDevice container, int clusterSize, long capacityBytes) {
        this.container = container;
        this.clusterSize = clusterSize;
        this.capacity = (int) Math.max(2, Math.min(Integer.MAX_VALUE, capacityBytes / clusterSize));
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
                }
                evict();
            }
            for (Consumer<Throwable> c : w) {
                c.accept(t);
            }
        });
    }

    /** A new table at {@code offset}, zeroed and dirty (a table just allocated). */
    Entry create(long offset) {
        Entry e = new Entry(offset, segment());
        e.mem.fill((byte) 0);
        e.dirty = true;
        map.put(offset, e);
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

    private void release(Entry e) {
        free.push(e.mem);
    }

    /** Drops clean tables, oldest first, while more than the bound are cached. */
    void evict() {
        if (map.size() <= capacity) {
            return;
        }
        Iterator<Entry> it = map.values().iterator();
        while (map.size() > capacity && it.hasNext()) {
            Entry e = it.next();
            if (!e.dirty && !e.loading) {
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
        return hits;
    }

    long misses() {
        return misses;
    }

    /** Frees the memory: no bio may be in flight on it. */
    void close() {
        map.clear();
        free.clear();
        arena.close();
    }
}
