package io.biostack.cli;

import io.biostack.block.stats.DeviceSnapshot;
import io.biostack.block.stats.DeviceStats;
import io.biostack.block.stats.LatencyBuckets;
import io.biostack.block.stats.StatGroup;
import io.biostack.nbd.ExportStats;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.model.registry.MultiCollector;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.function.ToDoubleFunction;
import java.util.function.Supplier;

/**
 * The statistics of a running stack at {@code http://HOST:PORT/metrics} in the Prometheus text
 * format ({@code serve --metrics HOST:PORT}), through the official Java client (prometheus
 * metrics-core 1.10 and its httpserver exporter).
 *
 * <p>Nothing is updated per I/O: a scrape calls {@link #collect}, which takes a
 * {@link DeviceStats#snapshot} of each device (summing the per-thread cells; the I/O path never
 * waits for it) and an {@link ExportStats#snapshot} of each export, and turns them into metric
 * snapshots. Names follow node_exporter's {@code node_disk_*} where there is one, with
 * Prometheus' rules: base units (seconds, bytes), {@code _total} on counters:
 *
 * <pre>
 * biostack_device_{reads,writes,discards,flushes}_completed_total{device}
 * biostack_device_{read,written,discarded}_bytes_total{device}
 * biostack_device_{read,write,discard,flush}_time_seconds_total{device}
 * biostack_device_in_flight{device}                         gauge
 * biostack_device_io_time_seconds_total{device}             busy time (io_ticks)
 * biostack_device_io_time_weighted_seconds_total{device}    time_in_queue
 * biostack_device_io_latency_seconds{device,op}             histogram, classic buckets 1us..10s
 * biostack_export_connections_total{export}, biostack_export_open_connections{export}
 * biostack_export_requests_total{export,command}, biostack_export_errors_total{export,errno}
 * biostack_export_tls_refused_total{export}, biostack_export_read_modify_write_total{export},
 * biostack_export_oversized_requests_total{export}
 * </pre>
 * The histogram's buckets are filled from the devices' finer log-linear buckets: a fine bucket
 * counts under the first bound at or above its upper edge, so a count may sit one bound higher
 * than its exact value would (at most 3% of the value off).
 */
public final class Metrics implements MultiCollector, AutoCloseable {
    /** Classic bucket bounds, seconds: 1-2.5-5 steps from 1 us to 10 s. */
    static final double[] BOUNDS = {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
            1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, Double.POSITIVE_INFINITY};
    /** For each fine latency bucket, the classic bucket it counts in. */
    private static final int[] CLASSIC = classicIndex();

    private final Supplier<List<DeviceStats>> devices;
    private final Supplier<List<ExportStats>> exports;
    private HTTPServer server;

    /** A collector of {@code devices} and {@code exports}, read at each scrape. */
    public Metrics(Supplier<List<DeviceStats>> devices, Supplier<List<ExportStats>> exports) {
        this.devices = devices;
        this.exports = exports;
    }

    /**
     * Serves /metrics on {@code hostPort} ("HOST:PORT", port 0 for any free one) from a registry of
     * its own; the server's threads are the exporter's (a small pool), never the I/O path's.
     */
    public static Metrics start(String hostPort, Supplier<List<DeviceStats>> devices, Supplier<List<ExportStats>> exports)
            throws IOException {
        InetSocketAddress a = parse(hostPort);
        Metrics m = new Metrics(devices, exports);
        PrometheusRegistry reg = new PrometheusRegistry();
        reg.register(m);
        try {
            m.server = HTTPServer.builder().hostname(a.getHostString()).port(a.getPort()).registry(reg).buildAndStart();
        } catch (java.net.BindException e) {
            // The JDK's message alone ("Address already in use") does not say which of serve's
            // addresses it is.
            throw new IOException("can't serve --metrics on " + hostPort + ": " + e.getMessage(), e);
        }
        return m;
    }

