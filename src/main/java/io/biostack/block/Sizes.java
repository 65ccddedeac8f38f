package io.biostack.block;

import java.util.Locale;

/**
 * Sizes as people write them ({@code 4k}, {@code 1M}, {@code 2G}, {@code 512}, {@code 1MiB}):
 * powers of 1024, as losetup, fio and qemu-img read them.
 */
public final class Sizes {
    private Sizes() {
    }

    /**
     * Parses a size; throws {@link IllegalArgumentException} with a clear message when it can't.
     *
     * @param text a byte count with an optional binary suffix: {@code 4096}, {@code 4k},
     *         {@code 1M}, {@code 2GiB}, {@code 1T} (k, m, g, t, p are powers of 1024; a trailing b
     *         or ib is ignored)
     * @return the size in bytes
     * @throws IllegalArgumentException when the text is empty, not a number, negative, or too large
     *         for a long
     */
    public static long parse(String text) {
        if (text == null || text.isBlank()) {
            throw new IllegalArgumentException("empty size");
        }
        String s = text.trim().toLowerCase(Locale.ROOT);
        if (s.endsWith("ib")) {
            s = s.substring(0, s.length() - 2);
        } else if (s.endsWith("b") && s.length() > 1 && !Character.isDigit(s.charAt(s.length() - 2))) {
            s = s.substring(0, s.length() - 1);
        } else if (s.endsWith("b")) {
            s = s.substring(0, s.length() - 1);
        }
        long mult = 1;
        char last = s.isEmpty() ? ' ' : s.charAt(s.length() - 1);
        switch (last) {
            case 'k' -> mult = 1L << 10;
            case 'm' -> mult = 1L << 20;
            case 'g' -> mult = 1L << 30;
            case 't' -> mult = 1L << 40;
            case 'p' -> mult = 1L << 50;
            default -> { }
        }
        if (mult != 1) {
            s = s.substring(0, s.length() - 1);
        }
        long n;
        try {
            n = Long.parseLong(s);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("not a size: '" + text + "' (use e.g. 4096, 4k, 1M, 2G)");
        }
        if (n < 0) {
            throw new IllegalArgumentException("negative size: '" + text + "'");
        }
        if (n > Long.MAX_VALUE / mult) {
            throw new IllegalArgumentException("size too large: '" + text + "'");
        }
        return n * mult;
    }

    /**
     * Human form: 4096 → "4 KiB", 1536 → "1.5 KiB".
     *
     * @param bytes a byte count, 0 or more
     * @return the count in bytes below 1 KiB, else in the largest binary unit (KiB to PiB) that
     *         keeps it at least 1, with at most one decimal
     */
    public static String human(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
        double v = bytes;
        int u = 0;
        // compare what will be printed (one decimal), so 1023.96 KiB shows as "1.0 MiB", not "1024.0 KiB"
        while (Math.round(v * 10) >= 1024 * 10 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        if (u == 0) {
            return bytes + " B";
        }
        return (v == Math.rint(v) ? String.format(Locale.ROOT, "%.0f", v) : String.format(Locale.ROOT, "%.1f", v)) + " " + units[u];
    }
}
