package io.biostack.layer.crypt;

import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The small JSON reader and writer of the LUKS2 metadata area (RFC 8259, as cryptsetup's json-c
 * writes it). What it does not understand it keeps: every value read remembers the exact text it
 * was read from, and a value that was not changed is written back as that text, byte for byte.
 * So unknown objects, unknown keys, tokens and number spellings survive a header rewrite
 * (LUKS2 On-Disk Format, section 3: "unknown objects must be preserved").
 *
 * <p>Values: {@link Obj} (key order kept), {@link Arr}, {@link Str}, {@link Num} (kept as text,
 * so no precision is lost), {@link Lit} ({@code true}, {@code false}, {@code null}). Only objects
 * and arrays are mutable; changing one drops its remembered text, and its parents' (they are
 * written fresh, compactly, as json-c's {@code JSON_C_TO_STRING_PLAIN} does). Not thread-safe.
 */
final class Luks2Json {
    /** Deepest nesting accepted: the metadata is 4 levels deep; a hostile header gets no stack overflow. */
    private static final int MAX_DEPTH = 64;

    private Luks2Json() {
    }

    /** A JSON value; {@code raw} is the text it was read from, or null once changed or when built. */
    abstract static sealed class Value permits Obj, Arr, Str, Num, Lit {
        String raw;
        Value parent;

        void changed() {
            for (Value v = this; v != null; v = v.parent) {
                v.raw = null;
            }
        }

        abstract void writeFresh(StringBuilder sb);

        final void write(StringBuilder sb) {
            if (raw != null) {
                sb.append(raw);
            } else {
                writeFresh(sb);
            }
        }

        /** The text of this value: its original text where unchanged. */
        final String text() {
            StringBuilder sb = new StringBuilder();
            write(sb);
            return sb.toString();
        }
    }

    /** An object; keys in their order. */
    static final class Obj extends Value {
        private final LinkedHashMap<String, Value> members = new LinkedHashMap<>();

        Value get(String key) {
            return members.get(key);
        }

        Map<String, Value> members() {
            return Collections.unmodifiableMap(members);
        }

        Obj put(String key, Value v) {
            v.parent = this;
            members.put(key, v);
            changed();
            return this;
        }

        Obj put(String key, String s) {
            return put(key, new Str(s));
        }

        Obj put(String key, long n) {
            return put(key, new Num(Long.toString(n)));
        }

        void remove(String key) {
            if (members.remove(key) != null) {
                changed();
            }
        }

