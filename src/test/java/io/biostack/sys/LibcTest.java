package io.biostack.sys;

import io.biostack.TestEnv;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LibcTest {
    @TempDir
    Path dir;

    private int openRw(Path p) {
        int fd = Libc.open(p.toString(), Fcntl.O_RDWR | Fcntl.O_CREAT | Fcntl.O_CLOEXEC, 0644);
        assertThat(fd).as("open %s: %s", p, Errno.name(fd)).isGreaterThanOrEqualTo(0);
        return fd;
    }

    @Test
    void openOfMissingFileReturnsMinusEnoent() {
        int r = Libc.open(dir.resolve("missing").toString(), Fcntl.O_RDONLY, 0);
        assertThat(r).isEqualTo(-Errno.ENOENT);
    }

    @Test
    void openWithCreatAndExclOfExistingFileReturnsMinusEexist() throws IOException {
        Path p = Files.createFile(dir.resolve("exists"));
        int r = Libc.open(p.toString(), Fcntl.O_RDWR | Fcntl.O_CREAT | Fcntl.O_EXCL, 0644);
        assertThat(r).isEqualTo(-Errno.EEXIST);
    }

    @Test
    void closeOfBadFdReturnsMinusEbadf() {
        assertThat(Libc.close(-1)).isEqualTo(-Errno.EBADF);
        assertThat(Libc.fsync(999_999)).isEqualTo(-Errno.EBADF);
    }

    @Test
    void lseekWithBadWhenceOrPastDataReturnsMinusErrno() {
        int fd = openRw(dir.resolve("seek"));
        try {
            assertThat(Libc.lseek(fd, 0, 99)).isEqualTo(-Errno.EINVAL);
            assertThat(Libc.lseek(fd, 0, Fs.SEEK_DATA)).as("empty file has no data")
                    .isEqualTo(-Errno.ENXIO);
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void pwriteThenPreadRoundTripsNativeMemoryAtAnOffset() {
        int fd = openRw(dir.resolve("rw"));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(1000);
            for (int i = 0; i < 1000; i++) {
                out.set(JAVA_BYTE, i, (byte) (i * 7));
            }
            assertThat(Libc.pwrite(fd, out.address(), 1000, 5000)).isEqualTo(1000);
            MemorySegment in = arena.allocate(1000);
            assertThat(Libc.pread(fd, in.address(), 1000, 5000)).isEqualTo(1000);
            assertThat(in.mismatch(out)).isEqualTo(-1);
            assertThat(Libc.pread(fd, in.address(), 1000, 6000)).isZero();
            assertThat(Libc.lseek(fd, 0, Fs.SEEK_END)).isEqualTo(6000);
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void pwritev2AndPreadv2MoveEveryIovec() {
        int fd = openRw(dir.resolve("vec"));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate(100).fill((byte) 'a');
            MemorySegment b = arena.allocate(50).fill((byte) 'b');
            MemorySegment iov = Iovec.allocate(arena, 2);
            Iovec.set(iov, 0, a);
            Iovec.set(iov, 1, b.address(), b.byteSize());
            assertThat(Iovec.len(iov, 1)).isEqualTo(50);
            assertThat(Libc.pwritev2(fd, iov.address(), 2, 10, Fs.RWF_DSYNC)).isEqualTo(150);

            MemorySegment back = arena.allocate(150);
            MemorySegment iov1 = Iovec.allocate(arena, 1);
            Iovec.set(iov1, 0, back);
            assertThat(Libc.preadv2(fd, iov1.address(), 1, 10, 0)).isEqualTo(150);
            assertThat(back.get(JAVA_BYTE, 99)).isEqualTo((byte) 'a');
            assertThat(back.get(JAVA_BYTE, 100)).isEqualTo((byte) 'b');
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void fstatxReportsSizeModeAndDioAlignmentOnExt4() throws IOException {
        Path p = dir.resolve("stat");
        Files.write(p, new byte[12345]);
        int fd = Libc.open(p.toString(), Fcntl.O_RDONLY, 0);
        try {
            Stat st = Libc.fstatx(fd);
            assertThat(st.size()).isEqualTo(12345);
            assertThat(st.isRegularFile()).isTrue();
            assertThat(st.isBlockDevice()).isFalse();
            assertThat(st.blksize()).isPositive();
            TestEnv.require(Files.getFileStore(dir).type().equals("ext4"), "an ext4 temp dir (dio alignment)");
            assertThat(st.dioOffsetAlign()).isPositive();
            assertThat(st.dioMemAlign()).isPositive();
            assertThat(Integer.bitCount(st.dioOffsetAlign())).isEqualTo(1);
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void fstatxOfBadFdThrowsErrnoException() {
        try {
            Libc.fstatx(-1);
            throw new AssertionError("expected ErrnoException");
        } catch (ErrnoException e) {
            assertThat(e.errno()).isEqualTo(Errno.EBADF);
            assertThat(e.getMessage()).contains("EBADF");
        }
    }

    @Test
    void statxOfAPathAgreesWithFstatxOfTheOpenFileAndFollowsSymlinks() throws IOException {
        Path p = dir.resolve("bypath");
        Files.write(p, new byte[3 * 4096 + 7]);
        Path link = dir.resolve("bypath-link");
        Files.createSymbolicLink(link, p);
        int fd = Libc.open(p.toString(), Fcntl.O_RDONLY, 0);
        try {
            Stat byFd = Libc.fstatx(fd);
            for (Path name : new Path[] {p, link}) {
                Stat byPath = Libc.statx(name.toString());
                assertThat(byPath.size()).isEqualTo(3 * 4096 + 7);
                assertThat(byPath.blocks()).isEqualTo(byFd.blocks()).isPositive();
                assertThat(byPath.isRegularFile()).isTrue();
            }
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void statxOfAMissingPathThrowsEnoent() {
        try {
            Libc.statx(dir.resolve("absent").toString());
            throw new AssertionError("expected ErrnoException");
        } catch (ErrnoException e) {
            assertThat(e.errno()).isEqualTo(Errno.ENOENT);
            assertThat(e.getMessage()).contains("absent");
        }
    }

    @Test
    void fallocatePunchHoleKeepsSizeAndReadsBackZeros() throws IOException {
        Path p = dir.resolve("punch");
        byte[] ones = new byte[64 * 1024];
        java.util.Arrays.fill(ones, (byte) 1);
        Files.write(p, ones);
        int fd = openRw(p);
        try {
            int r = Libc.fallocate(fd, Falloc.FALLOC_FL_PUNCH_HOLE | Falloc.FALLOC_FL_KEEP_SIZE,
                    16384, 16384);
            assertThat(r).isZero();
            assertThat(Libc.fsync(fd)).isZero();
            assertThat(Libc.fdatasync(fd)).isZero();
        } finally {
            Libc.close(fd);
        }
        byte[] back = Files.readAllBytes(p);
        assertThat(back).hasSize(64 * 1024);
        for (int i = 0; i < back.length; i++) {
            assertThat(back[i]).as("byte %d", i).isEqualTo((byte) (i >= 16384 && i < 32768 ? 0 : 1));
        }
    }

    @Test
    void ftruncateSetsTheSize() throws IOException {
        Path p = dir.resolve("trunc");
        int fd = openRw(p);
        try {
            assertThat(Libc.ftruncate(fd, 1 << 20)).isZero();
            assertThat(Libc.fstatx(fd).size()).isEqualTo(1 << 20);
            assertThat(Libc.ftruncate(fd, -1)).isEqualTo(-Errno.EINVAL);
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void eventfdCountsWritesAndWouldBlockWhenNonblockingAndEmpty() {
        int efd = Libc.eventfd(0, EventFd.EFD_CLOEXEC | EventFd.EFD_NONBLOCK);
        assertThat(efd).isGreaterThanOrEqualTo(0);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment v = arena.allocate(JAVA_LONG);
            assertThat(Libc.read(efd, v.address(), 8)).isEqualTo(-Errno.EAGAIN);
            v.set(JAVA_LONG, 0, 3);
            assertThat(Libc.write(efd, v.address(), 8)).isEqualTo(8);
            assertThat(Libc.write(efd, v.address(), 8)).isEqualTo(8);
            v.set(JAVA_LONG, 0, 0);
            assertThat(Libc.read(efd, v.address(), 8)).isEqualTo(8);
            assertThat(v.get(JAVA_LONG, 0)).isEqualTo(6);
        } finally {
            Libc.close(efd);
        }
    }

    @Test
    void mmapAnonymousMemoryIsUsableAndUnmaps() {
        long addr = Libc.mmap(0, 8192, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        assertThat(addr).isPositive();
        @SuppressWarnings("restricted")
        MemorySegment m = MemorySegment.ofAddress(addr).reinterpret(8192);
        m.set(JAVA_LONG, 8184, 42L);
        assertThat(m.get(JAVA_LONG, 8184)).isEqualTo(42L);
        assertThat(Libc.madvise(addr, 8192, Mman.MADV_DONTNEED)).isZero();
        assertThat(m.get(JAVA_LONG, 8184)).as("DONTNEED on private anon zeroes").isZero();
        assertThat(Libc.munmap(addr, 8192)).isZero();
        assertThat(Libc.mmap(0, 0, Mman.PROT_READ, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0))
                .isEqualTo(-Errno.EINVAL);
    }

    @Test
    void blockDeviceSizeOfRegularFileIsMinusEnotty() {
        int fd = openRw(dir.resolve("notblk"));
        try {
            assertThat(Libc.blockDeviceSize(fd)).isEqualTo(-Errno.ENOTTY);
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void oDirectWriteOfMisalignedBufferFailsWithEinval() throws IOException {
        TestEnv.require(Files.getFileStore(dir).type().equals("ext4"), "an ext4 temp dir (O_DIRECT)");
        Path p = dir.resolve("direct");
        int fd = Libc.open(p.toString(), Fcntl.O_RDWR | Fcntl.O_CREAT | Fcntl.O_DIRECT, 0644);
        assertThat(fd).isGreaterThanOrEqualTo(0);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(8192, 4096);
            assertThat(Libc.pwrite(fd, buf.address(), 4096, 0)).isEqualTo(4096);
            assertThat(Libc.pwrite(fd, buf.address() + 1, 4096, 0)).isEqualTo(-Errno.EINVAL);
            assertThat(Libc.pwrite(fd, buf.address(), 4096, 1)).isEqualTo(-Errno.EINVAL);
        } finally {
            Libc.close(fd);
        }
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            assertThat(ch.size()).isEqualTo(4096);
            assertThat(ch.read(ByteBuffer.allocate(1), 0)).isEqualTo(1);
        }
    }
}
