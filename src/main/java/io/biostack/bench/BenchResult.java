package io.biostack.bench;

import org.HdrHistogram.Histogram;

import java.util.Locale;

/**
 * What a run measured. Latencies are nanoseconds from submit to end-io.
 *
 * @param workload        what was run
 * @param elapsedNs       the measured time in nanoseconds (the ramp excluded)
 * @param readIos         reads completed in the measured time
 * @param writeIos        writes completed in the measured time
 * @param errors          I/Os that completed with an error status
 * @param readLat         read latencies in nanoseconds; the caller may read it, not change it
 * @param writeLat        write latencies in nanoseconds; the caller may read it, not change it
 * @param allocBytesPerIo bytes allocated per I/O by every thread but the reporting one, over the
 *                        steady middle of the run (NaN when the run was too short to tell)
 * @param cpuUsPerIo      process CPU time (every thread, user and system) over the measured
 *                        window divided by the I/Os in it, in microseconds (NaN when unknown)
 * @param firstError      the first error's status and message, null when there was none
 * @param numJobs         submitting threads (fio's numjobs), each with {@code iodepth} I/Os
 */
public record BenchResult(Workload workload, long elapsedNs, long readIos, long writeIos, long errors,
                          Histogram readLat, Histogram writeLat, double allocBytesPerIo, String firstError,
                          double cpuUsPerIo, int numJobs) {

    /**
     * Reads and writes measured.
     *
     * @return the count of reads and writes completed in the measured time
     */
    public long ios() {
        return readIos + writeIos;
    }

    /**
     * I/Os per second over the measured time.
     *
     * @return the rate in I/Os per second
     */
    public double iops() {
        return ios() * 1e9 / elapsedNs;
    }

    /**
     * Bytes per second over the measured time.
     *
     * @return the rate in bytes per second
     */
    public double bwBytes() {
        return (double) ios() * workload.blockSize() * 1e9 / elapsedNs;
    }

    /**
     * Read and write latencies together.
     *
     * @return a new histogram in nanoseconds, of reads and writes merged
     */
    public Histogram allLat() {
        Histogram h = new Histogram(60_000_000_000L, 3);
        h.add(readLat);
        h.add(writeLat);
        return h;
    }

    /**
     * One JSON object: iops, bw_bytes, lat_ns {p50, p99, p999, ...}, ios, errors, and per
     * direction.
     *
     * @param extra more JSON members to add at the end, without braces (e.g. {@code "device":"d"}),
     *         or null
     * @return the object on one line, without a trailing newline
     */
    public String toJson(String extra) {
        StringBuilder sb = new StringBuilder(512);
        sb.append('{');
        sb.append("\"rw\":\"").append(workload.rw().fioName()).append('"');
        sb.append(",\"bs\":").append(workload.blockSize());
        sb.append(",\"iodepth\":").append(workload.ioDepth());
        sb.append(",\"numjobs\":").append(numJobs);
        sb.append(",\"runtime_ms\":").append(elapsedNs / 1_000_000);
        sb.append(",\"iops\":").append(fmt(iops()));
        sb.append(",\"bw_bytes\":").append(fmt(bwBytes()));
        sb.append(",\"ios\":").append(ios());
        sb.append(",\"errors\":").append(errors);
        sb.append(",\"lat_ns\":");
        lat(sb, allLat());
        sb.append(",\"read\":{\"ios\":").append(readIos).append(",\"iops\":").append(fmt(readIos * 1e9 / elapsedNs))
                .append(",\"lat_ns\":");
        lat(sb, readLat);
        sb.append("},\"write\":{\"ios\":").append(writeIos).append(",\"iops\":").append(fmt(writeIos * 1e9 / elapsedNs))
                .append(",\"lat_ns\":");
        lat(sb, writeLat);
        sb.append('}');
        sb.append(",\"alloc_bytes_per_io\":").append(Double.isNaN(allocBytesPerIo) ? "null" : fmt(allocBytesPerIo));
        sb.append(",\"cpu_us_per_io\":").append(Double.isNaN(cpuUsPerIo) ? "null" : String.format(Locale.ROOT, "%.3f", cpuUsPerIo)); // ns resolution: bench/stats compares them
        if (firstError != null) {
            sb.append(",\"first_error\":\"").append(firstError.replace("\\", "\\\\").replace("\"", "\\\"")).append('"');
        }
        if (extra != null && !extra.isEmpty()) {
            sb.append(',').append(extra);
        }
        sb.append('}');
        return sb.toString();
    }

    private static void lat(StringBuilder sb, Histogram h) {
        sb.append("{\"p50\":").append(h.getValueAtPercentile(50))
                .append(",\"p99\":").append(h.getValueAtPercentile(99))
                .append(",\"p999\":").append(h.getValueAtPercentile(99.9))
                .append(",\"min\":").append(h.getTotalCount() == 0 ? 0 : h.getMinValue())
                .append(",\"max\":").append(h.getMaxValue())
                .append(",\"mean\":").append(fmt(h.getTotalCount() == 0 ? 0 : h.getMean()))
                .append('}');
    }

    private static String fmt(double v) {
        return String.format(Locale.ROOT, "%.1f", v);
    }

    /**
     * fio-like human summary.
     *
     * @param header the first line of the summary (the device and the workload, say)
     * @return the summary's lines, each ending in a newline
     */
    public String toText(String header) {
        StringBuilder sb = new StringBuilder();
        sb.append(header).append('\n');
        double secs = elapsedNs / 1e9;
        if (readIos > 0 || workload.rw().reads != 0) {
            direction(sb, "read", readIos, readLat, secs);
        }
        if (writeIos > 0 || workload.rw().reads != 100) {
            direction(sb, "write", writeIos, writeLat, secs);
        }
        sb.append(String.format(Locale.ROOT, "  ios=%d errors=%d alloc/io=%s cpu/io=%s numjobs=%d%n", ios(), errors,
                Double.isNaN(allocBytesPerIo) ? "n/a" : String.format(Locale.ROOT, "%.2f B", allocBytesPerIo),
                Double.isNaN(cpuUsPerIo) ? "n/a" : String.format(Locale.ROOT, "%.2f us", cpuUsPerIo), numJobs));
        if (firstError != null) {
            sb.append("  first error: ").append(firstError).append('\n');
        }
        return sb.toString();
    }

    private void direction(StringBuilder sb, String name, long n, Histogram h, double secs) {
        double iops = n / secs;
        double bw = n * (double) workload.blockSize() / secs;
        sb.append(String.format(Locale.ROOT, "  %s: IOPS=%s, BW=%s/s (%.1fMB/s)(%s/%dmsec)%n", name, si(iops),
                binary(bw), bw / 1e6, binary((double) n * workload.blockSize()), (long) (secs * 1000)));
        if (h.getTotalCount() > 0) {
            sb.append(String.format(Locale.ROOT, "    lat (usec): min=%.1f, max=%.1f, avg=%.2f, stdev=%.2f%n",
                    h.getMinValue() / 1e3, h.getMaxValue() / 1e3, h.getMean() / 1e3, h.getStdDeviation() / 1e3));
            sb.append(String.format(Locale.ROOT,
                    "    lat percentiles (usec): 1.00th=[%.1f], 50.00th=[%.1f], 99.00th=[%.1f], 99.90th=[%.1f], 99.99th=[%.1f]%n",
                    h.getValueAtPercentile(1) / 1e3, h.getValueAtPercentile(50) / 1e3, h.getValueAtPercentile(99) / 1e3,
                    h.getValueAtPercentile(99.9) / 1e3, h.getValueAtPercentile(99.99) / 1e3));
        }
    }

    static String si(double v) {
        if (v >= 1e6) {
            return String.format(Locale.ROOT, "%.2fM", v / 1e6);
        }
        if (v >= 1e3) {
            return String.format(Locale.ROOT, "%.1fk", v / 1e3);
        }
        return String.format(Locale.ROOT, "%.0f", v);
    }

    static String binary(double bytes) {
        String[] u = {"B", "KiB", "MiB", "GiB", "TiB"};
        int i = 0;
        while (bytes >= 1024 && i < u.length - 1) {
            bytes /= 1024;
            i++;
        }
        return String.format(Locale.ROOT, i == 0 ? "%.0f%s" : "%.1f%s", bytes, u[i]);
    }
}
