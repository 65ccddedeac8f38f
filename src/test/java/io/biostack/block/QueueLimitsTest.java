package io.biostack.block;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class QueueLimitsTest {

    @Test
    void defaultsAreA512ByteDiskWithoutLimitsOrFeatures() {
        QueueLimits l = QueueLimits.builder().build();
        assertThat(l.logicalBlockSize()).isEqualTo(512);
        assertThat(l.physicalBlockSize()).isEqualTo(512);
        assertThat(l.dmaAlignment()).isEqualTo(1);
        assertThat(l.maxBytes()).isZero();
        assertThat(l.maxSegments()).isZero();
        assertThat(l.maxSegmentSize()).isZero();
        assertThat(l.chunkBytes()).isZero();
        assertThat(l.discard()).isFalse();
        assertThat(l.writeZeroes()).isFalse();
        assertThat(l.fua()).isFalse();
        assertThat(l.writeCache()).isFalse();
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 256, 511, 513, 1000, 3072, 4095, -512})
    void builderRefusesLogicalBlockSizesThatAreNotPowersOfTwoOfAtLeast512(int lbs) {
        assertThatThrownBy(() -> QueueLimits.builder().logicalBlockSize(lbs))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(String.valueOf(lbs));
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 1024, 4096, 65536})
    void builderTakesPowerOfTwoLogicalBlockSizes(int lbs) {
        assertThat(QueueLimits.builder().logicalBlockSize(lbs).build().logicalBlockSize()).isEqualTo(lbs);
    }

    @Test
    void physicalBlockSizeIsNeverBelowLogical() {
        QueueLimits l = QueueLimits.builder().logicalBlockSize(4096).physicalBlockSize(512).build();
        assertThat(l.physicalBlockSize()).isEqualTo(4096);
    }

    @Test
    void stackTakesMinNotZeroOfMaxima() {
        QueueLimits top = QueueLimits.builder().maxBytes(1 << 20).maxSegments(0).maxSegmentSize(65536).build();
        QueueLimits bottom = QueueLimits.builder().maxBytes(0).maxSegments(128).maxSegmentSize(4096).build();
        QueueLimits s = QueueLimits.stack(top, bottom);
        assertThat(s.maxBytes()).isEqualTo(1 << 20);
        assertThat(s.maxSegments()).isEqualTo(128);
        assertThat(s.maxSegmentSize()).isEqualTo(4096);

        QueueLimits both = QueueLimits.stack(
                QueueLimits.builder().maxBytes(512 * 1024).maxSegments(64).build(),
                QueueLimits.builder().maxBytes(128 * 1024).maxSegments(256).build());
        assertThat(both.maxBytes()).isEqualTo(128 * 1024);
        assertThat(both.maxSegments()).isEqualTo(64);

        QueueLimits none = QueueLimits.stack(QueueLimits.builder().build(), QueueLimits.builder().build());
        assertThat(none.maxBytes()).isZero();
        assertThat(none.maxSegments()).isZero();
        assertThat(none.maxSegmentSize()).isZero();
    }

    @Test
    void stackTakesMaxOfBlockSizesAlignmentsAndGranularities() {
        QueueLimits top = QueueLimits.builder().logicalBlockSize(512).physicalBlockSize(4096).dmaAlignment(512)
                .discardGranularity(4096).ioMin(4096).build();
        QueueLimits bottom = QueueLimits.builder().logicalBlockSize(4096).physicalBlockSize(4096).dmaAlignment(4)
                .discardGranularity(65536).ioMin(512).build();
        QueueLimits s = QueueLimits.stack(top, bottom);
        assertThat(s.logicalBlockSize()).isEqualTo(4096);
        assertThat(s.physicalBlockSize()).isEqualTo(4096);
        assertThat(s.dmaAlignment()).isEqualTo(512);
        assertThat(s.discardGranularity()).isEqualTo(65536);
        assertThat(s.ioMin()).isEqualTo(4096);
        // symmetric in these
        QueueLimits r = QueueLimits.stack(bottom, top);
        assertThat(r.logicalBlockSize()).isEqualTo(4096);
        assertThat(r.dmaAlignment()).isEqualTo(512);
    }

    @Test
    void stackTakesLcmOfIoOptAndChunk() {
        QueueLimits top = QueueLimits.builder().ioOpt(3 * 65536).chunkBytes(4 * 65536).build();
        QueueLimits bottom = QueueLimits.builder().ioOpt(2 * 65536).chunkBytes(6 * 65536).build();
        QueueLimits s = QueueLimits.stack(top, bottom);
        assertThat(s.ioOpt()).isEqualTo(6L * 65536);
        assertThat(s.chunkBytes()).isEqualTo(12L * 65536);

        QueueLimits oneSided = QueueLimits.stack(QueueLimits.builder().ioOpt(0).chunkBytes(0).build(),
                QueueLimits.builder().ioOpt(131072).chunkBytes(524288).build());
        assertThat(oneSided.ioOpt()).isEqualTo(131072);
        assertThat(oneSided.chunkBytes()).isEqualTo(524288);
    }

    @Test
    void stackAndsDiscardWriteZeroesAndFua() {
        QueueLimits full = QueueLimits.builder().maxDiscardBytes(1 << 30).maxWriteZeroesBytes(1 << 20).fua(true).build();
        QueueLimits bare = QueueLimits.builder().build();
        for (QueueLimits s : new QueueLimits[] {QueueLimits.stack(full, bare), QueueLimits.stack(bare, full)}) {
            assertThat(s.discard()).isFalse();
            assertThat(s.maxDiscardBytes()).isZero();
            assertThat(s.writeZeroes()).isFalse();
            assertThat(s.fua()).isFalse();
        }
        QueueLimits both = QueueLimits.stack(full,
                QueueLimits.builder().maxDiscardBytes(1 << 20).maxWriteZeroesBytes(1 << 30).fua(true).build());
        assertThat(both.discard()).isTrue();
        assertThat(both.maxDiscardBytes()).isEqualTo(1 << 20);
        assertThat(both.writeZeroes()).isTrue();
        assertThat(both.maxWriteZeroesBytes()).isEqualTo(1 << 20);
        assertThat(both.fua()).isTrue();
    }

    @Test
    void stackOrsTheVolatileWriteCache() {
        QueueLimits wc = QueueLimits.builder().writeCache(true).build();
        QueueLimits none = QueueLimits.builder().build();
        assertThat(QueueLimits.stack(wc, none).writeCache()).isTrue();
        assertThat(QueueLimits.stack(none, wc).writeCache()).isTrue();
        assertThat(QueueLimits.stack(none, none).writeCache()).isFalse();
    }

    @Test
    void toBuilderRoundTripsEveryField() {
        QueueLimits l = QueueLimits.builder().logicalBlockSize(4096).physicalBlockSize(8192).dmaAlignment(512)
                .maxBytes(1 << 20).maxSegments(128).maxSegmentSize(65536).chunkBytes(1 << 19)
                .discardGranularity(4096).maxDiscardBytes(1 << 30).maxWriteZeroesBytes(1 << 29)
                .ioMin(4096).ioOpt(1 << 20).writeCache(true).fua(true).build();
        assertThat(l.toBuilder().build().toString()).isEqualTo(l.toString());
        QueueLimits changed = l.toBuilder().maxBytes(4096).build();
        assertThat(changed.maxBytes()).isEqualTo(4096);
        assertThat(changed.maxSegments()).isEqualTo(128);
        assertThat(l.maxBytes()).isEqualTo(1 << 20);
    }

    @Test
    void stackingRamDiskLimitsOnThemselvesKeepsThem() {
        QueueLimits r = new RamDisk("r", 1 << 20).limits();
        QueueLimits s = QueueLimits.stack(r, r);
        assertThat(s.toString()).isEqualTo(r.toString());
    }
}
