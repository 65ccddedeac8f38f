package io.biostack.cli;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** A small JSON reader for tests that compare biostack's JSON with qemu-img's (objects as maps, so order doesn't count). */
final class ImgJson {
    private final String s;
    private int p;

    private ImgJson(String s) {
        this.s = s;
    }

    static Object parse(String text) {
        ImgJson j = new ImgJson(text);
        Object v = j.value();
        j.ws();
        if (j.p != text.length()) {
            throw new IllegalArgumentException("trailing text at " + j.p + ": " + text);
        }
        return v;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> object(String text) {
        return (Map<String, Object>) parse(text);
    }

    private void ws() {
        while (p < s.length() && Character.isWhitespace(s.charAt(p))) {
            p++;
        }
    }

    private Object value() {
        ws();
        char c = s.charAt(p);
        switch (c) {
            case '{' -> {
                p++;
                Map<String, Object> m = new LinkedHashMap<>();
                ws();
                if (s.charAt(p) == '}') {
                    p++;
                    return m;
                }
                while (true) {
                    ws();
                    String k = string();
                    ws();
                    expect(':');
                    m.put(k, value());
                    ws();
                    if (s.charAt(p) == ',') {
                        p++;
                        continue;
                    }
                    expect('}');
                    return m;
                }
            }
            case '[' -> {
                p++;
                List<Object> l = new ArrayList<>();
                ws();
                if (s.charAt(p) == ']') {
                    p++;
                    return l;
                }
                while (true) {
                    l.add(value());
                    ws();
                    if (s.charAt(p) == ',') {
                        p++;
                        continue;
                    }
                    expect(']');
                    return l;
                }
            }
            case '"' -> {
                return string();
            }
            default -> {
                int start = p;
                while (p < s.length() && "{}[],: \n\r\t".indexOf(s.charAt(p)) < 0) {
                    p++;
                }
                String t = s.substring(start, p);
                return switch (t) {
                    case "true" -> true;
                    case "false" -> false;
                    case "null" -> null;
                    default -> Long.parseLong(t);
                };
            }
        }
    }

    private String string() {
        expect('"');
        StringBuilder b = new StringBuilder();
        while (s.charAt(p) != '"') {
            char c = s.charAt(p++);
            if (c == '\\') {
                char e = s.charAt(p++);
                switch (e) {
                    case 'n' -> b.append('\n');
                    case 't' -> b.append('\t');
                    case 'r' -> b.append('\r');
                    case 'u' -> {
                        b.append((char) Integer.parseInt(s.substring(p, p + 4), 16));
                        p += 4;
                    }
                    default -> b.append(e);
                }
            } else {
                b.append(c);
            }
        }
        p++;
        return b.toString();
    }

    private void expect(char c) {
        if (s.charAt(p) != c) {
            throw new IllegalArgumentException("expected '" + c + "' at " + p + " in " + s);
        }
        p++;
    }
}
