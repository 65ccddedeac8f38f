package io.biostack.block.bitmap;

import io.biostack.block.RamDisk;
import io.biostack.block.stats.CountedDevice;
import io.biostack.block.stats.DeviceStats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class DeviceBitmapsTest {
    private static final long SIZE = 16L << 20;
    private static final long G = 64 * 1024;

    @Test
    void aPersistentBitmapClearedThenWrittenIsMarkedAgainAndSavedAgain(@TempDir Path dir) throws Exception {
        // The fast path skips the bitmap when the durable shadow has the range; after a clear
        // the shadow is empty, so the next write to the same chunk must mark it again, wait for
        // a metadata write, and the reloaded file must show it.
        Path file = dir.resolve("bm");
        RamDisk ram = new RamDisk("ram", SIZE);
        CountedDevice d = new CountedDevice(ram, new DeviceStats("d"));
        d.setBitmaps(new DeviceBitmaps("d", SIZE, new SideFileStore(file), d::submitBelow));
        d.bitmaps().message(List.of("add", "p", "persistent"));
        try (Arena a = Arena.ofShared()) { // shared: a held write is sent down by the bitmap writer thread
            MemorySegment buf = a.allocate(4096, 4096);
            d.write(3 * G, buf).join();
            long mw = d.bitmaps().metadataWrites();
            assertThat(mw).isEqualTo(1);
            d.write(3 * G + 8192, buf).join(); // marked and durable: no metadata write
            assertThat(d.bitmaps().metadataWrites()).isEqualTo(mw);
            DirtyBitmap p = d.bitmaps().get("p");
            assertThat(p.dirtyBytes()).isEqualTo(G);

            d.bitmaps().message(List.of("clear", "p"));
            assertThat(p.dirtyBytes()).isZero();
            d.write(3 * G, buf).join();
            assertThat(p.isMarked(3 * G, 4096)).isTrue();
            assertThat(p.dirtyBytes()).isEqualTo(G);
            assertThat(d.bitmaps().metadataWrites()).isGreaterThan(mw);
        }
        d.bitmaps().close();
        List<String> problems = new ArrayList<>();
        List<DirtyBitmap> back = new SideFileStore(file).load(SIZE, problems);
        assertThat(problems).isEmpty();
        assertThat(back).hasSize(1);
        assertThat(back.getFirst().isMarked(3 * G, 1)).isTrue();
        assertThat(back.getFirst().dirtyBytes()).isEqualTo(G);
    }

    @Test
    void aHeldWriteWhoseSubmitThrowsFailsAloneAndLaterWritesStillComplete(@TempDir Path dir) throws Exception {
        // The bitmap writer sends held writes down after their metadata save; a submit that
        // throws there used to kill that thread, and every later held write waited forever.
        RamDisk ram = new RamDisk("ram", SIZE);
        CountedDevice d = new CountedDevice(ram, new DeviceStats("d"));
        java.util.concurrent.atomic.AtomicInteger throwNext = new java.util.concurrent.atomic.AtomicInteger(1);
        d.setBitmaps(new DeviceBitmaps("d", SIZE, new SideFileStore(dir.resolve("bm")), bio -> {
            if (throwNext.getAndDecrement() > 0) {
                throw new IllegalStateException("submit refused");
            }
            d.submitBelow(bio);
        }));
        d.bitmaps().message(List.of("add", "p", "persistent"));
        try (Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(4096, 4096);
            buf.fill((byte) 7);
            assertThat(d.write(5 * G, buf)).failsWithin(java.time.Duration.ofSeconds(10))
                    .withThrowableThat().withMessageContaining("submit refused");
            d.write(9 * G, buf).get(10, java.util.concurrent.TimeUnit.SECONDS); // a clean chunk: held again
            MemorySegment back = a.allocate(4096, 4096);
            ram.read(9 * G, back).get(10, java.util.concurrent.TimeUnit.SECONDS);
            assertThat(back.mismatch(buf)).isEqualTo(-1);
        }
        d.bitmaps().close();
    }
}
