package io.biostack.layer.crypt;

import java.util.Locale;

/**
 * A dm-crypt cipher specification, {@code cipher-chainmode-ivmode}
 * (Documentation/admin-guide/device-mapper/dm-crypt.rst, "&lt;cipher&gt;"), checked against what
 * biostack implements: AES in XTS mode with {@code plain64} or {@code plain} IVs, also spelled in
 * the kernel crypto API form {@code capi:xts(aes)-plain64}.
 *
 * @param cipher the block cipher ("aes")
 * @param chainMode the chaining mode ("xts")
 * @param ivMode the IV generator ("plain64", or "plain": the low 32 bits of the sector)
 */
public record CipherSpec(String cipher, String chainMode, String ivMode) {
    /** The only spec LUKS1 volumes made by qemu-img and current cryptsetup use. */
    public static final CipherSpec AES_XTS_PLAIN64 = new CipherSpec("aes", "xts", "plain64");

    /**
     * Parses a spec such as {@code aes-xts-plain64}.
     *
     * @param spec the dm-crypt cipher spec
     * @return the parsed spec
     * @throws IllegalArgumentException naming what is not supported
     */
    public static CipherSpec parse(String spec) {
        if (spec == null || spec.isBlank()) {
            throw new IllegalArgumentException("empty cipher specification");
        }
        String s = spec.trim().toLowerCase(Locale.ROOT);
        String cipher;
        String chain;
        String iv;
        if (s.startsWith("capi:")) {
            // capi:xts(aes)-plain64
            int open = s.indexOf('(');
            int close = s.indexOf(')');
            int dash = s.indexOf('-', Math.max(close, 0));
            if (open < 0 || close < open || dash < 0) {
                throw new IllegalArgumentException("malformed cipher specification '" + spec + "'");
            }
            chain = s.substring(5, open);
            cipher = s.substring(open + 1, close);
            iv = s.substring(dash + 1);
        } else {
            String[] parts = s.split("-", 3);
            if (parts.length != 3) {
                throw new IllegalArgumentException("cipher specification '" + spec
                        + "' must be cipher-chainmode-ivmode, e.g. aes-xts-plain64");
            }
            cipher = parts[0];
            chain = parts[1];
            iv = parts[2];
        }
        return of(cipher, chain, iv, spec);
    }

    /**
     * A spec from LUKS1 header fields.
     *
     * @param cipherName the header's cipher-name, e.g. "aes"
     * @param cipherMode the header's cipher-mode, e.g. "xts-plain64"
     * @return the spec
     * @throws IllegalArgumentException when biostack does not have that cipher
     */
    public static CipherSpec fromLuks(String cipherName, String cipherMode) {
        String mode = cipherMode.toLowerCase(Locale.ROOT);
        int dash = mode.indexOf('-');
        if (dash < 0) {
            throw new IllegalArgumentException("LUKS cipher mode '" + cipherMode + "' has no IV generator");
        }
        return of(cipherName.toLowerCase(Locale.ROOT), mode.substring(0, dash), mode.substring(dash + 1),
                cipherName + "-" + cipherMode);
    }

    private static CipherSpec of(String cipher, String chain, String iv, String original) {
        if (cipher.contains(":")) {
            throw new IllegalArgumentException("multi-key cipher specification '" + original + "' is not supported");
        }
        if (!cipher.equals("aes")) {
            throw new IllegalArgumentException("cipher '" + cipher + "' in '" + original
                    + "' is not supported (only aes)");
        }
        if (!chain.equals("xts")) {
            throw new IllegalArgumentException("chain mode '" + chain + "' in '" + original
                    + "' is not supported (only xts)");
        }
        if (!iv.equals("plain64") && !iv.equals("plain")) {
            throw new IllegalArgumentException("IV mode '" + iv + "' in '" + original
                    + "' is not supported (plain64 or plain)");
        }
        return new CipherSpec(cipher, chain, iv);
    }

    /**
     * Checks a key for this spec: XTS takes two AES keys, so 32 or 64 bytes.
     *
     * @param bytes the key length
     * @throws IllegalArgumentException for any other length
     */
    public void checkKeyLength(int bytes) {
        if (bytes != 32 && bytes != 64) {
            throw new IllegalArgumentException("an " + this + " key must be 32 bytes (AES-128-XTS) or 64 bytes"
                    + " (AES-256-XTS), not " + bytes + " bytes");
        }
    }

    /** The IV for {@code sector}: plain keeps only its low 32 bits. */
    long ivSector(long sector) {
        return ivMode.equals("plain") ? sector & 0xffffffffL : sector;
    }

    @Override
    public String toString() {
        return cipher + "-" + chainMode + "-" + ivMode;
    }
}
