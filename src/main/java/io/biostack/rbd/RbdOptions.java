package io.biostack.rbd;

import io.biostack.block.Sizes;

import java.nio.file.Path;
import java.util.List;

/**
 * What an {@code rbd} stack line says: {@code POOL/IMAGE [id=NAME] [conf=PATH] [keyring=PATH]
 * [size=SIZE] [timeout=SECONDS]}, the spelling of qemu's {@code rbd:POOL/IMAGE[:id=...][:conf=...]} with
 * stack-file separators.
 *
 * @param pool    the RADOS pool
 * @param image   the RBD image in it
 * @param id      the Ceph user without its {@code client.} prefix ({@code admin} by default, as
 *                the rbd tool's {@code --id})
 * @param conf    the ceph.conf to read, or null for librados' default search ({@code $CEPH_CONF},
 *                {@code /etc/ceph/ceph.conf}, {@code ~/.ceph/config}, {@code ./ceph.conf})
 * @param keyring a keyring file for cephx, or null for the one ceph.conf names
 * @param size    bytes to create the image with when it is missing, or -1: a missing image is
 *                an error
 * @param timeoutSeconds how long an I/O may wait for the cluster before it fails with TIMEOUT
 *                (librados' {@code rados_osd_op_timeout} and {@code rados_mon_op_timeout}); 0
 *                waits for as long as the cluster takes, as krbd and qemu do by default
 */
public record RbdOptions(String pool, String image, String id, Path conf, Path keyring, long size, long timeoutSeconds) {
    /**
     * Checks the options.
     *
     * @throws IllegalArgumentException when the spec is missing, the size is not a positive
     *         multiple of 512 (or -1), or the timeout is negative
     */
    public RbdOptions {
        if (pool == null || pool.isEmpty() || image == null || image.isEmpty()) {
            throw new IllegalArgumentException("needs POOL/IMAGE, e.g. rbd/vol1");
        }
        if (size != -1 && (size <= 0 || size % 512 != 0)) {
            throw new IllegalArgumentException("size= must be a positive multiple of 512 bytes, not " + size);
        }
        if (timeoutSeconds < 0) {
            throw new IllegalArgumentException("timeout= must not be negative");
        }
    }

    /**
     * Options without a timeout.
     *
     * @param pool    the RADOS pool
     * @param image   the image in it
     * @param id      the RADOS user without {@code client.}, or null for librados' default
     * @param conf    the ceph.conf to read, or null for librados' default search
     * @param keyring a keyring file for cephx, or null for the one ceph.conf names
     * @param size    create a missing image with this many bytes, or -1 to require it
     */
    public RbdOptions(String pool, String image, String id, Path conf, Path keyring, long size) {
        this(pool, image, id, conf, keyring, size, 0);
    }

    /**
     * Options for {@code POOL/IMAGE} with every default.
     *
     * @param poolSlashImage the image, e.g. {@code rbd/vol1}
     * @return the options
     * @throws IllegalArgumentException when it is not POOL/IMAGE
     */
    public static RbdOptions of(String poolSlashImage) {
        return parse(List.of(poolSlashImage));
    }

    /**
     * {@code pool/image} as the rbd tool writes it.
     *
     * @return the spec
     */
    public String spec() {
        return pool + "/" + image;
    }

    /**
     * The RADOS entity name: {@code client.ID}.
     *
     * @return the entity
     */
    public String entity() {
        return "client." + id;
    }

    /**
     * These options creating a missing image with {@code bytes}.
     *
     * @param bytes the size, a positive multiple of 512, or -1
     * @return a copy with that size
     */
    public RbdOptions withSize(long bytes) {
        return new RbdOptions(pool, image, id, conf, keyring, bytes, timeoutSeconds);
    }

    /**
     * Parses a stack line's arguments (without the target name). Throws
     * {@link IllegalArgumentException} with a message that says what is wrong and what is
     * accepted.
     *
     * @param args {@code POOL/IMAGE} then {@code key=value} options
     * @return the options
     * @throws IllegalArgumentException saying what is wrong and what is accepted
     */
    public static RbdOptions parse(List<String> args) {
        if (args.isEmpty()) {
            throw new IllegalArgumentException("missing POOL/IMAGE, e.g. rbd/vol1");
        }
        String spec = args.get(0);
        int slash = spec.indexOf('/');
        if (slash <= 0 || slash == spec.length() - 1 || spec.indexOf('/', slash + 1) >= 0 || spec.contains("=")) {
            throw new IllegalArgumentException("'" + spec + "' is not POOL/IMAGE (e.g. rbd/vol1)");
        }
        String pool = spec.substring(0, slash);
        String image = spec.substring(slash + 1);
        String id = "admin";
        Path conf = null;
        Path keyring = null;
        long size = -1;
        long timeout = 0;
        for (String o : args.subList(1, args.size())) {
            int eq = o.indexOf('=');
            String k = eq < 0 ? o : o.substring(0, eq);
            String v = eq < 0 ? "" : o.substring(eq + 1);
            if (eq < 0 || v.isEmpty()) {
                if (!List.of("id", "conf", "keyring", "size", "timeout").contains(k)) {
                    throw unknown(o);
                }
                throw new IllegalArgumentException(k + " needs a value: " + k + "=...");
            }
            switch (k) {
                case "id" -> id = v.startsWith("client.") ? v.substring(7) : v;
                case "conf" -> conf = Path.of(v);
                case "keyring" -> keyring = Path.of(v);
                case "size" -> {
                    try {
                        size = Sizes.parse(v);
                    } catch (IllegalArgumentException e) {
                        throw new IllegalArgumentException("size: " + e.getMessage());
                    }
                }
                case "timeout" -> timeout = seconds(v);
                default -> throw unknown(o);
            }
        }
        return new RbdOptions(pool, image, id, conf, keyring, size, timeout);
    }

    private static IllegalArgumentException unknown(String o) {
        return new IllegalArgumentException("unknown option '" + o + "' (id=, conf=, keyring=, size=, timeout=)");
    }

    /** Whole seconds: {@code 30}, {@code 30s}, {@code 2m}. */
    private static long seconds(String v) {
        long mul = 1;
        String n = v;
        if (v.endsWith("s")) {
            n = v.substring(0, v.length() - 1);
        } else if (v.endsWith("m")) {
            n = v.substring(0, v.length() - 1);
            mul = 60;
        }
        try {
            long s = Long.parseLong(n);
            if (s < 0) {
                throw new NumberFormatException();
            }
            return s * mul;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("timeout= must be whole seconds (30, 30s, 2m), not '" + v + "'");
        }
    }
}
