package io.biostack.sys;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.RandomAccessFile;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@link ColdCalls} through {@code syscall(2)} answers as the libc wrappers do: the data and the
 * holes of a sparse file where the file system put them, and -errno on failure.
 */
class ColdCallsTest {
    @TempDir
    Path dir;

    @Test
    void openLseekAndCloseFindTheDataAndHolesOfASparseFileAsLibcDoes() throws Exception {
        Path p = dir.resolve("sparse");
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(8 << 20);
            f.seek(2 << 20);
            f.write(new byte[1 << 20]); // written zeros are data, not a hole
        }
        int fd = ColdCalls.open(p.toString(), Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
        assertThat(fd).as(Errno.name(fd)).isGreaterThanOrEqualTo(0);
        int libc = Libc.open(p.toString(), Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
        try {
            assertThat(ColdCalls.lseek(fd, 0, Fs.SEEK_DATA)).isEqualTo(2L << 20)
                    .isEqualTo(Libc.lseek(libc, 0, Fs.SEEK_DATA));
            assertThat(ColdCalls.lseek(fd, 2L << 20, Fs.SEEK_HOLE)).isEqualTo(3L << 20)
                    .isEqualTo(Libc.lseek(libc, 2L << 20, Fs.SEEK_HOLE));
            assertThat(ColdCalls.lseek(fd, 3L << 20, Fs.SEEK_DATA)).isEqualTo(-Errno.ENXIO);
        } finally {
            assertThat(ColdCalls.close(fd)).isZero();
            Libc.close(libc);
        }
        assertThat(ColdCalls.close(fd)).as("closed twice").isEqualTo(-Errno.EBADF);
    }

    @Test
    void aMissingFileIsMinusEnoentAndABadDescriptorMinusEbadf() {
        assertThat(ColdCalls.open(dir.resolve("missing").toString(), Fcntl.O_RDONLY, 0)).isEqualTo(-Errno.ENOENT);
        assertThat(ColdCalls.lseek(-1, 0, Fs.SEEK_DATA)).isEqualTo(-Errno.EBADF);
    }
}
