package io.biostack.block.stats;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * JFR event {@code biostack.LeafReconnect}: a leaf over a network (the NBD client leaf, the RBD
 * leaf) lost its link and tried to get it back. Its {@code took} field is the time
 * from the loss of the link to the outcome.
 *
 * <p>Call site (wired by the remote leaves' owner): the leaf's reconnect loop, once per attempt
 * that ends (connected, or given up), with the {@code System.nanoTime()} of the link loss.
 */
@Name("biostack.LeafReconnect")
@Label("Leaf reconnect")
@Category({"biostack", "Leaves"})
@Description("A remote leaf reconnected (or gave up)")
@StackTrace(false)
public final class LeafReconnectEvent extends jdk.jfr.Event {
    /** An empty event; {@code emit} fills it in and commits it when JFR records it. */
    public LeafReconnectEvent() {
    }

    /** Device (see the class comment). */
    @Label("Device")
    public String device;

    /** Remote (see the class comment). */
    @Label("Remote")
    @Description("Where the leaf connects (nbd://..., rbd:pool/image)")
    public String remote;

    /** Attempt (see the class comment). */
    @Label("Attempt")
    @Description("1 for the first try after the link was lost")
    public int attempt;

    /** Retried bios (see the class comment). */
    @Label("Retried bios")
    @Description("Bios without an answer that were sent again")
    public long retried;

    /** Outcome (see the class comment). */
    @Label("Outcome")
    @Description("connected, or why it gave up (the bios then fail with TIMEOUT)")
    public String outcome;

    /** Took (see the class comment). */
    @Label("Took")
    @Timespan(Timespan.NANOSECONDS)
    public long took;

    /**
     * Records reconnect attempt {@code attempt} of {@code device} since {@code startNanoTime}.
     *
     * @param device the device name
     * @param remote the remote address
     * @param attempt the attempt number from 1
     * @param retried requests sent again
     * @param outcome how it ended
     * @param startNanoTime when the work began ({@link System#nanoTime})
     */
    public static void emit(String device, String remote, int attempt, long retried, String outcome, long startNanoTime) {
        LeafReconnectEvent e = new LeafReconnectEvent();
        if (e.isEnabled()) {
            e.took = System.nanoTime() - startNanoTime;
            e.device = device;
            e.remote = remote;
            e.attempt = attempt;
            e.retried = retried;
            e.outcome = outcome;
            e.commit();
        }
    }
}