    /** "HOST:PORT" ([v6]:PORT too); throws {@link IllegalArgumentException} saying what is wrong. */
    static InetSocketAddress parse(String hostPort) {
        int colon = hostPort.lastIndexOf(':');
        if (colon <= 0) {
            throw new IllegalArgumentException("--metrics wants HOST:PORT, not '" + hostPort + "'");
        }
        String host = hostPort.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        try {
            int port = Integer.parseInt(hostPort.substring(colon + 1));
            return new InetSocketAddress(host, port);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--metrics wants HOST:PORT, not '" + hostPort + "'");
        }
    }

    /** The port /metrics is served on (after {@link #start}). */
    public int port() {
        return server.getPort();
    }

    @Override
    public void close() {
        if (server != null) {
            server.close();
        }
    }

    private static int[] classicIndex() {
        int[] m = new int[LatencyBuckets.COUNT];
        int b = 0;
        for (int i = 0; i < m.length; i++) {
            double top = (LatencyBuckets.upperBound(i) - 1) / 1e9; // the largest value in the bucket
            while (b < BOUNDS.length - 1 && top > BOUNDS[b]) {
                b++;
            }
            m[i] = b;
        }
        return m;
    }

    // ---- collection ------------------------------------------------------------------------

    @Override
    public MetricSnapshots collect() {
        List<DeviceSnapshot> ds = new ArrayList<>();
        for (DeviceStats d : devices.get()) {
            ds.add(d.snapshot());
        }
        List<MetricSnapshot> out = new ArrayList<>();
        counter(out, ds, "biostack_device_reads_completed", "Reads completed (stat.rst field 1)", s -> s.ios(StatGroup.READ));
        counter(out, ds, "biostack_device_read_bytes", "Bytes read (stat.rst field 3 x 512)", s -> s.sectors(StatGroup.READ) * 512.0);
        counter(out, ds, "biostack_device_read_time_seconds", "Time spent on reads (stat.rst field 4)", s -> s.nsecs(StatGroup.READ) / 1e9);
        counter(out, ds, "biostack_device_writes_completed", "Writes completed, write-zeroes included (stat.rst field 5)", s -> s.ios(StatGroup.WRITE));
        counter(out, ds, "biostack_device_written_bytes", "Bytes written (stat.rst field 7 x 512)", s -> s.sectors(StatGroup.WRITE) * 512.0);
        counter(out, ds, "biostack_device_write_time_seconds", "Time spent on writes (stat.rst field 8)", s -> s.nsecs(StatGroup.WRITE) / 1e9);
        counter(out, ds, "biostack_device_discards_completed", "Discards completed (stat.rst field 12)", s -> s.ios(StatGroup.DISCARD));
        counter(out, ds, "biostack_device_discarded_bytes", "Bytes discarded (stat.rst field 14 x 512)", s -> s.sectors(StatGroup.DISCARD) * 512.0);
        counter(out, ds, "biostack_device_discard_time_seconds", "Time spent on discards (stat.rst field 15)", s -> s.nsecs(StatGroup.DISCARD) / 1e9);
        counter(out, ds, "biostack_device_flushes_completed", "Flushes completed (stat.rst field 16)", s -> s.ios(StatGroup.FLUSH));
        counter(out, ds, "biostack_device_flush_time_seconds", "Time spent on flushes (stat.rst field 17)", s -> s.nsecs(StatGroup.FLUSH) / 1e9);
        counter(out, ds, "biostack_device_io_time_seconds", "Time with I/O in flight: busy time (stat.rst field 10, io_ticks)", s -> s.busyNs() / 1e9);
        counter(out, ds, "biostack_device_io_time_weighted_seconds", "Sum of the latencies of all I/O (stat.rst field 11, time_in_queue)", s -> s.timeInQueueNs() / 1e9);
        GaugeSnapshot.Builder g = GaugeSnapshot.builder().name("biostack_device_in_flight").help("I/Os started and not completed (stat.rst field 9)");
        for (DeviceSnapshot s : ds) {
            g.dataPoint(GaugeSnapshot.GaugeDataPointSnapshot.builder().labels(Labels.of("device", s.device())).value(s.inFlight()).build());
        }
        out.add(g.build());
        HistogramSnapshot.Builder h = HistogramSnapshot.builder().name("biostack_device_io_latency_seconds")
                .help("Latency of completed I/O, from submit to completion, per op");
        for (DeviceSnapshot s : ds) {
            for (StatGroup op : StatGroup.values()) {
                long[] counts = new long[BOUNDS.length];
                long[] fine = s.latency(op);
                for (int i = 0; i < fine.length; i++) {
                    counts[CLASSIC[i]] += fine[i];
                }
                h.dataPoint(HistogramSnapshot.HistogramDataPointSnapshot.builder()
                        .labels(Labels.of("device", s.device(), "op", op.label()))
                        .classicHistogramBuckets(ClassicHistogramBuckets.of(BOUNDS, counts))
                        .sum(s.nsecs(op) / 1e9)
                        .build());
            }
        }
        out.add(h.build());
        exports(out);
        return new MetricSnapshots(out);
    }

