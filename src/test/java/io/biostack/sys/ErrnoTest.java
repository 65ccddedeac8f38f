package io.biostack.sys;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class ErrnoTest {
    @Test
    void nameOf22IsEinvalWhetherPositiveOrNegative() {
        assertThat(Errno.name(22)).isEqualTo("EINVAL");
        assertThat(Errno.name(-22)).isEqualTo("EINVAL");
    }

    @Test
    void valuesMatchTheAsmGenericHeaders() {
        assertThat(new int[] {Errno.EPERM, Errno.ENOENT, Errno.EINTR, Errno.EIO, Errno.EBADF,
            Errno.EAGAIN, Errno.ENOMEM, Errno.EFAULT, Errno.EBUSY, Errno.EEXIST, Errno.EINVAL,
            Errno.EFBIG, Errno.ENOSPC, Errno.ESPIPE, Errno.EROFS, Errno.EPIPE, Errno.ENOSYS,
            Errno.ENODATA, Errno.ETIME, Errno.EOVERFLOW, Errno.EILSEQ, Errno.EOPNOTSUPP,
            Errno.ECONNRESET, Errno.ETIMEDOUT, Errno.ECANCELED})
                .containsExactly(1, 2, 4, 5, 9, 11, 12, 14, 16, 17, 22, 27, 28, 29, 30, 32, 38,
                        61, 62, 75, 84, 95, 104, 110, 125);
    }

    @Test
    void describeGivesStrerrorText() {
        assertThat(Errno.describe(Errno.ENOENT)).isEqualTo("No such file or directory");
        assertThat(Errno.describe(-Errno.EIO)).isEqualTo("Input/output error");
        assertThat(Errno.format(Errno.ENOSPC)).isEqualTo("ENOSPC (No space left on device)");
    }

    @Test
    void unknownValuesAreNamedByNumber() {
        assertThat(Errno.name(4000)).isEqualTo("errno 4000");
        assertThat(Errno.describe(4000)).isEqualTo("Unknown error 4000");
        assertThat(Errno.name(41)).isEqualTo("errno 41");
        assertThat(Errno.name(Integer.MIN_VALUE)).startsWith("errno");
    }

    @Test
    void archIsDetectedFromOsArch() {
        assertThat(Arch.detect("amd64")).isEqualTo(Arch.X86_64);
        assertThat(Arch.detect("aarch64")).isEqualTo(Arch.AARCH64);
        assertThat(Arch.detect("riscv64")).isEqualTo(Arch.UNSUPPORTED);
        assertThat(Arch.CURRENT.isSupported()).isTrue();
        assertThat(Fcntl.O_DIRECT).isEqualTo(Arch.CURRENT == Arch.AARCH64 ? 0200000 : 040000);
    }
}
