package io.biostack.cli;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

/**
 * The training runs of the release's ahead-of-time caches (JEP 483/514/515). The release build
 * runs {@code java -XX:AOTCacheOutput=CACHE -cp CLASSPATH io.biostack.cli.AotTraining MODE CONTROL}
 * with {@code biostack serve --control CONTROL} running in another process (a stack with a device
 * named {@code lin}), and the JVM keeps the classes the run loaded and linked, and the method
 * profiles it gathered, for every later start of {@code bin/biostack} with that cache.
 *
 * <p>The JVM loads every class of its cache when it starts, so each family of short commands has a
 * cache of just what it runs (bin/biostack picks it by the command):
 * <ul>
 * <li>{@code short} (lib/short.aot, on the launcher's short class path): {@link FastPath}'s
 *     {@code --version} and {@code dm} ls, status, table, stats and a refusal. No picocli.</li>
 * <li>{@code img} (lib/img.aot, short class path): {@link FastPath}'s {@code img info} on a qcow2
 *     and a raw image, human and JSON; its FFM calls (statx) are most of what it loads.</li>
 * <li>{@code luks} (lib/luks.aot, short class path): {@code luks dump} through picocli, on a
 *     small LUKS2 volume made here with a cheap pbkdf2 keyslot.</li>
 * <li>{@code convert} (lib/convert.aot, the whole class path: a convert may read or write an
 *     NBD export over TLS or an RBD image): {@code img convert} on its fast path
 *     ({@link ImgConvert#fastPath}, no picocli) of a small half-allocated image,
 *     raw to qcow2 and back, through the page cache and with {@code -t none -T none}. It holds
 *     the classes a convert loads (user CPU 0.42 s, against 0.54 s with biostack.aot); the FFM
 *     downcall stubs are generated anew every run, which no cache holds: 0.16 to 0.22 s of the
 *     first file open with -t none, and ~45 ms for the one downcall (ColdCalls) that the page
 *     cache's in-kernel copy links.</li>
 * <li>{@code full} (lib/biostack.aot, the whole class path): help and {@code completion bash}
 *     through the whole picocli tree; bench and replay start with it too.</li>
 * <li>{@code serve} (lib/serve.aot, the whole class path, serve's JVM options): {@code serve} of
 *     a file and of a ramdisk in this JVM, up to an NBD client's first read of each; then this
 *     run exits, serve still running. Serve's classes (the NBD server, FFM, io_uring) would have
 *     slowed down every command sharing a cache with it.</li>
 * </ul>
 *
 * A command missing here still runs; only its classes load from the jars.
 */
final class AotTraining {
    /** What went wrong, said once the standard streams are back. */
    private static final List<String> WHY = new java.util.ArrayList<>();

    private AotTraining() {
    }

    /**
     * Runs the training commands and exits.
     *
     * @param args {@code short}, {@code img}, {@code convert}, {@code luks}, {@code full} or {@code serve}, then the control socket
     *     of a running {@code biostack serve --stack} with a device named {@code lin}, in a folder
     *     this run may write its images in; {@code img} reads {@code train.qcow2} there, which the
     *     release script makes first
     * @throws IOException when the training images cannot be written
     * @throws InterruptedException when interrupted while waiting for serve
     */
    public static void main(String[] args) throws IOException, InterruptedException {
        String mode = args[0];
        String ctl = args[1];
        Path dir = Path.of(ctl).toAbsolutePath().getParent();
        PrintStream out = System.out;
        PrintStream err = System.err;
        PrintStream quiet = new PrintStream(OutputStream.nullOutputStream());
        System.setOut(quiet);
        System.setErr(quiet);
        int failed;
        try {
            failed = switch (mode) {
                case "short" -> dm(ctl);
                case "img" -> img(dir);
                case "convert" -> convert(dir);
                case "luks" -> luks(dir);
                case "full" -> full();
                case "serve" -> serve(dir);
                default -> throw new IllegalArgumentException("mode is short, img, convert, luks, full or serve, not " + mode);
            };
        } finally {
            System.setOut(out);
            System.setErr(err);
        }
        if (failed > 0) {
            err.println("biostack: AOT training (" + mode + "): " + failed + " commands failed (dm against " + ctl + ")");
            WHY.forEach(w -> err.println("biostack: AOT training: " + w));
            System.exit(1);
        }
        out.println("biostack: AOT training run (" + mode + ") done");
        // serve's threads are not daemons; the cache is written as the JVM exits
        System.exit(0);
    }

