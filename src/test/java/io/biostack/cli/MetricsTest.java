package io.biostack.cli;

import io.biostack.block.Op;
import io.biostack.block.stats.DeviceStats;
import io.biostack.nbd.ExportStats;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

@Timeout(60)
class MetricsTest {
    @TempDir
    Path dir;

    @Test
    void exportCountersAndLatencyBucketsAreExposedAndPassPromtool() throws Exception {
        DeviceStats d = new DeviceStats("disk0", Long.MAX_VALUE);
        long t = 1_000_000_000L;
        d.start(Op.READ, t);
        d.done(Op.READ, 0, 4096, t, t + 700_000);      // 0.7 ms: in the le=0.001 bucket, not in le=0.0005
        d.start(Op.WRITE, t);
        d.done(Op.WRITE, 0, 4096, t, t + 20_000_000);  // 20 ms: le=0.025
        ExportStats e = new ExportStats("disk0");
        e.connectionOpened();
        e.connectionOpened();
        e.connectionClosed();
        e.request(0);
        e.request(0);
        e.request(1);
        e.request(42);
        e.error(5);
        e.error(1);
        e.error(200);
        e.tlsRefused();
        try (Metrics m = Metrics.start("127.0.0.1:0", () -> List.of(d), () -> List.of(e))) {
            HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + m.port() + "/metrics")).build(), HttpResponse.BodyHandlers.ofString());
            assertThat(r.statusCode()).isEqualTo(200);
            String text = r.body();
            assertThat(text)
                    .contains("biostack_device_io_latency_seconds_bucket{device=\"disk0\",op=\"read\",le=\"5.0E-4\"} 0")
                    .contains("biostack_device_io_latency_seconds_bucket{device=\"disk0\",op=\"read\",le=\"0.001\"} 1")
                    .contains("biostack_device_io_latency_seconds_bucket{device=\"disk0\",op=\"write\",le=\"0.01\"} 0")
                    .contains("biostack_device_io_latency_seconds_bucket{device=\"disk0\",op=\"write\",le=\"0.025\"} 1")
                    .contains("biostack_device_io_latency_seconds_sum{device=\"disk0\",op=\"write\"} 0.02")
                    .contains("biostack_device_read_time_seconds_total{device=\"disk0\"} 7.0E-4")
                    .contains("biostack_export_connections_total{export=\"disk0\"} 2.0")
                    .contains("biostack_export_open_connections{export=\"disk0\"} 1.0")
                    .contains("biostack_export_requests_total{command=\"read\",export=\"disk0\"} 2.0")
                    .contains("biostack_export_requests_total{command=\"write\",export=\"disk0\"} 1.0")
                    .contains("biostack_export_requests_total{command=\"other\",export=\"disk0\"} 1.0")
                    .contains("biostack_export_errors_total{errno=\"EIO\",export=\"disk0\"} 1.0")
                    .contains("biostack_export_errors_total{errno=\"EPERM\",export=\"disk0\"} 1.0")
                    .contains("biostack_export_errors_total{errno=\"other\",export=\"disk0\"} 1.0")
                    .contains("biostack_export_tls_refused_total{export=\"disk0\"} 1.0");
            Tools.require("promtool");
            Path f = dir.resolve("m.txt");
            Files.writeString(f, text);
            Tools.Result check = Tools.run(30, "sh", "-c", "promtool check metrics < " + f);
            assertThat(check.exit()).as(check.all()).isZero();
        }
    }

    @Test
    void aBadAddressIsRefusedWithTheExpectedForm() {
        assertThatThrownBy(() -> Metrics.start("9100", List::of, List::of))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("HOST:PORT");
        assertThatThrownBy(() -> Metrics.start("localhost:http", List::of, List::of))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("HOST:PORT");
    }

    @Test
    void aTakenPortIsNamedAsTheMetricsOne() throws Exception {
        // serve printed "biostack: Address already in use", which names neither the address nor
        // which of its listeners (NBD, /metrics) could not start.
        try (java.net.ServerSocket taken = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            String addr = "127.0.0.1:" + taken.getLocalPort();
            assertThatThrownBy(() -> Metrics.start(addr, List::of, List::of))
                    .isInstanceOf(java.io.IOException.class)
                    .hasMessageContaining("--metrics on " + addr).hasMessageContaining("in use");
        }
    }
}
