package io.biostack.layer.snapshot;

import static org.assertj.core.api.Assertions.assertThat;

import io.biostack.block.Bio;
import io.biostack.block.EndIo;
import io.biostack.block.Op;
import io.biostack.block.RamDisk;
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
        RamDisk origin = new RamDisk("origin", SIZE);
        Snapshot snap = Snapshot.create("snap", origin, new RamDisk("cow", SIZE + 4L * CHUNK), false, CHUNK);
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
            int warm = 50_000;
            int n = 100_000;
            long before = 0;
            for (int i = 0; i < warm + n; i++) {
                if (i == warm) {
                    before = mx.getCurrentThreadAllocatedBytes();
                }
                long off = ((long) i * 7919 % (SIZE / CHUNK)) * CHUNK + (i % 4) * 4096L;
                bio.init(Op.READ, 0, off, cb).addSegment(part);
                snap.submit(bio);
            }
            long allocated = mx.getCurrentThreadAllocatedBytes() - before;
            assertThat(done[0]).isEqualTo(warm + n); // the ramdisks complete inline
            // Well under a byte per read: what a boxed key, an entry and a chunk state cost
            // (about 270 B per read before) would show at once.
            assertThat(allocated).as("bytes allocated by %d reads", n).isLessThan(n / 4);
        } finally {
            snap.close();
        }
    }
}
