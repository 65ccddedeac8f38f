package io.biostack.cli;

import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.layer.qcow2.Qcow2Create;
import io.biostack.layer.qcow2.Qcow2Image;
import io.biostack.loop.DirectIoMode;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.stack.Leaves;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * {@code img convert [-p] [-f FMT] [-O FMT] SRC DST}: copies the allocated data of SRC (raw,
 * qcow2 with its backing chain flattened, an NBD URI, {@code rbd:POOL/IMAGE}) to DST.
 *
 * <p>Only data is read: runs come from the source's map (qcow2 metadata, SEEK_DATA of a raw file,
 * NBD block status), holes and zero runs are skipped on a new file and written as zeroes on a
 * device that already exists. A new qcow2 destination is laid out first with exactly the clusters
 * the source's data needs (each L2 table followed by its clusters in guest order), so the copy
 * writes straight to their place in the file. Reads and writes are bios of up to 1 MiB with at
 * most {@link #DEPTH} in flight; each write is submitted from its read's completion.
 */
@Command(mixinStandardHelpOptions = true, name = "convert", description = "Copy an image's data to another image, file or export (raw, qcow2, nbd://, rbd:).")
final class ImgConvert implements Callable<Integer> {
    /** Copies in flight at once. */
    static final int DEPTH = Integer.getInteger("biostack.img.depth", 16);
    /** Bytes per copy. */
    static final int CHUNK = Integer.getInteger("biostack.img.chunk", 1 << 20);

    @Option(names = "-p", description = "show progress")
    boolean progress;

    @Option(names = "-c", description = "compress the output (qcow2, zlib): each cluster deflated on its own, as qemu-img convert -c")
    boolean compress;

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

    /** One run of the source: data on a device, zeros, or a compressed cluster. */
    private record Run(long length, BlockDevice dev, long devOffset, boolean zero, long l2Entry, Qcow2Image q) {
    }

    /** Where the source's runs come from. */
    private interface Source extends AutoCloseable {
        long size();

        Run run(long off, long max) throws IOException;

        @Override
        void close();
    }

    @Override
    public Integer call() throws Exception {
        DirectIoMode dstDio = dio(cache, "-t");
        srcDio = dio(srcCache, "-T");
        if (!dstFormat.equals("raw") && !dstFormat.equals("qcow2")) {
            throw new IllegalArgumentException("Unknown output format '" + dstFormat + "' (raw or qcow2)");
        }
        long t0 = System.nanoTime();
        try (Source s = openSource()) {
            long size = s.size();
            boolean remoteDst = Leaves.isRemote(dst);
            if (remoteDst && dstFormat.equals("qcow2")) {
                throw new IllegalArgumentException("-O qcow2 needs a file destination, not " + dst);
            }
            if (!remoteDst && Path.of(dst).toAbsolutePath().normalize().equals(
                    Leaves.isRemote(src) ? null : Path.of(src).toAbsolutePath().normalize())) {
                throw new IllegalArgumentException("source and destination are the same file");
            }
            Qcow2Create.Layout layout = null;
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
                long[] runs = dataClusters(s, size, cs);
                Map<String, String> o = ImgCommand.parseOptions(options);
                Progress p = new Progress(progress, size);
                try (Arena arena = Arena.ofShared()) {
                    MemorySegment io = arena.allocate(cs + 8192, 4096); // a cluster, widened to whole sectors
                    Qcow2Create.createCompressed(Path.of(dst), size, qcowOptions(o), runs,
                            (c, buf) -> readCluster(s, size, c, buf, io), p::at);
                }
                p.done();
                timing(t0);
                return 0;
            } else if (dstFormat.equals("qcow2")) {
                long[] runs = dataClusters(s, size, 1L << clusterBits());
                Map<String, String> o = ImgCommand.parseOptions(options);
                layout = Qcow2Create.create(Path.of(dst), size, qcowOptions(o), null, null, runs);
                out = LoopDevice.open(Path.of(dst), LoopConfig.defaults().withDirectIo(dstDio));
            } else {
                try (RandomAccessFile f = new RandomAccessFile(dst, "rw")) {
                    f.setLength(0);
                    f.setLength(size);
                }
                out = LoopDevice.open(Path.of(dst), LoopConfig.defaults().withDirectIo(dstDio));
            }
            try {
                copy(s, out, size, layout, fresh, !cache.equals("unsafe"));
            } finally {
                out.close();
            }
            timing(t0);
        }
        return 0;
    }

    private static void timing(long t0) {
        if (System.getenv("BIOSTACK_TIMING") != null) {
            // For bench/img/run.sh: the work itself, without the JVM's start-up.
            System.err.printf("biostack: convert took %.3f s in process%n", (System.nanoTime() - t0) / 1e9);
        }
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

    /** Guest cluster runs ({start, end} pairs) that hold data in the source. */
    private static long[] dataClusters(Source s, long size, long cs) throws IOException {
        List<Long> r = new ArrayList<>();
        for (long off = 0; off < size; ) {
            Run run = s.run(off, size - off);
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

    private void copy(Source s, BlockDevice out, long size, Qcow2Create.Layout layout, boolean fresh, boolean flush)
            throws Exception {
        AtomicReference<Throwable> failure = new AtomicReference<>();
        try (Arena arena = Arena.ofShared()) {
            BlockingQueue<MemorySegment> free = new ArrayBlockingQueue<>(DEPTH);
            for (int i = 0; i < DEPTH; i++) {
                free.add(out.allocateIoMemory(CHUNK, arena));
            }
            Progress p = new Progress(progress, size);
            for (long off = 0; off < size && failure.get() == null; ) {
                Run run = s.run(off, size - off);
                if (run.zero()) {
                    if (!fresh) {
                        zeroes(out, off, run.length(), free, failure);
                    }
                } else if (run.l2Entry() != 0) {
                    byte[] plain = run.q().readCompressed(run.l2Entry());
                    long inCluster = off & (run.q().clusterSize() - 1);
                    // A 2 MiB cluster is two buffers' worth.
                    for (long done = 0; done < run.length() && failure.get() == null; ) {
                        MemorySegment buf = take(free, failure);
                        if (buf == null) {
                            break;
                        }
                        int n = (int) Math.min(CHUNK, run.length() - done);
                        MemorySegment.copy(MemorySegment.ofArray(plain), inCluster + done, buf, 0, n);
                        write(out, layout, off + done, buf, n, free, failure);
                        done += n;
                    }
                } else {
                    for (long done = 0; done < run.length() && failure.get() == null; ) {
                        long guest = off + done;
                        int n = (int) Math.min(CHUNK, run.length() - done);
                        if (layout != null) {
                            long[] h = layout.host(guest);
                            n = (int) Math.min(n, h[1]);
                        }
                        MemorySegment buf = take(free, failure);
                        if (buf == null) {
                            break;
                        }
                        int len = n;
                        long dOff = run.devOffset() + done;
                        run.dev().read(dOff, buf.asSlice(0, len)).whenComplete((v, t) -> {
                            if (t != null) {
                                fail(failure, free, buf, t);
                                return;
                            }
                            write(out, layout, guest, buf, len, free, failure);
                        });
                        done += n;
                    }
                }
                off += run.length();
                p.at(off);
            }
            // Wait for every copy: all buffers back in the pool.
            for (int i = 0; i < DEPTH; i++) {
                if (take(free, null) == null) {
                    break;
                }
            }
            if (failure.get() != null) {
                Throwable t = failure.get();
                throw t instanceof Exception e ? e : new IOException(t);
            }
            if (flush) {
                out.flush().get(600, TimeUnit.SECONDS);
            }
            p.done();
        }
    }

    private static MemorySegment take(BlockingQueue<MemorySegment> free, AtomicReference<Throwable> failure)
            throws InterruptedException {
        while (true) {
            MemorySegment m = free.poll(100, TimeUnit.MILLISECONDS);
            if (m != null) {
                return m;
            }
            if (failure != null && failure.get() != null) {
                return null;
            }
        }
    }

    private static void write(BlockDevice out, Qcow2Create.Layout layout, long guest, MemorySegment buf, int len,
                              BlockingQueue<MemorySegment> free, AtomicReference<Throwable> failure) {
        long target = guest;
        if (layout != null) {
            target = layout.host(guest)[0];
        }
        out.write(target, buf.asSlice(0, len)).whenComplete((v, t) -> {
            if (t != null) {
                fail(failure, free, buf, t);
            } else {
                free.add(buf);
            }
        });
    }

    private static void zeroes(BlockDevice out, long off, long len, BlockingQueue<MemorySegment> free,
                               AtomicReference<Throwable> failure) throws InterruptedException {
        MemorySegment token = take(free, failure);
        if (token == null) {
            return;
        }
        out.writeZeroes(off, len, false).whenComplete((v, t) -> {
            if (t != null) {
                fail(failure, free, token, t);
            } else {
                free.add(token);
            }
        });
    }

    private static void fail(AtomicReference<Throwable> failure, BlockingQueue<MemorySegment> free, MemorySegment buf,
                             Throwable t) {
        failure.compareAndSet(null, t instanceof java.util.concurrent.CompletionException && t.getCause() != null
                ? t.getCause() : t);
        free.add(buf);
    }


    private Source openSource() throws IOException {
        if (Leaves.isRemote(src)) {
            BlockDevice d = Leaves.open("src", src);
            return deviceSource(d);
        }
        Path p = Path.of(src);
        if (!Files.exists(p)) {
            throw new IOException("Could not open '" + src + "': No such file or directory");
        }
        String fmt = srcFormat != null ? srcFormat : Qcow2Image.probe(p) ? "qcow2" : "raw";
        if (fmt.equals("raw")) {
            return deviceSource(LoopDevice.open(p, LoopConfig.defaults().withReadOnly(true).withDirectIo(srcDio)));
        }
        if (!fmt.equals("qcow2")) {
            throw new IllegalArgumentException("Unknown source format '" + fmt + "' (raw or qcow2)");
        }
        ImgChain chain = ImgChain.open(src, "qcow2", true);
        Map<ImgChain.Layer, BlockDevice> devs = new HashMap<>();
        try {
            for (ImgChain.Layer l : chain.layers) {
                devs.put(l, LoopDevice.open(l.path, LoopConfig.defaults().withReadOnly(true).withDirectIo(srcDio)));
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
            public Run run(long off, long max) throws IOException {
                ImgChain.Status st = chain.status(off, max);
                boolean zero = !st.data() || st.zero();
                if (st.compressed()) {
                    return new Run(st.length(), null, 0, false, st.l2Entry(), st.layer().q);
                }
                // Clusters come one by one: join the ones that continue this run (up to CHUNK of data).
                long len = st.length();
                while (off + len < off + max && (zero || len < CHUNK)) {
                    ImgChain.Status n = chain.status(off + len, max - len);
                    boolean nzero = !n.data() || n.zero();
                    if (nzero != zero || n.compressed()
                            || (!zero && (n.layer() != st.layer() || n.offset() != st.offset() + len))) {
                        break;
                    }
                    len += n.length();
                }
                if (zero) {
                    return new Run(len, null, 0, true, 0, null);
                }
                return new Run(len, devs.get(st.layer()), st.offset(), false, 0, null);
            }

            @Override
            public void close() {
                devs.values().forEach(BlockDevice::close);
                chain.close();
            }
        };
    }

    private static Source deviceSource(BlockDevice d) {
        return new Source() {
            @Override
            public long size() {
                return d.size();
            }

            @Override
            public Run run(long off, long max) {
                Extent e = d.extentAt(off, max);
                long len = Math.max(1, Math.min(e.length(), max));
                boolean zero = (e.flags() & Extent.ZERO) != 0;
                return new Run(len, d, off, zero, 0, null);
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