    /** --version and dm on the fast path; returns how many failed. */
    private static int dm(String ctl) {
        int failed = 0;
        loadMain();
        for (int i = 0; i < 3; i++) {
            failed += fastOk("--version");
            failed += fastOk("dm", "--control", ctl, "ls");
            failed += fastOk("dm", "--control", ctl, "status", "lin");
            failed += fastOk("dm", "--control", ctl, "status", "lin", "--json");
            failed += fastOk("dm", "--control", ctl, "table", "lin");
            failed += fastOk("dm", "--control", ctl, "stats");
            failed += fastOk("dm", "--control", ctl, "stats", "--json");
            // a refusal (no such device): exit 1, said on stderr
            failed += FastPath.run(new String[] {"dm", "--control", ctl, "table", "nosuch"}) == 1 ? 0 : 1;
        }
        return failed;
    }

    /** img info on the fast path; returns how many failed. */
    private static int img(Path dir) throws IOException {
        String img = dir.resolve("train.qcow2").toString();
        Path raw = dir.resolve("train.raw");
        try (FileChannel f = FileChannel.open(raw, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            f.truncate(0);
            f.write(ByteBuffer.wrap(new byte[4096]), 0);
        }
        int failed = 0;
        loadMain();
        for (int i = 0; i < 3; i++) {
            failed += fastOk("img", "info", img);
            failed += fastOk("img", "info", "--output=json", img);
            failed += fastOk("img", "info", raw.toString());
        }
        return failed;
    }

    /**
     * img convert as bench/img/run.sh times it, on 8 MiB of which every other 256 KiB holds data:
     * raw to qcow2 and qcow2 to raw, in qemu-img's default cache modes and with -t none -T none;
     * returns how many failed.
     */
    private static int convert(Path dir) throws IOException {
        Path raw = dir.resolve("convert.raw");
        try (FileChannel f = FileChannel.open(raw, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            byte[] data = new byte[256 << 10];
            new java.util.Random(15).nextBytes(data);
            for (long off = 0; off < (8L << 20); off += 512 << 10) {
                f.write(ByteBuffer.wrap(data), off);
            }
            f.truncate(8L << 20);
        }
        String src = raw.toString();
        String q = dir.resolve("convert.qcow2").toString();
        String back = dir.resolve("convert.out").toString();
        int failed = 0;
        for (String[] cache : new String[][] {{}, {"-t", "none", "-T", "none"}}) {
            for (int i = 0; i < 2; i++) {
                Files.deleteIfExists(Path.of(q));
                Files.deleteIfExists(Path.of(back));
                // bin/biostack runs these on ImgConvert's fast path (no picocli): so does the training
                failed += ImgConvert.fastPath(concat(new String[] {"img", "convert"}, cache, new String[] {"-O", "qcow2", src, q})) == 0 ? 0 : 1;
                failed += ImgConvert.fastPath(concat(new String[] {"img", "convert"}, cache, new String[] {"-O", "raw", q, back})) == 0 ? 0 : 1;
                if (Files.mismatch(raw, Path.of(back)) != -1) {
                    WHY.add("img convert " + String.join(" ", cache) + ": the copy back differs from the source");
                    failed++;
                }
            }
        }
        return failed;
    }

    private static String[] concat(String[]... parts) {
        return java.util.Arrays.stream(parts).flatMap(java.util.Arrays::stream).toArray(String[]::new);
    }

    /** bin/biostack starts Main, which calls FastPath: Main and RootCommand belong in the cache. */
    private static void loadMain() {
        try {
            Class.forName(Main.class.getName());
        } catch (ClassNotFoundException e) {
            throw new AssertionError(e);
        }
    }

    private static int fastOk(String... args) {
        return FastPath.run(args) == 0 ? 0 : 1;
    }

    /** luks dump through picocli; returns how many failed. */
    private static int luks(Path dir) throws IOException {
        String luks = dir.resolve("train.luks").toString();
        String key = dir.resolve("train.key").toString();
        Files.writeString(Path.of(key), "training");
        // A sparse 32 MiB file: room for a LUKS2 header (16 MiB) and some data.
        try (FileChannel f = FileChannel.open(Path.of(luks), StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            f.truncate(0);
            f.write(ByteBuffer.wrap(new byte[1]), (32L << 20) - 1);
        }
        int failed = 0;
        // a cheap pbkdf2 keyslot: dump reads no keyslot
        failed += Main.run("luks", "format", luks, "--key-file", key, "--pbkdf", "pbkdf2",
                "--pbkdf-force-iterations", "1000") == 0 ? 0 : 1;
        for (int i = 0; i < 3; i++) {
            failed += Main.run("luks", "dump", luks) == 0 ? 0 : 1;
        }
        return failed;
    }

    /** Help and completion through the whole picocli tree; returns how many failed. */
    private static int full() {
        int failed = 0;
        for (String[] cmd : new String[][] {
                {"--help"}, {"bench", "--help"}, {"serve", "--help"}, {"dm", "--help"}, {"img", "--help"}}) {
            failed += Main.run(cmd) == 0 || cmd[0].equals("dm") ? 0 : 1;
        }
        failed += Main.run("completion", "bash") == 0 ? 0 : 1;
        return failed;
    }

    /**
     * serve of a file (the loop device on io_uring) and of a ramdisk, each on a unix socket, in
     * threads of this JVM, and an NBD client's first read of each; returns how many failed.
     */
    private static int serve(Path dir) throws IOException, InterruptedException {
        Path disk = dir.resolve("serve.img");
        try (FileChannel f = FileChannel.open(disk, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            f.truncate(0);
            f.write(ByteBuffer.wrap(new byte[1]), (64L << 20) - 1);
        }
        int failed = 0;
        String[][] serves = {{"serve", disk.toString(), "--listen", "none", "--socket", dir.resolve("file.sock").toString()},
                {"serve", "--ram", "64M", "--listen", "none", "--socket", dir.resolve("ram.sock").toString()}};
        for (String[] cmd : serves) {
            Path sock = Path.of(cmd[cmd.length - 1]);
            Thread t = Thread.ofPlatform().daemon().name("aot-training-serve").start(() -> Main.run(cmd));
            io.biostack.nbd.client.NbdUri uri = io.biostack.nbd.client.NbdUri.parse("nbd+unix:///?socket=" + sock);
            // serve makes its socket file when it binds and answers once it listens: try again
            // until it does, 30 s at most (far more than it takes)
            io.biostack.nbd.client.NbdClient c = null;
            IOException last = null;
            for (int i = 0; i < 600 && c == null && t.isAlive(); i++) {
                try {
                    c = io.biostack.nbd.client.NbdClient.open("train", uri, io.biostack.nbd.client.NbdClient.Options.defaults());
                } catch (IOException e) {
                    last = e;
                    Thread.sleep(50);
                }
            }
            if (c == null) {
                WHY.add(String.join(" ", cmd) + ": no NBD handshake: " + last);
                failed++;
                continue;
            }
            // shared: the reply is copied in on the client's thread
            try (io.biostack.nbd.client.NbdClient client = c; java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofShared()) {
                client.read(0, arena.allocate(4096, 4096)).get(30, java.util.concurrent.TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
                WHY.add(String.join(" ", cmd) + ": the first read failed: " + e);
                failed++;
            }
        }
        return failed;
    }
}
