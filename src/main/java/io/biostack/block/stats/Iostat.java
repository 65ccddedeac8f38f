package io.biostack.block.stats;

import java.util.List;

/**
 * One device's line of {@code iostat -x} over a period, computed as sysstat computes it from
 * two reads of {@code /sys/block/DEV/stat}, plus latency percentiles (reads and writes
 * together) from the histograms.
 *
 * @param device  device name
 * @param seconds the period
 * @param rps     reads completed per second (r/s)
 * @param wps     writes completed per second (w/s)
 * @param rkbps   kB read per second (rkB/s; kB = 1024 bytes, as iostat)
 * @param wkbps   kB written per second (wkB/s)
 * @param rAwait  mean read latency, ms (r_await)
 * @param wAwait  mean write latency, ms (w_await)
 * @param aquSz   mean queue length: time_in_queue / period (aqu-sz)
 * @param util    busy time / period, percent (%util)
 * @param p50     median latency of reads and writes, ms
 * @param p99     99th percentile latency of reads and writes, ms
 */
public record Iostat(String device, double seconds, double rps, double wps, double rkbps, double wkbps, double rAwait,
                     double wAwait, double aquSz, double util, double p50, double p99) {

    /** Column heads, in the order of {@link #toTableRow()}. */
    public static final List<String> COLUMNS = List.of("r/s", "w/s", "rkB/s", "wkB/s", "r_await", "w_await", "aqu-sz",
            "%util", "p50", "p99");

    /**
     * The line for the period that {@code d} covers: a snapshot since the device started, or a {@link DeviceSnapshot#minus difference} of two (whose {@code uptimeNs} is the interval).
     *
     * @param d the bytes
     * @return the iostat line for the period that {@code d} covers
     */
    public static Iostat of(DeviceSnapshot d) {
        double secs = Math.max(1e-9, d.uptimeNs() / 1e9);
        long r = d.ios(StatGroup.READ);
        long w = d.ios(StatGroup.WRITE);
        long[] rw = d.latency(StatGroup.READ).clone();
        long[] wl = d.latency(StatGroup.WRITE);
        for (int i = 0; i < rw.length; i++) {
            rw[i] += wl[i];
        }
        return new Iostat(d.device(), secs, r / secs, w / secs,
                d.sectors(StatGroup.READ) * 512.0 / 1024 / secs, d.sectors(StatGroup.WRITE) * 512.0 / 1024 / secs,
                r == 0 ? 0 : d.nsecs(StatGroup.READ) / 1e6 / r, w == 0 ? 0 : d.nsecs(StatGroup.WRITE) / 1e6 / w,
                d.timeInQueueNs() / 1e9 / secs, Math.min(100, 100.0 * d.busyNs() / 1e9 / secs),
                LatencyBuckets.percentile(rw, 50) / 1e6, LatencyBuckets.percentile(rw, 99) / 1e6);
    }

    /**
     * The table head: "Device" and {@link #COLUMNS}, aligned as {@link #toTableRow()}.
     *
     * @return the table head
     */
    public static String tableHead() {
        StringBuilder sb = new StringBuilder(String.format(java.util.Locale.ROOT, "%-16s", "Device"));
        for (String c : COLUMNS) {
            sb.append(String.format(java.util.Locale.ROOT, " %10s", c));
        }
        return sb.toString();
    }

    /**
     * The row under {@link #tableHead()}: device and the columns, fixed width.
     *
     * @return the row under {@link #tableHead()}
     */
    public String toTableRow() {
        return String.format(java.util.Locale.ROOT, "%-16s %10.2f %10.2f %10.2f %10.2f %10.3f %10.3f %10.2f %10.2f %10.3f %10.3f",
                device, rps, wps, rkbps, wkbps, rAwait, wAwait, aquSz, util, p50, p99);
    }

    /**
     * A JSON object of the iostat columns (named as iostat's own JSON output names them: {@code r/s}, {@code w_await}, ..., with p50/p99 as {@code p50_ms}/{@code p99_ms}) and {@code stat}: the cumulative stat.rst fields of {@code total}.
     *
     * @param total the total
     * @return a JSON object of the iostat columns
     */
    public String toJson(DeviceSnapshot total) {
        StringBuilder sb = new StringBuilder(512);
        sb.append("{\"device\":\"").append(json(device)).append('"')
                .append(",\"seconds\":").append(DeviceSnapshot.fmt(seconds, 3))
                .append(",\"r/s\":").append(DeviceSnapshot.fmt(rps, 2))
                .append(",\"w/s\":").append(DeviceSnapshot.fmt(wps, 2))
                .append(",\"rkB/s\":").append(DeviceSnapshot.fmt(rkbps, 2))
                .append(",\"wkB/s\":").append(DeviceSnapshot.fmt(wkbps, 2))
                .append(",\"r_await\":").append(DeviceSnapshot.fmt(rAwait, 3))
                .append(",\"w_await\":").append(DeviceSnapshot.fmt(wAwait, 3))
                .append(",\"aqu-sz\":").append(DeviceSnapshot.fmt(aquSz, 2))
                .append(",\"util\":").append(DeviceSnapshot.fmt(util, 2))
                .append(",\"p50_ms\":").append(DeviceSnapshot.fmt(p50, 3))
                .append(",\"p99_ms\":").append(DeviceSnapshot.fmt(p99, 3))
                .append(",\"stat\":{");
        long[] f = total.statFields();
        for (int i = 0; i < f.length; i++) {
            sb.append(i == 0 ? "" : ",").append('"').append(DeviceSnapshot.STAT_FIELD_NAMES.get(i)).append("\":").append(f[i]);
        }
        return sb.append("}}").toString();
    }

    static String json(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        sb.append(String.format(java.util.Locale.ROOT, "\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        return sb.toString();
    }
}
