package io.biostack.layer.snapshot;

import java.util.Arrays;

/**
 * A map from non-negative {@code long} keys (chunk numbers) to objects, by open addressing with
 * linear probing and backward-shift deletion: no boxed key, no entry object, so a lookup, an
 * insert into spare room and a removal allocate nothing. The snapshot's per-chunk tables use it so
 * that a read through a snapshot (a backup view) allocates nothing per I/O. Grows by doubling
 * when three quarters full (that allocates, once per doubling); never shrinks.
 *
 * <p>Not thread-safe: the snapshot guards it with its lock.
 *
 * @param <V> the values
 */
final class LongMap<V> {
    private static final long EMPTY = -1;

    private long[] keys;
    private Object[] values;
    private int mask;
    /** 64 minus log2 of the table's length: the hash's top bits pick the slot. */
    private int shift;
    private int size;

    /** An empty map with room for a few dozen keys before it grows. */
    LongMap() {
        keys = new long[64];
        Arrays.fill(keys, EMPTY);
        values = new Object[64];
        mask = 63;
        shift = 64 - 6;
    }

    /** Fibonacci hashing: chunk numbers are dense, the multiply spreads them over the table. */
    private int slot(long key) {
        return (int) ((key * 0x9E3779B97F4A7C15L) >>> shift);
    }

    /**
     * The value of {@code key}, or null.
     *
     * @param key a key, at least 0
     * @return its value, or null when absent
     */
    @SuppressWarnings("unchecked")
    V get(long key) {
        for (int i = slot(key); ; i = (i + 1) & mask) {
            long k = keys[i];
            if (k == key) {
                return (V) values[i];
            }
            if (k == EMPTY) {
                return null;
            }
        }
    }

    /**
     * Whether {@code key} has a value.
     *
     * @param key a key, at least 0
     * @return true when present
     */
    boolean containsKey(long key) {
        return get(key) != null;
    }

    /**
     * Sets the value of {@code key}.
     *
     * @param key   a key, at least 0
     * @param value its value, not null
     */
    void put(long key, V value) {
        if (key < 0 || value == null) {
            throw new IllegalArgumentException("LongMap takes keys >= 0 and non-null values");
        }
        for (int i = slot(key); ; i = (i + 1) & mask) {
            long k = keys[i];
            if (k == key) {
                values[i] = value;
                return;
            }
            if (k == EMPTY) {
                keys[i] = key;
                values[i] = value;
                if (++size > (mask + 1) / 4 * 3) {
                    grow();
                }
                return;
            }
        }
    }

    /**
     * Removes {@code key}.
     *
     * @param key a key
     * @return its value, or null when it had none
     */
    @SuppressWarnings("unchecked")
    V remove(long key) {
        int i = slot(key);
        while (true) {
            long k = keys[i];
            if (k == EMPTY) {
                return null;
            }
            if (k == key) {
                break;
            }
            i = (i + 1) & mask;
        }
        V old = (V) values[i];
        // Backward-shift deletion (Knuth 6.4, algorithm R): move up every later entry of the run
        // whose home slot does not lie cyclically in (i, j], so that no probe stops early.
        int j = i;
        while (true) {
            j = (j + 1) & mask;
            long k = keys[j];
            if (k == EMPTY) {
                break;
            }
            int home = slot(k);
            boolean stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays) {
                keys[i] = k;
                values[i] = values[j];
                i = j;
            }
        }
        keys[i] = EMPTY;
        values[i] = null;
        size--;
        return old;
    }

    /**
     * Returns the number of keys.
     *
     * @return the number of keys
     */
    int size() {
        return size;
    }

    /**
     * The keys, in no order (a copy; allocates).
     *
     * @return the keys
     */
    long[] keys() {
        long[] out = new long[size];
        int n = 0;
        for (long k : keys) {
            if (k != EMPTY) {
                out[n++] = k;
            }
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private void grow() {
        long[] ok = keys;
        Object[] ov = values;
        keys = new long[ok.length * 2];
        Arrays.fill(keys, EMPTY);
        values = new Object[ok.length * 2];
        mask = keys.length - 1;
        shift--;
        size = 0;
        for (int i = 0; i < ok.length; i++) {
            if (ok[i] != EMPTY) {
                put(ok[i], (V) ov[i]);
            }
        }
    }
}
