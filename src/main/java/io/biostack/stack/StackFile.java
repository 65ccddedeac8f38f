package io.biostack.stack;

import io.biostack.block.TableArgs;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The stack file's syntax: one line per device or segment, dmsetup's table syntax with the
 * device name in front.
 *
 * <pre>
 * # comment                                 (also after a line's content, after a blank)
 * NAME: TARGET ARGS...                      a leaf or a whole-device layer
 * NAME: START LENGTH TARGET ARGS...         a segment of a mapped device
 * </pre>
 *
 * START and LENGTH are 512-byte sectors as dmsetup's, or sizes with a suffix (4k, 1M, 2G).
 * Names are letters, digits, '_', '-' and '.'. This class only splits lines into fields; what
 * the arguments mean is for the targets ({@link Targets}).
 */
public final class StackFile {
    private StackFile() {
    }

    /**
     * One line of a table.
     *
     * @param line   1-based line number in its source
     * @param name   the device the line belongs to (null in a reload table, which has no names)
     * @param start  byte offset of the segment, -1 for a whole-device line
     * @param length bytes of the segment, -1 for a whole-device line
     * @param target target name
     * @param args   the target's arguments
     */
    public record Line(int line, String name, long start, long length, String target, List<String> args) {
        /**
         * True for a segment of a mapped device, false for a whole-device line.
         *
         * @return true when the line gave START and LENGTH
         */
        public boolean isSegment() {
            return start >= 0;
        }
    }

    /**
     * Splits a stack file into lines; throws {@link StackException} naming the line.
     *
     * @param text the stack file's contents; '#' starts a comment
     * @param source the name of the text in messages
     * @return the lines that are not blank or comments, in file order
     * @throws StackException naming the source and line when a line is malformed
     */
    public static List<Line> parse(String text, String source) {
        List<Line> out = new ArrayList<>();
        String[] lines = text.split("\r?\n", -1);
        for (int i = 0; i < lines.length; i++) {
            String l = stripComment(lines[i]);
            if (l.isBlank()) {
                continue;
            }
            int colon = l.indexOf(':');
            if (colon < 0) {
                throw new StackException(source, i + 1, "expected 'NAME: TARGET ARGS...' or 'NAME: START LENGTH TARGET ARGS...', got '" + l.trim() + "'");
            }
            String name = l.substring(0, colon).trim();
            checkName(name, source, i + 1);
            out.add(fields(l.substring(colon + 1), name, source, i + 1));
        }
        return out;
    }

    /**
     * A ';' inside a word's {@code KEY=VALUE} with more after it: in a one-line table it can't be
     * told whether it ends the line or belongs to the value ({@code passphrase=a;b}).
     */
    private static final java.util.regex.Pattern SEMICOLON_IN_VALUE =
            java.util.regex.Pattern.compile("(?:^|[\\s;])([A-Za-z][A-Za-z0-9_-]*=[^\\s;]*;\\S+)");

    /**
     * Splits a reload table (the device's lines without the {@code NAME:} prefix). A table with
     * newlines is split at them only, as a stack file and dmsetup's table file are, so a ';' in
     * it is an ordinary character (a {@code passphrase=}, a path); a one-line table (what a
     * command line holds) is split at ';'. There, a ';' with more after it inside an option's
     * value is refused: split, {@code passphrase=a;b} opened a volume with the passphrase
     * {@code a}, or {@code keyfile=/k;x} another key file.
     *
     * @param text the table's lines
     * @param source the name of the table in messages
     * @return the table's lines, in order; their name is null
     * @throws StackException naming the line when a line is malformed or the table is empty
     */
    public static List<Line> parseTable(String text, String source) {
        List<Line> out = new ArrayList<>();
        boolean multiLine = text.indexOf('\n') >= 0;
        if (!multiLine) {
            java.util.regex.Matcher m = SEMICOLON_IN_VALUE.matcher(text);
            if (m.find()) {
                String word = m.group(1);
                String key = word.substring(0, word.indexOf('=') + 1);
                throw new StackException(source, 0, "'" + (key.equals("passphrase=") ? "passphrase=..." : word)
                        + "' holds a ';', which separates the lines of a one-line table: write the table with a "
                        + "newline after each line (';' is then part of the text), end a line with '; ' (a blank after "
                        + "the ';'), or give a passphrase with keyfile=");
            }
        }
        String[] lines = text.split(multiLine ? "\r?\n" : ";", -1);
        for (int i = 0; i < lines.length; i++) {
            String l = stripComment(lines[i]);
            if (!l.isBlank()) {
                out.add(fields(l, null, source, i + 1));
            }
        }
        if (out.isEmpty()) {
            throw new StackException(source, 0, "empty table");
        }
        return out;
    }

    private static Line fields(String rest, String name, String source, int lineNo) {
        List<String> f = new ArrayList<>(Arrays.asList(rest.trim().split("\\s+")));
        if (f.isEmpty() || f.getFirst().isEmpty()) {
            throw new StackException(source, lineNo, (name == null ? "" : name + ": ") + "no target given");
        }
        long start = -1;
        long length = -1;
        if (Character.isDigit(f.getFirst().charAt(0))) {
            if (f.size() < 3) {
                throw new StackException(source, lineNo, "a segment needs START LENGTH TARGET, got '" + rest.trim() + "'");
            }
            start = sectorsOrSize(f.get(0), "START", source, lineNo);
            length = sectorsOrSize(f.get(1), "LENGTH", source, lineNo);
            if (length == 0) {
                throw new StackException(source, lineNo, "LENGTH must not be 0");
            }
            f = f.subList(2, f.size());
        }
        String target = f.getFirst();
        return new Line(lineNo, name, start, length, target, List.copyOf(f.subList(1, f.size())));
    }

    /**
     * A number of 512-byte sectors, or a size with a suffix (4k, 1M, 2G) in bytes.
     *
     * @param s the field's text: a plain number counts 512-byte sectors, a suffixed one bytes
     * @param what the field's name in the message (START, LENGTH, ...)
     * @param source the name of the text in messages
     * @param line the 1-based line number in messages
     * @return the value in bytes
     * @throws StackException naming the line when the text is neither
     */
    public static long sectorsOrSize(String s, String what, String source, int line) {
        try {
            return TableArgs.sectorsOrSize(s);
        } catch (IllegalArgumentException e) {
            throw new StackException(source, line, what + " '" + s + "' is not a number of sectors or a size (4k, 1M, 2G)");
        }
    }

    /**
     * The line without its comment: a '#' that starts the line or follows a blank, as the shell
     * reads one. A '#' inside a word is the word's own (a path {@code d#1.img}, a
     * {@code passphrase=}), which a comment cut short without a word of warning.
     */
    private static String stripComment(String l) {
        for (int h = l.indexOf('#'); h >= 0; h = l.indexOf('#', h + 1)) {
            if (h == 0 || Character.isWhitespace(l.charAt(h - 1))) {
                return l.substring(0, h);
            }
        }
        return l;
    }

    static void checkName(String name, String source, int line) {
        if (name.isEmpty()) {
            throw new StackException(source, line, "a device name is missing before ':'");
        }
        if (!name.matches("[A-Za-z0-9_.-]+")) {
            throw new StackException(source, line, "device name '" + name + "' may hold only letters, digits, '_', '-' and '.'");
        }
    }
}
