package io.biostack.cli;

import io.biostack.block.ImageLocking;
import io.biostack.block.Sizes;
import io.biostack.file.QemuLocks;
import io.biostack.layer.qcow2.Qcow2Check;
import io.biostack.layer.qcow2.Qcow2Create;
import io.biostack.layer.qcow2.Qcow2Image;
import io.biostack.sys.Falloc;
import io.biostack.sys.Fcntl;
import io.biostack.sys.Libc;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintStream;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code biostack img}: qemu-img's subset (create, info, check, map, convert) with its flags, its
 * human output and its JSON field names, so scripts written for qemu-img read biostack's output.
 */
@Command(mixinStandardHelpOptions = true, name = "img", description = "Create, inspect, check, map and convert disk images (qemu-img's subset).",
        subcommands = {ImgCommand.Create.class, ImgCommand.Info.class, ImgCommand.Check.class,
                ImgCommand.MapCmd.class, ImgConvert.class})
public final class ImgCommand implements Runnable {
    @Spec
    CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    /** {@code img create -f qcow2|raw [-o OPTS] [-b BACKING -F FMT] FILE [SIZE]}. */
    @Command(mixinStandardHelpOptions = true, name = "create", description = "Create an image (qcow2 or raw); SIZE defaults to the backing file's.")
    static final class Create implements Callable<Integer> {
        @Spec
        CommandSpec spec;

        @Option(names = "-f", paramLabel = "FMT", defaultValue = "raw", description = "qcow2 or raw (default raw)")
        String format;

        @Option(names = "-o", paramLabel = "OPTS", description = "cluster_size=, refcount_bits=, lazy_refcounts=on|off, "
                + "extended_l2=on|off, compression_type=zlib|zstd, preallocation=off|metadata|falloc|full, compat=1.1|0.10")
        List<String> options = new ArrayList<>();

        @Option(names = "-b", paramLabel = "BACKING", description = "backing file (qcow2 only)")
        String backing;

        @Option(names = "-F", paramLabel = "FMT", description = "the backing file's format (raw or qcow2)")
        String backingFormat;

        @Option(names = {"-q"}, description = "quiet")
        boolean quiet;

        @Parameters(index = "0", paramLabel = "FILE")
        Path file;

        @Parameters(index = "1", arity = "0..1", paramLabel = "SIZE", description = "virtual size (4k, 1M, 2G)")
        String sizeText;

        @Override
        public Integer call() throws IOException {
            Map<String, String> o = parseOptions(options);
            Long size = sizeText == null ? null : Sizes.parse(sizeText);
            if (format.equals("qcow2")) {
                // -o backing_file=, backing_fmt= are -b and -F (qemu-img's options): the same checks apply.
                backing = o.containsKey("backing_file") ? o.remove("backing_file") : backing;
                backingFormat = o.containsKey("backing_fmt") ? o.remove("backing_fmt") : backingFormat;
            }
            if (backing != null) {
                if (!format.equals("qcow2")) {
                    throw bad("-b is only supported with -f qcow2");
                }
                String full = ImgChain.fullBackingName(file.toString(), backing);
                Path bp = Path.of(full);
                // The image is truncated next: as its own backing file, the data it was to be an
                // overlay of would be gone. qemu-img compares the names (bdrv_img_create) and
                // misses an absolute path or a symlink; the files are compared here.
                if (Files.exists(file) && Files.exists(bp) && Files.isSameFile(file, bp)) {
                    throw new IOException(file + ": Error: Trying to create an image with the same filename as the backing file");
                }
                if (backingFormat == null) {
                    String detected = Files.exists(bp) && Qcow2Image.probe(bp) ? "qcow2" : "raw";
                    throw new IOException(file + ": Backing file specified without backing format\nDetected format of "
                            + detected + ".");
                }
                if (!backingFormat.equals("raw") && !backingFormat.equals("qcow2")) {
                    throw bad("Unknown backing format '" + backingFormat + "' (raw or qcow2)");
                }
                // Opened even when the size is given, as bdrv_img_create does (qemu-img create without
                // -u): a backing file that is missing or not of its format is refused, not recorded.
                // Shared, as bdrv_img_create opens it (BDRV_OPT_FORCE_SHARE): an overlay over an
                // image in use is how a live snapshot starts.
                try (ImgChain c = ImgChain.open(full, backingFormat, false, true)) {
                    size = size == null ? c.size() : size;
                } catch (IOException e) {
                    throw new IOException(file + ": " + e.getMessage() + "\nCould not open backing image.", e);
                }
            }
            if (size == null) {
                throw bad("Image creation needs a size parameter");
            }
            if (size < 0) {
                throw bad("Invalid image size specified");
            }
            switch (format) {
                case "raw" -> createRaw(o, size);
                case "qcow2" -> createQcow2(o, size);
                default -> throw bad("Unknown file format '" + format + "' (qcow2 or raw)");
            }
            return 0;
        }

