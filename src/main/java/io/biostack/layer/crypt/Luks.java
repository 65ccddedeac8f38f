package io.biostack.layer.crypt;

import io.biostack.block.BlockDevice;
import io.biostack.layer.crypt.LuksException.Reason;
import io.biostack.layer.crypt.LuksHeader.KeySlot;

import java.lang.foreign.MemorySegment;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ExecutionException;

/**
 * LUKS1 volumes (LUKS1 On-Disk Format Specification 1.2.3), as {@code cryptsetup luksOpen} and
 * qemu's {@code luks} block driver read them.
 *
 * <p>{@link #open} reads the header, and for each active key slot derives a key from the
 * passphrase with PBKDF2, reads the slot's key material, decrypts it with the volume's cipher
 * (IVs from sector 0 of the material), AF-merges it and checks the candidate master key
 * against the header's digest. The first slot that matches opens the payload, from
 * {@code payload-offset} on, through {@link Crypt} with IV offset 0 and 512-byte sectors.
 *
 * <p>Opening reads the device synchronously and costs the slots' PBKDF2 iterations: call it
 * when setting up a stack, never on the I/O path. The passphrase, derived keys and master key
 * are wiped from the arrays this class made once used; none of them is ever logged or put in a
 * message.
 */
public final class Luks {
    /** Key material areas are aligned to 4 KiB, as cryptsetup and qemu lay them out. */
    private static final int MATERIAL_ALIGN_SECTORS = 8;
    /** cryptsetup's default LUKS1 data alignment: 2 MiB in 512-byte sectors. */
    private static final int DEFAULT_PAYLOAD_ALIGN_SECTORS = 4096;

    private Luks() {
    }

    /**
     * How {@link #format} lays out a volume.
     *
     * @param keyBytes          master key length: 64 (AES-256-XTS) or 32 (AES-128-XTS)
     * @param hashSpec          PBKDF2 and AF hash, e.g. "sha256"
     * @param slotIterations    PBKDF2 iterations of key slot 0
     * @param mkDigestIterations PBKDF2 iterations of the master key digest
     */
    public record FormatOptions(int keyBytes, String hashSpec, int slotIterations, int mkDigestIterations) {
        /** AES-256-XTS, sha256, 1000 iterations: fast to open (tests), not a strong KDF setting. */
        public static FormatOptions defaults() {
            return new FormatOptions(64, "sha256", 1000, 1000);
        }
    }

    /**
     * Opens the LUKS1 volume on {@code lower} with {@code passphraseOrKeyFile} (a passphrase's
     * bytes, or a key file's whole content, as cryptsetup uses them) and returns its payload as
     * a crypt device named {@code name}. The caller may wipe its array afterwards.
     *
     * @throws LuksException with {@link Reason#WRONG_PASSPHRASE} when no slot opens,
     *                       {@link Reason#NOT_LUKS}, {@link Reason#CORRUPT_HEADER},
     *                       {@link Reason#UNSUPPORTED} or {@link Reason#IO}; nothing is opened
     */
    public static BlockDevice open(String name, BlockDevice lower, byte[] passphraseOrKeyFile) {
        LuksHeader h = readHeader(lower);
        CipherSpec spec = check(h, lower);
        byte[] mk = unlock(h, spec, lower, passphraseOrKeyFile);
        try {
            return Crypt.create(name, lower, spec.toString(), mk, 0, h.payloadOffset() * LuksHeader.SECTOR, 512);
        } finally {
            Arrays.fill(mk, (byte) 0);
        }
    }

    /** Reads and parses the header of {@code lower} (for status and inspection; no key needed). */
    public static LuksHeader readHeader(BlockDevice lower) {
        int len = Math.max(4096, lower.limits().logicalBlockSize());
        if (lower.size() < len) {
            throw new LuksException(Reason.NOT_LUKS, lower.name() + " (" + lower.size()
                    + " bytes) is too small to hold a LUKS header");
        }
        return LuksHeader.parse(read(lower, 0, len), lower.name());
    }

