package io.biostack.block.stats;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * JFR event {@code biostack.SnapshotMerge}: a snapshot's exceptions were merged back into its
 * origin (dm-snapshot-merge). Its {@code took} field is how long the merge ran (JFR's own duration is that of the commit,
 * since JFR can't backdate an event's start).
 *
 * <p>Call site (wired by the snapshot's owner): {@code layer/snapshot/}, where a merge finishes
 * (or fails), with the {@code System.nanoTime()} taken where it began.
 */
@Name("biostack.SnapshotMerge")
@Label("Snapshot merge")
@Category({"biostack", "Layers"})
@Description("A snapshot was merged into its origin")
@StackTrace(false)
public final class SnapshotMergeEvent extends jdk.jfr.Event {
    /** An empty event; {@code emit} fills it in and commits it when JFR records it. */
    public SnapshotMergeEvent() {
    }

    /** Device (see the class comment). */
    @Label("Device")
    @Description("The snapshot (merge) device")
    public String device;

    /** Origin (see the class comment). */
    @Label("Origin")
    public String origin;

    /** Chunks merged (see the class comment). */
    @Label("Chunks merged")
    public long chunks;

    /** Bytes merged (see the class comment). */
    @Label("Bytes merged")
    @DataAmount
    public long bytes;

    /** Outcome (see the class comment). */
    @Label("Outcome")
    @Description("ok, or what stopped the merge")
    public String outcome;

    /** Took (see the class comment). */
    @Label("Took")
    @Timespan(Timespan.NANOSECONDS)
    public long took;

    /**
     * Records a merge of {@code chunks} chunks ({@code bytes}) that began at {@code startNanoTime}.
     *
     * @param device the device name
     * @param origin the origin device
     * @param chunks a number of chunks
     * @param bytes a byte count
     * @param outcome how it ended
     * @param startNanoTime when the work began ({@link System#nanoTime})
     */
    public static void emit(String device, String origin, long chunks, long bytes, String outcome, long startNanoTime) {
        SnapshotMergeEvent e = new SnapshotMergeEvent();
        if (e.isEnabled()) {
            e.took = System.nanoTime() - startNanoTime;
            e.device = device;
            e.origin = origin;
            e.chunks = chunks;
            e.bytes = bytes;
            e.outcome = outcome;
            e.commit();
        }
    }
}
