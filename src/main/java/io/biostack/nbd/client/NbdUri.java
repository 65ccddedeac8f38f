package io.biostack.nbd.client;

import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * An NBD URI as libnbd and qemu read it (NetworkBlockDevice/nbd {@code doc/uri.md}):
 * {@code nbd[s][+unix]://[user@][host[:port]]/[export][?query]}.
 *
 * <ul>
 * <li>{@code nbd://host[:port]/export}: TCP, port 10809 by default;</li>
 * <li>{@code nbd+unix:///export?socket=PATH}: a Unix domain socket (host must be empty);</li>
 * <li>{@code nbds://} and {@code nbds+unix://}: TLS required, with {@code tls-certificates=DIR}
 *     (X.509: {@code ca-cert.pem}, {@code client-cert.pem}, {@code client-key.pem}) or
 *     {@code tls-psk-file=FILE} (PSK, the identity is the {@code user@} part or the login name).</li>
 * </ul>
 * The export name is the path without its leading slash, percent-decoded ("" is the default
 * export). Unknown query parameters are refused, so a typo is not silently ignored.
 *
 * @param uri            the text as given (used in messages; it names no secrets)
 * @param tls            true for {@code nbds}
 * @param host           TCP host, null for a Unix socket
 * @param port           TCP port
 * @param socket         the Unix socket path, null for TCP
 * @param export         the export name
 * @param user           the PSK identity, or null
 * @param tlsCertificates folder of X.509 files, or null
 * @param tlsPskFile     PSK file (psktool's {@code identity:hexkey} lines), or null
 */
public record NbdUri(String uri, boolean tls, String host, int port, Path socket, String export,
                     String user, Path tlsCertificates, Path tlsPskFile) {

    /** The IANA port for NBD (doc/proto.md, "Newstyle negotiation"). */
    public static final int DEFAULT_PORT = 10809;

    /**
     * True when {@code s} starts with one of the four NBD URI schemes.
     *
     * @param s any text, for example a stack file's leaf spec
     * @return true for {@code nbd://}, {@code nbds://}, {@code nbd+unix://} and
     *         {@code nbds+unix://}
     */
    public static boolean looksLikeNbd(String s) {
        String l = s.toLowerCase(Locale.ROOT);
        return l.startsWith("nbd://") || l.startsWith("nbds://") || l.startsWith("nbd+unix://")
                || l.startsWith("nbds+unix://");
    }

    /**
     * Parses {@code s}; throws {@link IllegalArgumentException} whose message quotes the URI and
     * says what is wrong with it.
     *
     * @param s an NBD URI, as qemu and nbdkit spell it (doc/uri.md)
     * @return the parsed URI
     * @throws IllegalArgumentException when the URI is malformed
     */
    public static NbdUri parse(String s) {
        int colon = s.indexOf("://");
        if (colon < 0) {
            throw bad(s, "not an NBD URI (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH)");
        }
        String scheme = s.substring(0, colon).toLowerCase(Locale.ROOT);
        boolean tls;
        boolean unix;
        switch (scheme) {
            case "nbd" -> { tls = false; unix = false; }
            case "nbds" -> { tls = true; unix = false; }
            case "nbd+unix" -> { tls = false; unix = true; }
            case "nbds+unix" -> { tls = true; unix = true; }
            default -> throw bad(s, "unknown scheme '" + scheme + "' (nbd, nbds, nbd+unix, nbds+unix)");
        }
        String rest = s.substring(colon + 3);
        String query = null;
        int q = rest.indexOf('?');
        if (q >= 0) {
            query = rest.substring(q + 1);
            rest = rest.substring(0, q);
        }
        if (rest.indexOf('#') >= 0) {
            throw bad(s, "a fragment (#...) has no meaning in an NBD URI");
        }
        int slash = rest.indexOf('/');
        String authority = slash < 0 ? rest : rest.substring(0, slash);
        String path = slash < 0 ? "" : rest.substring(slash + 1);
        String user = null;
        int at = authority.lastIndexOf('@');
        if (at >= 0) {
            user = decode(s, authority.substring(0, at));
            if (user.indexOf(':') >= 0) {
                throw bad(s, "a password in the URI is not supported (use tls-psk-file=)");
            }
            authority = authority.substring(at + 1);
        }
        String host = null;
        int port = DEFAULT_PORT;
        if (!authority.isEmpty()) {
            if (authority.startsWith("[")) {
                int end = authority.indexOf(']');
                if (end < 0) {
                    throw bad(s, "unclosed '[' in the IPv6 host");
                }
                host = authority.substring(1, end);
                authority = authority.substring(end + 1);
                if (!authority.isEmpty() && !authority.startsWith(":")) {
                    throw bad(s, "junk after the IPv6 host");
                }
                if (authority.startsWith(":")) {
                    port = port(s, authority.substring(1));
                }
            } else {
                int pc = authority.lastIndexOf(':');
                host = pc < 0 ? authority : authority.substring(0, pc);
                if (pc >= 0) {
                    port = port(s, authority.substring(pc + 1));
                }
            }
            if (host.isEmpty()) {
                throw bad(s, "empty host");
            }
        }
        Map<String, String> params = new LinkedHashMap<>();
        if (query != null && !query.isEmpty()) {
            for (String kv : query.split("&")) {
                int eq = kv.indexOf('=');
                if (eq <= 0) {
                    throw bad(s, "query parameter '" + kv + "' is not NAME=VALUE");
                }
                String k = decode(s, kv.substring(0, eq));
                if (params.put(k, decode(s, kv.substring(eq + 1))) != null) {
                    throw bad(s, "query parameter '" + k + "' given twice");
                }
            }
        }
        Path socket = null;
        Path certs = null;
        Path psk = null;
        for (Map.Entry<String, String> e : params.entrySet()) {
            switch (e.getKey()) {
                case "socket" -> socket = Path.of(e.getValue());
                case "tls-certificates" -> certs = Path.of(e.getValue());
                case "tls-psk-file" -> psk = Path.of(e.getValue());
                default -> throw bad(s, "unknown query parameter '" + e.getKey()
                        + "' (socket=, tls-certificates=, tls-psk-file=)");
            }
        }
        if (unix) {
            if (host != null) {
                throw bad(s, "a " + scheme + " URI has no host: write " + scheme + ":///EXPORT?socket=PATH");
            }
            if (socket == null) {
                throw bad(s, "a " + scheme + " URI needs ?socket=PATH");
            }
        } else {
            if (host == null) {
                throw bad(s, "missing host: " + scheme + "://HOST[:PORT]/EXPORT");
            }
            if (socket != null) {
                throw bad(s, "socket= belongs to nbd+unix:// URIs");
            }
        }
        if (!tls && (certs != null || psk != null)) {
            throw bad(s, "tls-certificates= and tls-psk-file= need an nbds:// or nbds+unix:// URI");
        }
        if (certs != null && psk != null) {
            throw bad(s, "give tls-certificates= or tls-psk-file=, not both");
        }
        return new NbdUri(s, tls, host, port, socket, decode(s, path), user, certs, psk);
    }

    private static int port(String s, String p) {
        try {
            int v = Integer.parseInt(p);
            if (v < 1 || v > 65535) {
                throw new NumberFormatException();
            }
            return v;
        } catch (NumberFormatException e) {
            throw bad(s, "port '" + p + "' is not a number from 1 to 65535");
        }
    }

    private static String decode(String s, String part) {
        try {
            return URLDecoder.decode(part.replace("+", "%2B"), StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
            throw bad(s, "bad percent-encoding in '" + part + "'");
        }
    }

    private static IllegalArgumentException bad(String s, String why) {
        return new IllegalArgumentException("bad NBD URI '" + s + "': " + why);
    }

    /**
     * Where the connection goes, for messages: "10.0.0.2:10809" or "unix:/run/nbd.sock".
     *
     * @return the host and port, or {@code unix:} and the socket path
     */
    public String endpoint() {
        return socket != null ? "unix:" + socket : (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
    }

    @Override
    public String toString() {
        return uri;
    }
}
