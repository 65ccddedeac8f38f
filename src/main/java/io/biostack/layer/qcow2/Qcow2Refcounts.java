package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * Refcounts (qemu's {@code qcow2-refcount.c}; qcow2.rst "Cluster refcounting"): the refcount
 * table and its blocks, held in memory while the image is open, with the blocks and table
 * entries changed since the last writeback marked dirty. Refcount widths 1 to 64 bits: below 8
 * bits the entries are packed least significant first in each byte (qemu's
 * {@code get_refcount_ro0..2}), from 8 bits up they are big-endian integers.
 *
 * <p>Guarded by the device's metadata monitor. Every table entry is checked when loaded (aligned,
 * inside the container) so a hostile table fails the open, never a later bio.
 */
final class Qcow2Refcounts {
    private static final ValueLayout.OfShort BE16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    private final int clusterBits;
    private final int order;
    private final long entriesPerBlock;
    long[] table;
    final Map<Long, MemorySegment> blocks = new HashMap<>();
    final Set<Long> dirtyBlocks = new LinkedHashSet<>();
    final Set<Integer> dirtyTableEntries = new LinkedHashSet<>();
    private final Arena arena;
    private final BlockDevice container;

    Qcow2Refcounts(BlockDevice container, Qcow2Header h, long[] table, Arena arena) {
        this.container = container;
        this.clusterBits = h.clusterBits();
        this.order = h.refcountOrder();
        this.entriesPerBlock = h.refcountBlockEntries();
        this.table = table;
        this.arena = arena;
    }

    /** Loads every refcount block the table names (blocking; at open only). */
    void loadAll(long containerSize) {
        long cs = 1L << clusterBits;
        for (int i = 0; i < table.length; i++) {
            long e = table[i];
            if ((e & Qcow2Header.REFT_RESERVED_MASK) != 0) {
                throw new Qcow2Exception("refcount table entry " + i + " has reserved bits set: 0x" + Long.toHexString(e));
            }
            if (e == 0) {
                continue;
            }
            if ((e & (cs - 1)) != 0 || e < cs || e + cs > containerSize) {
                throw new Qcow2Exception("refcount block " + i + " at " + e + " is unaligned or past the end of the image");
            }
            MemorySegment m = Qcow2Cache.ioMemory(cs, arena);
            container.read(e, m).join();
            blocks.put((long) i, m);
        }
    }

    /** Replaces the table with a larger copy of {@code entries} entries, all marked dirty. */
    void growTable(int entries) {
        table = java.util.Arrays.copyOf(table, entries);
        for (int i = 0; i < entries; i++) {
            dirtyTableEntries.add(i);
        }
    }

    /** Entries one refcount block holds. */
    long entriesPerBlock() {
        return entriesPerBlock;
    }

    /** Largest refcount this width holds. */
    long max() {
        return order == 6 ? -1L : (1L << (1 << order)) - 1;
    }

    /** The refcount of host cluster {@code cluster} (0 when no block covers it). */
    long get(long cluster) {
        long bi = cluster / entriesPerBlock;
        MemorySegment b = blocks.get(bi);
        return b == null ? 0 : read(b, cluster % entriesPerBlock);
    }

    /** True when a block exists for {@code cluster}. */
    boolean hasBlock(long cluster) {
        return blocks.containsKey(cluster / entriesPerBlock);
    }

    /** Index of the block that covers {@code cluster}. */
    long blockIndex(long cluster) {
        return cluster / entriesPerBlock;
    }

    /** Installs a new zeroed block at {@code offset} for table index {@code bi}. */
    void addBlock(long bi, long offset) {
        MemorySegment m = Qcow2Cache.ioMemory(1L << clusterBits, arena);
        m.fill((byte) 0);
        blocks.put(bi, m);
        table[(int) bi] = offset;
        dirtyBlocks.add(bi);
        dirtyTableEntries.add((int) bi);
    }

    /** Sets the refcount of {@code cluster}; its block must exist. */
    void set(long cluster, long value) {
        long bi = cluster / entriesPerBlock;
        MemorySegment b = blocks.get(bi);
        if (b == null) {
            throw new IllegalStateException("no refcount block for cluster " + cluster);
        }
        write(b, cluster % entriesPerBlock, value);
        dirtyBlocks.add(bi);
    }

    /** Drops one reference to {@code cluster} (never below 0: an inconsistent image is not made worse). */
    void decrement(long cluster) {
        long v = get(cluster);
        if (v > 0 && hasBlock(cluster)) {
            set(cluster, v - 1);
        }
    }

    private long read(MemorySegment b, long i) {
        return switch (order) {
            case 0, 1, 2 -> {
                int bits = 1 << order;
                long bit = i * bits;
                yield (b.get(ValueLayout.JAVA_BYTE, bit >>> 3) >>> (bit & 7)) & ((1 << bits) - 1);
            }
            case 3 -> b.get(ValueLayout.JAVA_BYTE, i) & 0xffL;
            case 4 -> b.get(BE16, i * 2) & 0xffffL;
            case 5 -> b.get(BE32, i * 4) & 0xffffffffL;
            default -> b.get(Qcow2Cache.BE64, i * 8);
        };
    }

    private void write(MemorySegment b, long i, long v) {
        switch (order) {
            case 0, 1, 2 -> {
                int bits = 1 << order;
                long bit = i * bits;
                int mask = ((1 << bits) - 1) << (bit & 7);
                byte old = b.get(ValueLayout.JAVA_BYTE, bit >>> 3);
                b.set(ValueLayout.JAVA_BYTE, bit >>> 3, (byte) ((old & ~mask) | ((int) (v << (bit & 7)) & mask)));
            }
            case 3 -> b.set(ValueLayout.JAVA_BYTE, i, (byte) v);
            case 4 -> b.set(BE16, i * 2, (short) v);
            case 5 -> b.set(BE32, i * 4, (int) v);
            default -> b.set(Qcow2Cache.BE64, i * 8, v);
        }
    }

    /**
     * Sets every refcount that the table's blocks hold to its count: {@code counted[cluster]},
     * 0 for clusters past its end (the dirty-bit rebuild). Only blocks that change are marked
     * dirty.
     *
     * @param counted references per host cluster, from the walk of the image's tables
     */
    void resetFromCounts(int[] counted) {
        for (Map.Entry<Long, MemorySegment> e : blocks.entrySet()) {
            long base = e.getKey() * entriesPerBlock;
            MemorySegment b = e.getValue();
            for (long i = 0; i < entriesPerBlock; i++) {
                long c = base + i;
                long want = c < counted.length ? counted[(int) c] : 0;
                if (read(b, i) != want) {
                    write(b, i, want);
                    dirtyBlocks.add(e.getKey());
                }
            }
        }
    }

    /** The highest host cluster with a non-zero refcount, or -1. */
    long lastUsedCluster() {
        long last = -1;
        for (Map.Entry<Long, MemorySegment> e : blocks.entrySet()) {
            long base = e.getKey() * entriesPerBlock;
            for (long i = entriesPerBlock - 1; i >= 0; i--) {
                if (base + i <= last) {
                    break;
                }
                if (read(e.getValue(), i) != 0) {
                    last = base + i;
                    break;
                }
            }
        }
        return last;
    }
}
