/**
 * biostack: a block I/O stack for the JVM. Bios with end-io callbacks ({@link io.biostack.block}),
 * a loop device on io_uring ({@link io.biostack.loop}), direct I/O on files ({@link io.biostack.file}),
 * device-mapper-style layers ({@link io.biostack.layer}), stack files ({@link io.biostack.stack}),
 * an NBD server ({@link io.biostack.nbd}) and an NBD client leaf ({@link io.biostack.nbd.client}).
 *
 * <h2>Native access</h2>
 * The loop device and the file engines call Linux (io_uring, O_DIRECT, fallocate) through the
 * FFM API. On the module path, run with {@code --enable-native-access=io.biostack}; on the class
 * path, with {@code --enable-native-access=ALL-UNNAMED}. Without it the JDK prints a warning on
 * the first native call (and a future JDK will refuse the call).
 *
 * <h2>What is not exported</h2>
 * {@code io.biostack.sys} (syscalls through FFM), {@code io.biostack.uring} (io_uring rings),
 * {@code io.biostack.nbd.proto} (the NBD wire constants the server and the client leaf share) and
 * {@code io.biostack.cli} (the command line) are internal; the file engines are package-private
 * inside {@code io.biostack.file}, and {@code io.biostack.file.reactor} (the reactors' bridge to
 * them, which takes io_uring loops) is not exported. The command line's dependency, picocli, is optional: a library
 * user's build does not get it ({@code requires static}, and {@code <optional>} in the pom).
 */
// HdrHistogram 2.2.2 and the Prometheus client ship no module descriptor: their names are derived
// (HdrHistogram from the jar's file name, Prometheus from Automatic-Module-Name).
@SuppressWarnings({"requires-automatic", "requires-transitive-automatic"})
module io.biostack {
    // The API: the bio and the devices, layers, stacks and exports built of it.
    exports io.biostack.block;
    exports io.biostack.block.stats;
    exports io.biostack.block.bitmap;
    exports io.biostack.file;
    exports io.biostack.loop;
    exports io.biostack.layer;
    exports io.biostack.layer.crypt;
    exports io.biostack.layer.part;
    exports io.biostack.layer.snapshot;
    exports io.biostack.layer.logwrites;
    exports io.biostack.layer.qcow2;
    exports io.biostack.stack;
    exports io.biostack.nbd;
    exports io.biostack.nbd.tls;
    exports io.biostack.nbd.client;
    exports io.biostack.bench;
    exports io.biostack.replay;
    exports io.biostack.rbd;

    // bench's BenchResult hands out HdrHistogram latencies, so its users read HdrHistogram too.
    requires transitive HdrHistogram;
    // TLS for NBD (X.509 and PSK): BouncyCastle's buffer-driven TLS API and PEM keys.
    requires org.bouncycastle.tls;
    requires org.bouncycastle.pkix;
    requires org.bouncycastle.provider;
    requires org.bouncycastle.util;
    // TLS: --tls-allow matches certificate subjects as LDAP names (javax.naming.ldap.LdapName).
    requires java.naming;
    // bench measures bytes allocated per I/O (com.sun.management.ThreadMXBean).
    requires java.management;
    requires jdk.management;
    // JFR events (slow I/O, resync, merge, reconnect).
    requires transitive jdk.jfr;

    // The command line only: absent from a library user's module path.
    requires static info.picocli;
    opens io.biostack.cli to info.picocli;
    // serve --metrics only: the Prometheus client (automatic modules, names from their manifests).
    requires static io.prometheus.metrics.core;
    requires static io.prometheus.metrics.model;
    requires static io.prometheus.metrics.exporter.httpserver;
}
