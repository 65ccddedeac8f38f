package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.nbd.client.NbdClient;
import io.biostack.nbd.client.NbdUri;

import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Locale;

/**
 * Leaves named by one string, everywhere a FILE goes ({@code serve}, {@code bench}), in the
 * spellings qemu-nbd and libnbd use: an NBD URI ({@code nbd://}, {@code nbds://},
 * {@code nbd+unix://}, {@code nbds+unix://}) opens the NBD client leaf; {@code rbd:POOL/IMAGE}
 * opens the target registered as {@code rbd}; anything else is a file, and the caller opens it as
 * it always did. Also the stack target {@code NAME: nbd URI [connections=N] [timeout=DURATION]}.
 */
public final class Leaves {
    private Leaves() {
    }

    /** True when {@code spec} names a remote leaf rather than a file. */
    public static boolean isRemote(String spec) {
        return spec != null && (NbdUri.looksLikeNbd(spec) || spec.startsWith("rbd:"));
    }

    /**
     * Opens the remote leaf {@code spec} names as device {@code name}. The caller owns the device
     * and closes it. Throws {@link IllegalArgumentException} for a malformed spec and
     * {@link IOException} (naming the URI) for one that can't be reached.
     */
    public static BlockDevice open(String name, String spec) throws IOException {
        if (NbdUri.looksLikeNbd(spec)) {
            return NbdClient.open(name, NbdUri.parse(spec), NbdClient.Options.defaults());
        }
        if (spec.startsWith("rbd:")) {
            Targets.Kind rbd = Targets.kind("rbd");
            if (rbd == null) {
                throw new IllegalArgumentException(spec + ": this build has no rbd target");
            }
            return rbd.parse(List.of(spec.substring(4))).open(name, -1, n -> {
                throw new IllegalArgumentException("rbd:POOL/IMAGE names no other device");
            });
        }
        throw new IllegalArgumentException("'" + spec + "' is not an NBD URI or rbd:POOL/IMAGE");
    }

    /** The {@code nbd} stack target: {@code nbd URI [connections=N] [timeout=DURATION]}. */
    static Targets.Spec nbd(Targets.Args a) {
        String text = a.next("URI");
        NbdUri uri;
        try {
            uri = NbdUri.parse(text);
        } catch (IllegalArgumentException e) {
            throw a.bad(e.getMessage());
        }
        NbdClient.Options o = NbdClient.Options.defaults();
        while (a.hasNext()) {
            String opt = a.next("option");
            int eq = opt.indexOf('=');
            String k = eq < 0 ? opt : opt.substring(0, eq);
            String v = eq < 0 ? "" : opt.substring(eq + 1);
            switch (k) {
                case "connections" -> {
                    try {
                        o = o.withConnections(Integer.parseInt(v));
                    } catch (IllegalArgumentException e) {
                        throw a.bad("connections= takes a number from 1 to 64, not '" + v + "'");
                    }
                }
                case "timeout" -> o = o.withTimeout(duration(a, v));
                default -> throw a.bad("unknown option '" + opt + "' (connections=N, timeout=DURATION)");
            }
        }
        NbdClient.Options opts = o;
        return a.spec((name, len, r) -> NbdClient.open(name, uri, opts));
    }

    /** {@code 30}, {@code 30s}, {@code 500ms}, {@code 2m}: a positive duration (bare numbers are seconds). */
    static Duration duration(Targets.Args a, String v) {
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
            throw a.bad("timeout= takes a positive duration such as 30s, 500ms or 2m, not '" + v + "'");
        }
    }
}
