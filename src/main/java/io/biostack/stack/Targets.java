package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.block.Sizes;
import io.biostack.file.EngineKind;
import io.biostack.layer.Delay;
import io.biostack.layer.Dust;
import io.biostack.layer.ErrorTarget;
import io.biostack.layer.Flakey;
import io.biostack.layer.Layers;
import io.biostack.layer.Leg;
import io.biostack.layer.Linear;
import io.biostack.layer.Mirror;
import io.biostack.layer.Striped;
import io.biostack.layer.Target;
import io.biostack.layer.Zero;
import io.biostack.layer.crypt.Crypt;
import io.biostack.layer.crypt.Luks;
import io.biostack.layer.part.Partition;
import io.biostack.layer.part.Partitions;
import io.biostack.layer.snapshot.Snapshot;
import io.biostack.layer.snapshot.SnapshotOrigin;
import io.biostack.loop.DirectIoMode;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.rbd.RbdDevice;
import io.biostack.rbd.RbdOptions;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Every target a stack file may name, in one table: adding a target is one {@link #register}
 * line and a parse function.
 *
 * <p>A target is parsed in two steps so that a stack file's mistakes are found before anything
 * opens: {@link Kind#parse} checks the arguments and names the devices they refer to (a
 * {@link Spec}); {@link Spec#open} builds the device once those devices are open.
 *
 * <table>
 * <caption>Targets</caption>
 * <tr><td>{@code loop FILE [direct-io=on|off|auto] [offset=N] [sizelimit=N] [sector-size=N] [read-only] [size=N]}</td><td>leaf</td></tr>
 * <tr><td>{@code ram SIZE [sector-size=N] [read-only]}</td><td>leaf</td></tr>
 * <tr><td>{@code partition DEV N}</td><td>leaf (a window, as the kernel's partitions)</td></tr>
 * <tr><td>{@code nbd URI [connections=N] [timeout=DURATION]}</td><td>leaf: a remote NBD export ({@link Leaves})</td></tr>
 * <tr><td>{@code rbd POOL/IMAGE [id=NAME] [conf=PATH] [keyring=PATH] [size=SIZE] [timeout=SECONDS]}</td><td>leaf (a Ceph RBD image)</td></tr>
 * <tr><td>{@code linear DEV OFFSET}</td><td>dm-linear</td></tr>
 * <tr><td>{@code striped N CHUNK (DEV OFFSET)×N}</td><td>dm-stripe</td></tr>
 * <tr><td>{@code mirror [core <#args> REGION [sync|nosync]] [N] (DEV OFFSET)+ [<#features> handle_errors]}</td><td>dm-raid1</td></tr>
 * <tr><td>{@code error}, {@code zero}</td><td>need START LENGTH</td></tr>
 * <tr><td>{@code flakey DEV OFFSET UP DOWN [<#args> FEATURES...]}</td><td>dm-flakey</td></tr>
 * <tr><td>{@code delay DEV OFFSET MS [DEV OFFSET MS [DEV OFFSET MS]]}</td><td>dm-delay</td></tr>
 * <tr><td>{@code dust DEV OFFSET BLKSZ}</td><td>dm-dust</td></tr>
 * <tr><td>{@code crypt CIPHER KEYHEX IV_OFFSET DEV OFFSET [[<#opts>] sector_size:N iv_large_sectors]}</td><td>dm-crypt</td></tr>
 * <tr><td>{@code luks DEV keyfile=PATH|passphrase=TEXT}</td><td>cryptsetup open</td></tr>
 * <tr><td>{@code snapshot ORIGIN COW P|N CHUNK}, {@code snapshot-origin DEV}</td><td>dm-snapshot</td></tr>
 * </table>
 * Offsets, lengths and chunk sizes are 512-byte sectors, or sizes with a suffix (4k, 1M, 2G).
 */
public final class Targets {
    /** Looks up devices opened before this one. */
    @FunctionalInterface
    public interface Resolver {
        /** The open device called {@code name}. */
        BlockDevice device(String name);
    }

    /** A parsed line, ready to open once the devices it names are open. */
    public interface Spec {
        /** The devices this line is built on. */
        List<String> deps();

        /**
         * Builds the device. {@code length} is the segment's bytes, or -1 for the target's
         * natural size (whole-device lines). Leaves return any {@link BlockDevice}; mapped
         * targets return a {@link Target}.
         */
        BlockDevice open(String name, long length, Resolver r) throws IOException;
    }

    /** A kind of target: its name, whether it is a leaf, and its argument parser. */
    public record Kind(String name, boolean leaf, Parser parser) {
        Spec parse(List<String> args) {
            return parser.parse(new Args(name, args));
        }
    }

    /** Parses a target's arguments; throws {@link IllegalArgumentException} saying what is wrong. */
    @FunctionalInterface
    public interface Parser {
        /** The spec of one line from its arguments. */
        Spec parse(Args a);
    }

    private static final Map<String, Kind> KINDS = new TreeMap<>();

    static {
        register("loop", true, Targets::loop);
        register("ram", true, Targets::ram);
        register("partition", true, Targets::partition);
        register("nbd", true, Leaves::nbd);
        register("rbd", true, Targets::rbd);
        register("linear", false, Targets::linear);
        register("striped", false, Targets::striped);
        register("mirror", false, Targets::mirror);
        register("error", false, a -> fixed(a, (n, len) -> new ErrorTarget(n, len)));
        register("zero", false, a -> fixed(a, (n, len) -> new Zero(n, len)));
        register("flakey", false, Targets::flakey);
        register("delay", false, Targets::delay);
        register("dust", false, Targets::dust);
        register("crypt", false, Targets::crypt);
        register("luks", false, Targets::luks);
        register("snapshot", false, Targets::snapshot);
        register("snapshot-origin", false, Targets::snapshotOrigin);
        register("log-writes", false, LogWritesParser::parse);
        register("qcow2", false, Qcow2Target::parse);
    }

    private Targets() {
    }

    /** Adds a target kind; the stack file and reload tables can name it from then on. */
    public static synchronized void register(String name, boolean leaf, Parser parser) {
        KINDS.put(name, new Kind(name, leaf, parser));
    }

    /** The kind called {@code name}, or null. */
    public static synchronized Kind kind(String name) {
        return KINDS.get(name);
    }

    /** The names of every registered target, sorted. */
    public static synchronized List<String> names() {
        return List.copyOf(KINDS.keySet());
    }

    // ---- argument reading ------------------------------------------------------------------

    /** The arguments of one line, read in order, with messages that name the target. */
    public static final class Args {
        private final String target;
        private final List<String> args;
        private int pos;
        final List<String> deps = new ArrayList<>();

        Args(String target, List<String> args) {
            this.target = target;
            this.args = args;
        }

        /** True while arguments are left. */
        public boolean hasNext() {
            return pos < args.size();
        }

        /** The next argument, not consumed. */
        public String peek() {
            return args.get(pos);
        }

        /** Arguments not read yet. */
        public int left() {
            return args.size() - pos;
        }

        /** The next argument; {@code what} names it when it is missing. */
        public String next(String what) {
            if (pos >= args.size()) {
                throw bad("missing " + what);
            }
            return args.get(pos++);
        }

        /** A device name; counted as a dependency. */
        public String dev(String what) {
            String d = next(what);
            deps.add(d);
            return d;
        }

        /** Sectors or a size with suffix, in bytes. */
        public long bytes(String what) {
            String s = next(what);
            try {
                return StackFile.parseSectorsOrSize(s);
            } catch (IllegalArgumentException e) {
                throw bad(what + " '" + s + "' is not a number of sectors or a size (4k, 1M, 2G)");
            }
        }

        /** A plain size in bytes (suffixes allowed, no sectors). */
        public long size(String what, String s) {
            try {
                return Sizes.parse(s);
            } catch (IllegalArgumentException e) {
                throw bad(what + ": " + e.getMessage());
            }
        }

        /** The next argument as a non-negative whole number; {@code what} names it in messages. */
        public long number(String what) {
            String s = next(what);
            try {
                long v = Long.parseLong(s);
                if (v < 0) {
                    throw new NumberFormatException();
                }
                return v;
            } catch (NumberFormatException e) {
                throw bad(what + " '" + s + "' is not a number");
            }
        }

        /** Fails when arguments are left over. */
        public void end() {
            if (pos < args.size()) {
                throw bad("unexpected argument '" + args.get(pos) + "'");
            }
        }

        /** An exception that names the target and says {@code why}, for the caller to throw. */
        public IllegalArgumentException bad(String why) {
            return new IllegalArgumentException(target + ": " + why);
        }

        Spec spec(Opener o) {
            List<String> d = List.copyOf(deps);
            return new Spec() {
                @Override public List<String> deps() { return d; }
                @Override public BlockDevice open(String name, long length, Resolver r) throws IOException {
                    return o.open(name, length, r);
                }
            };
        }
    }

    @FunctionalInterface
    interface Opener {
        BlockDevice open(String name, long length, Resolver r) throws IOException;
    }

    private static long natural(long length, long available, String what) {
        if (length < 0) {
            return available;
        }
        return length;
    }

    // ---- leaves ----------------------------------------------------------------------------

    private static Spec loop(Args a) {
        Path file = Path.of(a.next("FILE"));
        LoopConfig cfg = LoopConfig.defaults();
        while (a.hasNext()) {
            String o = a.next("option");
            int eq = o.indexOf('=');
            String k = eq < 0 ? o : o.substring(0, eq);
            String v = eq < 0 ? null : o.substring(eq + 1);
            switch (k) {
                case "read-only", "ro" -> cfg = cfg.withReadOnly(true);
                case "direct-io" -> cfg = cfg.withDirectIo(DirectIoMode.parse(value(a, k, v)));
                case "offset" -> cfg = cfg.withOffset(a.size(k, value(a, k, v)));
                case "sizelimit" -> cfg = cfg.withSizeLimit(a.size(k, value(a, k, v)));
                case "sector-size" -> cfg = cfg.withLogicalBlockSize((int) a.size(k, value(a, k, v)));
                case "size" -> cfg = cfg.withCreateSize(a.size(k, value(a, k, v)));
                case "engine" -> cfg = cfg.withEngine(EngineKind.valueOf(value(a, k, v).toUpperCase(java.util.Locale.ROOT)));
                default -> throw a.bad("unknown option '" + o + "' (direct-io=, offset=, sizelimit=, sector-size=, read-only, size=, engine=)");
            }
        }
        LoopConfig c = cfg;
        return a.spec((name, len, r) -> LoopDevice.open(name, file, c));
    }

    private static String value(Args a, String key, String v) {
        if (v == null || v.isEmpty()) {
            throw a.bad(key + " needs a value: " + key + "=...");
        }
        return v;
    }

    private static Spec ram(Args a) {
        long size = a.size("SIZE", a.next("SIZE"));
        int lbs = 512;
        boolean ro = false;
        while (a.hasNext()) {
            String o = a.next("option");
            if (o.startsWith("sector-size=")) {
                lbs = (int) a.size("sector-size", o.substring(12));
            } else if (o.equals("read-only") || o.equals("ro")) {
                ro = true;
            } else {
                throw a.bad("unknown option '" + o + "' (sector-size=, read-only)");
            }
        }
        int l = lbs;
        boolean readOnly = ro;
        return a.spec((name, len, r) -> new RamDisk(name, size, l, readOnly));
    }

    private static Spec partition(Args a) {
        String disk = a.dev("DEV");
        long n = a.number("partition number");
        a.end();
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(disk);
            for (Partition p : Partitions.scan(d)) {
                if (p.number() == n) {
                    return new Linear(name, d, p.startBytes(), p.lengthBytes());
                }
            }
            throw new IllegalArgumentException(disk + " has no partition " + n);
        });
    }

    private static Spec rbd(Args a) {
        List<String> args = new ArrayList<>();
        while (a.hasNext()) {
            args.add(a.next("argument"));
        }
        RbdOptions o;
        try {
            o = RbdOptions.parse(args);
        } catch (IllegalArgumentException e) {
            throw a.bad(e.getMessage());
        }
        return a.spec((name, len, r) -> RbdDevice.open(name, o));
    }

    // ---- device-mapper targets -------------------------------------------------------------

    private static Spec linear(Args a) {
        String dev = a.dev("DEV");
        long off = a.bytes("OFFSET");
        a.end();
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(dev);
            return new Linear(name, d, off, natural(len, d.size() - off, "linear"));
        });
    }

    private static List<String[]> legs(Args a, int n) {
        List<String[]> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String d = a.dev("DEV of leg " + (i + 1));
            String off = a.next("OFFSET of leg " + (i + 1));
            try {
                StackFile.parseSectorsOrSize(off);
            } catch (IllegalArgumentException e) {
                throw a.bad("OFFSET of leg " + (i + 1) + " '" + off + "' is not a number of sectors or a size");
            }
            out.add(new String[] {d, off});
        }
        return out;
    }

    private static List<Leg> open(List<String[]> legs, Resolver r) {
        List<Leg> out = new ArrayList<>();
        for (String[] l : legs) {
            out.add(new Leg(r.device(l[0]), StackFile.parseSectorsOrSize(l[1])));
        }
        return out;
    }

    private static long minLeft(List<Leg> legs) {
        long m = Long.MAX_VALUE;
        for (Leg l : legs) {
            m = Math.min(m, l.device().size() - l.start());
        }
        return m;
    }

    private static Spec striped(Args a) {
        long n = a.number("number of stripes");
        if (n < 1 || n > 1024) {
            throw a.bad("number of stripes must be 1..1024, not " + n);
        }
        long chunk = a.bytes("CHUNK");
        List<String[]> legs = legs(a, (int) n);
        a.end();
        return a.spec((name, len, r) -> {
            List<Leg> ls = open(legs, r);
            long nat = minLeft(ls) / chunk * chunk * n;
            return new Striped(name, ls, chunk, natural(len, nat, "striped"));
        });
    }

    private static Spec mirror(Args a) {
        long region = Mirror.DEFAULT_REGION;
        boolean nosync = true;
        int n;
        if (a.hasNext() && a.peek().equals("core")) {
            a.next("core");
            long nargs = a.number("number of log arguments");
            if (nargs < 1 || nargs > 2) {
                throw a.bad("core log takes 1 or 2 arguments: <region size> [sync|nosync]");
            }
            region = a.bytes("region size");
            nosync = false;
            if (nargs == 2) {
                String s = a.next("sync|nosync");
                switch (s) {
                    case "nosync" -> nosync = true;
                    case "sync" -> nosync = false;
                    default -> throw a.bad("log argument must be sync or nosync, not '" + s + "'");
                }
            }
            n = (int) a.number("number of legs");
        } else if (a.hasNext() && a.peek().chars().allMatch(Character::isDigit) && a.left() % 2 == 1) {
            n = (int) a.number("number of legs");
        } else {
            n = a.left() / 2;
        }
        if (n < 1) {
            throw a.bad("a mirror needs at least one leg: DEV OFFSET ...");
        }
        List<String[]> legs = legs(a, n);
        if (a.hasNext()) {
            long nf = a.number("number of features");
            for (int i = 0; i < nf; i++) {
                String f = a.next("feature");
                if (!f.equals("handle_errors")) {
                    throw a.bad("unknown feature '" + f + "' (handle_errors)");
                }
            }
        }
        a.end();
        long reg = region;
        boolean ns = nosync;
        return a.spec((name, len, r) -> {
            List<Leg> ls = open(legs, r);
            return new Mirror(name, ls, natural(len, minLeft(ls), "mirror"), reg, ns);
        });
    }

    @FunctionalInterface
    interface Fixed {
        Target make(String name, long length);
    }

    private static Spec fixed(Args a, Fixed f) {
        a.end();
        return a.spec((name, len, r) -> {
            if (len < 0) {
                throw new IllegalArgumentException("needs a length: write 'NAME: 0 LENGTH TARGET'");
            }
            return f.make(name, len);
        });
    }

    private static Spec flakey(Args a) {
        String dev = a.dev("DEV");
        long off = a.bytes("OFFSET");
        long up = a.number("up interval (seconds)");
        long down = a.number("down interval (seconds)");
        Flakey.Features f = Flakey.Features.NONE;
        if (a.hasNext()) {
            long nf = a.number("number of feature arguments");
            List<String> fa = new ArrayList<>();
            for (int i = 0; i < nf; i++) {
                fa.add(a.next("feature argument " + (i + 1) + " of " + nf));
            }
            try {
                f = Flakey.Features.parse(fa);
            } catch (NumberFormatException e) {
                throw a.bad("corrupt_bio_byte: not a number: " + e.getMessage());
            } catch (IllegalArgumentException e) {
                throw a.bad(e.getMessage());
            }
        }
        a.end();
        Flakey.Features feats = f;
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(dev);
            return new Flakey(name, new Leg(d, off), natural(len, d.size() - off, "flakey"), up, down, feats);
        });
    }

    private static Spec delay(Args a) {
        List<String[]> triples = new ArrayList<>();
        while (a.hasNext() || triples.isEmpty()) {
            if (triples.size() == 3) {
                throw a.bad("takes at most 3 <dev> <offset> <delay> triples (read, write, flush)");
            }
            String d = a.dev("DEV");
            String off = a.next("OFFSET");
            try {
                StackFile.parseSectorsOrSize(off);
            } catch (IllegalArgumentException e) {
                throw a.bad("OFFSET '" + off + "' is not a number of sectors or a size");
            }
            long ms = a.number("delay (ms)");
            triples.add(new String[] {d, off, Long.toString(ms)});
        }
        return a.spec((name, len, r) -> {
            List<Delay.Path> ps = new ArrayList<>();
            long nat = Long.MAX_VALUE;
            for (String[] t : triples) {
                BlockDevice d = r.device(t[0]);
                long off = StackFile.parseSectorsOrSize(t[1]);
                nat = Math.min(nat, d.size() - off);
                ps.add(new Delay.Path(new Leg(d, off), Long.parseLong(t[2])));
            }
            return new Delay(name, natural(len, nat, "delay"), ps);
        });
    }

    private static Spec dust(Args a) {
        String dev = a.dev("DEV");
        long off = a.bytes("OFFSET");
        long blk = a.number("block size (bytes)");
        a.end();
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(dev);
            return new Dust(name, new Leg(d, off), natural(len, d.size() - off, "dust"), (int) blk);
        });
    }

    private static Spec crypt(Args a) {
        String cipher = a.next("CIPHER");
        String keyHex = a.next("KEY (hex)");
        byte[] key;
        try {
            key = HexFormat.of().parseHex(keyHex);
        } catch (IllegalArgumentException e) {
            throw a.bad("KEY must be hex digits (the key itself is not repeated here)");
        }
        long ivOff = a.number("IV_OFFSET");
        String dev = a.dev("DEV");
        long off = a.bytes("OFFSET");
        int sectorSize = 512;
        boolean large = false;
        if (a.hasNext() && a.peek().chars().allMatch(Character::isDigit)) {
            long n = a.number("number of optional parameters");
            if (n != a.left()) {
                throw a.bad(n + " optional parameters announced, " + a.left() + " given");
            }
        }
        while (a.hasNext()) {
            String o = a.next("option");
            if (o.startsWith("sector_size:")) {
                try {
                    sectorSize = Integer.parseInt(o.substring(12));
                } catch (NumberFormatException e) {
                    throw a.bad("sector_size must be a number: " + o);
                }
            } else if (o.equals("iv_large_sectors")) {
                large = true;
            } else {
                throw a.bad("unknown option '" + o + "' (sector_size:N, iv_large_sectors)");
            }
        }
        int ss = sectorSize;
        boolean lg = large;
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(dev);
            BlockDevice lower = len < 0 ? d : new Linear(name, d, off, len);
            try {
                return Crypt.create(name, lower, cipher, key, ivOff, len < 0 ? off : 0, ss, lg);
            } finally {
                Arrays.fill(key, (byte) 0);
            }
        });
    }

    private static Spec luks(Args a) {
        String dev = a.dev("DEV");
        String cred = a.next("keyfile=PATH or passphrase=TEXT");
        a.end();
        boolean file = cred.startsWith("keyfile=");
        if (!file && !cred.startsWith("passphrase=")) {
            throw a.bad("second argument must be keyfile=PATH or passphrase=TEXT");
        }
        String val = cred.substring(cred.indexOf('=') + 1);
        if (val.isEmpty()) {
            throw a.bad(cred.substring(0, cred.indexOf('=')) + " is empty");
        }
        String shown = file ? cred : "passphrase=-";
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(dev);
            byte[] secret = file ? Files.readAllBytes(Path.of(val)) : val.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            BlockDevice c;
            try {
                c = Luks.open(name, d, secret);
            } finally {
                Arrays.fill(secret, (byte) 0);
            }
            if (len >= 0 && len != c.size()) {
                long have = c.size();
                c.close();
                throw new IllegalArgumentException("the LUKS payload of " + dev + " is " + have / Layers.SECTOR
                        + " sectors, the segment " + len / Layers.SECTOR);
            }
            return new Renamed(c, "luks", dev + " " + shown);
        });
    }

    private static Spec snapshot(Args a) {
        String origin = a.dev("ORIGIN");
        String cow = a.dev("COW");
        String p = a.next("P|N");
        if (!p.equalsIgnoreCase("P") && !p.equalsIgnoreCase("N")) {
            throw a.bad("persistence must be P or N, not '" + p + "'");
        }
        long chunk = a.bytes("CHUNK");
        a.end();
        boolean persistent = p.equalsIgnoreCase("P");
        return a.spec((name, len, r) -> Snapshot.create(name, r.device(origin), r.device(cow), persistent, chunk));
    }

    private static Spec snapshotOrigin(Args a) {
        String dev = a.dev("DEV");
        a.end();
        return a.spec((name, len, r) -> SnapshotOrigin.of(name, r.device(dev)));
    }
}
