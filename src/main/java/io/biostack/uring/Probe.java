package io.biostack.uring;

/**
 * Which opcodes this kernel's io_uring supports (IORING_REGISTER_PROBE). Immutable.
 */
public final class Probe {
    private final int lastOp;
    private final boolean[] supported;

    Probe(int lastOp, boolean[] supported) {
        this.lastOp = lastOp;
        this.supported = supported.clone();
    }

    /** The last opcode the kernel knows (io_uring_probe.last_op). */
    public int lastOp() {
        return lastOp;
    }

    /** True when the kernel supports {@code opcode} (IO_URING_OP_SUPPORTED). */
    public boolean supports(int opcode) {
        return opcode >= 0 && opcode <= lastOp && opcode < supported.length
                && supported[opcode];
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("Probe[lastOp=").append(lastOp).append(", missing=");
        int missing = 0;
        for (int op = 0; op <= lastOp; op++) {
            if (!supports(op)) {
                sb.append(missing++ == 0 ? "" : ",").append(IoUringConstants.opName(op));
            }
        }
        return sb.append(missing == 0 ? "none]" : "]").toString();
    }
}
