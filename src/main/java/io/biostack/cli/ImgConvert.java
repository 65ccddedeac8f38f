package io.biostack.cli;

import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.ImageLocking;
import io.biostack.file.QemuLocks;
import io.biostack.file.EngineKind;
import io.biostack.layer.qcow2.Qcow2Create;
import io.biostack.layer.qcow2.Qcow2Image;
import io.biostack.loop.DirectIoMode;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.stack.Leaves;
import io.biostack.sys.ColdCalls;
import io.biostack.sys.Fs;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/**
 * {@code img convert [-p] [-f FMT] [-O FMT] SRC DST}: copies the allocated data of SRC (raw,
 * qcow2 with its backing chain flattened, an NBD URI, {@code rbd:POOL/IMAGE}) to DST.
 *
 * <p>Only data is read: runs come from the source's map (qcow2 metadata, SEEK_DATA of a raw file,
 * NBD block status), holes and zero runs are skipped on a new file and written as zeroes on a
 * device that already exists. A new qcow2 destination is laid out first with exactly the clusters
 * the source's data needs (each L2 table followed by its clusters in guest order), so the copy
 * writes straight to their place in the file. The source is mapped once, before the copy; the
 * copy itself is {@link ConvertPipeline}: chunks of up to {@link #CHUNK} bytes, {@link #DEPTH} in
 * flight, each write submitted from its read's completion, out of order.
 */
@Command(mixinStandardHelpOptions = true, name = "convert", description = "Copy an image's data to another image, file or export (raw, qcow2, nbd://, rbd:).")
final class ImgConvert implements Callable<Integer> {
    /**
     * Copies in flight at once, by default: qemu-img convert's 8 coroutines (qemu-img.c,
     * {@code num_coroutines = 8}); {@code -m} changes it.
     */
    static final int DEPTH = Integer.getInteger("biostack.img.depth", 8);
    /** Bytes per copy: qemu-img convert's 2 MiB buffer ({@code convert_iteration_sectors}, -S aside). */
    static final int CHUNK = Integer.getInteger("biostack.img.chunk", 2 << 20);
    /** A qcow2 source's run is cut here while it is mapped (the copy cuts again, at CHUNK). */
    private static final long MAX_RUN = 1L << 30;
    /** A copy with nothing completing for this long has hung below us: it fails, naming the offset. */
    static final long STALL_NANOS = TimeUnit.SECONDS.toNanos(Long.getLong("biostack.img.stallSeconds", 120));

    @Option(names = "-m", paramLabel = "NUM", description = "parallel requests (default 8; 1 to 64, as qemu-img's -m)")
    Integer parallel0;

    @Option(names = "-W", description = "accepted for qemu-img: writes are always out of order here (raw and qcow2 allow it)")
    boolean outOfOrder;

    private int parallel = DEPTH;

    @Option(names = "-p", description = "show progress")
    boolean progress;

    @Option(names = "-c", description = "compress the output (qcow2; zlib, or zstd with -o compression_type=zstd): each cluster compressed on its own, as qemu-img convert -c")
    boolean compress;

    @Option(names = {"-U", "--force-share"}, description = "read a source that another process writes (qemu-img's -U): no locks, no consistency")
    boolean forceShare;

    @Option(names = "-f", paramLabel = "FMT", description = "source format: raw or qcow2 (probed when omitted)")
    String srcFormat;

    @Option(names = "-O", paramLabel = "FMT", defaultValue = "raw", description = "destination format: raw or qcow2 (default raw)")
    String dstFormat;

    @Option(names = "-t", paramLabel = "CACHE", defaultValue = "unsafe",
            description = "destination cache, as qemu-img's: none (O_DIRECT, flushed), writeback (page cache, flushed), "
                    + "unsafe (page cache, not flushed; qemu-img convert's default)")
    String cache;

    @Option(names = "-T", paramLabel = "CACHE", defaultValue = "writeback",
            description = "source cache: none (O_DIRECT) or writeback (page cache; the default)")
    String srcCache;

    @Option(names = "-o", paramLabel = "OPTS", description = "qcow2 creation options (as img create)")
    List<String> options = new ArrayList<>();

    @Parameters(index = "0", paramLabel = "SRC")
    String src;

    @Parameters(index = "1", paramLabel = "DST")
    String dst;

