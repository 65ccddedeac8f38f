package io.biostack.stack;

import io.biostack.block.bitmap.BitmapStore;
import io.biostack.block.bitmap.DeviceBitmaps;
import io.biostack.block.bitmap.SideFileStore;
import io.biostack.block.stats.CountedDevice;
import io.biostack.layer.MappedDevice;
import io.biostack.layer.qcow2.Qcow2BitmapStore;
import io.biostack.layer.qcow2.Qcow2Device;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The stack's side of dirty bitmaps: {@code bitmap-file=PATH} on a table line, the
 * {@code bitmap ...} messages, and the bitmap lines of {@code status}. The bitmaps themselves
 * hang on each device's {@link CountedDevice} ({@link DeviceBitmaps}); they are not a target.
 *
 * <p>A qcow2 device (a whole-device {@code qcow2} line) keeps its persistent bitmaps in its image,
 * where qemu keeps them ({@link Qcow2BitmapStore}): they are loaded when the stack opens, and a
 * {@code persistent} bitmap added to it goes there. {@code bitmap-file=} is refused on such a
 * line: two places for the same bitmaps would disagree, and qemu reads only the image.
 */
final class StackBitmaps {
    /** The table-line option naming a device's side file of persistent bitmaps. */
    static final String FILE_OPTION = "bitmap-file=";
    /**
     * Stands, in the map {@link #strip} fills, for "the bitmaps live in the qcow2 image"; told
     * apart from a real path by identity.
     */
    static final Path IN_IMAGE = Path.of("(qcow2 image)");

    private StackBitmaps() {
    }

    /**
     * Takes {@code bitmap-file=PATH} off every line (any target may carry it) into {@code files}.
     *
     * @return the lines without it
     */
    static List<StackFile.Line> strip(List<StackFile.Line> lines, Map<String, Path> files, String source) {
        List<StackFile.Line> out = new ArrayList<>();
        for (StackFile.Line l : lines) {
            List<String> args = new ArrayList<>();
            for (String a : l.args()) {
                if (a.startsWith(FILE_OPTION)) {
                    String p = a.substring(FILE_OPTION.length());
                    if (p.isEmpty()) {
                        throw new StackException(source, l.line(), l.name() + ": bitmap-file= needs a path");
                    }
                    Path prev = files.put(l.name(), Path.of(p));
                    if (prev != null && !prev.equals(Path.of(p))) {
                        throw new StackException(source, l.line(), l.name() + ": two bitmap files (" + prev + ", " + p + ")");
                    }
                    // A store rewrites the whole file with its device's bitmaps: two devices on
                    // one file would each drop the other's, and at the next open both would load
                    // the same bitmaps (an incremental of one copying what the other changed).
                    Path same = Path.of(p).toAbsolutePath().normalize();
                    for (Map.Entry<String, Path> f : files.entrySet()) {
                        if (!f.getKey().equals(l.name()) && f.getValue() != IN_IMAGE
                                && f.getValue().toAbsolutePath().normalize().equals(same)) {
                            throw new StackException(source, l.line(), l.name() + ": bitmap-file=" + p + " is " + f.getKey()
                                    + "'s too: the file holds one device's bitmaps (one file per device)");
                        }
                    }
                } else {
                    args.add(a);
                }
            }
            if (l.target().equals("qcow2") && !l.isSegment()) {
                if (files.containsKey(l.name())) {
                    throw new StackException(source, l.line(), l.name() + ": a qcow2 device keeps its persistent bitmaps"
                            + " in its image (where qemu reads them); bitmap-file= is refused on it");
                }
                // With statistics off too: the device then keeps its counting wrapper (where
                // bitmaps hang), or the image's bitmaps would go stale for qemu.
                files.put(l.name(), IN_IMAGE);
            }
            out.add(args.size() == l.args().size() ? l
                    : new StackFile.Line(l.line(), l.name(), l.start(), l.length(), l.target(), List.copyOf(args)));
        }
        return out;
    }

    /**
     * Gives {@code c} its bitmaps, loading those kept in {@code file} (or in its qcow2 image when
     * {@code file} is {@link #IN_IMAGE}); says what loaded inconsistent.
     */
    static void open(CountedDevice c, Path file) throws IOException {
        BitmapStore store;
        if (file == IN_IMAGE) {
            Qcow2Device q = qcow2(c);
            if (q == null) {
                return; // not a qcow2 device after all: no store, as for any device without bitmap-file=
            }
            store = new Qcow2BitmapStore(q);
        } else {
            store = new SideFileStore(file);
        }
        DeviceBitmaps b = new DeviceBitmaps(c.name(), c::size, store, c::submitBelow);
        for (String p : b.loadProblems()) {
            System.err.println("biostack: " + c.name() + ": " + p);
        }
        c.setBitmaps(b);
    }

    /** The qcow2 device a whole-device {@code qcow2} line made (its one segment's target), or null. */
    private static Qcow2Device qcow2(CountedDevice c) {
        if (c.inner() instanceof Qcow2Device q) {
            return q;
        }
        if (c.inner() instanceof MappedDevice m && m.liveTable().segments().size() == 1
                && m.liveTable().segments().getFirst().target() instanceof Qcow2Device q) {
            return q;
        }
        return null;
    }

    /** The bitmaps of {@code c}, made empty (and without a store) on first use. */
    static synchronized DeviceBitmaps of(CountedDevice c) {
        if (c.bitmaps() == null) {
            try {
                c.setBitmaps(new DeviceBitmaps(c.name(), c::size, null, c::submitBelow));
            } catch (IOException e) {
                throw new IllegalStateException(e); // no store, nothing to read
            }
        }
        return c.bitmaps();
    }

    /** Status lines of the bitmaps of {@code c} (none when it has none). */
    static List<String> status(CountedDevice c) {
        return c == null || c.bitmaps() == null ? List.of() : c.bitmaps().status();
    }

    /** {@code status NAME --json}: the device's target lines and its bitmaps. */
    static String statusJson(String name, List<String> targets, CountedDevice c) {
        StringBuilder sb = new StringBuilder("{\"device\":").append(quote(name)).append(",\"targets\":[");
        for (int i = 0; i < targets.size(); i++) {
            sb.append(i > 0 ? "," : "").append(quote(targets.get(i)));
        }
        sb.append("],\"bitmaps\":").append(c == null || c.bitmaps() == null ? "[]" : c.bitmaps().statusJson());
        return sb.append("}\n").toString();
    }

    private static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                default -> {
                    if (ch < 0x20) {
                        sb.append(String.format("\\u%04x", (int) ch));
                    } else {
                        sb.append(ch);
                    }
                }
            }
        }
        return sb.append('"').toString();
    }

    /** Saves and closes the bitmaps of {@code c}, if it has any. */
    static void close(CountedDevice c) {
        if (c.bitmaps() != null) {
            c.bitmaps().close();
        }
    }
}