    /** Checks the header against itself and the device; returns its cipher. */
    private static CipherSpec check(LuksHeader h, BlockDevice lower) {
        String dev = lower.name();
        CipherSpec spec;
        try {
            spec = CipherSpec.fromLuks(h.cipherName(), h.cipherMode());
        } catch (IllegalArgumentException e) {
            throw new LuksException(Reason.UNSUPPORTED, "LUKS volume " + dev + ": " + e.getMessage());
        }
        LuksKdf.jdkNames(h.hashSpec());
        if (h.keyBytes() <= 0 || h.keyBytes() > 512) {
            throw corrupt(dev, "key-bytes is " + h.keyBytes());
        }
        try {
            spec.checkKeyLength(h.keyBytes());
        } catch (IllegalArgumentException e) {
            throw new LuksException(Reason.UNSUPPORTED, "LUKS volume " + dev + ": " + e.getMessage());
        }
        long payload = h.payloadOffset() * LuksHeader.SECTOR;
        if (payload > lower.size()) {
            throw corrupt(dev, "payload offset " + payload + " is beyond the end of the device (" + lower.size()
                    + " bytes)");
        }
        if (h.mkDigestIterations() < 1) {
            throw corrupt(dev, "master key digest iterations is " + h.mkDigestIterations());
        }
        for (KeySlot s : h.slots()) {
            if (!s.active()) {
                continue;
            }
            long from = s.keyMaterialOffset() * LuksHeader.SECTOR;
            if (s.stripes() < 1 || s.stripes() > 1 << 16 || s.iterations() < 1) {
                throw corrupt(dev, "key slot " + s.index() + " has " + s.stripes() + " stripes and "
                        + s.iterations() + " iterations");
            }
            long to = from + s.materialBytes(h.keyBytes());
            if (from < LuksHeader.SIZE || to > lower.size() || (payload > 0 && to > payload)) {
                throw corrupt(dev, "key slot " + s.index() + " material [" + from + ", " + to
                        + ") overlaps the header or payload or lies beyond the device");
            }
        }
        return spec;
    }

    private static byte[] unlock(LuksHeader h, CipherSpec spec, BlockDevice lower, byte[] passphrase) {
        if (passphrase == null || passphrase.length == 0) {
            throw new LuksException(Reason.WRONG_PASSPHRASE, "empty passphrase for LUKS volume " + lower.name());
        }
        int tried = 0;
        for (KeySlot s : h.slots()) {
            if (!s.active()) {
                continue;
            }
            tried++;
            byte[] mk = tryslot(h, spec, lower, s, passphrase);
            if (mk != null) {
                return mk;
            }
        }
        throw new LuksException(Reason.WRONG_PASSPHRASE, tried == 0
                ? "LUKS volume " + lower.name() + " has no active key slot"
                : "no key slot of LUKS volume " + lower.name() + " opens with this passphrase (" + tried
                + " active slot" + (tried == 1 ? "" : "s") + " tried)");
    }

    /** The master key when {@code passphrase} opens {@code slot}, else null. */
    private static byte[] tryslot(LuksHeader h, CipherSpec spec, BlockDevice lower, KeySlot slot, byte[] passphrase) {
        int kb = h.keyBytes();
        byte[] pwdKey = LuksKdf.pbkdf2(h.hashSpec(), passphrase, slot.salt(), slot.iterations(), kb);
        int len = (int) slot.materialBytes(kb);
        int lbs = lower.limits().logicalBlockSize();
        byte[] material = read(lower, slot.keyMaterialOffset() * LuksHeader.SECTOR, (len + lbs - 1) / lbs * lbs);
        byte[] mk = null;
        try (Xts xts = new Xts(pwdKey, spec)) {
            xts.decrypt(material, 0, len, 0, LuksHeader.SECTOR, 1);
            mk = LuksKdf.afMerge(material, kb, slot.stripes(), h.hashSpec());
            byte[] digest = LuksKdf.pbkdf2(h.hashSpec(), mk, h.mkDigestSalt(), h.mkDigestIterations(),
                    LuksHeader.DIGEST_SIZE);
            if (MessageDigest.isEqual(digest, h.mkDigest())) {
                byte[] found = mk;
                mk = null;
                return found;
            }
            return null;
        } finally {
            Arrays.fill(pwdKey, (byte) 0);
            Arrays.fill(material, (byte) 0);
            if (mk != null) {
                Arrays.fill(mk, (byte) 0);
            }
        }
    }