    /**
     * One run of the source: data on a device (or in a local file, for the in-kernel copy: then
     * {@code dev} is null), zeros, or a compressed cluster.
     */
    private record Run(long length, BlockDevice dev, Path file, long devOffset, boolean zero, long l2Entry,
                       Qcow2Image q) {
    }

    /** Where the source's runs come from. */
    private interface Source extends AutoCloseable {
        long size();

        /** True if every run's data is in a regular file ({@link Run#file}), for the kernel's copy. */
        default boolean files() {
            return false;
        }

        Run run(long off, long max) throws IOException;

        /** The local files the source reads: the image and its backing files. */
        List<Path> paths();

        @Override
        void close();
    }

    /** What {@link #fastPath} returns for a command line it leaves to picocli. */
    static final int NOT_HANDLED = FastPath.NOT_HANDLED;

    /**
     * Runs {@code img convert} without picocli when {@code args} is one of the shapes this method
     * knows, as {@link FastPath} does for {@code img info}: picocli's model of {@code img} (its
     * five subcommands' options, by reflection over annotations: dynamic proxies, method handles)
     * cost 0.2 s of CPU before the first byte was read here, against the 0.3 s that qemu-img
     * takes for the whole 1 GiB of bench/img. The fields are set as picocli sets them and the
     * same {@link #call()} runs; an error it throws is said as picocli's handler says it
     * ({@code biostack: message}, exit 1: the convert may have created the destination, so it is
     * not run again).
     *
     * <p>Known: {@code -p -W -c -U} alone, {@code -m -f -O -t -T -o --engine} each followed by its
     * value ({@code --engine=E} too), {@code -o} as often as wanted, the others once, then SRC
     * and DST. Anything else goes to picocli before anything is done: {@code --help}, a cluster
     * ({@code -pW}), an unknown option, a value or an argument that starts with {@code -} or
     * {@code @}, a missing or extra argument, {@code --}.
     *
     * @param args the whole command line ({@code img convert ...})
     * @return the exit code, or {@link #NOT_HANDLED}
     */
    static int fastPath(String[] args) {
        if (args.length < 4 || !args[0].equals("img") || !args[1].equals("convert")) {
            return NOT_HANDLED;
        }
        ImgConvert c = new ImgConvert();
        c.dstFormat = "raw";
        c.cache = "unsafe";
        c.srcCache = "writeback";
        java.util.Set<String> seen = new java.util.HashSet<>();
        List<String> positional = new ArrayList<>();
        for (int i = 2; i < args.length; i++) {
            String a = args[i];
            String value = null;
            String opt = a;
            if (a.startsWith("--engine=")) {
                opt = "--engine";
                value = a.substring("--engine=".length());
            } else if (a.startsWith("-") || a.startsWith("@")) {
                boolean takesValue = switch (a) {
                    case "-m", "-f", "-O", "-t", "-T", "-o", "--engine" -> true;
                    case "-p", "-W", "-c", "-U" -> false;
                    default -> {
                        opt = null;
                        yield false;
                    }
                };
                if (opt == null || a.startsWith("@")) {
                    return NOT_HANDLED;
                }
                if (takesValue) {
                    if (++i >= args.length) {
                        return NOT_HANDLED;
                    }
                    value = args[i];
                }
            } else {
                positional.add(a);
                continue;
            }
            if (value != null && (value.isEmpty() || value.startsWith("-") || value.startsWith("@"))) {
                return NOT_HANDLED;
            }
            if (!opt.equals("-o") && !seen.add(opt)) {
                return NOT_HANDLED; // picocli says how it takes an option given twice
            }
            switch (opt) {
                case "-m" -> {
                    try {
                        c.parallel0 = Integer.valueOf(value);
                    } catch (NumberFormatException e) {
                        return NOT_HANDLED;
                    }
                }
                case "-f" -> c.srcFormat = value;
                case "-O" -> c.dstFormat = value;
                case "-t" -> c.cache = value;
                case "-T" -> c.srcCache = value;
                case "-o" -> c.options.add(value);
                case "--engine" -> c.engine = value;
                case "-p" -> c.progress = true;
                case "-W" -> c.outOfOrder = true;
                case "-U" -> c.forceShare = true;
                default -> c.compress = true; // -c
            }
        }
        if (positional.size() != 2) {
            return NOT_HANDLED;
        }
        c.src = positional.get(0);
        c.dst = positional.get(1);
        try {
            return c.call();
        } catch (Exception e) {
            System.err.println("biostack: " + (e.getMessage() == null ? e.toString() : e.getMessage()));
            if (System.getenv("BIOSTACK_DEBUG") != null) {
                e.printStackTrace();
            }
            System.err.flush();
            return 1;
        }
    }

