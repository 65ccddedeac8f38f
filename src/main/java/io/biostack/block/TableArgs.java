package io.biostack.block;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The arguments of one table line ({@code NAME: [START LENGTH] TARGET ARGS...}), read in order,
 * with messages that name the target: what device-mapper's {@code struct dm_arg_set} with
 * {@code dm_shift_arg} and {@code dm_read_arg} are to a target's constructor.
 *
 * <p>Every target reads its own line with this, in a static {@code parseTable(TableArgs)} method
 * beside its code (dm keeps each constructor in its own {@code dm-*.c}); the registry of the
 * stack package only maps names to those methods. It lives in {@code block}, the bottom of the
 * package map, so that every package that holds a target (block's {@link RamDisk} among them)
 * may read its line without importing the stack package above it.
 *
 * <p>A parse method throws the {@link IllegalArgumentException} that {@link #bad} makes; the
 * caller adds the file and line. Not thread-safe: one parse reads one instance.
 */
public final class TableArgs {
    /** Table offsets and lengths in sectors are 512-byte sectors, as dmsetup's. */
    private static final int SECTOR = 512;

    private final String target;
    private final List<String> args;
    private final List<String> deps = new ArrayList<>();
    private int pos;

    /**
     * The arguments {@code args} of a line of target {@code target}.
     *
     * @param target the target's name, which every message starts with
     * @param args   the words after the target's name
     */
    public TableArgs(String target, List<String> args) {
        this.target = target;
        this.args = List.copyOf(args);
    }

    /**
     * The target's name.
     *
     * @return the name messages start with
     */
    public String target() {
        return target;
    }

    /**
     * Whether arguments are left.
     *
     * @return true while arguments are left
     */
    public boolean hasNext() {
        return pos < args.size();
    }

    /**
     * The next argument, not consumed.
     *
     * @return the next argument
     * @throws IndexOutOfBoundsException when none is left (check {@link #hasNext()} first)
     */
    public String peek() {
        return args.get(pos);
    }

    /**
     * How many arguments are left.
     *
     * @return the count of arguments not read yet
     */
    public int left() {
        return args.size() - pos;
    }

    /**
     * The next argument.
     *
     * @param what names the argument in the message when it is missing
     * @return the argument
     */
    public String next(String what) {
        if (pos >= args.size()) {
            throw bad("missing " + what);
        }
        return args.get(pos++);
    }

    /**
     * The next argument as a device name, counted as a dependency of the line.
     *
     * @param what names the argument in messages
     * @return the device's name
     */
    public String dev(String what) {
        String d = next(what);
        deps.add(d);
        return d;
    }

    /**
     * Counts a device named inside an option ({@code backing=NAME}) as a dependency of the line,
     * so that it opens first and a cycle through it is refused.
     *
     * @param device the device's name
     * @return the same name
     */
    public String dependsOn(String device) {
        deps.add(device);
        return device;
    }

    /**
     * The device names read so far by {@link #dev} and {@link #dependsOn}.
     *
     * @return a copy of the dependencies, in order
     */
    public List<String> deps() {
        return List.copyOf(deps);
    }

    /**
     * The next argument as 512-byte sectors or a size with a suffix, in bytes.
     *
     * @param what names the argument in messages
     * @return the bytes
     */
    public long bytes(String what) {
        String s = next(what);
        try {
            return sectorsOrSize(s);
        } catch (IllegalArgumentException e) {
            throw bad(what + " '" + s + "' is not a number of sectors or a size (4k, 1M, 2G)");
        }
    }

    /**
     * A plain size in bytes (suffixes allowed, no sectors), read from {@code s}.
     *
     * @param what names the value in messages
     * @param s    the text
     * @return the bytes
     */
    public long size(String what, String s) {
        try {
            return Sizes.parse(s);
        } catch (IllegalArgumentException e) {
            throw bad(what + ": " + e.getMessage());
        }
    }

    /**
     * The next argument as a non-negative whole number.
     *
     * @param what names the argument in messages
     * @return the number
     */
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

    /**
     * An option as leaves write them, {@code key=value} or a bare {@code key}.
     *
     * @param text  the whole argument, for messages
     * @param key   the text before the first '=', or all of it
     * @param value the text after the first '=', or null when there is no '='
     */
    public record Option(String text, String key, String value) {
    }

    /**
     * The next argument as a {@code key=value} or bare {@code key} option.
     *
     * @return the option
     */
    public Option option() {
        String o = next("option");
        int eq = o.indexOf('=');
        return eq < 0 ? new Option(o, o, null) : new Option(o, o.substring(0, eq), o.substring(eq + 1));
    }

    /**
     * The value of {@code o}, which must have one.
     *
     * @param o an option read by {@link #option()}
     * @return its value, not empty
     */
    public String value(Option o) {
        if (o.value() == null || o.value().isEmpty()) {
            throw bad(o.key() + " needs a value: " + o.key() + "=...");
        }
        return o.value();
    }

    /**
     * The value of {@code o} as a plain size in bytes, as {@link #size(String, String)}.
     *
     * @param o an option read by {@link #option()}
     * @return the bytes
     */
    public long size(Option o) {
        return size(o.key(), value(o));
    }

    /**
     * The value of {@code o} as a positive duration: {@code 30}, {@code 30s}, {@code 500ms},
     * {@code 2m} (bare numbers are seconds).
     *
     * @param o an option read by {@link #option()}
     * @return the duration, positive
     */
    public Duration duration(Option o) {
        String v = o.value() == null ? "" : o.value();
        String s = v.trim().toLowerCase(Locale.ROOT);
        try {
            Duration d;
            if (s.endsWith("ms")) {
                d = Duration.ofMillis(Long.parseLong(s.substring(0, s.length() - 2)));
            } else if (s.endsWith("s")) {
                d = Duration.ofMillis(Math.round(Double.parseDouble(s.substring(0, s.length() - 1)) * 1000));
            } else if (s.endsWith("m")) {
                d = Duration.ofSeconds(Long.parseLong(s.substring(0, s.length() - 1)) * 60);
            } else {
                d = Duration.ofMillis(Math.round(Double.parseDouble(s) * 1000));
            }
            if (d.isNegative() || d.isZero()) {
                throw new NumberFormatException();
            }
            return d;
        } catch (NumberFormatException e) {
            throw bad(o.key() + "= takes a positive duration such as 30s, 500ms or 2m, not '" + v + "'");
        }
    }

    /** Fails when arguments are left over. */
    public void end() {
        if (pos < args.size()) {
            throw bad("unexpected argument '" + args.get(pos) + "'");
        }
    }

    /**
     * An exception that names the target and says {@code why}, for the caller to throw.
     *
     * @param why what is wrong
     * @return the exception, not thrown
     */
    public IllegalArgumentException bad(String why) {
        return new IllegalArgumentException(target + ": " + why);
    }

    /**
     * The spec of this line: the devices read by {@link #dev} so far and how to open it.
     *
     * @param opener builds the device once those devices are open
     * @return the spec
     */
    public TableSpec spec(TableSpec.Opener opener) {
        List<String> d = deps();
        return new TableSpec() {
            @Override
            public List<String> deps() {
                return d;
            }

            @Override
            public BlockDevice open(String name, long length, Resolver devices) throws java.io.IOException {
                return opener.open(name, length, devices);
            }
        };
    }

    /**
     * A number of 512-byte sectors (digits only), or a size with a suffix (4k, 1M, 2G).
     *
     * @param s the text
     * @return the bytes
     * @throws IllegalArgumentException when {@code s} is neither
     */
    public static long sectorsOrSize(String s) {
        if (!s.isEmpty() && s.chars().allMatch(Character::isDigit)) {
            long n;
            try {
                n = Long.parseLong(s);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("too large: " + s);
            }
            if (n > Long.MAX_VALUE / SECTOR) {
                throw new IllegalArgumentException("too large: " + s);
            }
            return n * SECTOR;
        }
        return Sizes.parse(s);
    }
}