        @Override
        void writeFresh(StringBuilder sb) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<String, Value> e : members.entrySet()) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                Str.quote(sb, e.getKey());
                sb.append(':');
                e.getValue().write(sb);
            }
            sb.append('}');
        }
    }

    /** An array. */
    static final class Arr extends Value {
        private final List<Value> items = new ArrayList<>();

        List<Value> items() {
            return Collections.unmodifiableList(items);
        }

        Arr add(Value v) {
            v.parent = this;
            items.add(v);
            changed();
            return this;
        }

        void removeIf(java.util.function.Predicate<Value> p) {
            if (items.removeIf(p)) {
                changed();
            }
        }

        @Override
        void writeFresh(StringBuilder sb) {
            sb.append('[');
            for (int i = 0; i < items.size(); i++) {
                if (i > 0) {
                    sb.append(',');
                }
                items.get(i).write(sb);
            }
            sb.append(']');
        }
    }

    /** A string. */
    static final class Str extends Value {
        final String value;

        Str(String value) {
            this.value = value;
        }

        @Override
        void writeFresh(StringBuilder sb) {
            quote(sb, value);
        }

        static void quote(StringBuilder sb, String s) {
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"' -> sb.append("\\\"");
                    case '\\' -> sb.append("\\\\");
                    case '\n' -> sb.append("\\n");
                    case '\r' -> sb.append("\\r");
                    case '\t' -> sb.append("\\t");
                    case '\b' -> sb.append("\\b");
                    case '\f' -> sb.append("\\f");
                    default -> {
                        if (c < 0x20) {
                            sb.append(String.format("\\u%04x", (int) c));
                        } else {
                            sb.append(c);
                        }
                    }
                }
            }
            sb.append('"');
        }
    }

    /** A number, kept as its text. */
    static final class Num extends Value {
        final String text;

        Num(String text) {
            this.text = text;
        }

        @Override
        void writeFresh(StringBuilder sb) {
            sb.append(text);
        }
    }

    /** {@code true}, {@code false} or {@code null}. */
    static final class Lit extends Value {
        final String word;

        Lit(String word) {
            this.word = word;
        }

        @Override
        void writeFresh(StringBuilder sb) {
            sb.append(word);
        }
    }

    /** A JSON text that cannot be read: where and why. */
    static final class SyntaxException extends IllegalArgumentException {
        SyntaxException(String why, int at) {
            super(why + " at character " + at);
        }
    }

    /** Parses {@code text}: one value, with only white space around it. */
    static Value parse(String text) {
        Parser p = new Parser(text);
        p.ws();
        Value v = p.value(0);
        p.ws();
        if (p.pos != text.length()) {
            throw new SyntaxException("text after the JSON value", p.pos);
        }
        return v;
    }

    /** The UTF-8 bytes of {@code v}'s text. */
    static byte[] bytes(Value v) {
        return v.text().getBytes(StandardCharsets.UTF_8);
    }

    private static final class Parser {
        private final String s;
        private int pos;

        Parser(String s) {
            this.s = s;
        }

        void ws() {
            while (pos < s.length()) {
                char c = s.charAt(pos);
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                    return;
                }
                pos++;
            }
        }

        Value value(int depth) {
            if (depth > MAX_DEPTH) {
                throw new SyntaxException("nested deeper than " + MAX_DEPTH, pos);
            }
            if (pos >= s.length()) {
                throw new SyntaxException("unexpected end", pos);
            }
            int from = pos;
            char c = s.charAt(pos);
            Value v = switch (c) {
                case '{' -> object(depth);
                case '[' -> array(depth);
                case '"' -> new Str(string());
                case 't' -> literal("true");
                case 'f' -> literal("false");
                case 'n' -> literal("null");
                default -> {
                    if (c == '-' || (c >= '0' && c <= '9')) {
                        yield number();
                    }
                    throw new SyntaxException("unexpected '" + c + "'", pos);
                }
            };
            v.raw = s.substring(from, pos);
            return v;
        }

        private Obj object(int depth) {
            Obj o = new Obj();
            pos++;
            ws();
            if (peek() == '}') {
                pos++;
                return o;
            }
            while (true) {
                ws();
                if (peek() != '"') {
                    throw new SyntaxException("expected a key", pos);
                }
                String key = string();
                ws();
                expect(':');
                ws();
                Value v = value(depth + 1);
                if (o.members.containsKey(key)) {
                    throw new SyntaxException("duplicate key \"" + key + "\"", pos);
                }
                v.parent = o;
                o.members.put(key, v);
                ws();
                char c = peek();
                pos++;
                if (c == '}') {
                    return o;
                }
                if (c != ',') {
                    throw new SyntaxException("expected ',' or '}'", pos - 1);
                }
            }
        }

        private Arr array(int depth) {
            Arr a = new Arr();
            pos++;
            ws();
            if (peek() == ']') {
                pos++;
                return a;
            }
            while (true) {
                ws();
                Value v = value(depth + 1);
                v.parent = a;
                a.items.add(v);
                ws();
                char c = peek();
                pos++;
                if (c == ']') {
                    return a;
                }
                if (c != ',') {
                    throw new SyntaxException("expected ',' or ']'", pos - 1);
                }
            }
        }

        private String string() {
            pos++;
            StringBuilder sb = new StringBuilder();
            while (true) {
                if (pos >= s.length()) {
                    throw new SyntaxException("unterminated string", pos);
                }
                char c = s.charAt(pos++);
                if (c == '"') {
                    return sb.toString();
                }
                if (c < 0x20) {
                    throw new SyntaxException("control character in a string", pos - 1);
                }
                if (c != '\\') {
                    sb.append(c);
                    continue;
                }
                char e = peek();
                pos++;
                switch (e) {
                    case '"', '\\', '/' -> sb.append(e);
                    case 'b' -> sb.append('\b');
                    case 'f' -> sb.append('\f');
                    case 'n' -> sb.append('\n');
                    case 'r' -> sb.append('\r');
                    case 't' -> sb.append('\t');
                    case 'u' -> {
                        if (pos + 4 > s.length()) {
                            throw new SyntaxException("short \\u escape", pos);
                        }
                        try {
                            sb.append((char) Integer.parseInt(s.substring(pos, pos + 4), 16));
                        } catch (NumberFormatException x) {
                            throw new SyntaxException("bad \\u escape", pos);
                        }
                        pos += 4;
                    }
                    default -> throw new SyntaxException("bad escape '\\" + e + "'", pos - 1);
                }
            }
        }

        private Num number() {
            int from = pos;
            if (peek() == '-') {
                pos++;
            }
            int digits = pos;
            while (pos < s.length() && Character.isDigit(s.charAt(pos))) {
                pos++;
            }
            if (pos == digits) {
                throw new SyntaxException("a number without digits", from);
            }
            if (pos < s.length() && s.charAt(pos) == '.') {
                pos++;
                int f = pos;
                while (pos < s.length() && Character.isDigit(s.charAt(pos))) {
                    pos++;
                }
                if (f == pos) {
                    throw new SyntaxException("no digits after '.'", pos);
                }
            }
            if (pos < s.length() && (s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
                pos++;
                if (pos < s.length() && (s.charAt(pos) == '+' || s.charAt(pos) == '-')) {
                    pos++;
                }
                int e = pos;
                while (pos < s.length() && Character.isDigit(s.charAt(pos))) {
                    pos++;
                }
                if (e == pos) {
                    throw new SyntaxException("no digits in the exponent", pos);
                }
            }
            return new Num(s.substring(from, pos));
        }

        private Lit literal(String word) {
            if (!s.startsWith(word, pos)) {
                throw new SyntaxException("unexpected token", pos);
            }
            pos += word.length();
            return new Lit(word);
        }

        private char peek() {
            if (pos >= s.length()) {
                throw new SyntaxException("unexpected end", pos);
            }
            return s.charAt(pos);
        }

        private void expect(char c) {
            if (peek() != c) {
                throw new SyntaxException("expected '" + c + "'", pos);
            }
            pos++;
        }
    }

    // ---- typed access, with LUKS2's conventions (uint64 as strings, binary as base64) ----------

    /** Thrown by the typed getters: {@code where} names the member, for the caller's message. */
    static final class FieldException extends IllegalArgumentException {
        FieldException(String why) {
            super(why);
        }
    }

    static Obj obj(Obj o, String key, String where) {
        Value v = o.get(key);
        if (v instanceof Obj x) {
            return x;
        }
        throw missing(v, where + "." + key, "an object");
    }

    static Obj optObj(Obj o, String key, String where) {
        Value v = o.get(key);
        if (v == null) {
            return null;
        }
        if (v instanceof Obj x) {
            return x;
        }
        throw missing(v, where + "." + key, "an object");
    }

    static String str(Obj o, String key, String where) {
        Value v = o.get(key);
        if (v instanceof Str x) {
            return x.value;
        }
        throw missing(v, where + "." + key, "a string");
    }

    /** A JSON integer that fits an int (cryptsetup's {@code json_object_get_int}). */
    static int integer(Obj o, String key, String where) {
        Value v = o.get(key);
        if (v instanceof Num n) {
            try {
                return Integer.parseInt(n.text);
            } catch (NumberFormatException e) {
                throw new FieldException(where + "." + key + " is " + n.text + ", not a 32-bit integer");
            }
        }
        throw missing(v, where + "." + key, "a number");
    }

    /** A uint64 written as a decimal string (LUKS2 format section 3.1). */
    static long u64(Obj o, String key, String where) {
        Value v = o.get(key);
        if (v instanceof Str x) {
            return u64(x.value, where + "." + key);
        }
        throw missing(v, where + "." + key, "a uint64 string");
    }

    static long u64(String s, String where) {
        if (s.isEmpty() || s.length() > 20 || !s.chars().allMatch(Character::isDigit)) {
            throw new FieldException(where + " is \"" + s + "\", not a uint64 in decimal");
        }
        BigInteger b = new BigInteger(s);
        if (b.bitLength() > 63) {
            throw new FieldException(where + " is " + s + ", beyond 2^63");
        }
        return b.longValue();
    }

    static byte[] base64(Obj o, String key, String where) {
        String s = str(o, key, where);
        try {
            return java.util.Base64.getDecoder().decode(s);
        } catch (IllegalArgumentException e) {
            throw new FieldException(where + "." + key + " is not base64");
        }
    }

    static String base64(byte[] b) {
        return java.util.Base64.getEncoder().encodeToString(b);
    }

    private static FieldException missing(Value v, String where, String what) {
        return new FieldException(where + (v == null ? " is missing" : " is not " + what));
    }
}
