package io.biostack.block.stats;

import io.biostack.block.Op;
import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * JFR event {@code biostack.SlowIo}: one I/O of a counted device took longer than
 * {@code -Dbiostack.slowIo} (default 10ms). Emitted on the thread that completed the I/O, from
 * {@link DeviceStats#done}; the object is created only for slow I/Os (the latency is compared
 * first), so ordinary I/O allocates nothing.
 */
@Name("biostack.SlowIo")
@Label("Slow I/O")
@Category({"biostack", "I/O"})
@Description("An I/O on a device of the stack that took longer than -Dbiostack.slowIo")
@StackTrace(false)
public final class SlowIoEvent extends jdk.jfr.Event {
    /** An empty event; {@code emit} fills it in and commits it when JFR records it. */
    public SlowIoEvent() {
    }

    /** Device (see the class comment). */
    @Label("Device")
    public String device;

    /** Operation (see the class comment). */
    @Label("Operation")
    @Description("read, write, discard, write_zeroes or flush")
    public String op;

    /** Offset (see the class comment). */
    @Label("Offset")
    @DataAmount
    public long offset;

    /** Length (see the class comment). */
    @Label("Length")
    @DataAmount
    public long length;

    /** Latency (see the class comment). */
    @Label("Latency")
    @Timespan(Timespan.NANOSECONDS)
    public long latency;

    private static final String[] OPS = opNames();

    private static String[] opNames() {
        String[] s = new String[Op.values().length];
        for (Op o : Op.values()) {
            s[o.ordinal()] = o.name().toLowerCase(java.util.Locale.ROOT);
        }
        return s;
    }

    /**
     * Emits the event when JFR records it.
     *
     * @param device the device name
     * @param op the operation
     * @param offset the byte offset
     * @param length a length in bytes
     * @param latencyNs the latency in ns
     */
    public static void emit(String device, Op op, long offset, long length, long latencyNs) {
        SlowIoEvent e = new SlowIoEvent();
        if (e.isEnabled()) {
            e.device = device;
            e.op = OPS[op.ordinal()];
            e.offset = offset;
            e.length = length;
            e.latency = latencyNs;
            e.commit();
        }
    }
}
