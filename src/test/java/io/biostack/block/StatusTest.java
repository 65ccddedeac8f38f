package io.biostack.block;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class StatusTest {

    @Test
    void fromErrnoOfEachStatusErrnoGivesTheStatusBack() {
        for (Status s : Status.values()) {
            assertThat(Status.fromErrno(s.errno())).as(s.name()).isEqualTo(s);
            assertThat(Status.fromErrno(-s.errno())).as("negative " + s.name()).isEqualTo(s);
        }
    }

    @Test
    void fromErrnoMapsKernelAliasesAndUnknownsToIoerr() {
        assertThat(Status.fromErrno(30)).isEqualTo(Status.READONLY); // EROFS
        assertThat(Status.fromErrno(27)).isEqualTo(Status.NOSPC); // EFBIG
        assertThat(Status.fromErrno(38)).isEqualTo(Status.NOTSUPP); // ENOSYS
        assertThat(Status.fromErrno(84)).isEqualTo(Status.MEDIUM); // EILSEQ
        assertThat(Status.fromErrno(62)).isEqualTo(Status.TIMEOUT); // ETIME
        assertThat(Status.fromErrno(9999)).isEqualTo(Status.IOERR);
        assertThat(Status.OK.isOk()).isTrue();
        assertThat(Status.IOERR.isOk()).isFalse();
    }

    @Test
    void bioFlagsPrintAsNamesJoinedByBars() {
        assertThat(BioFlags.toString(0)).isEqualTo("-");
        assertThat(BioFlags.toString(BioFlags.FUA | BioFlags.PREFLUSH)).isEqualTo("FUA|PREFLUSH");
        assertThat(BioFlags.toString(BioFlags.NOUNMAP | BioFlags.NOWAIT)).isEqualTo("NOUNMAP|NOWAIT");
    }

    @Test
    void onlyReadAndWriteCarryDataAndOnlyWritesChangeIt() {
        assertThat(Op.READ.hasData()).isTrue();
        assertThat(Op.WRITE.hasData()).isTrue();
        assertThat(Op.FLUSH.hasData()).isFalse();
        assertThat(Op.DISCARD.hasData()).isFalse();
        assertThat(Op.WRITE_ZEROES.hasData()).isFalse();
        assertThat(Op.READ.changesData()).isFalse();
        assertThat(Op.FLUSH.changesData()).isFalse();
        assertThat(Op.WRITE.changesData()).isTrue();
        assertThat(Op.DISCARD.changesData()).isTrue();
        assertThat(Op.WRITE_ZEROES.changesData()).isTrue();
    }
}
