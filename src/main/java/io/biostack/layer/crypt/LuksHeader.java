package io.biostack.layer.crypt;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The LUKS1 partition header ({@code phdr}), from "LUKS1 On-Disk Format Specification" version
 * 1.2.3, section 2.4. All integers are big-endian; strings are NUL-padded ASCII.
 *
 * <pre>
 * offset  size  field
 *      0     6  magic                 "LUKS" 0xba 0xbe
 *      6     2  version               1
 *      8    32  cipher-name           "aes"
 *     40    32  cipher-mode           "xts-plain64"
 *     72    32  hash-spec             "sha256" (PBKDF2 and AF diffusion hash)
 *    104     4  payload-offset        start of the encrypted data, in 512-byte sectors
 *    108     4  key-bytes             master key length (64 for AES-256-XTS)
 *    112    20  mk-digest             PBKDF2(master key, mk-digest-salt, iterations, 20)
 *    132    32  mk-digest-salt
 *    164     4  mk-digest-iter
 *    168    40  uuid                  text
 *    208  8*48  key slots:
 *                 +0  4  active       0x00AC71F3 enabled, 0x0000DEAD disabled
 *                 +4  4  iterations   PBKDF2 iterations for this slot
 *                 +8 32  salt
 *                +40  4  key-material-offset   in 512-byte sectors
 *                +44  4  stripes      anti-forensic stripes (4000)
 *    592           end of header
 * </pre>
 *
 * @param version            1
 * @param cipherName         e.g. "aes"
 * @param cipherMode         e.g. "xts-plain64"
 * @param hashSpec           the PBKDF2 and AF hash, e.g. "sha256"
 * @param payloadOffset      start of the encrypted data, in 512-byte sectors (0 with a detached header)
 * @param keyBytes           master key length
 * @param mkDigest           the 20-byte master key digest
 * @param mkDigestSalt       its 32-byte salt
 * @param mkDigestIterations its PBKDF2 iterations
 * @param uuid               the UUID text
 * @param slots              the 8 key slots
 */
