package io.biostack.loop;

import io.biostack.block.Bio;
import io.biostack.block.BioException;
import io.biostack.block.BioFlags;
import io.biostack.block.Extent;
import io.biostack.block.IoIter;
import io.biostack.block.Op;
import io.biostack.block.Status;
import io.biostack.file.EngineKind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static io.biostack.TestData.random;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The loop device on real files: what it writes a FileChannel reads, and every refusal. */
class LoopDeviceTest {
    @TempDir
    Path dir;

    private Path sparse(long size) throws Exception {
        Path p = dir.resolve("disk.img");
        try (java.io.RandomAccessFile raf = new java.io.RandomAccessFile(p.toFile(), "rw")) {
            raf.setLength(size);
        }
        return p;
    }

    private static byte[] fileBytes(Path p, long off, int n) throws Exception {
        try (FileChannel ch = FileChannel.open(p)) {
            ByteBuffer bb = ByteBuffer.allocate(n);
            ch.read(bb, off);
            return bb.array();
        }
    }

    private static Status statusOf(CompletableFuture<Void> f) {
        try {
            f.get(10, TimeUnit.SECONDS);
            return Status.OK;
        } catch (Exception e) {
            return ((BioException) e.getCause()).status();
        }
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void ioMemoryFromTheDeviceWritesAndReadsBack(EngineKind engine) throws Exception {
        Path p = sparse(4 << 20);
        byte[] data = random(16384, 11);
        LoopConfig cfg = LoopConfig.defaults().withOffset(1 << 20).withEngine(engine).withDirectIo(DirectIoMode.ON);
        try (LoopDevice dev = LoopDevice.open(p, cfg); Arena a = Arena.ofShared()) {
            MemorySegment buf = dev.allocateIoMemory(data.length, a);
            assertThat(buf.byteSize()).isEqualTo(data.length);
            assertThat(buf.address() % Math.max(4096, dev.limits().dmaAlignment())).isZero();
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 0, data.length);
            dev.write(4096, buf).get(10, TimeUnit.SECONDS);
            buf.fill((byte) 0);
            dev.read(4096, buf).get(10, TimeUnit.SECONDS);
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(data);
        }
        assertThat(fileBytes(p, (1 << 20) + 4096, data.length)).isEqualTo(data);
    }

