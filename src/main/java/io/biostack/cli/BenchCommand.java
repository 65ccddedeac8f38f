package io.biostack.cli;

import io.biostack.bench.BenchResult;
import io.biostack.bench.LoadGenerator;
import io.biostack.bench.Workload;
import io.biostack.block.BlockDevice;
import io.biostack.block.Sizes;
import io.biostack.file.EngineKind;
import io.biostack.loop.DirectIoMode;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.stack.Leaves;
import io.biostack.stack.Qcow2Target;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;

/**
 * {@code biostack bench}: an fio-like load generator in the same process as the stack.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = {"Measure a device of the stack with an fio-like load, in-process.",
                "FILE is created sparse at --size when missing; a qcow2 image is probed and measured as its virtual disk."})
public final class BenchCommand implements Callable<Integer> {
    @Parameters(index = "0", arity = "0..1", paramLabel = "FILE",
            description = "backing file of a loop device, or nbd://..., nbd+unix://... or rbd:POOL/IMAGE")
    String file;

    @Option(names = "--rw", defaultValue = "randread", description = "read|write|randread|randwrite|randrw (default ${DEFAULT-VALUE})")
    String rw;

    @Option(names = "--bs", defaultValue = "4k", description = "block size (default ${DEFAULT-VALUE})")
    SizeArg bs;

    @Option(names = "--iodepth", defaultValue = "32", description = "I/Os in flight (default ${DEFAULT-VALUE})")
    int iodepth;

    @Option(names = "--numjobs", defaultValue = "1",
            description = "submitting threads, each with --iodepth I/Os in flight and, with io_uring, its own ring (fio's numjobs; default ${DEFAULT-VALUE})")
    int numjobs;

    @Option(names = "--runtime", defaultValue = "10", description = "seconds to run (default ${DEFAULT-VALUE})")
    double runtime;

    @Option(names = "--size", description = "file size when created (default 1G), and the range I/O falls in")
    SizeArg size;

    @Option(names = "--ramp", defaultValue = "0",
            description = "seconds to run before measuring, as fio's ramp_time (default ${DEFAULT-VALUE})")
    double ramp;

    @Option(names = "--end-fsync",
            description = "flush once the last I/O has completed, the flush's time counted in the run (fio's end_fsync=1)")
    boolean endFsync;

    @Option(names = "--randommap",
            description = "random offsets never repeat within a pass over the range, as with fio's random map (the default, as fio's; kept for scripts that name it)")
    boolean randommap;

    @Option(names = "--norandommap",
            description = "each random I/O draws its own offset, so blocks may repeat within a pass (fio's norandommap)")
    boolean norandommap;

    @Option(names = "--iops-log", paramLabel = "FILE",
            description = "write a time series of completions to FILE: one line 'MSEC, IOPS' per --log-msec of the run (fio's write_iops_log with log_avg_msec)")
    Path iopsLog;

    @Option(names = "--log-msec", defaultValue = "100", description = "interval of --iops-log in milliseconds (default ${DEFAULT-VALUE})")
    int logMsec;

    @Option(names = "--rwmixread", defaultValue = "50", description = "percentage of reads for randrw")
    int rwmixread;

    @Option(names = "--direct-io", defaultValue = "auto", description = "on|off|auto (default ${DEFAULT-VALUE})")
    String directIo;

    @Option(names = "--engine", defaultValue = "auto", description = "uring|threads|auto (default ${DEFAULT-VALUE})")
    String engine;

    @Option(names = "--sector-size", defaultValue = "512", description = "logical block size of the loop device")
    int sectorSize;

    @Option(names = "--offset", defaultValue = "0", description = "loop device offset in the file")
    SizeArg offset;

    @Option(names = "--seed", defaultValue = "1", description = "seed of random offsets")
    long seed;

    @Option(names = "--json", description = "print one JSON object")
    boolean json;

    @Option(names = "--stack", paramLabel = "FILE", description = "a stack file; measure its --device instead of FILE")
    Path stack;

    @Option(names = "--device", paramLabel = "NAME", description = "the device of --stack to measure")
    String device;

    @Override
    public Integer call() throws Exception {
        if (stack != null) {
            return callStack();
        }
        if (device != null) {
            throw new IllegalArgumentException("--device names a device of a --stack file");
        }
        if (file == null) {
            throw new IllegalArgumentException("give a FILE to measure (it is created at --size when missing), or --stack FILE --device NAME");
        }
        if (Leaves.isRemote(file)) {
            Workload w = workload();
            try (BlockDevice dev = Leaves.open("remote0", file)) {
                String header = String.format(Locale.ROOT, "%s: (bs=%s, iodepth=%d) %s (%s)", w.rw().fioName(),
                        Sizes.human(w.blockSize()), w.ioDepth(), file, Sizes.human(dev.size()));
                return measure(dev, w, header, "\"device\":\"" + file.replace("\"", "\\\"") + "\"");
            }
        }
        long createSize = size == null ? 1L << 30 : size.bytes();
        LoopConfig cfg = LoopConfig.defaults()
                .withDirectIo(DirectIoMode.parse(directIo))
                .withEngine(EngineKind.parse(engine))
                .withLogicalBlockSize(sectorSize)
                .withOffset(offset.bytes())
                .withCreateSize(createSize);
        Workload w = workload();
        try (LoopDevice dev = LoopDevice.open(Path.of(file), cfg)) {
            String header = String.format(Locale.ROOT, "%s: (bs=%s, iodepth=%d) %s direct-io=%s engine=%s",
                    w.rw().fioName(), Sizes.human(w.blockSize()), w.ioDepth(), dev.name() + " on " + file,
                    dev.isDirectIo() ? "on" : "off", dev.backingFile().engineDescription());
            String extra = "\"device\":\"" + dev.name() + "\",\"direct_io\":" + dev.isDirectIo()
                    + ",\"engine\":\"" + dev.backingFile().engineKind().name().toLowerCase(Locale.ROOT) + "\"";
            if (Qcow2Target.probe(dev)) {
                // An image goes where a FILE goes, probed as serve probes it: the virtual disk is
                // measured, its container is the loop device.
                try (BlockDevice img = Qcow2Target.open(dev.name(), dev, false)) {
                    return measure(img, w, header.replace(" on " + file, " on " + file + " (qcow2)"),
                            extra + ",\"format\":\"qcow2\"");
                }
            }
            return measure(dev, w, header, extra);
        }
    }

    private Integer callStack() throws Exception {
        if (file != null) {
            throw new IllegalArgumentException("give either FILE or --stack, not both");
        }
        if (device == null) {
            throw new IllegalArgumentException("--stack needs --device NAME (the device to measure)");
        }
        Workload w = workload();
        try (io.biostack.stack.Stack st = io.biostack.stack.Stack.open(stack)) {
            BlockDevice dev = st.device(device);
            if (dev == null) {
                throw new IllegalArgumentException(stack + " has no device '" + device + "' (it has " + st.names() + ")");
            }
            String header = String.format(Locale.ROOT, "%s: (bs=%s, iodepth=%d) %s of %s (%s)",
                    w.rw().fioName(), Sizes.human(w.blockSize()), w.ioDepth(), device, stack, Sizes.human(dev.size()));
            return measure(dev, w, header, "\"device\":\"" + device + "\"");
        }
    }

    private Workload workload() {
        if (bs.bytes() > Integer.MAX_VALUE) {
            // Math.toIntExact's own message was all the user saw: "integer overflow".
            throw new IllegalArgumentException("--bs " + Sizes.human(bs.bytes()) + " is too large: at most "
                    + Integer.MAX_VALUE + " bytes");
        }
        return new Workload(Workload.Pattern.parse(rw), (int) bs.bytes(), iodepth,
                (long) (runtime * 1e9), size == null ? 0 : size.bytes(), rwmixread, seed);
    }

    /** Runs the load and prints the result; exit code 1 when any I/O failed. */
    private int measure(BlockDevice dev, Workload w, String header, String jsonExtra) throws InterruptedException {
        if (iopsLog != null && logMsec < 1) {
            throw new IllegalArgumentException("--log-msec must be at least 1");
        }
        if (randommap && norandommap) {
            throw new IllegalArgumentException("--randommap and --norandommap exclude each other");
        }
        BenchResult r = run(dev, w, ramp, numjobs, endFsync, !norandommap, iopsLog == null ? 0 : logMsec, series -> {
            if (iopsLog != null) {
                writeIopsLog(series);
            }
        });
        boolean mapped = w.rw().isRandom() && !norandommap;
        String map = w.rw().isRandom() ? (mapped ? " randommap" : " norandommap") : "";
        System.out.print(json ? r.toJson(jsonExtra + ",\"randommap\":" + mapped) + "\n" : r.toText(header + map));
        return r.errors() == 0 ? 0 : 1;
    }

    /** Runs the load, with a progress line on a terminal. */
    static BenchResult run(BlockDevice dev, Workload w, double rampSeconds, int numJobs, boolean endFsync,
            boolean randomMap, int logMsec, Consumer<long[]> log) throws InterruptedException {
        java.io.Console con = System.console();
        boolean tty = con != null && con.isTerminal();
        LoadGenerator gen = new LoadGenerator(dev, w).ramp((long) (rampSeconds * 1e9)).numJobs(numJobs).endFsync(endFsync);
        if (logMsec > 0) {
            gen.iopsLog(logMsec);
        }
        if (randomMap) {
            gen.randomMap(true);
        }
        BenchResult r = gen.run(tty ? (ios, ns) -> {
            double secs = ns / 1e9;
            double pct = Math.min(100, 100.0 * ns / w.runtimeNs());
            long eta = Math.max(0, (w.runtimeNs() - ns) / 1_000_000_000L);
            System.err.printf(Locale.ROOT, "\rJobs: %d [%s] [%.0f%% done] [%.1fk IOPS] [%s/s] [eta %02d:%02d] ",
                    numJobs, w.rw().fioName(), pct, ios / secs / 1e3, binary(ios * (double) w.blockSize() / secs), eta / 60, eta % 60);
        } : null);
        if (tty) {
            System.err.print("\r\033[K");
        }
        log.accept(gen.iopsLog());
        return r;
    }

    /** One line per interval, as fio's averaged IOPS log: the interval's end in ms, its IOPS. */
    private void writeIopsLog(long[] series) {
        StringBuilder sb = new StringBuilder(series.length * 12);
        for (int i = 0; i < series.length; i++) {
            sb.append((long) (i + 1) * logMsec).append(", ").append(series[i] * 1000 / logMsec).append('\n');
        }
        try {
            java.nio.file.Files.writeString(iopsLog, sb);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException("cannot write --iops-log " + iopsLog + ": " + e.getMessage(), e);
        }
    }

    private static String binary(double bytes) {
        String[] u = {"B", "KiB", "MiB", "GiB"};
        int i = 0;
        while (bytes >= 1024 && i < u.length - 1) {
            bytes /= 1024;
            i++;
        }
        return String.format(Locale.ROOT, "%.1f%s", bytes, u[i]);
    }
}
