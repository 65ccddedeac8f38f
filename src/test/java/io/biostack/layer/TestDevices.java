package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioException;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.EnumMap;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/** Helpers for layer tests: a device that counts and can fail, and synchronous I/O. */
final class TestDevices {
    private TestDevices() {
    }

    /** Passes bios to a device below, counting them per op; fails them while {@link #failing}. */
    static final class Probe implements BlockDevice {
        final BlockDevice lower;
        final Map<Op, AtomicLong> counts = new EnumMap<>(Op.class);
        volatile boolean failing;
        /** When not -1, the first write at or past this offset sets {@link #failing} (a disk that dies there). */
        volatile long failFromWriteAt = -1;
        /** While set, writes wait in {@link #held} until {@link #release} (a device slow to answer). */
        private boolean holdWrites;
        /** While set, flushes wait in {@link #held} too (a disk slow to empty its cache). */
        private boolean holdFlushes;
        private final java.util.ArrayDeque<Bio> held = new java.util.ArrayDeque<>();

        Probe(BlockDevice lower) {
            this.lower = lower;
            for (Op op : Op.values()) {
                counts.put(op, new AtomicLong());
            }
        }

        long count(Op op) {
            return counts.get(op).get();
        }

        @Override public String name() { return lower.name(); }
        @Override public long size() { return lower.size(); }
        @Override public QueueLimits limits() { return lower.limits(); }
        @Override public boolean isReadOnly() { return lower.isReadOnly(); }
        @Override public Extent extentAt(long offset, long maxLength) { return lower.extentAt(offset, maxLength); }

        @Override
        public void submit(Bio bio) {
            counts.get(bio.op()).incrementAndGet();
            long trap = failFromWriteAt;
            if (trap >= 0 && bio.op() == Op.WRITE && bio.offset() >= trap) {
                failFromWriteAt = -1;
                failing = true;
            }
            if (failing) {
                bio.fail(Status.IOERR, "probe failing");
                return;
            }
            synchronized (this) {
                if (holdWrites && bio.op() == Op.WRITE || holdFlushes && bio.op() == Op.FLUSH) {
                    held.add(bio);
                    return;
                }
            }
            lower.submit(bio);
        }

        synchronized void holdWrites() {
            holdWrites = true;
        }

        synchronized void holdFlushes() {
            holdFlushes = true;
        }

        /** Stops holding writes and sends on those held. */
        void release() {
            java.util.List<Bio> go;
            synchronized (this) {
                holdWrites = false;
                holdFlushes = false;
                go = new java.util.ArrayList<>(held);
                held.clear();
            }
            go.forEach(lower::submit);
        }

        @Override
        public void close() {
        }
    }

    static MemorySegment pattern(int size, long seed) {
        MemorySegment m = Arena.ofAuto().allocate(size, 4096);
        java.util.Random r = new java.util.Random(seed);
        byte[] b = new byte[size];
        r.nextBytes(b);
        MemorySegment.copy(b, 0, m, ValueLayout.JAVA_BYTE, 0, size);
        return m;
    }

    static MemorySegment buffer(long size) {
        return Arena.ofAuto().allocate(size, 4096);
    }

    static byte[] bytes(MemorySegment m) {
        return m.toArray(ValueLayout.JAVA_BYTE);
    }

    static void write(BlockDevice d, long off, MemorySegment m) {
        join(d.write(off, m));
    }

    static byte[] read(BlockDevice d, long off, int len) {
        MemorySegment m = buffer(len);
        join(d.read(off, m));
        return bytes(m);
    }

    static void join(java.util.concurrent.CompletableFuture<Void> f) {
        try {
            f.get(10, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException re) {
                throw re;
            }
            throw new RuntimeException(e.getCause());
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    /** The status a future failed with, OK when it did not. */
    static Status statusOf(java.util.concurrent.CompletableFuture<Void> f) {
        try {
            f.get(10, TimeUnit.SECONDS);
            return Status.OK;
        } catch (ExecutionException e) {
            if (e.getCause() instanceof BioException be) {
                return be.status();
            }
            throw new RuntimeException(e.getCause());
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    static String messageOf(java.util.concurrent.CompletableFuture<Void> f) {
        try {
            f.get(10, TimeUnit.SECONDS);
            return null;
        } catch (ExecutionException e) {
            return e.getCause().getMessage();
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }
}
