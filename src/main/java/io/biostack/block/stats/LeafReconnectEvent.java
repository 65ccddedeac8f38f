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
    @Label("Device")
    public String device;

    @Label("Remote")
    @Description("Where the leaf connects (nbd://..., rbd:pool/image)")
    public String remote;

    @Label("Attempt")
    @Description("1 for the first try after the link was lost")
    public int attempt;

    @Label("Retried bios")
    @Description("Bios without an answer that were sent again")
    public long retried;

    @Label("Outcome")
    @Description("connected, or why it gave up (the bios then fail with TIMEOUT)")
    public String outcome;

    @Label("Took")
    @Timespan(Timespan.NANOSECONDS)
    public long took;

    /** Records reconnect attempt {@code attempt} of {@code device} since {@code startNanoTime}. */
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