    private static void counter(List<MetricSnapshot> out, List<DeviceSnapshot> ds, String name, String help,
                                ToDoubleFunction<DeviceSnapshot> value) {
        CounterSnapshot.Builder b = CounterSnapshot.builder().name(name).help(help);
        for (DeviceSnapshot s : ds) {
            b.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().labels(Labels.of("device", s.device()))
                    .value(value.applyAsDouble(s)).build());
        }
        out.add(b.build());
    }

    private void exports(List<MetricSnapshot> out) {
        List<ExportStats.Snapshot> es = new ArrayList<>();
        for (ExportStats e : exports.get()) {
            es.add(e.snapshot());
        }
        if (es.isEmpty()) {
            return;
        }
        CounterSnapshot.Builder opened = CounterSnapshot.builder().name("biostack_export_connections")
                .help("Connections that reached transmission on the export");
        GaugeSnapshot.Builder open = GaugeSnapshot.builder().name("biostack_export_open_connections")
                .help("Connections open now on the export");
        CounterSnapshot.Builder req = CounterSnapshot.builder().name("biostack_export_requests")
                .help("NBD requests received, by command");
        CounterSnapshot.Builder err = CounterSnapshot.builder().name("biostack_export_errors")
                .help("NBD error replies sent, by error value");
        CounterSnapshot.Builder tls = CounterSnapshot.builder().name("biostack_export_tls_refused")
                .help("TLS handshakes refused or failed");
        CounterSnapshot.Builder rmw = CounterSnapshot.builder().name("biostack_export_read_modify_write")
                .help("Unaligned requests of clients that did not negotiate block sizes, served by read-modify-write");
        CounterSnapshot.Builder big = CounterSnapshot.builder().name("biostack_export_oversized_requests")
                .help("Requests over the maximum payload, of clients that did not negotiate block sizes, served split");
        for (ExportStats.Snapshot s : es) {
            Labels l = Labels.of("export", s.export());
            opened.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().labels(l).value(s.opened()).build());
            open.dataPoint(GaugeSnapshot.GaugeDataPointSnapshot.builder().labels(l).value(s.connections()).build());
            tls.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().labels(l).value(s.tlsRefused()).build());
            rmw.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().labels(l).value(s.readModifyWrite()).build());
            big.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().labels(l).value(s.oversized()).build());
            s.requests().forEach((cmd, n) -> req.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder()
                    .labels(Labels.of("export", s.export(), "command", cmd)).value(n).build()));
            s.errors().forEach((e, n) -> err.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder()
                    .labels(Labels.of("export", s.export(), "errno", e)).value(n).build()));
        }
        out.add(opened.build());
        out.add(open.build());
        out.add(req.build());
        out.add(err.build());
        out.add(tls.build());
        out.add(rmw.build());
        out.add(big.build());
    }
}