    @Override
    public Integer call() throws Exception {
        if (parallel0 != null) {
            if (parallel0 < 1 || parallel0 > ConvertPipeline.MAX_DEPTH) {
                throw new IllegalArgumentException("Invalid number of coroutines. Allowed number of coroutines is between 1 and "
                        + ConvertPipeline.MAX_DEPTH);
            }
            parallel = parallel0;
        }
        DirectIoMode dstDio = dio(cache, "-t");
        srcDio = dio(srcCache, "-T");
        if (!dstFormat.equals("raw") && !dstFormat.equals("qcow2")) {
            throw new IllegalArgumentException("Unknown output format '" + dstFormat + "' (raw or qcow2)");
        }
        long t0 = System.nanoTime();
        // Local files only start daemon threads (the file engines', shut down when the files
        // close; the kernel copy's workers, joined). Exports and RBD keep System.exit, whatever
        // their libraries started. Main reads this only after a success.
        daemonsOnly = !Leaves.isRemote(src) && !Leaves.isRemote(dst);
        boolean inKernel = inKernel(dstDio);
        if (inKernel) {
            prelink();
        }
        // The destination file's write locks (QemuLocks.onFile), taken just before it is
        // truncated and held to the end of the copy, as qemu-img convert's create and open of
        // it: a destination that qemu-nbd, qemu or a biostack stack has open is refused, not
        // emptied and overwritten.
        ImageLocking.Held dstLock = ImageLocking.NONE;
        try (Source s = openSource(inKernel)) {
            phase("open source");
            inKernel &= s.files();
            long size = s.size();
            boolean remoteDst = Leaves.isRemote(dst);
            if (remoteDst && dstFormat.equals("qcow2")) {
                throw new IllegalArgumentException("-O qcow2 needs a file destination, not " + dst);
            }
            if (!remoteDst) {
                sameFile(s, Path.of(dst));
            }
            Qcow2Create.Layout layout = null;
            List<Run> map = null;
            BlockDevice out;
            boolean fresh = !remoteDst;
            if (remoteDst) {
                out = Leaves.open("dst", dst);
                if (out.size() < size) {
                    long have = out.size();
                    out.close();
                    throw new IOException(dst + " is " + have + " bytes, smaller than the source's " + size);
                }
            } else if (compress && !dstFormat.equals("qcow2")) {
                throw new IllegalArgumentException("Compression not supported for this file format (-c needs -O qcow2)");
            } else if (compress) {
                long cs = 1L << clusterBits();
                long[] runs = dataClusters(map(s, size), cs);
                Map<String, String> o = ImgCommand.parseOptions(options);
                Progress p = new Progress(progress, size);
                Qcow2Create.Options qo = qcowOptions(o);
                dstLock = QemuLocks.onFile(Path.of(dst), true);
                try (Arena arena = Arena.ofShared()) {
                    MemorySegment io = arena.allocate(cs + 8192, 4096); // a cluster, widened to whole sectors
                    Qcow2Create.createCompressed(Path.of(dst), size, qo, runs,
                            (c, buf) -> readCluster(s, size, c, buf, io), p::at);
                }
                p.done();
                timing(t0);
                return 0;
            } else if (dstFormat.equals("qcow2")) {
                map = map(s, size);
                long[] runs = dataClusters(map, 1L << clusterBits());
                phase("map source");
                Map<String, String> o = ImgCommand.parseOptions(options);
                Qcow2Create.Options qo = qcowOptions(o);
                dstLock = QemuLocks.onFile(Path.of(dst), true);
                layout = Qcow2Create.create(Path.of(dst), size, qo, null, null, runs);
                phase("create qcow2");
                out = inKernel ? null : LoopDevice.open(Path.of(dst), file(dstDio));
            } else {
                dstLock = QemuLocks.onFile(Path.of(dst), true);
                try (RandomAccessFile f = new RandomAccessFile(dst, "rw")) {
                    f.setLength(0);
                    f.setLength(size);
                }
                out = inKernel ? null : LoopDevice.open(Path.of(dst), file(dstDio));
            }
            if (inKernel) {
                if (map == null) {
                    map = map(s, size);
                    phase("map source");
                }
                copyFiles(map, size, layout, !cache.equals("unsafe"));
                phase("copy (in kernel)");
                timing(t0);
                return 0;
            }
            phase("open destination");
            try {
                if (map == null) {
                    map = map(s, size);
                    phase("map source");
                }
                copy(map, out, size, layout, fresh, !cache.equals("unsafe"));
                phase("copy");
            } finally {
                out.close();
                phase("close destination");
            }
            timing(t0);
        } finally {
            dstLock.close();
        }
        return 0;
    }