        private void createRaw(Map<String, String> o, long size) throws IOException {
            String prealloc = o.getOrDefault("preallocation", "off");
            for (String k : o.keySet()) {
                if (!k.equals("preallocation")) {
                    throw bad("Invalid parameter '" + k + "' for raw");
                }
            }
            if (!prealloc.equals("off") && !prealloc.equals("falloc") && !prealloc.equals("full")) {
                throw bad("Parameter 'preallocation' does not accept value '" + prealloc + "'");
            }
            say("Formatting '" + file + "', fmt=raw size=" + size
                    + (prealloc.equals("off") ? "" : " preallocation=" + prealloc));
            try (ImageLocking.Held lock = QemuLocks.onFile(file, true);
                 RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
                f.setLength(0);
                f.setLength(size);
                preallocate(prealloc, 0, size);
            }
        }

        private void createQcow2(Map<String, String> o, long size) throws IOException {
            Qcow2Create.Options d = Qcow2Create.Options.defaults();
            int cluster = d.clusterSize();
            int refbits = d.refcountBits();
            boolean lazy = false;
            boolean extl2 = false;
            String ctype = d.compressionType();
            String prealloc = d.preallocation();
            String compat = d.compat();
            for (var e : o.entrySet()) {
                String v = e.getValue();
                switch (e.getKey()) {
                    case "cluster_size" -> cluster = (int) Math.min(Integer.MAX_VALUE, Sizes.parse(v));
                    case "refcount_bits" -> refbits = number(e.getKey(), v);
                    case "lazy_refcounts" -> lazy = onOff(e.getKey(), v);
                    case "extended_l2" -> extl2 = onOff(e.getKey(), v);
                    case "compression_type" -> ctype = v;
                    case "preallocation" -> prealloc = v;
                    case "compat" -> compat = v;
                    default -> throw bad("Invalid parameter '" + e.getKey() + "'");
                }
            }
            Qcow2Create.Options opts;
            try {
                opts = new Qcow2Create.Options(cluster, refbits, lazy, extl2, ctype, prealloc, compat);
            } catch (IllegalArgumentException e) {
                throw bad(e.getMessage());
            }
            say("Formatting '" + file + "', fmt=qcow2 cluster_size=" + cluster + " extended_l2=" + (extl2 ? "on" : "off")
                    + " compression_type=" + opts.compressionType() + (prealloc.equals("off") ? "" : " preallocation=" + prealloc)
                    + " size=" + size + (o.containsKey("compat") ? " compat=" + compat : "")
                    + (backing == null ? "" : " backing_file=" + backing + " backing_fmt=" + backingFormat)
                    + " lazy_refcounts=" + (lazy ? "on" : "off") + " refcount_bits=" + refbits);
            // qemu's write locks before the truncate (QemuLocks.onFile): an image that qemu-nbd,
            // qemu or a biostack stack has open is refused, not emptied under it.
            try (ImageLocking.Held lock = QemuLocks.onFile(file, true)) {
                Qcow2Create.Layout l;
                try {
                    l = Qcow2Create.create(file, size, opts, backing, backing == null ? null : backingFormat, null);
                } catch (IllegalArgumentException e) {
                    throw bad(e.getMessage());
                }
                if (prealloc.equals("falloc")) {
                    preallocate(prealloc, 0, l.end);
                }
            }
        }

