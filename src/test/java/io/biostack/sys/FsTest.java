package io.biostack.sys;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** How a SEEK_DATA result is read: data, none, or a file that cannot tell (all data). */
class FsTest {
    @Test
    void nextDataIsTheOffsetNoneForEnxioAndTheStartWhenTheFileCannotTell() {
        assertThat(Fs.nextData(8192, 4096)).isEqualTo(8192);
        assertThat(Fs.nextData(-Errno.ENXIO, 4096)).isEqualTo(Long.MAX_VALUE);
        assertThat(Fs.nextData(-Errno.EINVAL, 4096)).as("a block device: all data").isEqualTo(4096);
        assertThat(Fs.nextData(-Errno.EOPNOTSUPP, 0)).isZero();
    }
}