    @ParameterizedTest
    @EnumSource(value = EngineKind.class, names = {"URING", "THREADS"})
    void writeThroughOffsetLandsAtFileOffsetAndReadsBack(EngineKind engine) throws Exception {
        Path p = sparse(4 << 20);
        byte[] data = random(12288, 1);
        LoopConfig cfg = LoopConfig.defaults().withOffset(1 << 20).withEngine(engine).withDirectIo(DirectIoMode.ON);
        try (LoopDevice dev = LoopDevice.open(p, cfg)) {
            assertThat(dev.size()).isEqualTo(3 << 20);
            assertThat(dev.isDirectIo()).isTrue();
            dev.write(8192, IoIter.of(data), BioFlags.FUA).get(10, TimeUnit.SECONDS);
            dev.flush().get(10, TimeUnit.SECONDS);
        }
        assertThat(fileBytes(p, (1 << 20) + 8192, data.length)).isEqualTo(data);
        byte[] other = random(4096, 2);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(other), (1 << 20) + 65536);
        }
        try (LoopDevice dev = LoopDevice.open(p, cfg)) {
            byte[] back = new byte[4096];
            dev.read(65536, IoIter.of(back)).get(10, TimeUnit.SECONDS);
            assertThat(back).isEqualTo(other);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 1024, 2048, 4096})
    void everyKernelSectorSizeWorksAndSetsTheLimits(int lbs) throws Exception {
        Path p = sparse(1 << 20);
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults().withLogicalBlockSize(lbs))) {
            assertThat(dev.limits().logicalBlockSize()).isEqualTo(lbs);
            byte[] data = random(lbs, lbs);
            dev.write(dev.size() - lbs, IoIter.of(data), 0).get(10, TimeUnit.SECONDS);
            assertThat(fileBytes(p, (1 << 20) - lbs, lbs)).isEqualTo(data);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 256, 3000, 8192, 513})
    void otherSectorSizesAreRefusedWithAClearMessage(int lbs) throws Exception {
        Path p = sparse(1 << 20);
        assertThatThrownBy(() -> LoopDevice.open(p, LoopConfig.defaults().withLogicalBlockSize(lbs)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("512, 1024, 2048 or 4096");
    }

    @Test
    void writeBeyondEndFailsWithNoSpaceAndWritesNothing() throws Exception {
        Path p = sparse(1 << 20);
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults().withSizeLimit(512 * 1024))) {
            assertThat(dev.size()).isEqualTo(512 * 1024);
            CompletableFuture<Void> f = dev.write(512 * 1024 - 4096, IoIter.of(random(8192, 3)), 0);
            assertThat(statusOf(f)).isEqualTo(Status.NOSPC);
            assertThatThrownBy(f::join).hasMessageContaining("beyond the end");
        }
        assertThat(fileBytes(p, 0, 1 << 20)).containsOnly(0);
    }

    @Test
    void readBeyondEndFailsWithInval() throws Exception {
        Path p = sparse(1 << 20);
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults())) {
            assertThat(statusOf(dev.read(1 << 20, IoIter.of(new byte[512])))).isEqualTo(Status.INVAL);
        }
    }

    @Test
    void misalignedRequestsFailWithInvalAndWriteNothing() throws Exception {
        Path p = sparse(1 << 20);
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults().withLogicalBlockSize(4096))) {
            assertThat(statusOf(dev.write(512, IoIter.of(random(4096, 4)), 0))).isEqualTo(Status.INVAL);
            assertThat(statusOf(dev.write(0, IoIter.of(random(1000, 4)), 0))).isEqualTo(Status.INVAL);
            assertThat(statusOf(dev.discard(4096, 100))).isEqualTo(Status.INVAL);
        }
        assertThat(fileBytes(p, 0, 1 << 20)).containsOnly(0);
    }

    @Test
    void readOnlyDeviceRefusesEveryChangeAndWritesNothing() throws Exception {
        Path p = sparse(1 << 20);
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults().withReadOnly(true))) {
            assertThat(dev.isReadOnly()).isTrue();
            assertThat(statusOf(dev.write(0, IoIter.of(random(4096, 5)), 0))).isEqualTo(Status.READONLY);
            assertThat(statusOf(dev.discard(0, 4096))).isEqualTo(Status.READONLY);
            assertThat(statusOf(dev.writeZeroes(0, 4096, true))).isEqualTo(Status.READONLY);
            assertThat(statusOf(dev.read(0, IoIter.of(new byte[4096])))).isEqualTo(Status.OK);
            assertThat(statusOf(dev.flush())).isEqualTo(Status.OK);
        }
        assertThat(fileBytes(p, 0, 1 << 20)).containsOnly(0);
    }

    /** Engines, page cache or O_DIRECT, and sector sizes, for the file's last part block. */
    static java.util.stream.Stream<org.junit.jupiter.params.provider.Arguments> partBlockCases() {
        java.util.List<org.junit.jupiter.params.provider.Arguments> l = new java.util.ArrayList<>();
        for (EngineKind e : new EngineKind[] {EngineKind.URING, EngineKind.THREADS}) {
            for (DirectIoMode d : new DirectIoMode[] {DirectIoMode.ON, DirectIoMode.OFF}) {
                for (int lbs : new int[] {512, 4096}) {
                    l.add(org.junit.jupiter.params.provider.Arguments.of(e, d, lbs));
                }
            }
        }
        return l.stream();
    }

    @ParameterizedTest
    @org.junit.jupiter.params.provider.MethodSource("partBlockCases")
    void aReadOnlyDeviceShowingItsFilesPartBlockReadsTheFileThenZeros(EngineKind engine, DirectIoMode dio, int lbs)
            throws Exception {
        int whole = 3 * 4096;
        byte[] data = random(whole + 300, 12);
        Path p = dir.resolve("odd.img");
        Files.write(p, data);
        LoopConfig cfg = LoopConfig.defaults().withReadOnly(true).withEngine(engine).withDirectIo(dio)
                .withLogicalBlockSize(lbs);
        try (LoopDevice dev = LoopDevice.open(p, cfg); Arena a = Arena.ofShared()) {
            assertThat(dev.size()).as("loop.c's habit: whole blocks only").isEqualTo(whole);
            assertThatThrownBy(() -> dev.growTo(whole + 1)).isInstanceOf(java.io.IOException.class)
                    .hasMessageContaining("read-only");
            assertThat(dev.size()).isEqualTo(whole);
            assertThat(dev.showPartBlock()).isEqualTo(whole + lbs);
            assertThat(dev.refreshCapacity()).as("a re-read keeps the part block").isEqualTo(whole + lbs);
            MemorySegment buf = dev.allocateIoMemory(2 * lbs, a);
            buf.fill((byte) 0x5a); // what the file does not hold must read as zeros, not as this
            dev.read(whole - lbs, buf).get(10, TimeUnit.SECONDS);
            byte[] want = new byte[2 * lbs];
            System.arraycopy(data, whole - lbs, want, 0, lbs + 300);
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).isEqualTo(want);
            assertThat(statusOf(dev.read(whole + lbs, IoIter.of(new byte[lbs])))).isEqualTo(Status.INVAL);
        }
        assertThat(Files.readAllBytes(p)).as("the file is unchanged").isEqualTo(data);
    }

    @Test
    void aWritableDeviceShowsItsFilesPartBlockWithoutChangingTheFileAndAWriteThereExtendsIt() throws Exception {
        byte[] data = random(8192 + 100, 13);
        Path p = dir.resolve("odd.img");
        Files.write(p, data);
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults().withDirectIo(DirectIoMode.ON))) {
            assertThat(dev.showPartBlock()).isEqualTo(8192 + 512);
            assertThat(Files.readAllBytes(p)).as("showing the part block changes nothing").isEqualTo(data);
            byte[] sector = random(512, 14);
            dev.write(8192, IoIter.of(sector), 0).get(10, TimeUnit.SECONDS);
            assertThat(Files.size(p)).isEqualTo(8192 + 512);
            assertThat(fileBytes(p, 8192, 512)).isEqualTo(sector);
            assertThat(dev.growTo(3 * 4096)).as("past the part block the file grows").isEqualTo(3 * 4096);
            assertThat(Files.size(p)).isEqualTo(3 * 4096);
        }
    }

    @Test
    void capacityRefreshSeesAFileThatGrew() throws Exception {
        Path p = sparse(1 << 20);
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults())) {
            assertThat(statusOf(dev.write(1 << 20, IoIter.of(random(4096, 6)), 0))).isEqualTo(Status.NOSPC);
            try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
                ch.write(ByteBuffer.allocate(1), (2 << 20) - 1);
            }
            assertThat(dev.size()).isEqualTo(1 << 20);
            assertThat(dev.refreshCapacity()).isEqualTo(2 << 20);
            byte[] data = random(4096, 7);
            dev.write(1 << 20, IoIter.of(data), 0).get(10, TimeUnit.SECONDS);
            assertThat(fileBytes(p, 1 << 20, 4096)).isEqualTo(data);
        }
    }

    @Test
    void directIoAutoIsOnWhenOffsetAndBlockFitTheFilesAlignment() throws Exception {
        Path p = sparse(1 << 20);
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults())) {
            assertThat(dev.isDirectIo()).isTrue();
        }
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults().withDirectIo(DirectIoMode.OFF))) {
            assertThat(dev.isDirectIo()).isFalse();
            byte[] data = random(4096, 8);
            dev.write(0, IoIter.of(data), 0).get(10, TimeUnit.SECONDS);
            dev.flush().get(10, TimeUnit.SECONDS);
            assertThat(fileBytes(p, 0, 4096)).isEqualTo(data);
        }
    }

    @Test
    void directIoAutoFallsBackToThePageCacheOnAFileSystemWithoutODirectAndOnIsRefusedSayingWhy() throws Exception {
        // ramfs refuses O_DIRECT at open (EINVAL) yet reports a 4096-byte block, which 4096-byte
        // sectors fit: auto opened the file O_DIRECT and failed instead of using the page cache.
        io.biostack.nbd.Tools.require("mount", "umount");
        io.biostack.TestEnv.require("root".equals(System.getProperty("user.name")), "root (to mount a ramfs)");
        Path mnt = dir.resolve("ramfs");
        Files.createDirectories(mnt);
        io.biostack.nbd.Tools.ok(30, "mount", "-t", "ramfs", "ramfs", mnt.toString());
        try {
            Path p = mnt.resolve("disk.img");
            try (FileChannel ch = FileChannel.open(p, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                ch.truncate(0).write(ByteBuffer.allocate(1), (1 << 20) - 1);
            }
            LoopConfig fourK = LoopConfig.defaults().withLogicalBlockSize(4096);
            byte[] data = random(8192, 12);
            try (LoopDevice dev = LoopDevice.open(p, fourK)) {
                assertThat(dev.isDirectIo()).isFalse();
                dev.write(4096, IoIter.of(data), 0).get(10, TimeUnit.SECONDS);
                dev.flush().get(10, TimeUnit.SECONDS);
            }
            assertThat(fileBytes(p, 4096, data.length)).isEqualTo(data);
            assertThatThrownBy(() -> LoopDevice.open(p, fourK.withDirectIo(DirectIoMode.ON)))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("direct I/O is not supported by the file system of " + p);
        } finally {
            io.biostack.nbd.Tools.run(30, "umount", mnt.toString());
        }
    }

    @Test
    @org.junit.jupiter.api.Timeout(120)
    void theThreadEngineNeverHangsWhenCallbacksSubmitIntoAFullQueue() throws Exception {
        // Each read's completion (on an engine thread) reads again, with more chains than the
        // engine's queue holds: every worker waited in put for room only workers make, and the
        // whole engine hung (io_uring-less hosts, e.g. a container's default seccomp, run on it).
        Path p = sparse(1 << 20);
        int chains = 6000;
        int reads = 20;
        java.util.concurrent.CountDownLatch done = new java.util.concurrent.CountDownLatch(chains);
        java.util.concurrent.atomic.AtomicInteger failed = new java.util.concurrent.atomic.AtomicInteger();
        LoopConfig cfg = LoopConfig.defaults().withEngine(EngineKind.THREADS).withDirectIo(DirectIoMode.OFF);
        try (LoopDevice dev = LoopDevice.open(p, cfg); Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(512, 4096);
            class Chain {
                void next(int left) {
                    if (left == 0) {
                        done.countDown();
                        return;
                    }
                    dev.read(0, IoIter.of(buf)).whenComplete((v, e) -> {
                        if (e != null) {
                            failed.incrementAndGet();
                        }
                        next(left - 1);
                    });
                }
            }
            Thread starter = Thread.ofPlatform().start(() -> {
                for (int i = 0; i < chains; i++) {
                    new Chain().next(reads);
                }
            });
            assertThat(done.await(60, TimeUnit.SECONDS)).as("every chain of reads completed").isTrue();
            starter.join();
        }
        assertThat(failed.get()).isZero();
    }

    @Test
    void directIoFitsFollowsLoopCsRule() {
        assertThat(LoopDevice.directIoFits(0, 4096, 4096)).isTrue();
        assertThat(LoopDevice.directIoFits(512, 4096, 4096)).isFalse();
        assertThat(LoopDevice.directIoFits(0, 512, 4096)).isFalse();
        assertThat(LoopDevice.directIoFits(8192, 1024, 512)).isTrue();
    }

    @Test
    void missingFileIsCreatedSparseOnlyWhenAsked() throws Exception {
        Path p = dir.resolve("new.img");
        assertThatThrownBy(() -> LoopDevice.open(p, LoopConfig.defaults())).hasMessageContaining("no such file");
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults().withCreateSize(64 << 20))) {
            assertThat(dev.size()).isEqualTo(64 << 20);
        }
        assertThat(Files.size(p)).isEqualTo(64 << 20);
        assertThat(Files.getAttribute(p, "unix:size")).isEqualTo(64L << 20);
    }

    @Test
    void extentsReportHolesAndDataOfTheBackingFile() throws Exception {
        Path p = dir.resolve("holes.img");
        try (java.io.RandomAccessFile raf = new java.io.RandomAccessFile(p.toFile(), "rw")) {
            raf.setLength(4 << 20); // sparse
            raf.seek(1 << 20);
            raf.write(random(65536, 9));
        }
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults())) {
            assertThat(dev.size()).isEqualTo(4 << 20);
            Extent first = dev.extentAt(0, dev.size());
            assertThat(first.flags()).isEqualTo(Extent.HOLE | Extent.ZERO);
            assertThat(first.length()).isEqualTo(1 << 20);
            Extent data = dev.extentAt(1 << 20, dev.size() - (1 << 20));
            assertThat(data.flags()).isZero();
            assertThat(data.length()).isEqualTo(65536);
            Extent tail = dev.extentAt((1 << 20) + 65536, dev.size() - (1 << 20) - 65536);
            assertThat(tail).isEqualTo(Extent.hole((3 << 20) - 65536));
        }
    }

    @Test
    void discardReadsBackAsZerosAndLeavesAHole() throws Exception {
        Path p = dir.resolve("d.img");
        Files.write(p, random(1 << 20, 10));
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults()); Arena a = Arena.ofShared()) {
            dev.discard(0, 256 * 1024).get(10, TimeUnit.SECONDS);
            MemorySegment buf = a.allocate(256 * 1024, 4096).fill((byte) 7);
            dev.read(0, buf).get(10, TimeUnit.SECONDS);
            assertThat(buf.toArray(ValueLayout.JAVA_BYTE)).containsOnly(0);
            assertThat(dev.extentAt(0, 1 << 20).flags() & Extent.HOLE).isEqualTo(Extent.HOLE);
        }
    }

    @Test
    void preflushWriteIsWrittenAfterTheFlush() throws Exception {
        Path p = sparse(1 << 20);
        byte[] data = random(4096, 11);
        try (LoopDevice dev = LoopDevice.open(p, LoopConfig.defaults()); Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(4096, 4096);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 0, 4096);
            CompletableFuture<Status> done = new CompletableFuture<>();
            Bio bio = new Bio().init(Op.WRITE, BioFlags.PREFLUSH | BioFlags.FUA, 4096, b -> done.complete(b.status()));
            bio.addSegment(buf);
            dev.submit(bio);
            assertThat(done.get(10, TimeUnit.SECONDS)).isEqualTo(Status.OK);
        }
        assertThat(fileBytes(p, 4096, 4096)).isEqualTo(data);
    }
}