    /**
     * Refuses a destination that is the source or one of its backing files under any name (a
     * symlink, a hard link, a relative path): the destination is truncated before the copy, which
     * would wipe the data still to be read, and the copy would then succeed with zeros. qemu-img
     * refuses it as well (its create cannot take the write lock of the open source).
     */
    private void sameFile(Source s, Path dst) throws IOException {
        if (!Files.exists(dst)) {
            return;
        }
        for (Path p : s.paths()) {
            if (Files.isSameFile(p, dst)) {
                throw new IllegalArgumentException("source and destination are the same file: " + dst
                        + (p.equals(s.paths().getFirst()) ? "" : " (a backing file of " + src + ")"));
            }
        }
    }

    /** Whether the last convert's ends are local files, so that it starts no thread that keeps the JVM alive. */
    private static volatile boolean daemonsOnly;

    /**
     * Whether returning from {@code main} ends the JVM now: the last convert copied between local
     * files, which starts daemon threads only (the kernel copy's workers, joined, and the
     * prelink thread; or the file engines' threads, shut down when the files closed). Returning
     * skips what {@code System.exit} costs first: Runtime.exit asks System.Logger whether to log
     * the exit, which boots java.util.logging, classes the AOT cache does not hold (measured here:
     * 60-110 ms between the convert's end and the process's).
     *
     * @return true if {@code main} may return instead of calling {@code System.exit(0)}
     */
    static boolean endsByReturn() {
        return daemonsOnly;
    }

    private static long lastPhase = System.nanoTime();

    private static void phase(String what) {
        long now = System.nanoTime();
        if (System.getenv("BIOSTACK_TIMING") != null) {
            System.err.println("biostack: " + what + " " + seconds(now - lastPhase) + " s");
        }
        lastPhase = now;
    }

    private static void timing(long t0) {
        if (System.getenv("BIOSTACK_TIMING") != null) {
            // For bench/img/run.sh: the work itself, without the JVM's start-up.
            System.err.println("biostack: convert took " + seconds(System.nanoTime() - t0) + " s in process");
        }
    }

    /**
     * Nanoseconds as seconds with three decimals ("1.234"), without {@code String.format}:
     * java.util.Formatter and the locale data it loads cost ~15 ms of every timed run.
     */
    static String seconds(long nanos) {
        long ms = Math.round(nanos / 1e6);
        String frac = Long.toString(1000 + ms % 1000).substring(1);
        return ms / 1000 + "." + frac;
    }

    /**
     * Guest cluster {@code c} of the source, whole, into {@code out} (for -c: the compressing
     * writer reads cluster by cluster; {@code io} is a bounce buffer fit for direct I/O).
     */
    private static void readCluster(Source s, long size, long c, byte[] out, MemorySegment io) throws IOException {
        long cs = out.length;
        long off = c * cs;
        java.util.Arrays.fill(out, (byte) 0);
        long end = Math.min(size, off + cs);
        for (long pos = off; pos < end; ) {
            Run run = s.run(pos, end - pos);
            int n = (int) Math.min(run.length(), end - pos);
            if (run.l2Entry() != 0) {
                byte[] plain = run.q().readCompressed(run.l2Entry());
                System.arraycopy(plain, (int) (pos & (run.q().clusterSize() - 1)), out, (int) (pos - off), n);
            } else if (!run.zero()) {
                // Direct I/O wants whole aligned sectors: read the covering aligned range.
                long a = run.devOffset() & ~4095L;
                long b = Math.min((run.devOffset() + n + 4095) & ~4095L, run.dev().size());
                long len = Math.max(b - a, 0);
                if (len > io.byteSize() || run.devOffset() + n > run.dev().size()) {
                    throw new IOException("source run at " + pos + " does not fit the bounce buffer");
                }
                try {
                    run.dev().read(a, io.asSlice(0, len)).get(60, TimeUnit.SECONDS);
                } catch (java.util.concurrent.ExecutionException e) {
                    throw new IOException("reading the source at " + pos + ": " + e.getCause().getMessage(), e.getCause());
                } catch (InterruptedException | java.util.concurrent.TimeoutException e) {
                    throw new IOException("reading the source at " + pos + ": " + e, e);
                }
                MemorySegment.copy(io, ValueLayout.JAVA_BYTE, run.devOffset() - a, out, (int) (pos - off), n);
            }
            pos += n;
        }
    }

