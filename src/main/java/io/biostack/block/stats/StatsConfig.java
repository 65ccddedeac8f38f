package io.biostack.block.stats;

import java.util.Locale;

/**
 * The two switches of device statistics, read once at class initialisation from system
 * properties (so the JIT folds them):
 * <ul>
 *   <li>{@code -Dbiostack.stats=false} turns counting off: a stack then hands out its devices
 *       bare, with no counting decorator and no cost at all (the "off" side of
 *       {@code bench/stats/run.sh}).</li>
 *   <li>{@code -Dbiostack.slowIo=10ms} (the default; {@code us}, {@code ms} and {@code s}
 *       suffixes, a bare number is milliseconds, {@code off} for none) is the latency above which
 *       a completed I/O emits a {@link SlowIoEvent} to JFR.</li>
 * </ul>
 */
public final class StatsConfig {
    /** Whether stacks count their devices' I/O. */
    public static final boolean ENABLED = !"false".equalsIgnoreCase(System.getProperty("biostack.stats", "true"));

    /** Latency in ns above which an I/O is reported as a {@link SlowIoEvent}; MAX_VALUE for never. */
    public static final long SLOW_IO_NS = parseDuration(System.getProperty("biostack.slowIo", "10ms"));

    private StatsConfig() {
    }

    /**
     * Parses "10ms", "500us", "2s", "15" (ms) or "off" into nanoseconds (off: Long.MAX_VALUE).
     *
     * @param s the value to parse
     * @return the threshold in nanoseconds
     */
    public static long parseDuration(String s) {
        String t = s.strip().toLowerCase(Locale.ROOT);
        if (t.equals("off") || t.equals("none")) {
            return Long.MAX_VALUE;
        }
        long mult;
        String num;
        if (t.endsWith("ns")) {
            mult = 1;
            num = t.substring(0, t.length() - 2);
        } else if (t.endsWith("us")) {
            mult = 1_000;
            num = t.substring(0, t.length() - 2);
        } else if (t.endsWith("ms")) {
            mult = 1_000_000;
            num = t.substring(0, t.length() - 2);
        } else if (t.endsWith("s")) {
            mult = 1_000_000_000;
            num = t.substring(0, t.length() - 1);
        } else {
            mult = 1_000_000;
            num = t;
        }
        try {
            double v = Double.parseDouble(num.strip());
            if (v < 0 || Double.isNaN(v)) {
                throw new NumberFormatException();
            }
            return (long) (v * mult);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("a duration such as 10ms, 500us or 1s, not '" + s + "'");
        }
    }
}
