package io.biostack.uring;

import static io.biostack.uring.IoUringConstants.*;

/** Names of IORING_SETUP_* bits, for logs ("SINGLE_ISSUER|DEFER_TASKRUN"). */
public final class SetupFlagNames {
    private SetupFlagNames() {
    }

    private static final int[] BITS = {
        IORING_SETUP_IOPOLL, IORING_SETUP_SQPOLL, IORING_SETUP_SQ_AFF, IORING_SETUP_CQSIZE,
        IORING_SETUP_CLAMP, IORING_SETUP_ATTACH_WQ, IORING_SETUP_R_DISABLED,
        IORING_SETUP_SUBMIT_ALL, IORING_SETUP_COOP_TASKRUN, IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_SQE128, IORING_SETUP_CQE32, IORING_SETUP_SINGLE_ISSUER,
        IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_NO_MMAP, IORING_SETUP_REGISTERED_FD_ONLY,
        IORING_SETUP_NO_SQARRAY, IORING_SETUP_HYBRID_IOPOLL,
    };
    private static final String[] NAMES = {
        "IOPOLL", "SQPOLL", "SQ_AFF", "CQSIZE", "CLAMP", "ATTACH_WQ", "R_DISABLED",
        "SUBMIT_ALL", "COOP_TASKRUN", "TASKRUN_FLAG", "SQE128", "CQE32", "SINGLE_ISSUER",
        "DEFER_TASKRUN", "NO_MMAP", "REGISTERED_FD_ONLY", "NO_SQARRAY", "HYBRID_IOPOLL",
    };

    /** "CLAMP|SINGLE_ISSUER", "0" for none, unknown bits as hex. */
    public static String describe(int flags) {
        StringBuilder sb = new StringBuilder();
        int rest = flags;
        for (int i = 0; i < BITS.length; i++) {
            if ((flags & BITS[i]) != 0) {
                sb.append(sb.isEmpty() ? "" : "|").append(NAMES[i]);
                rest &= ~BITS[i];
            }
        }
        if (rest != 0) {
            sb.append(sb.isEmpty() ? "" : "|").append("0x").append(Integer.toHexString(rest));
        }
        return sb.isEmpty() ? "0" : sb.toString();
    }
}
