package io.biostack.stack;

import io.biostack.block.bitmap.DeviceBitmaps;
import io.biostack.block.bitmap.SideFileStore;
import io.biostack.block.stats.CountedDevice;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The stack's side of dirty bitmaps: {@code bitmap-file=PATH} on a table line, the
 * {@code bitmap ...} messages, and the bitmap lines of {@code status}. The bitmaps themselves
 * hang on each device's {@link CountedDevice} ({@link DeviceBitmaps}); they are not a target.
 */
final class StackBitmaps {
    /** The table-line option naming a device's side file of persistent bitmaps. */
    static final String FILE_OPTION = "bitmap-file=";

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
                } else {
                    args.add(a);
                }
            }
            out.add(args.size() == l.args().size() ? l
                    : new StackFile.Line(l.line(), l.name(), l.start(), l.length(), l.target(), List.copyOf(args)));
        }
        return out;
    }

    /** Gives {@code c} its bitmaps, loading those kept in {@code file}; says what loaded inconsistent. */
    static void open(CountedDevice c, Path file) throws IOException {
        DeviceBitmaps b = new DeviceBitmaps(c.name(), c.size(), new SideFileStore(file), c::submitBelow);
        for (String p : b.loadProblems()) {
            System.err.println("biostack: " + c.name() + ": " + p);
        }
        c.setBitmaps(b);
    }

    /** The bitmaps of {@code c}, made empty (and without a store) on first use. */
    static synchronized DeviceBitmaps of(CountedDevice c) {
        if (c.bitmaps() == null) {
            try {
                c.setBitmaps(new DeviceBitmaps(c.name(), c.size(), null, c::submitBelow));
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
