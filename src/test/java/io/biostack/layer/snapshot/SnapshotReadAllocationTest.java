package io.biostack.layer.snapshot;

import static org.assertj.core.api.Assertions.assertThat;

import io.biostack.block.Bio;
import io.biostack.block.EndIo;
import io.biostack.block.Op;
import io.biostack.block.BlockDevice;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import org.junit.jupiter.api.Test;

/**
 * The house rule for the I/O path, on a backup view's: a read through a snapshot, of a chunk
 * the origin still holds or of one copied out to the COW device, allocates nothing.
 */
class SnapshotReadAllocationTest {
    private static final int CHUNK = 64 * 1024;
    private static final long SIZE = 64L << 20;

    @Test
    void readsThroughASnapshotAllocateNothingPerIo() {
        BlockDevice origin = new Sink("origin", SIZE);
        Snapshot snap = Snapshot.create("snap", origin, new Sink("cow", SIZE + 4L * CHUNK), false, CHUNK);
        SnapshotOrigin handler = SnapshotOrigin.of("origin-h", origin);
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(CHUNK, 4096);
            // every 8th chunk copied out (an origin write through the handler): reads go to both devices
            for (long c = 0; c < SIZE / CHUNK; c += 8) {
                handler.write(c * CHUNK, buf.asSlice(0, 4096)).join();
            }
            assertThat(snap.exceptionCount()).isEqualTo(SIZE / CHUNK / 8);
            MemorySegment part = buf.asSlice(0, 16384);
            Bio bio = new Bio();
            int[] done = new int[1];
            EndIo cb = b -> {
                if (b.status() == Status.OK) {
                    done[0]++;
                }
            };
            // Windows of reads, the least allocating one counts: in a JVM busy with other tests
            // the loop may still run before C2 has compiled it (no escape analysis then); the
            // old tables put a boxed key, an entry and a chunk state in the maps on every read,
            // which no compiler removes.
            int window = 20_000;
            long least = Long.MAX_VALUE;
            int i = 0;
            for (int w = 0; w < 8; w++) {
                long before = mx.getCurrentThreadAllocatedBytes();
                for (int k = 0; k < window; k++, i++) {
                    long off = ((long) i * 7919 % (SIZE / CHUNK)) * CHUNK + (i % 4) * 4096L;
                    bio.init(Op.READ, 0, off, cb).addSegment(part);
                    snap.submit(bio);
                }
                least = Math.min(least, mx.getCurrentThreadAllocatedBytes() - before);
            }
            assertThat(done[0]).isEqualTo(i); // the leaves complete inline
            // Well under a byte per read (about 230 B per read before).
            assertThat(least).as("bytes allocated by the least allocating window of %d reads", window).isLessThan(window / 4);
        } finally {
            snap.close();
        }
    }

    /**
     * A leaf that completes every bio at once, moving no data. The snapshot's own allocations are
     * what is measured: a RamDisk leaf allocates a segment slice per copy whenever the JIT has not
     * inlined it into this path (JFR showed RamDisk.copyOut's asSlice once other tests had run in
     * the JVM). What the reads return is SnapshotTest's business.
     */
    private static final class Sink implements BlockDevice {
        private static final QueueLimits LIMITS = QueueLimits.builder().logicalBlockSize(512).build();
        private final String name;
        private final long size;

        Sink(String name, long size) {
            this.name = name;
            this.size = size;
        }

        @Override public String name() { return name; }
        @Override public long size() { return size; }
        @Override public QueueLimits limits() { return LIMITS; }
        @Override public boolean isReadOnly() { return false; }
        @Override public void submit(Bio bio) { bio.endIo(); }
        @Override public void close() { }
    }
}
