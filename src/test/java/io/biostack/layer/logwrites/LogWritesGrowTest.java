package io.biostack.layer.logwrites;

import io.biostack.block.RamDisk;
import io.biostack.block.Resizable;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * A log-writes target grows when the device below it can (a format above allocates at its end,
 * as qcow2 does), and logs each growth as a mark {@code biostack-resize BYTES}, in line with the
 * writes, so that a replay can tell the size at each entry.
 */
class LogWritesGrowTest {
    @TempDir
    Path dir;

    @Test
    void growingTheTargetGrowsTheFileBelowAndLogsTheNewSizeAsAMark() throws Exception {
        Path devFile = dir.resolve("dev.img");
        Path logFile = dir.resolve("log.img");
        try (LoopDevice dev = LoopDevice.open("d", devFile, LoopConfig.defaults().withCreateSize(1 << 20));
             LoopDevice log = LoopDevice.open("l", logFile, LoopConfig.defaults().withCreateSize(1 << 20))) {
            LogWrites lw = new LogWrites("lw", dev, log);
            assertThat(lw).isInstanceOf(Resizable.class);
            assertThat(Resizable.grow(lw, 3 << 20)).isEqualTo(3 << 20);
            assertThat(lw.size()).isEqualTo(3 << 20);
            // a write past the old end now goes through, and is logged after the growth
            lw.write((2 << 20) + 4096, MemorySegment.ofArray(new byte[4096]).asReadOnly()).join();
            assertThat(Resizable.grow(lw, 2 << 20)).as("never shrinks").isEqualTo(3 << 20);
            lw.close();
        }
        assertThat(Files.size(devFile)).isEqualTo(3 << 20);
        assertThat(marksAndWrites(Files.readAllBytes(logFile)))
                .containsExactly("mark biostack-resize 3145728", "write 2101248", "mark " + LogWrites.END_MARK);
    }

    @Test
    void aDeviceThatCannotGrowFailsTheGrowthClearlyAndNothingIsLogged() throws Exception {
        RamDisk dev = new RamDisk("ram", 1 << 20);
        RamDisk log = new RamDisk("ramlog", 1 << 20);
        LogWrites lw = new LogWrites("lw", dev, log);
        try {
            assertThatThrownBy(() -> lw.growTo(2 << 20)).isInstanceOf(IOException.class)
                    .hasMessageContaining("ram cannot grow");
            assertThat(lw.size()).isEqualTo(1 << 20);
            assertThat(lw.loggedEntries()).isZero();
        } finally {
            lw.close();
        }
    }

    /** The log's entries as "mark TEXT" or "write BYTE-OFFSET", in the kernel's format (LogFormat). */
    private static List<String> marksAndWrites(byte[] log) {
        MemorySegment m = MemorySegment.ofArray(log);
        int sector = (int) LogFormat.superSectorSize(m);
        long n = LogFormat.superNrEntries(m);
        List<String> out = new ArrayList<>();
        long at = sector;
        for (long i = 0; i < n; i++) {
            long flags = LogFormat.entryFlags(m, at);
            if ((flags & LogFormat.MARK) != 0) {
                out.add("mark " + LogFormat.entryMark(m, at, (int) LogFormat.entryDataLen(m, at)));
                at += sector;
            } else {
                long nr = LogFormat.entryNrSectors(m, at);
                if ((flags & LogFormat.FLUSH) == 0) {
                    out.add("write " + LogFormat.entrySector(m, at) * sector);
                }
                at += sector + ((flags & LogFormat.DISCARD) != 0 ? 0 : nr * sector);
            }
        }
        return out;
    }
}
