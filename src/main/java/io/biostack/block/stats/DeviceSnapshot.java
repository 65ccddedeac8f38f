package io.biostack.block.stats;

import org.HdrHistogram.Histogram;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * One device's statistics at one moment (see {@link DeviceStats#snapshot}): per
 * {@link StatGroup}, the I/Os completed, 512-byte sectors and nanoseconds spent, with a latency
 * histogram; in-flight I/Os and busy time. The {@code stat.rst} fields derive from these
 * ({@link #statFields}). An immutable value: arrays are never changed after construction.
 *
 * @param device    device name
 * @param timeNs    {@link System#nanoTime} when taken (only differences mean anything)
 * @param uptimeNs  nanoseconds since the device's statistics began
 * @param ios       completed I/Os per group
 * @param sectors   512-byte sectors per group (0 for flushes)
 * @param nsecs     total latency per group, ns
 * @param inFlight  I/Os started and not completed
 * @param busyNs    time with at least one I/O in flight (io_ticks), ns
 * @param latency   per group, counts in {@link LatencyBuckets}
 */
public record DeviceSnapshot(String device, long timeNs, long uptimeNs, long[] ios, long[] sectors, long[] nsecs,
                             long inFlight, long busyNs, long[][] latency) {

    /**
     * Completed I/Os of group {@code g}.
     *
     * @param g the stat group
     * @return completed I/Os of group {@code g}
     */
    public long ios(StatGroup g) {
        return ios[g.ordinal()];
    }

    /**
     * 512-byte sectors of group {@code g}.
     *
     * @param g the stat group
     * @return 512-byte sectors of group {@code g}
     */
    public long sectors(StatGroup g) {
        return sectors[g.ordinal()];
    }

    /**
     * Total latency of group {@code g}, ns.
     *
     * @param g the stat group
     * @return total latency of group {@code g}, ns
     */
    public long nsecs(StatGroup g) {
        return nsecs[g.ordinal()];
    }

    /**
     * Latency counts of {@code g} in {@link LatencyBuckets}.
     *
     * @param g the stat group
     * @return latency counts of {@code g} in {@link LatencyBuckets}
     */
    public long[] latency(StatGroup g) {
        return latency[g.ordinal()];
    }

    /**
     * The latencies of {@code g} as an HdrHistogram (ns).
     *
     * @param g the stat group
     * @return the latencies of {@code g} as an HdrHistogram (ns)
     */
    public Histogram histogram(StatGroup g) {
        return LatencyBuckets.toHistogram(latency[g.ordinal()]);
    }

    /**
     * Sum of every group's latency: the kernel's {@code time_in_queue}, ns.
     *
     * @return the sum of every group's latency, ns
     */
    public long timeInQueueNs() {
        long s = 0;
        for (long n : nsecs) {
            s += n;
        }
        return s;
    }

    /**
     * The 17 fields of {@code /sys/block/DEV/stat} in stat.rst's order: read I/Os, read merges, read sectors, read ticks (ms), write I/Os, write merges, write sectors, write ticks, in_flight, io_ticks, time_in_queue, discard I/Os, discard merges, discard sectors, discard ticks, flush I/Os, flush ticks. Merges are 0: biostack does not merge bios.
     *
     * @return the 17 fields of {@code /sys/block/DEV/stat}, in stat.rst's order
     */
    public long[] statFields() {
        int r = StatGroup.READ.ordinal();
        int w = StatGroup.WRITE.ordinal();
        int d = StatGroup.DISCARD.ordinal();
        int f = StatGroup.FLUSH.ordinal();
        return new long[]{ios[r], 0, sectors[r], ms(nsecs[r]), ios[w], 0, sectors[w], ms(nsecs[w]),
                inFlight, ms(busyNs), ms(timeInQueueNs()), ios[d], 0, sectors[d], ms(nsecs[d]), ios[f], ms(nsecs[f])};
    }

    /** Names of {@link #statFields()}, as JSON keys. */
    public static final List<String> STAT_FIELD_NAMES = List.of("read_ios", "read_merges", "read_sectors", "read_ticks",
            "write_ios", "write_merges", "write_sectors", "write_ticks", "in_flight", "io_ticks", "time_in_queue",
            "discard_ios", "discard_merges", "discard_sectors", "discard_ticks", "flush_ios", "flush_ticks");

    private static long ms(long ns) {
        return ns / 1_000_000;
    }

    /**
     * What happened between {@code earlier} and this snapshot: counts, time and histograms are differences; in-flight is this snapshot's.
     *
     * @param earlier the earlier sample
     * @return the difference between this snapshot and {@code earlier}
     */
    public DeviceSnapshot minus(DeviceSnapshot earlier) {
        int n = ios.length;
        long[] i = new long[n];
        long[] s = new long[n];
        long[] t = new long[n];
        long[][] h = new long[n][];
        for (int g = 0; g < n; g++) {
            i[g] = ios[g] - earlier.ios[g];
            s[g] = sectors[g] - earlier.sectors[g];
            t[g] = nsecs[g] - earlier.nsecs[g];
            h[g] = new long[latency[g].length];
            for (int k = 0; k < h[g].length; k++) {
                h[g][k] = latency[g][k] - earlier.latency[g][k];
            }
        }
        return new DeviceSnapshot(device, timeNs, timeNs - earlier.timeNs, i, s, t, inFlight, busyNs - earlier.busyNs, h);
    }

    // ---- the control socket's wire form --------------------------------------------------

    /**
     * One line: {@code NAME time uptime inflight busy} then, per group, {@code ios sectors nsecs} and its latency buckets as {@code index:count} pairs joined by commas ({@code -} when empty). Fields are separated by single spaces; device names hold no spaces.
     *
     * @return the wire line
     */
    public String toWire() {
        StringBuilder sb = new StringBuilder(256);
        sb.append(device).append(' ').append(timeNs).append(' ').append(uptimeNs).append(' ').append(inFlight)
                .append(' ').append(busyNs);
        for (int g = 0; g < ios.length; g++) {
            sb.append(' ').append(ios[g]).append(' ').append(sectors[g]).append(' ').append(nsecs[g]).append(' ');
            boolean any = false;
            for (int k = 0; k < latency[g].length; k++) {
                if (latency[g][k] != 0) {
                    sb.append(any ? "," : "").append(k).append(':').append(latency[g][k]);
                    any = true;
                }
            }
            if (!any) {
                sb.append('-');
            }
        }
        return sb.toString();
    }

    /**
     * Parses a {@link #toWire} line; throws {@link IllegalArgumentException} on anything else.
     *
     * @param line the wire line
     * @return the snapshot the line describes
     */
    public static DeviceSnapshot fromWire(String line) {
        String[] f = line.strip().split(" ");
        int groups = StatGroup.ALL.length;
        if (f.length != 5 + groups * 4) {
            throw new IllegalArgumentException("not a statistics line: " + line);
        }
        try {
            long[] i = new long[groups];
            long[] s = new long[groups];
            long[] t = new long[groups];
            long[][] h = new long[groups][LatencyBuckets.COUNT];
            for (int g = 0; g < groups; g++) {
                int b = 5 + g * 4;
                i[g] = Long.parseLong(f[b]);
                s[g] = Long.parseLong(f[b + 1]);
                t[g] = Long.parseLong(f[b + 2]);
                if (!f[b + 3].equals("-")) {
                    for (String p : f[b + 3].split(",")) {
                        int c = p.indexOf(':');
                        h[g][Integer.parseInt(p.substring(0, c))] = Long.parseLong(p.substring(c + 1));
                    }
                }
            }
            return new DeviceSnapshot(f[0], Long.parseLong(f[1]), Long.parseLong(f[2]), i, s, t,
                    Long.parseLong(f[3]), Long.parseLong(f[4]), h);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("not a statistics line: " + line, e);
        }
    }

    /**
     * Parses every non-empty line of {@code text} with {@link #fromWire}.
     *
     * @param text the text to parse
     * @return one snapshot per non-empty line
     */
    public static List<DeviceSnapshot> fromWireLines(String text) {
        List<DeviceSnapshot> out = new ArrayList<>();
        for (String l : text.split("\n")) {
            if (!l.isBlank()) {
                out.add(fromWire(l));
            }
        }
        return out;
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder(device).append(':');
        for (long v : statFields()) {
            sb.append(' ').append(v);
        }
        return sb.toString();
    }

    /** Formats a double for JSON and tables (Locale.ROOT, {@code digits} decimals). */
    static String fmt(double v, int digits) {
        return String.format(Locale.ROOT, "%." + digits + "f", v);
    }
}