public record LuksHeader(int version, String cipherName, String cipherMode, String hashSpec, long payloadOffset,
                         int keyBytes, byte[] mkDigest, byte[] mkDigestSalt, int mkDigestIterations, String uuid,
                         List<KeySlot> slots) {
    public static final byte[] MAGIC = {'L', 'U', 'K', 'S', (byte) 0xba, (byte) 0xbe};
    public static final int SIZE = 592;
    public static final int SECTOR = 512;
    public static final int NUM_SLOTS = 8;
    public static final int SLOT_ACTIVE = 0x00AC71F3;
    public static final int SLOT_INACTIVE = 0x0000DEAD;
    public static final int DIGEST_SIZE = 20;
    public static final int SALT_SIZE = 32;
    public static final int STRIPES = 4000;

    static final int OFF_VERSION = 6;
    static final int OFF_CIPHER_NAME = 8;
    static final int OFF_CIPHER_MODE = 40;
    static final int OFF_HASH_SPEC = 72;
    static final int OFF_PAYLOAD = 104;
    static final int OFF_KEY_BYTES = 108;
    static final int OFF_MK_DIGEST = 112;
    static final int OFF_MK_SALT = 132;
    static final int OFF_MK_ITER = 164;
    static final int OFF_UUID = 168;
    static final int OFF_SLOTS = 208;
    static final int SLOT_SIZE = 48;
    static final int NAME_LEN = 32;
    static final int UUID_LEN = 40;

    /**
     * One key slot.
     *
     * @param index             the slot number, 0 to 7
     * @param active            whether the slot holds a key (0x00AC71F3) or not (0x0000DEAD)
     * @param iterations        PBKDF2 iterations of the passphrase
     * @param salt              the 32-byte PBKDF2 salt
     * @param keyMaterialOffset where its AF-split, encrypted master key starts, in 512-byte sectors
     * @param stripes           anti-forensic stripes (4000)
     */
    public record KeySlot(int index, boolean active, int iterations, byte[] salt, long keyMaterialOffset,
                          int stripes) {
        /**
         * Bytes of key material: {@code keyBytes * stripes}, rounded up to whole sectors.
         *
         * @param keyBytes the master key length
         * @return bytes of the slot's material
         */
        public long materialBytes(int keyBytes) {
            long raw = (long) keyBytes * stripes;
            return (raw + SECTOR - 1) / SECTOR * SECTOR;
        }

        @Override
        public String toString() {
            return "KeySlot[" + index + (active ? " active" : " disabled") + " iterations=" + iterations
                    + " offset=" + keyMaterialOffset + " stripes=" + stripes + "]";
        }
    }

    /**
     * True when {@code buf} starts with the LUKS magic.
     *
     * @param buf the first bytes of a device
     * @return whether the magic is there
     */
    public static boolean hasMagic(byte[] buf) {
        return buf.length >= MAGIC.length && Arrays.equals(buf, 0, MAGIC.length, MAGIC, 0, MAGIC.length);
    }

    /**
     * Parses the header at the start of {@code buf}. Checks only what the bytes alone can tell
     * (magic, version, slot states); {@link Luks} checks it against the device.
     *
     * @param buf    at least {@link #SIZE} bytes from the start of the device
     * @param device the device's name, for messages
     * @return the header
     * @throws LuksException NOT_LUKS without the magic, UNSUPPORTED for another version,
     *                       CORRUPT_HEADER for a bad key slot state
     */
    public static LuksHeader parse(byte[] buf, String device) {
        if (buf.length < SIZE || !hasMagic(buf)) {
            throw new LuksException(LuksException.Reason.NOT_LUKS, device + " is not a LUKS volume (no LUKS magic)");
        }
        ByteBuffer b = ByteBuffer.wrap(buf).order(ByteOrder.BIG_ENDIAN);
        int version = Short.toUnsignedInt(b.getShort(OFF_VERSION));
        if (version != 1) {
            throw new LuksException(LuksException.Reason.UNSUPPORTED, device + " is a LUKS" + version
                    + " volume; only LUKS1 is supported");
        }
        List<KeySlot> slots = new ArrayList<>(NUM_SLOTS);
        for (int i = 0; i < NUM_SLOTS; i++) {
            int o = OFF_SLOTS + i * SLOT_SIZE;
            int state = b.getInt(o);
            if (state != SLOT_ACTIVE && state != SLOT_INACTIVE) {
                throw new LuksException(LuksException.Reason.CORRUPT_HEADER, "LUKS header of " + device
                        + " is corrupt: key slot " + i + " has state 0x" + Integer.toHexString(state));
            }
            slots.add(new KeySlot(i, state == SLOT_ACTIVE, b.getInt(o + 4), Arrays.copyOfRange(buf, o + 8, o + 40),
                    Integer.toUnsignedLong(b.getInt(o + 40)), b.getInt(o + 44)));
        }
        return new LuksHeader(version, text(buf, OFF_CIPHER_NAME, NAME_LEN), text(buf, OFF_CIPHER_MODE, NAME_LEN),
                text(buf, OFF_HASH_SPEC, NAME_LEN), Integer.toUnsignedLong(b.getInt(OFF_PAYLOAD)),
                b.getInt(OFF_KEY_BYTES), Arrays.copyOfRange(buf, OFF_MK_DIGEST, OFF_MK_DIGEST + DIGEST_SIZE),
                Arrays.copyOfRange(buf, OFF_MK_SALT, OFF_MK_SALT + SALT_SIZE), b.getInt(OFF_MK_ITER),
                text(buf, OFF_UUID, UUID_LEN), List.copyOf(slots));
    }

    /**
     * Writes this header into the first {@link #SIZE} bytes of {@code buf}.
     *
     * @param buf at least {@link #SIZE} bytes
     * @throws IllegalArgumentException when a text field does not fit
     */
    public void writeTo(byte[] buf) {
        ByteBuffer b = ByteBuffer.wrap(buf).order(ByteOrder.BIG_ENDIAN);
        Arrays.fill(buf, 0, SIZE, (byte) 0);
        System.arraycopy(MAGIC, 0, buf, 0, MAGIC.length);
        b.putShort(OFF_VERSION, (short) version);
        putText(buf, OFF_CIPHER_NAME, NAME_LEN, cipherName);
        putText(buf, OFF_CIPHER_MODE, NAME_LEN, cipherMode);
        putText(buf, OFF_HASH_SPEC, NAME_LEN, hashSpec);
        b.putInt(OFF_PAYLOAD, (int) payloadOffset);
        b.putInt(OFF_KEY_BYTES, keyBytes);
        System.arraycopy(mkDigest, 0, buf, OFF_MK_DIGEST, DIGEST_SIZE);
        System.arraycopy(mkDigestSalt, 0, buf, OFF_MK_SALT, SALT_SIZE);
        b.putInt(OFF_MK_ITER, mkDigestIterations);
        putText(buf, OFF_UUID, UUID_LEN, uuid);
        for (KeySlot s : slots) {
            int o = OFF_SLOTS + s.index() * SLOT_SIZE;
            b.putInt(o, s.active() ? SLOT_ACTIVE : SLOT_INACTIVE);
            b.putInt(o + 4, s.iterations());
            System.arraycopy(s.salt(), 0, buf, o + 8, SALT_SIZE);
            b.putInt(o + 40, (int) s.keyMaterialOffset());
            b.putInt(o + 44, s.stripes());
        }
    }

    private static String text(byte[] buf, int off, int len) {
        int end = off;
        while (end < off + len && buf[end] != 0) {
            end++;
        }
        return new String(buf, off, end - off, StandardCharsets.US_ASCII);
    }

    private static void putText(byte[] buf, int off, int len, String s) {
        byte[] t = s.getBytes(StandardCharsets.US_ASCII);
        if (t.length >= len) {
            throw new IllegalArgumentException("'" + s + "' does not fit a " + len + "-byte LUKS header field");
        }
        System.arraycopy(t, 0, buf, off, t.length);
    }

    @Override
    public String toString() {
        return "LuksHeader[v" + version + " " + cipherName + "-" + cipherMode + " " + hashSpec + " keyBytes=" + keyBytes
                + " payload=" + payloadOffset + " uuid=" + uuid + " active slots="
                + slots.stream().filter(KeySlot::active).map(s -> String.valueOf(s.index())).toList() + "]";
    }
}