    private int clusterBits() {
        String cs = ImgCommand.parseOptions(options).get("cluster_size");
        long v = cs == null ? 65536 : io.biostack.block.Sizes.parse(cs);
        return Long.numberOfTrailingZeros(v);
    }

    private static Qcow2Create.Options qcowOptions(Map<String, String> o) {
        Qcow2Create.Options d = Qcow2Create.Options.defaults();
        int cluster = d.clusterSize();
        int refbits = d.refcountBits();
        boolean lazy = false;
        boolean extl2 = false;
        String ctype = d.compressionType();
        String compat = d.compat();
        for (var e : o.entrySet()) {
            String v = e.getValue();
            switch (e.getKey()) {
                case "cluster_size" -> cluster = (int) io.biostack.block.Sizes.parse(v);
                case "refcount_bits" -> refbits = Integer.parseInt(v);
                case "lazy_refcounts" -> lazy = v.equals("on");
                case "extended_l2" -> extl2 = v.equals("on");
                case "compression_type" -> ctype = v;
                case "compat" -> compat = v;
                default -> throw new IllegalArgumentException("Invalid parameter '" + e.getKey() + "' for convert -o");
            }
        }
        return new Qcow2Create.Options(cluster, refbits, lazy, extl2, ctype, "off", compat);
    }

    /**
     * The source's runs, whole, in guest order: asked once (SEEK_DATA/SEEK_HOLE of a raw file, the
     * L2 tables of a qcow2 chain, block status of an export), before anything is copied.
     */
    private static List<Run> map(Source s, long size) throws IOException {
        List<Run> r = new ArrayList<>();
        for (long off = 0; off < size; ) {
            Run run = s.run(off, size - off);
            r.add(run);
            off += run.length();
        }
        return r;
    }

    /** Guest cluster runs ({start, end} pairs) that hold data in the source. */
    private static long[] dataClusters(List<Run> map, long cs) {
        List<Long> r = new ArrayList<>();
        long off = 0;
        for (Run run : map) {
            if (!run.zero()) {
                long a = off / cs;
                long b = (off + run.length() + cs - 1) / cs;
                if (!r.isEmpty() && r.getLast() >= a) {
                    r.set(r.size() - 1, Math.max(r.getLast(), b));
                } else {
                    r.add(a);
                    r.add(b);
                }
            }
            off += run.length();
        }
        return r.stream().mapToLong(Long::longValue).toArray();
    }

    /** qemu-img's cache modes: none is O_DIRECT, the others go through the page cache. */
    private static DirectIoMode dio(String mode, String opt) {
        return switch (mode) {
            case "none", "directsync" -> DirectIoMode.ON;
            case "writeback", "unsafe", "writethrough" -> DirectIoMode.OFF;
            default -> throw new IllegalArgumentException(opt + " takes none, writeback or unsafe, not '" + mode + "'");
        };
    }

    private DirectIoMode srcDio = DirectIoMode.OFF;

    /**
     * A local file's loop settings. The engine follows the cache mode unless --engine says: a
     * file in the page cache goes to the thread engine (plain pread/pwrite, as qemu-img's thread
     * pool), because io_uring hands buffered writes on ext4 to its io-wq workers, and fio measured
     * that here at 225-340 MiB/s against 5.3-5.7 GiB/s for psync (1 MiB writes, QD8, 512 MiB,
     * kernel 6.18); an O_DIRECT file goes to io_uring.
     */
    private LoopConfig file(DirectIoMode dio) {
        EngineKind e = engine != null ? EngineKind.parse(engine)
                : dio == DirectIoMode.ON ? EngineKind.AUTO : EngineKind.THREADS;
        return LoopConfig.defaults().withDirectIo(dio).withEngine(e);
    }

