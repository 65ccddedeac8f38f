package io.biostack.layer.crypt;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;

/**
 * One copy of the LUKS2 binary header and its JSON area (LUKS2 On-Disk Format Specification,
 * version 1.1.x, section 2; cryptsetup's {@code lib/luks2/luks2_disk_metadata.c}). A LUKS2 volume
 * starts with two such copies, the primary at 0 and the secondary right after it, at
 * {@code hdr_size}. All integers are big-endian; strings are NUL-padded.
 *
 * <pre>
 * offset  size  field
 *      0     6  magic         "LUKS" 0xba 0xbe (primary), "SKUL" 0xba 0xbe (secondary)
 *      6     2  version       2
 *      8     8  hdr_size      binary header + JSON area, a power of two from 16 KiB to 4 MiB
 *     16     8  seqid         bumped on every update; the copy with the higher one wins
 *     24    48  label
 *     72    32  checksum_alg  "sha256"
 *    104    64  salt          random, per copy
 *    168    40  uuid
 *    208    48  subsystem
 *    256     8  hdr_offset    where this copy starts on the device
 *    264   184  (padding)
 *    448    64  csum          checksum_alg over [0, hdr_size) with this field zeroed
 *    512  3584  (padding)
 *   4096        JSON area, hdr_size - 4096 bytes, the JSON text then NULs
 * </pre>
 *
 * <p>{@link #parse} checks one copy and gives its fields; it never throws for a damaged copy but
 * says what is wrong in {@link Copy#damage()}, so that the caller can fall back on the other
 * one. Immutable once made.
 */
final class Luks2Header {
    /** Size of the binary part (LUKS2_HDR_BIN_LEN). */
    static final int BIN_SIZE = 4096;
    /** Smallest and largest {@code hdr_size} (LUKS2_HDR_16K_LEN; LUKS2_HDR_OFFSET_MAX is 4 MiB). */
    static final long MIN_HDR_SIZE = 16 * 1024;
    static final long MAX_HDR_SIZE = 4 * 1024 * 1024;
    /** Where cryptsetup looks for a secondary header when the primary is unreadable (hdr2_offsets in luks2_disk_metadata.c). */
    static final long[] SECONDARY_OFFSETS = {0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000,
        0x200000, 0x400000};

    static final byte[] MAGIC_1ST = {'L', 'U', 'K', 'S', (byte) 0xba, (byte) 0xbe};
    static final byte[] MAGIC_2ND = {'S', 'K', 'U', 'L', (byte) 0xba, (byte) 0xbe};

    static final int OFF_VERSION = 6;
    static final int OFF_HDR_SIZE = 8;
    static final int OFF_SEQID = 16;
    static final int OFF_LABEL = 24;
    static final int LEN_LABEL = 48;
    static final int OFF_CSUM_ALG = 72;
    static final int LEN_CSUM_ALG = 32;
    static final int OFF_SALT = 104;
    static final int LEN_SALT = 64;
    static final int OFF_UUID = 168;
    static final int LEN_UUID = 40;
    static final int OFF_SUBSYSTEM = 208;
    static final int LEN_SUBSYSTEM = 48;
    static final int OFF_HDR_OFFSET = 256;
    static final int OFF_CSUM = 448;
    static final int LEN_CSUM = 64;

    private Luks2Header() {
    }

    /**
     * One copy as read.
     *
     * @param at       where it was read
     * @param damage   null when the copy is good, else why it is not
     * @param hdrSize  {@code hdr_size}
     * @param seqid    {@code seqid}
     * @param label    the label
     * @param subsystem the subsystem
     * @param uuid     the UUID text
     * @param salt     the copy's 64-byte salt
     * @param json     the JSON text (up to the first NUL of the area)
     */
    record Copy(long at, String damage, long hdrSize, long seqid, String label, String subsystem, String uuid,
                byte[] salt, String json) {
        boolean good() {
            return damage == null;
        }
    }

    /** The {@code hdr_size} this area announces, or -1 when it has no LUKS2 magic of the kind. */
    static long announcedSize(byte[] bin, boolean secondary) {
        if (bin.length < BIN_SIZE || !startsWith(bin, secondary ? MAGIC_2ND : MAGIC_1ST)) {
            return -1;
        }
        return ByteBuffer.wrap(bin).order(ByteOrder.BIG_ENDIAN).getLong(OFF_HDR_SIZE);
    }

