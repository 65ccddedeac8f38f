package io.biostack.cli;

import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.block.Sizes;
import io.biostack.block.bitmap.DeviceBitmaps;
import io.biostack.block.stats.CountedDevice;
import io.biostack.layer.qcow2.Qcow2BitmapStore;
import io.biostack.layer.qcow2.Qcow2Device;
import io.biostack.block.stats.DeviceStats;
import io.biostack.block.stats.StatsConfig;
import io.biostack.nbd.ExportStats;
import io.biostack.file.EngineKind;
import io.biostack.loop.DirectIoMode;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.stack.Leaves;
import io.biostack.stack.Qcow2Target;
import io.biostack.nbd.NbdExport;
import io.biostack.nbd.NbdServer;
import io.biostack.nbd.tls.PskCredentials;
import io.biostack.nbd.tls.TlsCredentials;
import io.biostack.nbd.tls.TlsMode;
import io.biostack.nbd.tls.X509Credentials;

import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicBoolean;

import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import io.biostack.stack.ControlServer;
import io.biostack.stack.Stack;
import io.biostack.sys.SocketFiles;
import picocli.CommandLine.Spec;

/**
 * {@code biostack serve}: exports a file (through a loop device) or a ramdisk over NBD, in the
 * habits of qemu-nbd and nbdkit. With no arguments it serves {@code disk.img} in the current folder
 * (created sparse at 1 GiB when missing) on 127.0.0.1:10809, prints how to connect and one line
 * {@code ready}, and runs until SIGINT or SIGTERM, which answer what is in flight, flush, close the
 * device and remove the socket file.
 */
@Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Serve a file or a ramdisk over NBD (qemu-img, qemu-io, nbdinfo, nbdcopy, nbdfuse, fio).",
                "With no FILE, serves disk.img in the current folder (created sparse at 1 GiB if missing)."})
public final class ServeCommand implements Callable<Integer> {
    static final String DEFAULT_FILE = "disk.img";
    static final long DEFAULT_CREATE_SIZE = 1L << 30;

    @Spec
    CommandSpec spec;

    @Parameters(arity = "0..1", paramLabel = "FILE",
            description = "The file to serve (default: ./disk.img), or nbd://..., nbd+unix://... or rbd:POOL/IMAGE.")
    String file;

    @Option(names = "--socket", paramLabel = "PATH", description = "Also listen on this unix socket.")
    Path socket;

    @Option(names = "--listen", paramLabel = "HOST:PORT",
            description = "TCP address (default 127.0.0.1:10809 unless only --socket is given; 'none' to disable).")
    String listen;

    @Option(names = "--export", paramLabel = "NAME",
            description = {"Export name (the default export answers the empty name too).",
                    "With --stack: a device of the stack to export under its own name; repeat for several."})
    List<String> exportNames;

    @Option(names = "--stack", paramLabel = "FILE", description = "Serve devices of this stack file (see --export).")
    Path stackFile;

    @Option(names = "--control", paramLabel = "PATH",
            description = "With --stack: a control socket for 'biostack dm --control PATH ...'.")
    Path control;

    @Option(names = "--socket-mode", paramLabel = "MODE",
            description = "File mode (octal) of the unix sockets serve makes (--socket, --control), whatever the umask;"
                    + " default 0600. 0660 lets the socket's group in too.")
    String socketModeText;

    @Option(names = "--metrics", paramLabel = "HOST:PORT",
            description = "Serve the devices' statistics at http://HOST:PORT/metrics (Prometheus text format).")
    String metrics;

    /** The single export name without --stack ("" unless --export gave one). */
    private String exportName = "";

    @Option(names = "--description", paramLabel = "TEXT", description = "Export description for NBD_OPT_LIST / nbdinfo.")
    String description;

    @Option(names = {"-r", "--read-only"}, description = "Refuse every change (EPERM).")
    boolean readOnly;

    @Option(names = "--size", paramLabel = "SIZE", description = "Create FILE sparse at this size when it is missing.")
    SizeArg size;

    @Option(names = {"-o", "--offset"}, paramLabel = "N", description = "Skip N bytes of the file.")
    SizeArg offset;

    @Option(names = "--sizelimit", paramLabel = "N", description = "Serve at most N bytes of the file.")
    SizeArg sizeLimit;