        private void preallocate(String mode, long from, long to) throws IOException {
            if (mode.equals("off") || mode.equals("metadata") || to <= from) {
                return;
            }
            if (mode.equals("falloc")) {
                int fd = Libc.open(file.toString(), Fcntl.O_RDWR | Fcntl.O_CLOEXEC, 0);
                if (fd < 0) {
                    throw new IOException(file + ": open failed, errno " + -fd);
                }
                try {
                    int r = Libc.fallocate(fd, Falloc.FALLOC_FL_KEEP_SIZE, from, to - from);
                    if (r < 0) {
                        throw new IOException(file + ": fallocate failed, errno " + -r);
                    }
                } finally {
                    Libc.close(fd);
                }
                return;
            }
            // full: write zeros (qcow2's data clusters were already written by Qcow2Create)
            if (format.equals("raw")) {
                try (var ch = java.nio.channels.FileChannel.open(file, java.nio.file.StandardOpenOption.WRITE)) {
                    java.nio.ByteBuffer z = java.nio.ByteBuffer.allocateDirect(1 << 20);
                    for (long p = from; p < to; ) {
                        int n = (int) Math.min(z.capacity(), to - p);
                        z.clear().limit(n);
                        while (z.hasRemaining()) {
                            p += ch.write(z, p);
                        }
                    }
                    ch.force(true);
                }
            }
        }

        private void say(String s) {
            if (!quiet) {
                System.out.println(s);
            }
        }

        private ParameterException bad(String msg) {
            return new ParameterException(spec.commandLine(), msg);
        }

        private int number(String k, String v) {
            try {
                return Integer.parseInt(v);
            } catch (NumberFormatException e) {
                throw bad("Parameter '" + k + "' expects a number, not '" + v + "'");
            }
        }

        private boolean onOff(String k, String v) {
            return switch (v) {
                case "on", "true", "yes" -> true;
                case "off", "false", "no" -> false;
                default -> throw bad("Parameter '" + k + "' expects 'on' or 'off'");
            };
        }
    }

    /** {@code a=1,b=2} (several -o accumulate), as qemu's QemuOpts. */
    static Map<String, String> parseOptions(List<String> opts) {
        Map<String, String> r = new LinkedHashMap<>();
        for (String group : opts) {
            for (String kv : group.split(",")) {
                if (kv.isEmpty()) {
                    continue;
                }
                int eq = kv.indexOf('=');
                if (eq < 0) {
                    throw new IllegalArgumentException("Invalid option '" + kv + "' (expected KEY=VALUE)");
                }
                r.put(kv.substring(0, eq), kv.substring(eq + 1));
            }
        }
        return r;
    }

    /** {@code img info [--output=json] [--backing-chain] FILE}. */
    @Command(mixinStandardHelpOptions = true, name = "info", description = "Show an image's size, format, options, backing file and snapshots.")
    static final class Info implements Callable<Integer> {
        @Option(names = "--output", paramLabel = "FMT", defaultValue = "human", description = "human or json")
        String output;

        @Option(names = "-f", paramLabel = "FMT", description = "raw or qcow2 (probed when omitted)")
        String format;

        @Option(names = "--backing-chain", description = "also every backing file")
        boolean chain;

        @Option(names = {"-U", "--force-share"}, description = "read an image that another process writes (qemu-img's -U): no locks, no consistency")
        boolean forceShare;

        @Parameters(index = "0", paramLabel = "FILE")
        String file;

        @Override
        public Integer call() throws IOException {
            return info(file, format, chain, output, forceShare);
        }

        static int info(String file, String format, boolean chain, String output) throws IOException {
            return info(file, format, chain, output, false);
        }

        /**
         * Prints what {@code img info} prints; {@link FastPath} calls this too. It prints only
         * once every layer has been read, so a failure prints nothing.
         *
         * @param file   the image
         * @param format raw, qcow2, or null to probe
         * @param chain  also every backing file
         * @param output human or json
         * @param forceShare -U: no locks, so an image another process writes is read anyway
         * @return the exit code, 0
         * @throws IOException when an image can't be read
         */
        static int info(String file, String format, boolean chain, String output, boolean forceShare) throws IOException {
            boolean json = json(output);
            try (ImgChain c = ImgChain.open(file, format, chain, forceShare)) {
                List<String> parts = new ArrayList<>();
                for (ImgChain.Layer l : c.layers) {
                    parts.add(json ? ImgInfo.json(l, chain ? 1 : 0) : ImgInfo.human(l));
                }
                if (json) {
                    System.out.println(chain ? "[" + String.join(",", parts) + "\n]" : parts.get(0));
                } else {
                    System.out.print(String.join("\n", parts));
                }
            }
            return 0;
        }
    }

