package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.block.Sizes;
import io.biostack.block.TableSpec;
import io.biostack.block.stats.CountedDevice;
import io.biostack.block.stats.DeviceStats;
import io.biostack.block.stats.StatsConfig;
import io.biostack.layer.Layers;
import io.biostack.layer.MappedDevice;
import io.biostack.layer.Target;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The devices of a stack file, opened in dependency order and closed in reverse; the owner of
 * every device it opened.
 *
 * <h2>Use</h2>
 * <pre>{@code
 * try (Stack stack = Stack.open(Path.of("stack.conf"))) {          // parse, check, open all
 *     BlockDevice dev = stack.device("both");                     // any device by name
 *     try (ControlServer ctl = ControlServer.start(stack, Path.of("/run/biostack.ctl"))) {
 *         ... serve dev ...                                       // `biostack dm --control` works now
 *     }
 * }                                                               // devices closed in reverse order
 * }</pre>
 * A stack file's mistakes (syntax, unknown targets or options, a device used before it is
 * defined or not at all, a cycle) are refused with the line before anything opens; when a device
 * fails to open, those opened before it are closed again. See {@link StackFile} for the syntax
 * and {@link Targets} for the targets.
 *
 * <p>Leaves ({@code loop}, {@code ram}) and partitions are plain devices; every other line makes a
 * {@link MappedDevice}, which {@code dm} can suspend, reload and resume. Devices built on a mapped
 * device hold the device, not its table, so a reload reaches them.
 *
 * <p>Every device is counted ({@link DeviceStats}, what the kernel shows in
 * {@code /sys/block/DEV/stat}): {@link #device} hands out the device wrapped in a
 * {@link CountedDevice}, and devices built on others are built on those wrappers, so a layer's
 * I/O to its leaves is counted at the leaves too. {@code -Dbiostack.stats=false} hands out the
 * bare devices instead, but for a qcow2 device, whose image's bitmaps hang on the wrapper (it is
 * not counted then: {@link #stats} is empty).
 *
 * <p>Thread-safe: control requests are serialised; I/O does not take the stack's lock.
 */
public final class Stack implements AutoCloseable {
    /** How long suspend waits for bios in flight before it gives up. */
    public static final long SUSPEND_TIMEOUT_MS = 30_000;

    private final String source;
    private final LinkedHashMap<String, BlockDevice> devices = new LinkedHashMap<>();
    /** The counted face of each device (empty when statistics are off). */
    private final Map<String, CountedDevice> counted = new HashMap<>();
    private final Map<String, Set<String>> deps = new HashMap<>();
    /** The table each device has loaded and not resumed, with what it is built on. */
    private final Map<String, Pending> pending = new HashMap<>();
    private boolean closed;
    private final Backups backups = new Backups(this);
    private volatile java.util.function.BiConsumer<String, BlockDevice> exportAdded = (n, d) -> { };
    private volatile java.util.function.Consumer<String> exportRemoved = n -> { };

    private Stack(String source) {
        this.source = source;
    }

    /**
     * Reads, checks and opens the stack file at {@code file}.
     *
     * @param file the stack file to read
     * @return the open stack; the caller owns it and closes it, which closes every device in it
     * @throws IOException when the file can't be read, or a leaf's file can't be opened
     * @throws StackException naming the line when the text is wrong or a device fails to open
     */
    public static Stack open(Path file) throws IOException {
        return open(Files.readString(file), file.toString());
    }

    /**
     * Checks and opens the stack described by {@code text}; {@code source} names it in messages.
     *
     * @param text the stack file's contents
     * @param source the name of the text in messages (a path, "reload", a test's name)
     * @return the open stack; the caller owns it and closes it, which closes every device in it
     * @throws StackException naming the line when the text is wrong or a device fails to open
     * @throws IOException when a leaf's file or remote export can't be opened
     */
    public static Stack open(String text, String source) throws IOException {
        Map<String, Path> bitmapFiles = new HashMap<>();
        List<StackFile.Line> lines = StackBitmaps.strip(StackFile.parse(text, source), bitmapFiles, source);
        LinkedHashMap<String, List<StackFile.Line>> byName = new LinkedHashMap<>();
        for (StackFile.Line l : lines) {
            byName.computeIfAbsent(l.name(), k -> new ArrayList<>()).add(l);
        }
        Map<String, List<TableSpec>> specs = new HashMap<>();
        Map<String, Set<String>> deps = new HashMap<>();
        for (var e : byName.entrySet()) {
            specs.put(e.getKey(), check(e.getKey(), e.getValue(), source, false));
            Set<String> d = new HashSet<>();
            specs.get(e.getKey()).forEach(s -> d.addAll(s.deps()));
            deps.put(e.getKey(), d);
        }
        for (var e : byName.entrySet()) {
            for (StackFile.Line l : e.getValue()) {
                for (String d : specs.get(e.getKey()).get(e.getValue().indexOf(l)).deps()) {
                    if (!byName.containsKey(d)) {
                        throw new StackException(source, l.line(), e.getKey() + ": device '" + d + "' is not defined in this stack");
                    }
                }
            }
        }
        List<String> order = order(byName, deps, source);
        Stack s = new Stack(source);
        try {
            for (String name : order) {
                List<StackFile.Line> ls = byName.get(name);
                BlockDevice d = s.build(name, ls, specs.get(name), source);
                s.devices.put(name, d);
                // A qcow2 image's bitmaps (IN_IMAGE) need the wrapper even with statistics off.
                if (StatsConfig.ENABLED || bitmapFiles.get(name) == StackBitmaps.IN_IMAGE) {
                    s.counted.put(name, new CountedDevice(d, new DeviceStats(name)));
                    if (bitmapFiles.containsKey(name)) {
                        try {
                            StackBitmaps.open(s.counted.get(name), bitmapFiles.get(name));
                        } catch (IOException e) {
                            throw new StackException(source, ls.getFirst().line(), name + ": " + e.getMessage());
                        }
                    }
                } else if (bitmapFiles.containsKey(name)) {
                    throw new StackException(source, ls.getFirst().line(), name + ": bitmap-file= needs statistics on "
                            + "(bitmaps observe writes on the counting wrapper; -Dbiostack.stats=false removes it)");
                }
                s.deps.put(name, deps.get(name));
            }
        } catch (RuntimeException | IOException e) {
            s.close();
            throw e;
        }
        return s;
    }

    /** Parses and checks the lines of one device; throws naming the line. */
    private static List<TableSpec> check(String name, List<StackFile.Line> ls, String source, boolean reload) {
        List<TableSpec> out = new ArrayList<>();
        boolean whole = false;
        for (StackFile.Line l : ls) {
            Targets.Kind k = Targets.kind(l.target());
            if (k == null) {
                throw new StackException(source, l.line(), name + ": unknown target '" + l.target() + "' (known: "
                        + String.join(", ", Targets.names()) + ")");
            }
            if (k.leaf() && (l.isSegment() || reload)) {
                throw new StackException(source, l.line(), name + ": " + l.target() + " makes a device of its own; "
                        + (reload ? "it can't be loaded into a mapped device's table" : "write '" + name + ": " + l.target() + " ...' without START LENGTH"));
            }
            if (!l.isSegment()) {
                if (ls.size() > 1) {
                    throw new StackException(source, l.line(), name + ": a whole-device line can't be mixed with other lines for the same device ("
                            + ls.size() + " lines); use 'START LENGTH TARGET ...' segments");
                }
                whole = true;
            }
            try {
                out.add(k.parse(l.args()));
            } catch (IllegalArgumentException e) {
                throw new StackException(source, l.line(), name + ": " + e.getMessage());
            }
        }
        assert !whole || out.size() == 1;
        return out;
    }

    /** Dependency order: every device after the devices it is built on; refuses cycles. */
    private static List<String> order(LinkedHashMap<String, List<StackFile.Line>> byName, Map<String, Set<String>> deps, String source) {
        List<String> out = new ArrayList<>();
        Map<String, Integer> mark = new HashMap<>(); // 1 visiting, 2 done
        for (String n : byName.keySet()) {
            visit(n, byName, deps, mark, new ArrayList<>(), out, source);
        }
        return out;
    }

    private static void visit(String n, LinkedHashMap<String, List<StackFile.Line>> byName, Map<String, Set<String>> deps,
                              Map<String, Integer> mark, List<String> path, List<String> out, String source) {
        Integer m = mark.get(n);
        if (m != null && m == 2) {
            return;
        }
        path.add(n);
        if (m != null) {
            List<String> cycle = path.subList(path.indexOf(n), path.size());
            throw new StackException(source, byName.get(n).getFirst().line(), "devices are built on each other in a cycle: "
                    + String.join(" -> ", cycle));
        }
        mark.put(n, 1);
        for (String d : deps.get(n).stream().sorted().toList()) {
            visit(d, byName, deps, mark, path, out, source);
        }
        path.removeLast();
        mark.put(n, 2);
        out.add(n);
    }

    private BlockDevice build(String name, List<StackFile.Line> ls, List<TableSpec> specs, String src) throws IOException {
        Targets.Kind k = Targets.kind(ls.getFirst().target());
        if (k.leaf()) {
            try {
                return specs.getFirst().open(name, -1, this::device);
            } catch (IllegalArgumentException | IllegalStateException e) {
                throw new StackException(src, ls.getFirst().line(), name + ": " + e.getMessage());
            } catch (IOException e) {
                throw new StackException(src + ":" + ls.getFirst().line() + ": " + name + ": can't open: " + why(e), e);
            }
        }
        return new MappedDevice(name, table(name, ls, specs, src));
    }

    /** Opens the targets of a table; closes those it opened when one fails. */
    private MappedDevice.Table table(String name, List<StackFile.Line> ls, List<TableSpec> specs, String src) {
        List<MappedDevice.Segment> segs = new ArrayList<>();
        try {
            long pos = 0;
            for (int i = 0; i < ls.size(); i++) {
                StackFile.Line l = ls.get(i);
                Target t;
                try {
                    BlockDevice d = specs.get(i).open(name, l.isSegment() ? l.length() : -1, this::device);
                    t = d instanceof Target tt ? tt : new Renamed(d, l.target(), String.join(" ", l.args()));
                } catch (IllegalArgumentException | IllegalStateException e) {
                    throw new StackException(src, l.line(), name + ": " + l.target() + ": " + e.getMessage());
                } catch (IOException e) {
                    throw new StackException(src + ":" + l.line() + ": " + name + ": " + l.target() + ": " + why(e), e);
                }
                long start = l.isSegment() ? l.start() : pos;
                segs.add(new MappedDevice.Segment(start, t.size(), t));
                if (l.isSegment() && l.length() != t.size()) {
                    throw new StackException(src, l.line(), name + ": " + l.target() + " is " + t.size() / Layers.SECTOR
                            + " sectors, the line says " + l.length() / Layers.SECTOR);
                }
                pos = start + t.size();
            }
            try {
                return new MappedDevice.Table(name, segs);
            } catch (IllegalArgumentException e) {
                throw new StackException(src, ls.getFirst().line(), e.getMessage());
            }
        } catch (RuntimeException e) {
            for (MappedDevice.Segment s : segs) {
                s.target().close();
            }
            throw e;
        }
    }

    /**
     * What went wrong with a file: the JDK's exceptions for a missing or forbidden file carry
     * only its path ("m: luks: /etc/key" said nothing about the key file being absent).
     */
    private static String why(IOException e) {
        if (e instanceof java.nio.file.FileSystemException f && f.getReason() == null && f.getFile() != null) {
            String reason = e instanceof java.nio.file.NoSuchFileException ? "no such file"
                    : e instanceof java.nio.file.AccessDeniedException ? "permission denied"
                    : e instanceof java.nio.file.NotDirectoryException ? "not a directory" : null;
            if (reason != null) {
                return f.getFile() + ": " + reason;
            }
        }
        return e.getMessage();
    }

    // ---- lookup ----------------------------------------------------------------------------

    /**
     * The device called {@code name}, counted (see {@link #stats}); throws
     * {@link IllegalArgumentException} when there is none.
     *
     * @param name a device of the stack
     * @return the device, owned by the stack (do not close it); with statistics on, its counted
     *         face
     * @throws IllegalArgumentException when the stack has no device of that name
     */
    public synchronized BlockDevice device(String name) {
        BlockDevice d = bare(name);
        CountedDevice c = counted.get(name);
        return c != null ? c : d;
    }

    /** The device itself, without the counting wrapper. */
    private BlockDevice bare(String name) {
        BlockDevice d = devices.get(name);
        if (d == null) {
            throw new IllegalArgumentException("no device '" + name + "' in the stack (devices: " + String.join(", ", devices.keySet()) + ")");
        }
        return d;
    }

    /**
     * The statistics of every device, in the order they were opened; empty when statistics are
     * off ({@code -Dbiostack.stats=false}).
     *
     * @return one snapshot per counted device; a new list at each call
     */
    public synchronized List<DeviceStats> stats() {
        List<DeviceStats> out = new ArrayList<>();
        if (!StatsConfig.ENABLED) {
            return out; // a qcow2 device keeps its wrapper for its bitmaps, not to be counted
        }
        for (String n : devices.keySet()) {
            CountedDevice c = counted.get(n);
            if (c != null) {
                out.add(c.stats());
            }
        }
        return out;
    }

    /**
     * The names of the stack's devices, in the order they were opened.
     *
     * @return the names, an unmodifiable list
     */
    public synchronized List<String> names() {
        return List.copyOf(devices.keySet());
    }

    /**
     * The mapped device called {@code name}; throws when it is a leaf.
     *
     * @param name a device of the stack
     * @return the device, owned by the stack
     * @throws IllegalArgumentException when there is no such device, or it is a leaf
     */
    public synchronized MappedDevice mapped(String name) {
        if (bare(name) instanceof MappedDevice m) {
            return m;
        }
        throw new IllegalArgumentException(name + " is not a mapped device (it is a " + bare(name).getClass().getSimpleName()
                + "); only mapped devices have tables");
    }

    // ---- control (what dmsetup does) -------------------------------------------------------

    /**
     * One line per device: name, size in bytes, human size, kind and state.
     *
     * @return the lines, in the order the devices were opened
     */
    public synchronized List<String> ls() {
        List<String> out = new ArrayList<>();
        for (var e : devices.entrySet()) {
            BlockDevice d = e.getValue();
            String kind = d instanceof MappedDevice m ? "mapped " + m.state().name().toLowerCase(java.util.Locale.ROOT)
                    + (m.hasInactiveTable() ? " (inactive table loaded)" : "")
                    : d.getClass().getSimpleName().toLowerCase(java.util.Locale.ROOT);
            out.add(e.getKey() + "\t" + d.size() + "\t" + Sizes.human(d.size()) + "\t" + kind);
        }
        return out;
    }

    /**
     * The table lines of mapped device {@code name}, as {@code dmsetup table} prints them.
     *
     * @param name a mapped device of the stack
     * @return one line per segment: START LENGTH TARGET ARGS, in sectors
     * @throws IllegalArgumentException when there is no such device, or it is a leaf
     */
    public synchronized List<String> table(String name) {
        return mapped(name).table();
    }

    /**
     * The status lines of device {@code name}, as {@code dmsetup status} prints them: a mapped
     * device's targets, then a line per dirty bitmap (a leaf with bitmaps shows only those).
     *
     * @param name a device of the stack
     * @return the status lines, empty for a leaf without bitmaps
     * @throws IllegalArgumentException when there is no such device
     */
    public synchronized List<String> status(String name) {
        List<String> bm = StackBitmaps.status(counted.get(name));
        if (!bm.isEmpty() && !(bare(name) instanceof MappedDevice)) {
            return bm;
        }
        List<String> out = new ArrayList<>(mapped(name).status());
        out.addAll(bm);
        return out;
    }

    /**
     * Suspends mapped device {@code name}: new bios wait, and this returns once those in flight
     * have completed and its targets have been flushed (a qcow2 image on its container is then
     * whole: a copy of it taken while suspended holds every write before).
     *
     * @param name a mapped device of the stack
     * @throws TimeoutException when bios are still in flight after {@link #SUSPEND_TIMEOUT_MS}; the
     *         device stays suspended
     * @throws InterruptedException when the waiting thread is interrupted
     * @throws IllegalArgumentException when there is no such device, or it is a leaf
     */
    public void suspend(String name) throws TimeoutException, InterruptedException {
        MappedDevice m;
        synchronized (this) {
            m = mapped(name);
        }
        m.suspend(SUSPEND_TIMEOUT_MS, TimeUnit.MILLISECONDS);
    }

    /**
     * Resumes; a table loaded by {@link #reload} goes live first.
     *
     * @param name a mapped device of the stack
     * @throws TimeoutException when the swap of a reloaded table could not suspend the device
     *         within {@link #SUSPEND_TIMEOUT_MS}
     * @throws InterruptedException when the waiting thread is interrupted
     * @throws IllegalArgumentException when there is no such device, or it is a leaf
     */
    public void resume(String name) throws TimeoutException, InterruptedException {
        MappedDevice m;
        synchronized (this) {
            m = mapped(name);
        }
        String backup = backups.runningOn(name);
        if (backup != null && m.hasInactiveTable()) {
            throw new IllegalArgumentException(name + " has backup " + backup + " running, whose view reads " + name
                    + "'s table: 'clear' the loaded table, or backup-end " + backup + " before resuming with it");
        }
        m.resume(SUSPEND_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        synchronized (this) {
            settle(name, pending.get(name));
        }
    }

    /** A loaded table of a mapped device and the devices it is built on. */
    private record Pending(MappedDevice.Table table, Set<String> deps) {
    }

    /**
     * Records {@code p}'s devices as those {@code name} is built on if {@code p}'s table is live:
     * the swap is the device's (in {@link MappedDevice#resume}, outside the stack's lock), so
     * what is live is asked of the device, not assumed from the order of the calls here. A
     * reload or clear in between a resume's swap and its record would otherwise leave the live
     * table's devices recorded nowhere (then a cycle through them was let in), or a dropped
     * table's recorded as live. Call with the stack's lock held.
     */
    private void settle(String name, Pending p) {
        if (p != null && devices.get(name) instanceof MappedDevice m && m.liveTable() == p.table()) {
            deps.put(name, p.deps());
            pending.remove(name, p);
        }
    }

    /**
     * Loads {@code table} (the device's lines without the {@code NAME:} prefix, separated by
     * newlines, or by ';' in a table of one line: {@link StackFile#parseTable}) as the inactive
     * table of {@code name}; {@link #resume} makes it live.
     * Refuses leaves, unknown devices and tables that would make a device depend on itself.
     *
     * @param name a mapped device of the stack
     * @param table the new table's lines
     * @throws IOException when a device of the new table can't be opened
     * @throws StackException naming the line when the table is wrong; the live table is unchanged
     * @throws IllegalArgumentException when there is no such device, or it is a leaf
     */
    public synchronized void reload(String name, String table) throws IOException {
        MappedDevice m = mapped(name);
        String backup = backups.runningOn(name);
        if (backup != null) {
            // The view's snapshot is of this device's table: another table under it would change
            // the point in time the backup copies (dm's snapshot is of the origin's own device).
            throw new IllegalArgumentException(name + " has backup " + backup + " running, whose view reads " + name
                    + "'s table: backup-end " + backup + " before reloading it");
        }
        String src = "reload " + name;
        List<StackFile.Line> ls = StackFile.parseTable(table, src);
        List<TableSpec> specs = check(name, ls, src, true);
        Set<String> nd = new HashSet<>();
        for (int i = 0; i < ls.size(); i++) {
            for (String d : specs.get(i).deps()) {
                if (!devices.containsKey(d)) {
                    throw new StackException(src, ls.get(i).line(), "device '" + d + "' is not in the stack");
                }
                if (d.equals(name) || dependsOn(d, name, new HashSet<>())) {
                    throw new StackException(src, ls.get(i).line(), name + " can't be built on " + d + ": "
                            + (d.equals(name) ? "that is itself" : d + " is built on " + name));
                }
                nd.add(d);
            }
        }
        MappedDevice.Table t = table(name, ls, specs, src);
        List<String> bitmaps = counted.get(name) == null || counted.get(name).bitmaps() == null ? List.of()
                : counted.get(name).bitmaps().names();
        if (t.size() != m.size() && !bitmaps.isEmpty()) {
            // A bitmap covers the size it was made for: past it, writes would mark nothing, and an
            // incremental backup would miss them (a shrink then a grow, the same).
            for (MappedDevice.Segment seg : t.segments()) {
                seg.target().close();
            }
            throw new IllegalArgumentException(name + " has dirty bitmaps (" + String.join(", ", bitmaps) + ") of "
                    + m.size() + " bytes; a table of " + t.size() + " bytes would change its size under them: "
                    + "'bitmap remove' them first (and make the next backup a full one)");
        }
        Pending before = pending.get(name);
        m.reload(t);
        settle(name, before); // it went live before this reload replaced it
        pending.put(name, new Pending(t, nd));
    }

    private boolean dependsOn(String dev, String on, Set<String> seen) {
        if (!seen.add(dev)) {
            return false;
        }
        settle(dev, pending.get(dev));
        Set<String> all = new HashSet<>(deps.getOrDefault(dev, Set.of()));
        Pending p = pending.get(dev);
        if (p != null) {
            all.addAll(p.deps());
        }
        for (String d : all) {
            if (d.equals(on) || dependsOn(d, on, seen)) {
                return true;
            }
        }
        return false;
    }

    /**
     * Sends a message to a target ({@code dmsetup message NAME SECTOR MSG}); the sector may be
     * left out when the message does not start with a number, and is 0 then.
     *
     * @param name a mapped device of the stack
     * @param argv the optional sector, then the message's words
     * @return the target's answer, empty when it has nothing to say
     * @throws IllegalArgumentException when there is no such device, the message is empty, or the
     *         target refuses it
     */
    public String message(String name, List<String> argv) {
        MappedDevice m;
        synchronized (this) {
            m = mapped(name);
        }
        long sector = 0;
        List<String> msg = argv;
        if (argv.size() > 1 && argv.getFirst().chars().allMatch(Character::isDigit)) {
            try {
                sector = Long.parseLong(argv.getFirst());
            } catch (NumberFormatException e) {
                sector = -1; // more digits than a long holds: past any device's end, said below
            }
            if (sector < 0 || sector > Long.MAX_VALUE / Layers.SECTOR) {
                throw new IllegalArgumentException(name + ": no target at sector " + argv.getFirst());
            }
            msg = argv.subList(1, argv.size());
        }
        if (msg.isEmpty()) {
            throw new IllegalArgumentException("empty message");
        }
        return m.message(sector * Layers.SECTOR, msg);
    }

    /**
     * Runs one control request, as {@code biostack dm} sends it: {@code ls}, {@code table NAME},
     * {@code status NAME}, {@code suspend NAME}, {@code resume NAME}, {@code reload NAME TABLE},
     * {@code clear NAME}, {@code message NAME [SECTOR] MSG...}. Returns the text to print;
     * throws {@link IllegalArgumentException} or {@link StackException} saying what is wrong.
     *
     * @param argv the request's words: the command, then its arguments
     * @return the text to send back, lines ending in a newline (empty when there is nothing to
     *         print)
     * @throws IOException when a reload's device can't be opened
     * @throws TimeoutException when a suspend or resume waits longer than
     *         {@link #SUSPEND_TIMEOUT_MS}
     * @throws InterruptedException when the waiting thread is interrupted
     */
    public String control(List<String> argv) throws IOException, TimeoutException, InterruptedException {
        if (argv.isEmpty()) {
            throw new IllegalArgumentException("no command (ls, table, status, suspend, resume, reload, clear, message)");
        }
        String cmd = argv.getFirst();
        if (cmd.equals("ls")) {
            return lines(ls());
        }
        if (argv.size() < 2) {
            throw new IllegalArgumentException(cmd + " needs a device name");
        }
        String name = argv.get(1);
        List<String> rest = argv.subList(2, argv.size());
        switch (cmd) {
            case "table":
                return lines(table(name));
            case "status":
                if (rest.equals(List.of("--json"))) {
                    // under the stack's lock, as status(name): a backup view added or removed
                    // meanwhile changes these maps
                    synchronized (this) {
                        List<String> t = bare(name) instanceof MappedDevice m ? m.status() : List.of();
                        return StackBitmaps.statusJson(name, t, counted.get(name));
                    }
                }
                return lines(status(name));
            case "suspend":
                suspend(name);
                return "";
            case "resume":
                resume(name);
                return "";
            case "reload":
                if (rest.isEmpty()) {
                    throw new IllegalArgumentException("reload needs a table: reload NAME 'START LENGTH TARGET ARGS...'");
                }
                reload(name, String.join(" ", rest));
                return "";
            case "clear":
                synchronized (this) {
                    Pending before = pending.get(name);
                    mapped(name).clear();
                    settle(name, before); // it went live before the clear
                    pending.remove(name);
                }
                return "";
            case "message":
                List<String> msg = new ArrayList<>();
                for (String r : rest) {
                    msg.addAll(List.of(r.trim().split("\\s+")));
                }
                if (!msg.isEmpty() && msg.getFirst().equals("bitmap")) {
                    return bitmapMessage(name, msg.subList(1, msg.size()));
                }
                if (!msg.isEmpty() && msg.getFirst().equals("backup-begin")) {
                    return backups.begin(name, countedFor(name), msg.subList(1, msg.size()));
                }
                if (!msg.isEmpty() && msg.getFirst().equals("backup-end")) {
                    if (msg.size() != 2) {
                        throw new IllegalArgumentException("backup-end EXPORT");
                    }
                    return backups.end(name, msg.get(1));
                }
                return message(name, msg);
            default:
                throw new IllegalArgumentException("unknown command '" + cmd + "' (ls, table, status, suspend, resume, reload, clear, message)");
        }
    }

    /** {@code message NAME bitmap ...}: any device of the stack, leaf or mapped. */
    private String bitmapMessage(String name, List<String> argv) throws IOException {
        return StackBitmaps.of(countedFor(name)).message(argv);
    }

    private synchronized CountedDevice countedFor(String name) {
        bare(name);
        CountedDevice c = counted.get(name);
        if (c == null) {
            throw new IllegalArgumentException("dirty bitmaps and backups need statistics on (-Dbiostack.stats=false "
                    + "removes the wrapper they observe)");
        }
        return c;
    }

    /**
     * Tells a server serving this stack about devices that come and go while it runs (backup
     * views): {@code added} exports one, {@code removed} withdraws it.
     *
     * @param added   called with the new device's name and its counted face
     * @param removed called with the name of a device going away
     */
    public void setExportListener(java.util.function.BiConsumer<String, BlockDevice> added,
                                  java.util.function.Consumer<String> removed) {
        exportAdded = added;
        exportRemoved = removed;
    }

    /** Adds a device made at run time (a backup view), counted, and tells the listener. */
    void addDevice(String name, BlockDevice d) {
        BlockDevice face;
        synchronized (this) {
            devices.put(name, d);
            deps.put(name, Set.of());
            if (StatsConfig.ENABLED) {
                counted.put(name, new CountedDevice(d, new DeviceStats(name)));
            }
            face = device(name);
        }
        exportAdded.accept(name, face);
    }

    /** Takes a device made at run time out of the stack (the caller closes it). */
    void removeDevice(String name) {
        exportRemoved.accept(name);
        synchronized (this) {
            devices.remove(name);
            deps.remove(name);
            counted.remove(name);
        }
    }

    private static String lines(List<String> ls) {
        return ls.isEmpty() ? "" : String.join("\n", ls) + "\n";
    }

    /** Closes every device, in the reverse of the order they were opened. */
    @Override
    public void close() {
        backups.endAll();
        closeDevices();
    }

    private synchronized void closeDevices() {
        if (closed) {
            return;
        }
        closed = true;
        counted.values().forEach(StackBitmaps::close);
        List<BlockDevice> ds = new ArrayList<>(devices.values());
        Collections.reverse(ds);
        RuntimeException first = null;
        for (BlockDevice d : ds) {
            try {
                d.close();
            } catch (RuntimeException e) {
                if (first == null) {
                    first = e;
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }

    @Override
    public String toString() {
        return "Stack[" + source + ": " + String.join(", ", devices.keySet()) + "]";
    }
}