    @Option(names = "--sector-size", paramLabel = "N", defaultValue = "512",
            description = "Logical block size: 512, 1024, 2048 or 4096 (default ${DEFAULT-VALUE}).")
    int sectorSize;

    @Option(names = "--direct-io", paramLabel = "on|off|auto", defaultValue = "auto",
            description = "O_DIRECT on the file (default ${DEFAULT-VALUE}).")
    String directIo;

    @Option(names = "--engine", paramLabel = "uring|threads|auto", defaultValue = "auto",
            description = "File I/O engine (default ${DEFAULT-VALUE}).")
    String engine;

    @Option(names = "--ram", paramLabel = "SIZE", description = "Serve a ramdisk of SIZE instead of a file.")
    SizeArg ram;

    @Option(names = "--max-connections", paramLabel = "N", defaultValue = "256",
            description = "Most clients in the transmission phase at once; clients still in the handshake"
                    + " don't count (default ${DEFAULT-VALUE}).")
    int maxConnections;

    @Option(names = "--threads", paramLabel = "N", defaultValue = "0",
            description = "Reactor threads, each serving many connections (default: one per processor).")
    int threads;

    @Option(names = "--poll-us", paramLabel = "US", defaultValue = "50",
            description = "Longest time an io_uring reactor polls for work before it sleeps, adapting to the load "
                    + "as QEMU's iothread poll-max-ns does (default: ${DEFAULT-VALUE}; 0: never poll). Polling "
                    + "trades CPU for latency: a busy reactor may use its whole core. A reactor waiting on one "
                    + "file I/O alone sleeps: on a VM, spinning slows the virtual disk.")
    int pollMicros;

    // ---- TLS and connection limits (nbdkit's and qemu-nbd's words and file layouts) ----------

    @Option(names = "--tls", paramLabel = "off|on|require",
            description = "TLS: off, on (offered), require (default require when credentials are given, else off).")
    String tls;

    @Option(names = "--tls-certificates", paramLabel = "DIR",
            description = "X.509: DIR holds ca-cert.pem, server-cert.pem, server-key.pem (nbdkit/qemu layout).")
    Path tlsCertificates;

    @Option(names = "--tls-verify-peer", description = "X.509: require a client certificate signed by DIR/ca-cert.pem.")
    boolean tlsVerifyPeer;

    @Option(names = "--tls-psk", paramLabel = "FILE", description = "Pre-shared keys: username:hexkey lines, as psktool writes.")
    Path tlsPsk;

    @Option(names = "--tls-allow", paramLabel = "NAME",
            description = "Only this client certificate subject (CN or whole DN) or PSK username; repeatable.")
    List<String> tlsAllow;

    @Option(names = "--handshake-timeout", paramLabel = "DURATION", defaultValue = "10s",
            description = "Drop a client that has not finished the handshake in this time, e.g. 10s, 500ms (default ${DEFAULT-VALUE}).")
    String handshakeTimeout;

    @Option(names = "--handshake-budget", paramLabel = "N", defaultValue = "256",
            description = "Most clients in the handshake at once; past it the oldest is dropped, never the newcomer"
                    + " (default ${DEFAULT-VALUE}).")
    int handshakeBudget;

    @Option(names = {"-f", "--format"}, paramLabel = "raw|qcow2",
            description = "The image format of FILE; without it FILE is probed (the qcow2 magic), as qemu-nbd does.")
    String format;