    /**
     * Writes a new LUKS1 volume over {@code dev}: AES-XTS with plain64 IVs, a fresh random master
     * key, {@code passphrase} in key slot 0, key material areas 4 KiB-aligned after the header
     * and the payload at 2 MiB (cryptsetup's layout). Everything on the device is lost.
     *
     * @return the header written
     */
    public static LuksHeader format(BlockDevice dev, byte[] passphrase, FormatOptions opts) {
        CipherSpec spec = CipherSpec.AES_XTS_PLAIN64;
        spec.checkKeyLength(opts.keyBytes());
        LuksKdf.jdkNames(opts.hashSpec());
        if (passphrase == null || passphrase.length == 0) {
            throw new IllegalArgumentException("empty passphrase");
        }
        int kb = opts.keyBytes();
        long materialSectors = ((long) kb * LuksHeader.STRIPES + LuksHeader.SECTOR - 1) / LuksHeader.SECTOR;
        long slotStride = (materialSectors + MATERIAL_ALIGN_SECTORS - 1) / MATERIAL_ALIGN_SECTORS
                * MATERIAL_ALIGN_SECTORS;
        long end = MATERIAL_ALIGN_SECTORS + LuksHeader.NUM_SLOTS * slotStride;
        long payload = (end + DEFAULT_PAYLOAD_ALIGN_SECTORS - 1) / DEFAULT_PAYLOAD_ALIGN_SECTORS
                * DEFAULT_PAYLOAD_ALIGN_SECTORS;
        if (payload * LuksHeader.SECTOR >= dev.size()) {
            throw new IllegalArgumentException(dev.name() + " (" + dev.size() + " bytes) is too small for a LUKS1 volume"
                    + " (the header and key slots take " + payload * LuksHeader.SECTOR + " bytes)");
        }
        SecureRandom rnd = new SecureRandom();
        byte[] mk = new byte[kb];
        byte[] mkSalt = new byte[LuksHeader.SALT_SIZE];
        byte[] slotSalt = new byte[LuksHeader.SALT_SIZE];
        rnd.nextBytes(mk);
        rnd.nextBytes(mkSalt);
        rnd.nextBytes(slotSalt);
        byte[] pwdKey = null;
        byte[] material = null;
        try {
            byte[] digest = LuksKdf.pbkdf2(opts.hashSpec(), mk, mkSalt, opts.mkDigestIterations(),
                    LuksHeader.DIGEST_SIZE);
            List<KeySlot> slots = new ArrayList<>();
            for (int i = 0; i < LuksHeader.NUM_SLOTS; i++) {
                boolean active = i == 0;
                slots.add(new KeySlot(i, active, active ? opts.slotIterations() : 0,
                        active ? slotSalt : new byte[LuksHeader.SALT_SIZE],
                        MATERIAL_ALIGN_SECTORS + i * slotStride, LuksHeader.STRIPES));
            }
            LuksHeader h = new LuksHeader(1, spec.cipher(), spec.chainMode() + "-" + spec.ivMode(), opts.hashSpec(),
                    payload, kb, digest, mkSalt, opts.mkDigestIterations(), UUID.randomUUID().toString(),
                    List.copyOf(slots));
            pwdKey = LuksKdf.pbkdf2(opts.hashSpec(), passphrase, slotSalt, opts.slotIterations(), kb);
            byte[] split = LuksKdf.afSplit(mk, LuksHeader.STRIPES, opts.hashSpec(), rnd);
            // the whole 4 KiB-aligned area, so 4k-sector devices take the write too
            material = Arrays.copyOf(split, (int) (slotStride * LuksHeader.SECTOR));
            Arrays.fill(split, (byte) 0);
            try (Xts xts = new Xts(pwdKey, spec)) {
                xts.encrypt(material, 0, material.length, 0, LuksHeader.SECTOR, 1);
            }
            byte[] head = new byte[MATERIAL_ALIGN_SECTORS * LuksHeader.SECTOR];
            h.writeTo(head);
            write(dev, 0, head);
            write(dev, slots.get(0).keyMaterialOffset() * LuksHeader.SECTOR, material);
            dev.flush().join();
            return h;
        } finally {
            Arrays.fill(mk, (byte) 0);
            if (pwdKey != null) {
                Arrays.fill(pwdKey, (byte) 0);
            }
            if (material != null) {
                Arrays.fill(material, (byte) 0);
            }
        }
    }

    private static LuksException corrupt(String dev, String what) {
        return new LuksException(Reason.CORRUPT_HEADER, "LUKS header of " + dev + " is corrupt: " + what);
    }

    private static byte[] read(BlockDevice dev, long offset, int len) {
        byte[] buf = new byte[len];
        try {
            dev.read(offset, MemorySegment.ofArray(buf)).get();
        } catch (ExecutionException e) {
            throw new LuksException(Reason.IO, "reading " + len + " bytes at " + offset + " of " + dev.name()
                    + " failed: " + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new LuksException(Reason.IO, "interrupted while reading " + dev.name(), e);
        }
        return buf;
    }

    private static void write(BlockDevice dev, long offset, byte[] data) {
        try {
            dev.write(offset, MemorySegment.ofArray(data)).get();
        } catch (ExecutionException e) {
            throw new LuksException(Reason.IO, "writing " + data.length + " bytes at " + offset + " of " + dev.name()
                    + " failed: " + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new LuksException(Reason.IO, "interrupted while writing " + dev.name(), e);
        }
    }
}
