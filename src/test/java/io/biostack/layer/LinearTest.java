package io.biostack.layer;

import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;

import static io.biostack.layer.TestDevices.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class LinearTest {
    @Test
    void writesLandAtTheWindowOffsetOfTheLowerDevice() {
        RamDisk disk = new RamDisk("disk", 1 << 20);
        Linear lin = new Linear("lin", disk, 64 * 1024, 256 * 1024);
        MemorySegment data = pattern(8192, 1);
        write(lin, 4096, data);
        assertThat(read(disk, 64 * 1024 + 4096, 8192)).isEqualTo(bytes(data));
        assertThat(read(lin, 4096, 8192)).isEqualTo(bytes(data));
        assertThat(lin.size()).isEqualTo(256 * 1024);
    }

    @Test
    void writeBeyondEndFailsWithoutWriting() {
        RamDisk disk = new RamDisk("disk", 1 << 20);
        Linear lin = new Linear("lin", disk, 0, 8192);
        var f = lin.write(4096, pattern(8192, 2));
        assertThat(statusOf(f)).isEqualTo(Status.NOSPC);
        assertThat(messageOf(f)).contains("beyond the end of lin");
        assertThat(read(disk, 0, 16384)).containsOnly(0);
    }

    @Test
    void misalignedReadFailsWithInval() {
        Linear lin = new Linear("lin", new RamDisk("disk", 1 << 20), 0, 8192);
        assertThat(statusOf(lin.read(100, buffer(512)))).isEqualTo(Status.INVAL);
    }

    @Test
    void windowOutsideTheDeviceIsRefused() {
        RamDisk disk = new RamDisk("disk", 1 << 20);
        assertThatThrownBy(() -> new Linear("lin", disk, 1 << 19, 1 << 20))
                .hasMessageContaining("beyond the end of disk");
        assertThatThrownBy(() -> new Linear("lin", disk, 100, 4096)).hasMessageContaining("multiples");
    }

    @Test
    void aWholeDeviceLineWhoseOffsetIsPastTheEndSaysSo() throws Exception {
        RamDisk disk = new RamDisk("disk", 1 << 20);
        // 'NAME: linear disk 4096' (whole-device line: length -1) on a 2048-sector disk
        var spec = Linear.parseTable(new io.biostack.block.TableArgs("linear", java.util.List.of("disk", "4096")));
        assertThatThrownBy(() -> spec.open("lin", -1, n -> disk))
                .hasMessageContaining("beyond the end of disk")
                .hasMessageContaining("2097152");
        var dust = Dust.parseTable(new io.biostack.block.TableArgs("dust", java.util.List.of("disk", "4096", "512")));
        assertThatThrownBy(() -> dust.open("d", -1, n -> disk)).hasMessageContaining("beyond the end of disk");
    }

    @Test
    void limitsComeFromTheLowerDeviceAndReadOnlyPassesUp() {
        RamDisk disk = new RamDisk("disk", 1 << 20, 4096, true);
        Linear lin = Linear.of("lin", disk, 8192);
        assertThat(lin.limits().logicalBlockSize()).isEqualTo(4096);
        assertThat(lin.isReadOnly()).isTrue();
        assertThat(statusOf(lin.write(0, pattern(4096, 3)))).isEqualTo(Status.READONLY);
        assertThat(lin.size()).isEqualTo((1 << 20) - 8192);
    }

    @Test
    void chunkBoundaryOnlyCarriesUpWhenTheWindowStartsOnOne() {
        QueueLimits l = QueueLimits.builder().chunkBytes(65536).build();
        assertThat(Layers.shiftLimits(l, 65536 * 3).chunkBytes()).isEqualTo(65536);
        assertThat(Layers.shiftLimits(l, 4096).chunkBytes()).isZero();
    }

    @Test
    void extentsAreAskedOfTheLowerDeviceAtTheRemappedOffset() {
        RamDisk disk = new RamDisk("disk", 1 << 20);
        write(disk, 128 * 1024, pattern(4096, 4));
        Linear lin = new Linear("lin", disk, 64 * 1024, 512 * 1024);
        assertThat(lin.extentAt(0, 1 << 20)).isEqualTo(Extent.hole(64 * 1024));
        assertThat(lin.extentAt(64 * 1024, 1 << 20).flags()).isZero();
    }

    @Test
    void flushPassesDown() {
        var probe = new TestDevices.Probe(new RamDisk("disk", 1 << 20));
        Linear lin = new Linear("lin", probe, 0, 4096);
        join(lin.flush());
        assertThat(probe.count(Op.FLUSH)).isEqualTo(1);
    }
}