    /**
     * Checks the copy in {@code area} (at least its binary header; the whole {@code hdr_size} for
     * a copy that can be good) read at {@code at} of the header device.
     */
    static Copy parse(byte[] area, long at, boolean secondary) {
        if (area.length < BIN_SIZE) {
            return bad(at, "only " + area.length + " bytes");
        }
        byte[] magic = secondary ? MAGIC_2ND : MAGIC_1ST;
        if (!startsWith(area, magic)) {
            return bad(at, "no " + (secondary ? "secondary" : "primary") + " LUKS2 magic");
        }
        ByteBuffer b = ByteBuffer.wrap(area).order(ByteOrder.BIG_ENDIAN);
        int version = b.getShort(OFF_VERSION) & 0xffff;
        if (version != 2) {
            return bad(at, "version " + version + ", not 2");
        }
        long hdrSize = b.getLong(OFF_HDR_SIZE);
        if (hdrSize < MIN_HDR_SIZE || hdrSize > MAX_HDR_SIZE || Long.bitCount(hdrSize) != 1) {
            return bad(at, "hdr_size " + hdrSize + " is not a power of two from 16 KiB to 4 MiB");
        }
        long hdrOffset = b.getLong(OFF_HDR_OFFSET);
        if (hdrOffset != at) {
            return bad(at, "hdr_offset " + hdrOffset + " but the copy is at " + at);
        }
        if (area.length < hdrSize) {
            return bad(at, "the device ends " + area.length + " bytes into its " + hdrSize + "-byte header");
        }
        String alg = cstr(area, OFF_CSUM_ALG, LEN_CSUM_ALG);
        if (!alg.equals("sha256")) {
            return bad(at, "checksum algorithm '" + alg + "' (only sha256)");
        }
        byte[] want = Arrays.copyOfRange(area, OFF_CSUM, OFF_CSUM + 32);
        if (!MessageDigest.isEqual(want, checksum(area, (int) hdrSize))) {
            return bad(at, "checksum mismatch");
        }
        int jsonLen = 0;
        int jsonEnd = (int) hdrSize;
        while (BIN_SIZE + jsonLen < jsonEnd && area[BIN_SIZE + jsonLen] != 0) {
            jsonLen++;
        }
        if (BIN_SIZE + jsonLen == jsonEnd) {
            return bad(at, "the JSON area has no terminating NUL (JSON too big for its " + (hdrSize - BIN_SIZE)
                    + "-byte area)");
        }
        String json = new String(area, BIN_SIZE, jsonLen, StandardCharsets.UTF_8);
        return new Copy(at, null, hdrSize, b.getLong(OFF_SEQID), cstr(area, OFF_LABEL, LEN_LABEL),
                cstr(area, OFF_SUBSYSTEM, LEN_SUBSYSTEM), cstr(area, OFF_UUID, LEN_UUID),
                Arrays.copyOfRange(area, OFF_SALT, OFF_SALT + LEN_SALT), json);
    }

    /**
     * The bytes of one copy ({@code hdrSize} long): binary header, JSON and NUL padding,
     * checksummed. Throws when {@code json} does not fit its area with a NUL after it.
     */
    static byte[] build(boolean secondary, long hdrSize, long seqid, String label, String subsystem, String uuid,
                        byte[] salt, byte[] json) {
        if (json.length >= hdrSize - BIN_SIZE) {
            throw new LuksException(LuksException.Reason.UNSUPPORTED, "the LUKS2 JSON metadata (" + json.length
                    + " bytes) does not fit its " + (hdrSize - BIN_SIZE) + "-byte area");
        }
        byte[] area = new byte[(int) hdrSize];
        ByteBuffer b = ByteBuffer.wrap(area).order(ByteOrder.BIG_ENDIAN);
        System.arraycopy(secondary ? MAGIC_2ND : MAGIC_1ST, 0, area, 0, 6);
        b.putShort(OFF_VERSION, (short) 2);
        b.putLong(OFF_HDR_SIZE, hdrSize);
        b.putLong(OFF_SEQID, seqid);
        putStr(area, OFF_LABEL, LEN_LABEL, label, "label");
        putStr(area, OFF_CSUM_ALG, LEN_CSUM_ALG, "sha256", "checksum_alg");
        System.arraycopy(salt, 0, area, OFF_SALT, LEN_SALT);
        putStr(area, OFF_UUID, LEN_UUID, uuid, "uuid");
        putStr(area, OFF_SUBSYSTEM, LEN_SUBSYSTEM, subsystem, "subsystem");
        b.putLong(OFF_HDR_OFFSET, secondary ? hdrSize : 0);
        System.arraycopy(json, 0, area, BIN_SIZE, json.length);
        System.arraycopy(checksum(area, (int) hdrSize), 0, area, OFF_CSUM, 32);
        return area;
    }

    /** sha256 over {@code [0, len)} with the csum field taken as zeros. */
    static byte[] checksum(byte[] area, int len) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(area, 0, OFF_CSUM);
            md.update(new byte[LEN_CSUM]);
            md.update(area, OFF_CSUM + LEN_CSUM, len - OFF_CSUM - LEN_CSUM);
            return md.digest();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static Copy bad(long at, String why) {
        return new Copy(at, why, 0, 0, "", "", "", new byte[LEN_SALT], null);
    }

    private static boolean startsWith(byte[] b, byte[] magic) {
        return Arrays.equals(b, 0, magic.length, magic, 0, magic.length);
    }

    private static String cstr(byte[] b, int off, int len) {
        int n = 0;
        while (n < len && b[off + n] != 0) {
            n++;
        }
        return new String(b, off, n, StandardCharsets.UTF_8);
    }

    private static void putStr(byte[] b, int off, int len, String s, String what) {
        byte[] v = s.getBytes(StandardCharsets.UTF_8);
        if (v.length >= len) {
            throw new IllegalArgumentException("LUKS2 " + what + " '" + s + "' is longer than " + (len - 1) + " bytes");
        }
        System.arraycopy(v, 0, b, off, v.length);
    }
}