    @Option(names = "--engine", paramLabel = "ENGINE", description = "file I/O engine: uring, threads or auto "
            + "(default: threads for page-cache files, io_uring for -t/-T none)")
    String engine;

    /**
     * The copy's plan, the source's runs in guest order: holes, compressed clusters, and data read
     * from its device, or, for the kernel's copy ({@code out} null), from its file.
     */
    private ConvertPipeline plan(List<Run> map, BlockDevice out, Qcow2Create.Layout layout, boolean fresh) {
        ConvertPipeline pipe = new ConvertPipeline(out, layout, parallel, CHUNK, STALL_NANOS);
        long off = 0;
        for (Run run : map) {
            if (run.zero()) {
                pipe.zero(off, run.length(), fresh);
            } else if (run.l2Entry() != 0) {
                pipe.compressed(run.q(), run.l2Entry(), off & (run.q().clusterSize() - 1), off, run.length());
            } else if (out == null) {
                pipe.fileData(run.file(), run.devOffset(), off, run.length());
            } else {
                pipe.data(run.dev(), run.devOffset(), off, run.length());
            }
            off += run.length();
        }
        phase("plan (" + pipe.chunks() + " chunks)");
        return pipe;
    }

    private void copy(List<Run> map, BlockDevice out, long size, Qcow2Create.Layout layout, boolean fresh,
                      boolean flush) throws Exception {
        ConvertPipeline pipe = plan(map, out, layout, fresh);
        Progress p = new Progress(progress, size);
        pipe.run(p::at);
        if (flush) {
            try {
                out.flush().get(STALL_NANOS, TimeUnit.NANOSECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                throw new IOException("flushing the destination: " + e.getCause().getMessage(), e.getCause());
            }
        }
        p.done();
    }

    /**
     * Whether the kernel copies ({@link ConvertPipeline#runFiles}): both ends local files in the
     * page cache (qemu-img's default modes), no -c, no --engine. The bios of the pipeline serve
     * every other case: O_DIRECT, exports, RBD. {@code -Dbiostack.img.copyRange=false} turns it
     * off, to compare.
     */
    private boolean inKernel(DirectIoMode dstDio) {
        // Regular files only: a block device's size is not its st_size (Files.size says 0), and
        // the loop device's open knows how to ask for it. A backing file that is not a regular
        // file is caught when the chain is open (Source.files).
        return !compress && engine == null && dstDio == DirectIoMode.OFF && srcDio == DirectIoMode.OFF
                && !Leaves.isRemote(src) && !Leaves.isRemote(dst)
                && Files.isRegularFile(Path.of(src)) && (!Files.exists(Path.of(dst)) || Files.isRegularFile(Path.of(dst)))
                && Boolean.parseBoolean(System.getProperty("biostack.img.copyRange", "true"));
    }

    /**
     * Links the one downcall the source's map makes ({@link ColdCalls}: open, lseek and close
     * through {@code syscall(2)}) on a second thread while this one probes the image and reads
     * its header and tables: the first FFM downcall of a process costs ~45 ms (the linker's own
     * start, which the AOT cache does not hold; JDK 25, the release's options). The main
     * thread's first call waits for the holder class this thread is initializing, so nothing is
     * linked twice. The call itself fails harmlessly (EBADF).
     */
    private static void prelink() {
        Thread.ofPlatform().daemon().name("prelink-map").start(() -> ColdCalls.lseek(-1, 0, Fs.SEEK_DATA));
    }

    /** The kernel's copy of the plan ({@link ConvertPipeline#runFiles}), to a fresh destination. */
    private void copyFiles(List<Run> map, long size, Qcow2Create.Layout layout, boolean flush) throws IOException {
        ConvertPipeline pipe = plan(map, null, layout, true);
        Progress p = new Progress(progress, size);
        pipe.runFiles(Path.of(dst), Math.min(parallel, Runtime.getRuntime().availableProcessors()), flush, p::at);
        p.done();
    }

    private Source openSource(boolean inKernel) throws IOException {
        if (Leaves.isRemote(src)) {
            BlockDevice d = Leaves.open("src", src);
            return deviceSource(d, null);
        }
        Path p = Path.of(src);
        if (!Files.exists(p)) {
            throw new IOException("Could not open '" + src + "': No such file or directory");
        }
        String fmt = srcFormat != null ? srcFormat : Qcow2Image.probe(p) ? "qcow2" : "raw";
        phase("probe");
        if (!fmt.equals("raw") && !fmt.equals("qcow2")) {
            throw new IllegalArgumentException("Unknown source format '" + fmt + "' (raw or qcow2)");
        }
        // A raw file is a chain of one layer: its map is SEEK_DATA/SEEK_HOLE, as a loop device's.
        ImgChain chain = ImgChain.open(src, fmt, true, forceShare);
        phase("chain");
        Map<ImgChain.Layer, BlockDevice> devs = new HashMap<>();
        boolean files = inKernel && chain.layers.stream().allMatch(l -> Files.isRegularFile(l.path));
        try {
            for (ImgChain.Layer l : chain.layers) {
                if (!files) {
                    LoopDevice d = LoopDevice.open(l.path, file(srcDio).withReadOnly(true));
                    devs.put(l, d);
                    // a raw file that ends mid-sector: its last sector, then zeros, as qemu reads it
                    d.showPartBlock();
                }
            }
        } catch (IOException | RuntimeException e) {
            devs.values().forEach(BlockDevice::close);
            chain.close();
            throw e;
        }
        return new Source() {
            @Override
            public long size() {
                return chain.size();
            }

            @Override
            public boolean files() {
                return files;
            }

            @Override
            public List<Path> paths() {
                return chain.layers.stream().map(l -> l.path).toList();
            }

            @Override
            public Run run(long off, long max) throws IOException {
                ImgChain.Status st = chain.status(off, max);
                boolean zero = !st.data() || st.zero();
                if (st.compressed()) {
                    return new Run(st.length(), null, null, 0, false, st.l2Entry(), st.layer().q);
                }
                // Clusters come one by one: join the ones that continue this run (the copy cuts it
                // into chunks; a run stops at MAX_RUN so that a huge image's map stays arrays of runs).
                long len = st.length();
                while (off + len < off + max && len < MAX_RUN) {
                    ImgChain.Status n = chain.status(off + len, max - len);
                    boolean nzero = !n.data() || n.zero();
                    if (nzero != zero || n.compressed()
                            || (!zero && (n.layer() != st.layer() || n.offset() != st.offset() + len))) {
                        break;
                    }
                    len += n.length();
                }
                if (zero) {
                    return new Run(len, null, null, 0, true, 0, null);
                }
                // Data that ends inside a sector (a raw file's last bytes) takes the rest of the
                // sector, zeros past the end of the file, as qemu-img's convert_iteration_sectors
                // rounds its block status up to sectors: every run stays whole sectors, as the
                // devices it is written to want.
                len = Math.min((off + len + ImgChain.SECTOR - 1) / ImgChain.SECTOR * ImgChain.SECTOR, off + max) - off;
                return new Run(len, devs.get(st.layer()), st.layer().path, st.offset(), false, 0, null);
            }

            @Override
            public void close() {
                devs.values().forEach(BlockDevice::close);
                chain.close();
            }
        };
    }

    private static Source deviceSource(BlockDevice d, Path file) {
        return new Source() {
            @Override
            public List<Path> paths() {
                return file == null ? List.of() : List.of(file);
            }

            @Override
            public long size() {
                return d.size();
            }

            @Override
            public Run run(long off, long max) {
                Extent e = d.extentAt(off, max);
                long len = Math.max(1, Math.min(e.length(), max));
                boolean zero = (e.flags() & Extent.ZERO) != 0;
                return new Run(len, d, null, off, zero, 0, null);
            }

            @Override
            public void close() {
                d.close();
            }
        };
    }

    /** qemu-img's progress line, {@code (12.34/100%)}, redrawn in place on a terminal. */
    private static final class Progress {
        private final boolean on;
        private final long total;
        private long lastPrinted = -1;

        Progress(boolean on, long total) {
            this.on = on;
            this.total = total;
            at(0);
        }

        void at(long done) {
            if (!on) {
                return;
            }
            long hundredths = total == 0 ? 10000 : done * 10000 / total;
            if (hundredths != lastPrinted) {
                lastPrinted = hundredths;
                System.out.printf("    (%d.%02d/100%%)\r", hundredths / 100, hundredths % 100);
                System.out.flush();
            }
        }

        void done() {
            if (on) {
                at(total);
                System.out.println();
            }
        }
    }
}
