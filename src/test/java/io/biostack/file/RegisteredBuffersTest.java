package io.biostack.file;

import io.biostack.TestEnv;

import io.biostack.block.IoIter;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static io.biostack.TestData.random;
import static io.biostack.TestData.sparseFile;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * I/O memory registered with the io_uring engine (READ_FIXED/WRITE_FIXED), on a real file with
 * O_DIRECT: what goes through a registered buffer a FileChannel reads back and the reverse;
 * memory outside every region still works; when registration fails the memory is plain and
 * works the same.
 */
class RegisteredBuffersTest {
    @TempDir
    Path dir;

    private static void write(BackingFile f, long pos, MemorySegment buf) throws Exception {
        assertThat(DirectIo.write(f, pos, IoIter.of(buf), 0).get(10, TimeUnit.SECONDS)).isEqualTo(buf.byteSize());
    }

    private static void read(BackingFile f, long pos, MemorySegment buf) throws Exception {
        assertThat(DirectIo.read(f, pos, IoIter.of(buf)).get(10, TimeUnit.SECONDS)).isEqualTo(buf.byteSize());
    }

    private static byte[] channelRead(Path p, long pos, int n) throws Exception {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer bb = ByteBuffer.allocate(n);
            while (bb.hasRemaining() && ch.read(bb, pos + bb.position()) > 0) {
            }
            return bb.array();
        }
    }

    private static void channelWrite(Path p, long pos, byte[] data) throws Exception {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            ByteBuffer bb = ByteBuffer.wrap(data);
            while (bb.hasRemaining()) {
                ch.write(bb, pos + bb.position());
            }
        }
    }

    @Test
    void writeThroughRegisteredBufferIsReadBackByFileChannel() throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 4 << 20);
        byte[] data = random(64 * 1024, 1);
        try (BackingFile f = BackingFile.open(p, true, false, EngineKind.URING); Arena a = Arena.ofShared()) {
            TestEnv.require(f.engineHasFixedBuffers(), "a kernel with sparse fixed-buffer tables (5.19)");
            assertThat(f.engineDescription()).contains("fixed buffers");
            MemorySegment region = f.allocateIoBuffers(256 * 1024, a);
            assertThat(region.address() % 4096).isZero();
            assertThat(region.byteSize()).isEqualTo(256 * 1024);
            // A slice inside the region, not at its start.
            MemorySegment buf = region.asSlice(8192, data.length);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 0, data.length);
            long before = f.fixedIos();
            write(f, 12288, buf);
            assertThat(f.fixedIos()).isGreaterThan(before);
        }
        assertThat(channelRead(p, 12288, data.length)).isEqualTo(data);
    }

    @Test
    void fileChannelWriteIsReadThroughRegisteredBuffer() throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 4 << 20);
        byte[] data = random(128 * 1024, 2);
        channelWrite(p, 1 << 20, data);
        try (BackingFile f = BackingFile.open(p, true, false, EngineKind.URING); Arena a = Arena.ofShared()) {
            TestEnv.require(f.engineHasFixedBuffers(), "a kernel with sparse fixed-buffer tables (5.19)");
            MemorySegment buf = f.allocateIoBuffers(data.length, a);
            long before = f.fixedIos();
            read(f, 1 << 20, buf);
            assertThat(f.fixedIos()).isGreaterThan(before);
            assertThat(buf.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).isEqualTo(data);
        }
    }

    @Test
    void memoryOutsideEveryRegionStillWorks() throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 4 << 20);
        byte[] data = random(32 * 1024, 3);
        try (BackingFile f = BackingFile.open(p, true, false, EngineKind.URING); Arena a = Arena.ofShared()) {
            f.allocateIoBuffers(64 * 1024, a); // a region exists, but this bio is elsewhere
            MemorySegment plain = a.allocate(data.length, 4096);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, plain, 0, data.length);
            long before = f.fixedIos();
            write(f, 0, plain);
            MemorySegment back = a.allocate(data.length, 4096);
            read(f, 0, back);
            assertThat(f.fixedIos()).isEqualTo(before);
            assertThat(back.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).isEqualTo(data);
            // Several pieces, one of them registered: the readv/writev path.
            MemorySegment reg = f.allocateIoBuffers(16 * 1024, a);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, reg, 0, 16 * 1024);
            assertThat(DirectIo.write(f, 65536, IoIter.of(reg, plain.asSlice(16 * 1024)), 0)
                    .get(10, TimeUnit.SECONDS)).isEqualTo((long) data.length);
        }
        assertThat(channelRead(p, 0, data.length)).isEqualTo(data);
        assertThat(channelRead(p, 65536, data.length)).isEqualTo(data);
    }

    @Test
    void fullTableFallsBackToPlainMemoryAndReleasedSlotsAreReused() throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 4 << 20);
        byte[] data = random(4096, 4);
        try (BackingFile f = BackingFile.open(p, true, false, EngineKind.URING)) {
            TestEnv.require(f.engineHasFixedBuffers(), "a kernel with sparse fixed-buffer tables (5.19)");
            MemorySegment plain;
            try (Arena a = Arena.ofShared()) {
                List<MemorySegment> regions = new ArrayList<>();
                for (int i = 0; i <= UringEngine.BUFFER_SLOTS; i++) {
                    regions.add(f.allocateIoBuffers(4096, a)); // one more than the table holds
                }
                plain = regions.getLast(); // registration refused (-ENOSPC): plain memory
                MemorySegment.copy(MemorySegment.ofArray(data), 0, plain, 0, data.length);
                long before = f.fixedIos();
                write(f, 4096, plain);
                assertThat(f.fixedIos()).isEqualTo(before);
                assertThat(channelRead(p, 4096, data.length)).isEqualTo(data);
            }
            // Closing the owner dropped every registration: a new region gets a slot again.
            try (Arena a = Arena.ofShared()) {
                MemorySegment buf = f.allocateIoBuffers(4096, a);
                long before = f.fixedIos();
                read(f, 4096, buf);
                assertThat(f.fixedIos()).isGreaterThan(before);
                assertThat(buf.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).isEqualTo(data);
            }
        }
    }

    @Test
    void withoutFixedBuffersTheMemoryIsPlainAndWorks() throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 4 << 20);
        byte[] data = random(64 * 1024, 5);
        String old = System.setProperty("biostack.uring.fixedBuffers", "false");
        try (BackingFile f = BackingFile.open(p, true, false, EngineKind.URING); Arena a = Arena.ofShared()) {
            TestEnv.require(!f.engineDescription().contains("fixed buffers"), "a fresh engine (no other open file holds it)");
            MemorySegment buf = f.allocateIoBuffers(data.length, a);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 0, data.length);
            write(f, 0, buf);
            buf.fill((byte) 0);
            read(f, 0, buf);
            assertThat(buf.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).isEqualTo(data);
            assertThat(f.fixedIos()).isZero();
        } finally {
            if (old == null) {
                System.clearProperty("biostack.uring.fixedBuffers");
            } else {
                System.setProperty("biostack.uring.fixedBuffers", old);
            }
        }
        assertThat(channelRead(p, 0, data.length)).isEqualTo(data);
    }

    @Test
    void threadEngineGivesPlainMemory() throws Exception {
        Path p = sparseFile(dir.resolve("f.img"), 4 << 20);
        byte[] data = random(8192, 6);
        try (BackingFile f = BackingFile.open(p, true, false, EngineKind.THREADS); Arena a = Arena.ofShared()) {
            MemorySegment buf = f.allocateIoBuffers(data.length, a);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 0, data.length);
            write(f, 8192, buf);
        }
        assertThat(channelRead(p, 8192, data.length)).isEqualTo(data);
    }
}