    @Option(names = {"-B", "--bitmap"}, paramLabel = "NAME",
            description = "Offer the device's dirty bitmap NAME as the qemu:dirty-bitmap:NAME meta context (and"
                    + " no other bitmap), as qemu-nbd -B; repeat for several. Fails when the device has none of"
                    + " that name.")
    List<String> bitmaps;

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        socketMode(); // a bad mode is refused before anything opens
        if (stackFile != null) {
            return serveStack(out);
        }
        if (control != null) {
            throw new IllegalArgumentException("--control works on a --stack");
        }
        if (exportNames != null && exportNames.size() > 1) {
            throw new IllegalArgumentException("several --export names need a --stack (one device each)");
        }
        exportName = exportNames == null || exportNames.isEmpty() ? "" : exportNames.getFirst();
        if (ram != null && file != null) {
            throw new IllegalArgumentException("give either FILE or --ram, not both");
        }
        BlockDevice bare = ram != null ? ramDisk() : Leaves.isRemote(file) ? Leaves.open("remote0", file) : imageDevice();
        // A qcow2 image's bitmaps hang on the counting wrapper (it marks the writes): with
        // statistics off the image still gets one, or its bitmaps would go stale for qemu (the
        // autoclear bit stays clear) and their clusters leak.
        BlockDevice device = StatsConfig.ENABLED || bare instanceof Qcow2Device ? new CountedDevice(bare) : bare;
        if (bare instanceof Qcow2Device q && device instanceof CountedDevice c) {
            // The image's own bitmaps (qemu-nbd -B serves them the same way), kept up to date
            // while served and saved at a clean stop.
            try {
                DeviceBitmaps bm = new DeviceBitmaps(c.name(), c.size(), new Qcow2BitmapStore(q), c::submitBelow);
                bm.loadProblems().forEach(p -> System.err.println("biostack: " + p));
                c.setBitmaps(bm);
            } catch (Exception e) {
                device.close();
                throw e;
            }
        }
        String what = ram != null ? "ramdisk" : String.valueOf(file != null ? file : Path.of(DEFAULT_FILE));
        NbdServer server;
        try {
            refuseInconsistentBitmaps(device, "qemu-img bitmap --remove " + what + " NAME (with the image not served)");
            NbdServer.Builder b = NbdServer.builder()
                    .export(new NbdExport(exportName, description, device, readOnly))
                    .bitmaps(bitmaps)
                    .maxConnections(maxConnections)
                    .threads(threads)
                    .pollMicros(pollMicros);
            InetSocketAddress tcp = tcpAddress();
            security(b, tcp);
            if (tcp != null) {
                b.tcp(tcp.getHostString(), tcp.getPort());
            }
            if (socket != null) {
                b.unixSocket(socket.toAbsolutePath()).socketMode(socketMode());
            }
            server = b.start();
        } catch (Exception e) {
            closeDevice(device);
            throw e;
        }
        Metrics m;
        try {
            List<DeviceStats> counted = device instanceof CountedDevice c ? List.of(c.stats()) : List.of();
            m = startMetrics(() -> counted, server.exportStats());
        } catch (Exception e) {
            server.close();
            closeDevice(device);
            throw e;
        }
        AtomicBoolean stopped = new AtomicBoolean();
        Runnable stop = () -> {
            if (stopped.compareAndSet(false, true)) {
                server.close();
                if (m != null) {
                    m.close();
                }
                closeDevice(device);
            }
        };
        Thread hook = Thread.ofPlatform().name("biostack-serve-stop").unstarted(() -> {
            stop.run();
            System.err.println("biostack serve: stopped");
        });
        Runtime.getRuntime().addShutdownHook(hook);
        out.println("serving " + what + " (" + Sizes.human(device.size()) + (readOnly || device.isReadOnly() ? ", read-only" : "")
                + ", " + device + ") as export '" + exportName + "'");
        for (String uri : uris(server)) {
            out.println("  " + uri);
        }
        printMetrics(out, m);
        out.println("try: nbdinfo " + tryUri(server));
        out.println("ready");
        out.flush();
        server.awaitClosed();
        return 0;
    }

    /** Starts /metrics when --metrics was given (null otherwise): these devices and exports. */
    private Metrics startMetrics(java.util.function.Supplier<List<DeviceStats>> devices, List<ExportStats> exports)
            throws java.io.IOException {
        if (metrics == null) {
            return null;
        }
        return Metrics.start(metrics, devices, () -> exports);
    }

    private void printMetrics(PrintWriter out, Metrics m) {
        if (m != null) {
            String host = metrics.substring(0, metrics.lastIndexOf(':'));
            out.println("metrics: http://" + (host.isEmpty() ? "127.0.0.1" : host) + ":" + m.port() + "/metrics");
        }
    }

    /**
     * Serves devices of a stack file, each under its own export name (the first is also the
     * default export), with an optional control socket; stops as the single-device form does:
     * server first, then the control socket, then the stack.
     */
    private Integer serveStack(PrintWriter out) throws Exception {
        if (file != null || ram != null) {
            throw new IllegalArgumentException("give either FILE, --ram or --stack");
        }
        if (exportNames == null || exportNames.isEmpty()) {
            throw new IllegalArgumentException("--stack needs at least one --export NAME (a device of the stack)");
        }
        Stack stack = Stack.open(stackFile);
        NbdServer server;
        ControlServer ctl = null;
        Metrics met = null;
        try {
            NbdServer.Builder b = NbdServer.builder().maxConnections(maxConnections).threads(threads).bitmaps(bitmaps);
            for (String name : exportNames) {
                BlockDevice dev = stack.device(name);
                if (dev == null) {
                    throw new IllegalArgumentException(stackFile + " has no device '" + name + "' (it has "
                            + String.join(", ", stack.names()) + ")");
                }
                refuseInconsistentBitmaps(dev, "serve without -B NAME, then biostack dm --control CTL message " + name
                        + " 'bitmap remove NAME'");
                b.export(new NbdExport(name, description, dev, readOnly));
            }
            InetSocketAddress tcp = tcpAddress();
            security(b, tcp);
            if (tcp != null) {
                b.tcp(tcp.getHostString(), tcp.getPort());
            }
            if (socket != null) {
                b.unixSocket(socket.toAbsolutePath()).socketMode(socketMode());
            }
            if (control != null) {
                ctl = ControlServer.start(stack, control.toAbsolutePath(), socketMode());
            }
            List<ExportStats> counters = new ArrayList<>();
            for (String name : exportNames) {
                ExportStats es = new ExportStats(name);
                counters.add(es);
                b.exportStats(es); // the server counts into the ones /metrics reads
            }
            // Read at each scrape, as dm stats reads them: backup views come and go while it runs.
            met = startMetrics(stack::stats, counters);
            server = b.start();
            NbdServer srv = server;
            // Backup views (dm message DEV backup-begin EXPORT ...) are served read-only while they last.
            stack.setExportListener((n, d) -> srv.addExport(new NbdExport(n, "backup view", d, true)), srv::removeExport);
        } catch (Exception e) {
            if (met != null) {
                met.close();
            }
            if (ctl != null) {
                ctl.close();
            }
            stack.close();
            throw e;
        }
        ControlServer ctlServer = ctl;
        Metrics metricsServer = met;
        AtomicBoolean stopped = new AtomicBoolean();
        Thread hook = Thread.ofPlatform().name("biostack-serve-stop").unstarted(() -> {
            if (stopped.compareAndSet(false, true)) {
                server.close();
                if (metricsServer != null) {
                    metricsServer.close();
                }
                if (ctlServer != null) {
                    try {
                        ctlServer.close();
                    } catch (java.io.IOException e) {
                        System.err.println("biostack serve: closing the control socket: " + e.getMessage());
                    }
                }
                stack.close();
            }
            System.err.println("biostack serve: stopped");
        });
        Runtime.getRuntime().addShutdownHook(hook);
        out.println("serving " + exportNames.size() + " device(s) of " + stackFile + ":");
        for (String name : exportNames) {
            BlockDevice dev = stack.device(name);
            out.println("  " + name + " (" + Sizes.human(dev.size()) + (readOnly || dev.isReadOnly() ? ", read-only" : "") + ")");
            exportName = name;
            for (String uri : uris(server)) {
                out.println("    " + uri);
            }
        }
        if (control != null) {
            out.println("control: biostack dm --control " + control + " ls");
        }
        printMetrics(out, metricsServer);
        exportName = exportNames.getFirst();
        out.println("try: nbdinfo " + tryUri(server));
        out.println("ready");
        out.flush();
        server.awaitClosed();
        return 0;
    }

    /** The mode the TLS flags ask for: --tls, or require when credentials are given. */
    private TlsMode tlsMode() {
        if (tls == null) {
            return tlsCertificates != null || tlsPsk != null ? TlsMode.REQUIRE : TlsMode.OFF;
        }
        return switch (tls.toLowerCase(Locale.ROOT)) {
            case "off", "no", "false" -> TlsMode.OFF;
            case "on", "yes", "true" -> TlsMode.ON;
            case "require", "required" -> TlsMode.REQUIRE;
            default -> throw new IllegalArgumentException("--tls wants off, on or require, not '" + tls + "'");
        };
    }

    /**
     * TLS, credentials and the handshake timeout onto the builder; warns (one line) when a TCP
     * address other than loopback is served in plain text.
     */
    private void security(NbdServer.Builder b, InetSocketAddress tcp) throws Exception {
        TlsMode mode = tlsMode();
        List<String> allow = tlsAllow == null ? List.of() : tlsAllow;
        if (tlsCertificates != null && tlsPsk != null) {
            throw new IllegalArgumentException("give --tls-certificates or --tls-psk, not both");
        }
        if (tlsVerifyPeer && tlsCertificates == null) {
            throw new IllegalArgumentException("--tls-verify-peer needs --tls-certificates DIR (with ca-cert.pem)");
        }
        if (!allow.isEmpty() && tlsCertificates == null && tlsPsk == null) {
            throw new IllegalArgumentException("--tls-allow needs --tls-certificates or --tls-psk");
        }
        TlsCredentials creds = null;
        if (tlsCertificates != null) {
            creds = X509Credentials.server(tlsCertificates, tlsVerifyPeer, allow);
        } else if (tlsPsk != null) {
            creds = PskCredentials.server(tlsPsk, allow);
        }
        if (mode != TlsMode.OFF && creds == null) {
            throw new IllegalArgumentException("--tls " + tls + " needs --tls-certificates DIR or --tls-psk FILE");
        }
        b.tls(mode, creds).handshakeTimeout(duration(handshakeTimeout)).handshakeBudget(handshakeBudget);
        if (tcp != null && mode == TlsMode.OFF && (tcp.getAddress() == null || !tcp.getAddress().isLoopbackAddress())) {
            System.err.println("biostack serve: warning: " + tcp.getHostString() + ":" + tcp.getPort()
                    + " is served without TLS: anyone who reaches it can read and write the export"
                    + " (give --tls-certificates DIR or --tls-psk FILE)");
        }
        tlsOn = mode != TlsMode.OFF;
    }

    /** Whether URIs are printed as nbds://. */
    private boolean tlsOn;

    /** A duration such as 10s, 500ms, 2m, or a bare number of seconds. */
    static Duration duration(String s) {
        String t = s.strip().toLowerCase(Locale.ROOT);
        try {
            if (t.endsWith("ms")) {
                return Duration.ofMillis(Long.parseLong(t.substring(0, t.length() - 2)));
            }
            if (t.endsWith("s")) {
                return Duration.ofMillis(Math.round(Double.parseDouble(t.substring(0, t.length() - 1)) * 1000));
            }
            if (t.endsWith("m")) {
                return Duration.ofSeconds(Long.parseLong(t.substring(0, t.length() - 1)) * 60);
            }
            return Duration.ofSeconds(Long.parseLong(t));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("want a duration such as 10s or 500ms, not '" + s + "'");
        }
    }

    private BlockDevice ramDisk() {
        long n = ram.bytes();
        if (n <= 0 || n % sectorSize != 0) {
            throw new IllegalArgumentException("--ram " + n + " must be a positive multiple of the " + sectorSize
                    + "-byte sector size");
        }
        return new RamDisk("ram0", n, sectorSize, readOnly);
    }

    /**
     * Refuses a {@code -B NAME} whose bitmap {@code dev} has but loaded inconsistent: the server
     * never offers such a bitmap, and would say the device has no bitmap of that name.
     *
     * @param remove how the user removes a bitmap of this device, NAME standing for its name
     */
    private void refuseInconsistentBitmaps(BlockDevice dev, String remove) {
        if (bitmaps == null || !(dev instanceof CountedDevice c) || c.bitmaps() == null) {
            return;
        }
        for (String bm : bitmaps) {
            if (c.bitmaps().names().contains(bm) && !c.bitmaps().get(bm).isConsistent()) {
                throw new IllegalArgumentException("bitmap " + bm + " of " + c.name() + " is inconsistent (it was in use "
                        + "when its last user stopped without closing it, or its stored bits are damaged): -B " + bm
                        + " can't offer it, as its bits may miss writes; remove it (" + remove.replace("NAME", bm)
                        + "), add a new one, and make the next backup a full one");
            }
        }
    }

    /** Saves the device's bitmaps while the device below is still open, then closes it. */
    private static void closeDevice(BlockDevice device) {
        if (device instanceof CountedDevice c && c.bitmaps() != null) {
            c.bitmaps().close();
        }
        device.close();
    }

    /** FILE as a loop device, or the qcow2 image on it (--format, or probed as qemu-nbd probes). */
    private BlockDevice imageDevice() throws Exception {
        if (format != null && !format.equals("raw") && !format.equals("qcow2")) {
            throw new IllegalArgumentException("--format must be raw or qcow2, not '" + format + "'");
        }
        BlockDevice loop = loopDevice();
        try {
            boolean qcow2 = format != null ? format.equals("qcow2") : Qcow2Target.probe(loop);
            if (!qcow2) {
                return loop;
            }
            return Qcow2Target.open(loop.name(), loop, readOnly);
        } catch (Exception e) {
            loop.close();
            throw e;
        }
    }

    private BlockDevice loopDevice() throws Exception {
        Path f = Path.of(file != null ? file : DEFAULT_FILE);
        long create = 0;
        if (!Files.exists(f)) {
            if (size != null) {
                create = size.bytes();
            } else if (file == null) {
                create = DEFAULT_CREATE_SIZE;
            } else {
                throw new IllegalArgumentException(f + ": no such file (give --size SIZE to create it sparse)");
            }
        }
        LoopConfig c = LoopConfig.defaults()
                .withOffset(offset == null ? 0 : offset.bytes())
                .withSizeLimit(sizeLimit == null ? 0 : sizeLimit.bytes())
                .withLogicalBlockSize(sectorSize)
                .withReadOnly(readOnly)
                .withDirectIo(DirectIoMode.parse(directIo))
                .withEngine(EngineKind.parse(engine))
                .withCreateSize(create);
        return LoopDevice.open(f, c);
    }

    /** --socket-mode, or 0600. */
    private int socketMode() {
        return socketModeText == null ? SocketFiles.DEFAULT_MODE : SocketFiles.parseMode(socketModeText);
    }

    /** --listen, or 127.0.0.1:10809 unless only a unix socket was asked for; null for none. */
    private InetSocketAddress tcpAddress() {
        if (listen == null) {
            return socket != null ? null : new InetSocketAddress("127.0.0.1", 10809);
        }
        if (listen.equals("none")) {
            return null;
        }
        int colon = listen.lastIndexOf(':');
        String host = colon < 0 ? listen : listen.substring(0, colon);
        String port = colon < 0 ? "10809" : listen.substring(colon + 1);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        try {
            return new InetSocketAddress(host.isEmpty() ? "127.0.0.1" : host, Integer.parseInt(port));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--listen wants HOST:PORT, not '" + listen + "'");
        }
    }

    /** The first URI, with what a TLS client needs to find its credentials. */
    private String tryUri(NbdServer server) {
        String u = uris(server).getFirst();
        if (!tlsOn) {
            return u;
        }
        String sep = u.contains("?") ? "&" : (u.substring(u.indexOf("://") + 3).contains("/") ? "?" : "/?");
        if (tlsPsk != null) {
            return "'" + u.replaceFirst("://", "://USER@") + sep + "tls-psk-file=" + tlsPsk.toAbsolutePath() + "'";
        }
        // A folder with ca-cert.pem (and client-cert.pem, client-key.pem under --tls-verify-peer).
        return "'" + u + sep + "tls-certificates=" + tlsCertificates.toAbsolutePath() + "'";
    }

    /**
     * nbd:// URIs (the port left out when it is the NBD port, as qemu does) and nbd+unix://, the
     * export name and the socket path percent-encoded (as nbdkit's --print-uri does), so that a
     * name with a space or a '#' gives a URI that libnbd and qemu parse.
     */
    private List<String> uris(NbdServer server) {
        List<String> l = new ArrayList<>();
        String path = "/" + uriQuote(exportName);
        InetSocketAddress a = server.tcpAddress();
        if (a != null) {
            String host = a.getAddress().getHostAddress();
            if (host.contains(":")) {
                host = "[" + host + "]";
            }
            l.add((tlsOn ? "nbds://" : "nbd://") + host + (a.getPort() == 10809 ? "" : ":" + a.getPort()) + (exportName.isEmpty() ? "" : path));
        }
        if (server.unixSocket() != null) {
            l.add((tlsOn ? "nbds+unix://" : "nbd+unix://") + path + "?socket=" + uriQuote(server.unixSocket().toString()));
        }
        return l;
    }

    /** RFC 3986 percent-encoding of every byte but the unreserved characters and '/'. */
    static String uriQuote(String s) {
        StringBuilder b = new StringBuilder();
        for (byte c : s.getBytes(java.nio.charset.StandardCharsets.UTF_8)) {
            if (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || "-._~/".indexOf(c) >= 0) {
                b.append((char) c);
            } else {
                b.append('%').append(String.format(Locale.ROOT, "%02X", c & 0xff));
            }
        }
        return b.toString();
    }
}
