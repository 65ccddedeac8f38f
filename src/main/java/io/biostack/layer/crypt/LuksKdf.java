package io.biostack.layer.crypt;

import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.Locale;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The key derivation pieces of LUKS1 (LUKS1 On-Disk Format Specification 1.2.3, sections 2.3
 * and 2.4): PBKDF2 (RFC 8018 section 5.2) and the anti-forensic splitter (AF-split / AF-merge
 * with the hash's {@code diffuse}).
 *
 * <p>PBKDF2 is computed here over {@link Mac} rather than through
 * {@code SecretKeyFactory("PBKDF2WithHmac...")}: the JDK's factory takes the password as
 * {@code char[]} and encodes it as UTF-8, which changes a binary key file. Stateless; nothing
 * is kept.
 */
public final class LuksKdf {
    private LuksKdf() {
    }

    /** The JDK names of a LUKS hash spec: {@code {MessageDigest, Mac}}; throws UNSUPPORTED for others. */
    static String[] jdkNames(String hashSpec) {
        return switch (hashSpec.toLowerCase(Locale.ROOT)) {
            case "sha1" -> new String[] {"SHA-1", "HmacSHA1"};
            case "sha224" -> new String[] {"SHA-224", "HmacSHA224"};
            case "sha256" -> new String[] {"SHA-256", "HmacSHA256"};
            case "sha384" -> new String[] {"SHA-384", "HmacSHA384"};
            case "sha512" -> new String[] {"SHA-512", "HmacSHA512"};
            default -> throw new LuksException(LuksException.Reason.UNSUPPORTED,
                    "LUKS hash '" + hashSpec + "' is not supported (sha1, sha224, sha256, sha384, sha512)");
        };
    }

    /**
     * PBKDF2-HMAC-{@code hashSpec} (RFC 8018 section 5.2).
     *
     * @param hashSpec   the hash, e.g. sha256
     * @param password   the password bytes
     * @param salt       the salt
     * @param iterations the iteration count, at least 1
     * @param length     bytes of output
     * @return the derived key; the caller wipes it
     */
    public static byte[] pbkdf2(String hashSpec, byte[] password, byte[] salt, int iterations, int length) {
        if (iterations < 1) {
            throw new IllegalArgumentException("PBKDF2 needs at least one iteration, not " + iterations);
        }
        if (password.length == 0) {
            throw new IllegalArgumentException("empty passphrase");
        }
        try {
            Mac mac = Mac.getInstance(jdkNames(hashSpec)[1]);
            mac.init(new SecretKeySpec(password, mac.getAlgorithm()));
            int hLen = mac.getMacLength();
            byte[] out = new byte[length];
            byte[] u = new byte[hLen];
            byte[] t = new byte[hLen];
            byte[] index = new byte[4];
            for (int block = 1, pos = 0; pos < length; block++, pos += hLen) {
                index[0] = (byte) (block >>> 24);
                index[1] = (byte) (block >>> 16);
                index[2] = (byte) (block >>> 8);
                index[3] = (byte) block;
                mac.update(salt);
                mac.update(index);
                mac.doFinal(u, 0);
                System.arraycopy(u, 0, t, 0, hLen);
                for (int i = 1; i < iterations; i++) {
                    mac.update(u);
                    mac.doFinal(u, 0);
                    for (int k = 0; k < hLen; k++) {
                        t[k] ^= u[k];
                    }
                }
                System.arraycopy(t, 0, out, pos, Math.min(hLen, length - pos));
            }
            Arrays.fill(u, (byte) 0);
            Arrays.fill(t, (byte) 0);
            return out;
        } catch (GeneralSecurityException e) {
            throw new LuksException(LuksException.Reason.UNSUPPORTED, "PBKDF2 with " + hashSpec + " failed: " + e, e);
        }
    }

    /**
     * AF-merge (spec section 2.4, figure 4): from {@code stripes} blocks of {@code blockSize}
     * bytes, XOR each into a running block that is diffused after every block but the last;
     * the last XOR gives the key.
     *
     * @param material  the decrypted stripes
     * @param blockSize the key length
     * @param stripes   the stripe count
     * @param hashSpec  the diffusion hash
     * @return the merged key; the caller wipes it
     */
    public static byte[] afMerge(byte[] material, int blockSize, int stripes, String hashSpec) {
        if ((long) blockSize * stripes > material.length) {
            throw new IllegalArgumentException("key material of " + material.length + " bytes is shorter than "
                    + stripes + " stripes of " + blockSize);
        }
        MessageDigest md = digest(hashSpec);
        byte[] block = new byte[blockSize];
        for (int i = 0; i < stripes - 1; i++) {
            xor(block, material, i * blockSize);
            diffuse(md, block);
        }
        xor(block, material, (stripes - 1) * blockSize);
        return block;
    }

    /**
     * AF-split: {@code stripes - 1} random blocks and a last one chosen so that
     * {@link #afMerge} gives back {@code key}.
     *
     * @param key      the key to split
     * @param stripes  the stripe count
     * @param hashSpec the diffusion hash
     * @param random   where the random stripes come from
     * @return {@code stripes * key.length} bytes; the caller wipes them
     */
    public static byte[] afSplit(byte[] key, int stripes, String hashSpec, SecureRandom random) {
        int n = key.length;
        MessageDigest md = digest(hashSpec);
        byte[] out = new byte[n * stripes];
        byte[] block = new byte[n];
        byte[] r = new byte[n * (stripes - 1)];
        random.nextBytes(r); // one call: SecureRandom per call is slow, 4000 calls noticeably so
        System.arraycopy(r, 0, out, 0, r.length);
        Arrays.fill(r, (byte) 0);
        for (int i = 0; i < stripes - 1; i++) {
            xor(block, out, i * n);
            diffuse(md, block);
        }
        for (int k = 0; k < n; k++) {
            out[(stripes - 1) * n + k] = (byte) (block[k] ^ key[k]);
        }
        Arrays.fill(block, (byte) 0);
        return out;
    }

    /**
     * The spec's {@code diffuse}: each digest-sized piece {@code i} of the block is replaced by
     * {@code H(be32(i) || piece)}; a last partial piece takes the first bytes of its hash.
     */
    static void diffuse(MessageDigest md, byte[] block) {
        int ds = md.getDigestLength();
        byte[] index = new byte[4];
        for (int i = 0, off = 0; off < block.length; i++, off += ds) {
            int len = Math.min(ds, block.length - off);
            index[0] = (byte) (i >>> 24);
            index[1] = (byte) (i >>> 16);
            index[2] = (byte) (i >>> 8);
            index[3] = (byte) i;
            md.update(index);
            md.update(block, off, len);
            try {
                if (len == ds) {
                    md.digest(block, off, ds);
                } else {
                    System.arraycopy(md.digest(), 0, block, off, len);
                }
            } catch (java.security.DigestException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    private static void xor(byte[] into, byte[] src, int srcOff) {
        for (int k = 0; k < into.length; k++) {
            into[k] ^= src[srcOff + k];
        }
    }

    private static MessageDigest digest(String hashSpec) {
        try {
            return MessageDigest.getInstance(jdkNames(hashSpec)[0]);
        } catch (GeneralSecurityException e) {
            throw new LuksException(LuksException.Reason.UNSUPPORTED, "hash " + hashSpec + " is not available", e);
        }
    }
}
