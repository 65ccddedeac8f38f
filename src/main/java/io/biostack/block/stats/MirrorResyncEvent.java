package io.biostack.block.stats;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * JFR event {@code biostack.MirrorResync}: a mirror copied a leg back into sync (after
 * {@code reinstate}, or at start on a mirror whose legs differ). Its {@code took} field is how
 * long the resync ran (JFR's own duration is that of the commit). Emit with {@link #emit} at the end of the resync.
 *
 * <p>Call site (wired by the mirror's owner): {@code layer/Mirror.java}, where the resync
 * finishes (or fails), with the {@code System.nanoTime()} taken where it began.
 */
@Name("biostack.MirrorResync")
@Label("Mirror resync")
@Category({"biostack", "Layers"})
@Description("A mirror brought a leg back into sync")
@StackTrace(false)
public final class MirrorResyncEvent extends jdk.jfr.Event {
    /** An empty event; {@code emit} fills it in and commits it when JFR records it. */
    public MirrorResyncEvent() {
    }

    /** Device (see the class comment). */
    @Label("Device")
    public String device;

    /** Leg (see the class comment). */
    @Label("Leg")
    @Description("The leg that was resynced (its device name)")
    public String leg;

    /** Bytes copied (see the class comment). */
    @Label("Bytes copied")
    @DataAmount
    public long bytes;

    /** Outcome (see the class comment). */
    @Label("Outcome")
    @Description("ok, or what stopped the resync")
    public String outcome;

    /** Took (see the class comment). */
    @Label("Took")
    @Timespan(Timespan.NANOSECONDS)
    public long took;

    /**
     * Records a resync of {@code leg} of {@code device} that began at {@code startNanoTime} (a {@link System#nanoTime} reading) and copied {@code bytes}; {@code outcome} "ok" or why it stopped. Costs nothing measurable when JFR does not record the event.
     *
     * @param device the device name
     * @param leg the leg index
     * @param bytes a byte count
     * @param outcome how it ended
     * @param startNanoTime when the work began ({@link System#nanoTime})
     */
    public static void emit(String device, String leg, long bytes, String outcome, long startNanoTime) {
        MirrorResyncEvent e = new MirrorResyncEvent();
        if (e.isEnabled()) {
            e.took = System.nanoTime() - startNanoTime;
            e.device = device;
            e.leg = leg;
            e.bytes = bytes;
            e.outcome = outcome;
            e.commit();
        }
    }
}