    static boolean json(String output) {
        return switch (output) {
            case "json" -> true;
            case "human" -> false;
            default -> throw new IllegalArgumentException("--output must be 'human' or 'json'");
        };
    }

    /** {@code img check [-r leaks|all] [--output=json] FILE}: exit 0 clean, 2 corrupt, 3 leaks only. */
    @Command(mixinStandardHelpOptions = true, name = "check", description = {"Check a qcow2 image's metadata; -r repairs.",
            "Exit status: 0 clean, 1 check failed, 2 corruptions, 3 leaks only (as qemu-img)."})
    static final class Check implements Callable<Integer> {
        @Option(names = "-r", paramLabel = "WHAT", description = "repair: leaks or all")
        String repair;

        @Option(names = "--output", paramLabel = "FMT", defaultValue = "human", description = "human or json")
        String output;

        @Option(names = "-f", paramLabel = "FMT", description = "qcow2 (probed when omitted)")
        String format;

        @Option(names = {"-q"}, description = "quiet")
        boolean quiet;

        @Option(names = {"-U", "--force-share"}, description = "read an image that another process writes (qemu-img's -U): no locks, no consistency")
        boolean forceShare;

        @Parameters(index = "0", paramLabel = "FILE")
        String file;

        @Override
        public Integer call() throws IOException {
            boolean json = json(output);
            int fix = switch (repair == null ? "" : repair) {
                case "" -> 0;
                case "leaks" -> Qcow2Check.REPAIR_LEAKS;
                case "all" -> Qcow2Check.REPAIR_ALL;
                default -> throw new IllegalArgumentException("Unknown option value for -r (expecting 'leaks' or 'all'): " + repair);
            };
            Path p = Path.of(file);
            String fmt = format != null ? format : Qcow2Image.probe(p) ? "qcow2" : "raw";
            if (!fmt.equals("qcow2")) {
                System.err.println("qemu-img: This image format does not support checks");
                return 63;
            }
            if (forceShare && fix != 0) {
                throw new IllegalArgumentException("force-share=on can only be used with read-only images"); // qemu-img's words
            }
            Qcow2Check.Result r;
            // -r: Qcow2Image's own write lock. Else qemu's reader locks, as qemu-img check's
            // read-only open without -U: metadata that a writer changes would check as corrupt.
            try (ImageLocking.Held lock = fix != 0 || forceShare ? ImageLocking.NONE : QemuLocks.onFile(p, false);
                 Qcow2Image img = Qcow2Image.open(p, fix != 0)) {
                r = Qcow2Check.check(img, System.err, fix);
            }
            if (r.failure() != null) {
                System.err.println("biostack: Check failed: " + r.failure());
                return 1;
            }
            if (json) {
                System.out.println(ImgInfo.checkJson(file, r));
            } else if (!quiet) {
                ImgInfo.checkHuman(System.out, r);
            }
            int code = r.exitCode();
            if (code == 1) {
                System.err.println("biostack: Check failed");
            }
            return code;
        }
    }

    /** {@code img map [--output=json] FILE}. */
    @Command(mixinStandardHelpOptions = true, name = "map", description = "Show which ranges of an image hold data, zeros, or come from a backing file.")
    static final class MapCmd implements Callable<Integer> {
        @Option(names = "--output", paramLabel = "FMT", defaultValue = "human", description = "human or json")
        String output;

        @Option(names = "-f", paramLabel = "FMT", description = "raw or qcow2 (probed when omitted)")
        String format;

        @Option(names = {"-U", "--force-share"}, description = "read an image that another process writes (qemu-img's -U): no locks, no consistency")
        boolean forceShare;

        @Parameters(index = "0", paramLabel = "FILE")
        String file;

        @Override
        public Integer call() throws IOException {
            boolean json = json(output);
            try (ImgChain c = ImgChain.open(file, format, true, forceShare)) {
                return ImgInfo.map(c, json, System.out);
            }
        }
    }

    static String lower(String s) {
        return s.toLowerCase(Locale.ROOT);
    }

    static void printErr(PrintStream err, String s) {
        err.println(s);
    }
}
