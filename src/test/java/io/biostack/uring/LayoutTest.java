package io.biostack.uring;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;

class LayoutTest {
    @Test
    void sqePrepWritesEveryFieldAtItsHeaderOffset() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sqes = arena.allocate(2 * Sqe.SIZE, 64).fill((byte) 0xff);
            long at = Sqe.SIZE;
            Sqe.prep(sqes, at, IoUringConstants.IORING_OP_WRITEV, 0x4, 7, 0x1122334455L,
                    0xabcdefL, 3, 0x2, 0x77L, 5, 0);
            assertThat(Sqe.opcode(sqes, at)).isEqualTo(2);
            assertThat(Sqe.flags(sqes, at)).isEqualTo(4);
            assertThat(Sqe.fd(sqes, at)).isEqualTo(7);
            assertThat(Sqe.off(sqes, at)).isEqualTo(0x1122334455L);
            assertThat(Sqe.addr(sqes, at)).isEqualTo(0xabcdefL);
            assertThat(Sqe.len(sqes, at)).isEqualTo(3);
            assertThat(Sqe.opFlags(sqes, at)).isEqualTo(2);
            assertThat(Sqe.userData(sqes, at)).isEqualTo(0x77L);
            assertThat(Sqe.bufIndex(sqes, at)).isEqualTo(5);
            // No stale byte of the previous use of the slot survives.
            byte[] raw = sqes.asSlice(at, Sqe.SIZE).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
            assertThat(raw[2]).isZero();
            assertThat(raw[42]).isZero();
            for (int i = 44; i < 64; i++) {
                assertThat(raw[i]).as("byte %d", i).isZero();
            }
            assertThat(sqes.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0)).isEqualTo((byte) 0xff);
        }
    }

    @Test
    void structSizesMatchTheUapiHeader() {
        assertThat(Sqe.SIZE).isEqualTo(64);
        assertThat(Sqe.USER_DATA).isEqualTo(32);
        assertThat(Sqe.ADDR3).isEqualTo(48);
        assertThat(Cqe.SIZE).isEqualTo(16);
        assertThat(UringParams.SIZE).isEqualTo(120);
        assertThat(UringParams.SQ_OFF).isEqualTo(40);
        assertThat(UringParams.CQ_OFF).isEqualTo(80);
    }

    @Test
    void opcodesMatchTheEnumPositions() {
        assertThat(IoUringConstants.IORING_OP_FALLOCATE).isEqualTo(17);
        assertThat(IoUringConstants.IORING_OP_READ).isEqualTo(22);
        assertThat(IoUringConstants.IORING_OP_WRITE).isEqualTo(23);
        assertThat(IoUringConstants.IORING_OP_SEND).isEqualTo(26);
        assertThat(IoUringConstants.IORING_OP_URING_CMD).isEqualTo(46);
        assertThat(IoUringConstants.IORING_OP_SEND_ZC).isEqualTo(47);
        assertThat(IoUringConstants.IORING_OP_FTRUNCATE).isEqualTo(55);
        assertThat(IoUringConstants.opName(2)).isEqualTo("WRITEV");
        assertThat(SetupFlagNames.describe(IoUringConstants.IORING_SETUP_SINGLE_ISSUER
                | IoUringConstants.IORING_SETUP_DEFER_TASKRUN))
                .isEqualTo("SINGLE_ISSUER|DEFER_TASKRUN");
    }
}
