package io.biostack.layer.crypt;

import io.biostack.block.BlockDevice;
import io.biostack.block.stats.CountedDevice;
import io.biostack.layer.crypt.LuksException.Reason;
import io.biostack.layer.crypt.LuksHeader.KeySlot;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ExecutionException;

/**
 * LUKS volumes: LUKS1 here (LUKS1 On-Disk Format Specification 1.2.3), LUKS2 in {@link Luks2}
 * (which {@link #open(String, BlockDevice, BlockDevice, byte[], int, boolean)} hands a LUKS2 header to), as {@code cryptsetup luksOpen} and
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
        /**
         * AES-256-XTS, sha256, 1000 iterations: fast to open (tests), not a strong KDF setting.
         *
         * @return the options
         */
        public static FormatOptions defaults() {
            return new FormatOptions(64, "sha256", 1000, 1000);
        }
    }

    /**
     * Opens the LUKS1 volume on {@code lower} with {@code passphraseOrKeyFile} (a passphrase's
     * bytes, or a key file's whole content, as cryptsetup uses them) and returns its payload as
     * a crypt device named {@code name}. The caller may wipe its array afterwards.
     *
     * @param name                the new device's name
     * @param lower               the volume
     * @param passphraseOrKeyFile the passphrase or key file content; not kept
     * @return the payload; the caller owns it, {@code lower} stays open
     * @throws LuksException with {@link Reason#WRONG_PASSPHRASE} when no slot opens,
     *                       {@link Reason#NOT_LUKS}, {@link Reason#CORRUPT_HEADER},
     *                       {@link Reason#UNSUPPORTED} or {@link Reason#IO}; nothing is opened
     */
    public static BlockDevice open(String name, BlockDevice lower, byte[] passphraseOrKeyFile) {
        return open(name, lower, lower, passphraseOrKeyFile, -1, false);
    }

    /**
     * Opens the LUKS1 or LUKS2 volume whose header is on {@code hdr} and whose payload is on
     * {@code data} ({@code cryptsetup open [--header FILE] [--key-slot N] [--readonly]}).
     *
     * @param name       the new device's name
     * @param data       the device holding the payload
     * @param hdr        the device holding the header: {@code data}, or a detached header
     * @param secret     the passphrase or key file content; not kept (the caller may wipe it)
     * @param keyslot    the only keyslot to try, or -1 for any
     * @param readOnly   refuse writes, and write nothing while opening (no header repair)
     * @return the payload as a crypt device; the caller owns it, {@code data} and {@code hdr} stay open
     * @throws LuksException when the volume cannot be opened; nothing was written then
     */
    public static BlockDevice open(String name, BlockDevice data, BlockDevice hdr, byte[] secret, int keyslot,
                                   boolean readOnly) {
        if (Luks2.isLuks2(hdr)) {
            return Luks2.open(name, data, hdr, secret, keyslot, readOnly);
        }
        LuksHeader h = readHeader(hdr);
        CipherSpec spec = check(h, hdr, data);
        if (hdr == data && h.payloadOffset() == 0) {
            throw detachedAsData(hdr.name());
        }
        byte[] mk = unlock(h, spec, hdr, secret, keyslot).key();
        try {
            return Crypt.create(name, data, spec.toString(), mk, 0, h.payloadOffset() * LuksHeader.SECTOR, 512,
                    false, Crypt.Tuning.defaults(), readOnly);
        } finally {
            Arrays.fill(mk, (byte) 0);
        }
    }

    /**
     * The key slot {@code secret} opens in the LUKS1 or LUKS2 header on {@code hdr}
     * ({@code cryptsetup open --test-passphrase}): only the header and key slots are read, so a
     * detached header or a header backup is tested as it is, without its data device.
     *
     * @param hdr     the device holding the header
     * @param secret  the passphrase or key file content; not kept
     * @param keyslot the only key slot to try, or -1 for any
     * @return the key slot's number
     * @throws LuksException when no slot opens or the header cannot be used
     */
    public static int testPassphrase(BlockDevice hdr, byte[] secret, int keyslot) {
        if (Luks2.isLuks2(hdr)) {
            return Luks2.testPassphrase(hdr, secret, keyslot);
        }
        LuksHeader h = readHeader(hdr);
        Unlocked u = unlock(h, check(h, hdr, null), hdr, secret, keyslot);
        Arrays.fill(u.key(), (byte) 0);
        return u.slot();
    }

    /**
     * A header whose data offset is 0 is a detached one (cryptsetup {@code --header}): opened as its
     * own data device, the payload would start on the header, and the first write would wipe it and
     * its key slots, the only copy of the master key. cryptsetup refuses it too ("Reduced data
     * offset is allowed only for detached LUKS header"), read-only as well.
     */
    static LuksException detachedAsData(String dev) {
        return new LuksException(Reason.CORRUPT_HEADER, "LUKS volume " + dev + " has a detached header (its data"
                + " offset is 0): open its data device with this header apart (header=FILE, as cryptsetup --header),"
                + " never as its own data, where writes would overwrite the header and its key slots");
    }

    /**
     * The {@code luks} table line: {@code luks DEV keyfile=PATH|passphrase=TEXT [header=FILE]
     * [keyslot=N] [read-only]}, as {@code cryptsetup open} takes them. The key file is read, and
     * the header file opened, only when the line is opened; the passphrase is never shown again
     * ({@code table} prints {@code passphrase=-}).
     *
     * @param a the line's arguments
     * @return the spec that opens the volume
     */
    public static TableSpec parseTable(TableArgs a) {
        String dev = a.dev("DEV");
        String keyFile = null;
        String pass = null;
        String header = null;
        int slot = -1;
        boolean ro = false;
        List<String> shown = new ArrayList<>(List.of(dev));
        while (a.hasNext()) {
            String o = a.next("option");
            int eq = o.indexOf('=');
            String k = eq < 0 ? o : o.substring(0, eq);
            String v = eq < 0 ? null : o.substring(eq + 1);
            if (eq >= 0 && v.isEmpty()) {
                throw a.bad(k + " is empty");
            }
            switch (k) {
                case "keyfile" -> {
                    keyFile = need(a, k, v);
                    shown.add(o);
                }
                case "passphrase" -> {
                    pass = need(a, k, v);
                    shown.add("passphrase=-");
                }
                case "header" -> {
                    header = need(a, k, v);
                    shown.add(o);
                }
                case "keyslot" -> {
                    try {
                        slot = Integer.parseInt(need(a, k, v));
                    } catch (NumberFormatException e) {
                        throw a.bad("keyslot must be a number from 0 to 31, not '" + v + "'");
                    }
                    if (slot < 0 || slot > 31) {
                        throw a.bad("keyslot must be a number from 0 to 31, not " + slot);
                    }
                    shown.add(o);
                }
                case "read-only", "ro" -> {
                    if (v != null) {
                        throw a.bad("read-only takes no value");
                    }
                    ro = true;
                    shown.add("read-only");
                }
                default -> throw a.bad("unknown option '" + (eq < 0 ? o : k + "=...")
                        + "' (keyfile=PATH or passphrase=TEXT, header=FILE, keyslot=N, read-only)");
            }
        }
        if ((keyFile == null) == (pass == null)) {
            throw a.bad("needs exactly one of keyfile=PATH or passphrase=TEXT");
        }
        String kf = keyFile;
        String pw = pass;
        String hf = header;
        int ks = slot;
        boolean readOnly = ro;
        String table = String.join(" ", shown);
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(dev);
            byte[] secret = kf != null ? Files.readAllBytes(Path.of(kf)) : pw.getBytes(StandardCharsets.UTF_8);
            BlockDevice hdr = d;
            BlockDevice c = null;
            try {
                if (hf != null && !sameFile(d, Path.of(hf))) {
                    hdr = LoopDevice.open(name + "-header", Path.of(hf),
                            LoopConfig.defaults().withReadOnly(readOnly || d.isReadOnly()));
                }
                c = open(name, d, hdr, secret, ks, readOnly);
                if (len >= 0 && len != c.size()) {
                    throw new IllegalArgumentException("the LUKS payload of " + dev + " is " + c.size() / 512
                            + " sectors, the segment " + len / 512);
                }
                BlockDevice out = new LuksDevice(c, hdr == d ? null : hdr, table);
                c = null;
                hdr = d;
                return out;
            } finally {
                Arrays.fill(secret, (byte) 0);
                if (c != null) {
                    c.close();
                }
                if (hdr != d) {
                    hdr.close();
                }
            }
        });
    }

    /**
     * True when {@code header} is the very file under {@code d} from its first byte: the same path,
     * another path to it, or a hard link. The header is then {@code d} itself, as cryptsetup takes
     * {@code --header} naming the data device ({@code crypt_init_data_device}); opened apart, a
     * detached header (data offset 0) would pass as detached, and the first write to its payload
     * would overwrite the header and its key slots, the only copy of the volume key.
     */
    private static boolean sameFile(BlockDevice d, Path header) throws java.io.IOException {
        // a stack hands out its devices in their statistics wrapper
        BlockDevice bare = d instanceof CountedDevice c ? c.inner() : d;
        return bare instanceof LoopDevice l && l.config().offset() == 0 && Files.exists(header)
                && Files.isSameFile(l.backingFile().path(), header);
    }

    private static String need(TableArgs a, String k, String v) {
        if (v == null) {
            throw a.bad(k + " needs a value: " + k + "=...");
        }
        return v;
    }

    /**
     * Reads and parses the LUKS1 header of {@code lower} (for status and inspection; no key needed).
     *
     * @param lower the device holding the header
     * @return the header
     * @throws LuksException NOT_LUKS when there is no LUKS header, UNSUPPORTED for LUKS2,
     *                       CORRUPT_HEADER for a bad key slot state
     */
    public static LuksHeader readHeader(BlockDevice lower) {
        int len = Math.max(4096, lower.limits().logicalBlockSize());
        if (lower.size() < len) {
            throw new LuksException(Reason.NOT_LUKS, lower.name() + " (" + lower.size()
                    + " bytes) is too small to hold a LUKS header");
        }
        return LuksHeader.parse(read(lower, 0, len), lower.name());
    }

    /**
     * Checks the header against itself and the device, and against the data device unless
     * {@code data} is null (a passphrase test); returns its cipher.
     */
    private static CipherSpec check(LuksHeader h, BlockDevice lower, BlockDevice data) {
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
        if (data != null && payload > data.size()) {
            throw corrupt(dev, "payload offset " + payload + " is beyond the end of " + data.name() + " ("
                    + data.size() + " bytes)");
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
            if (from < LuksHeader.SIZE || to > lower.size() || (lower == data && payload > 0 && to > payload)) {
                throw corrupt(dev, "key slot " + s.index() + " material [" + from + ", " + to
                        + ") overlaps the header or payload or lies beyond the device");
            }
        }
        return spec;
    }

    /** The master key a key slot gave, and that slot's number. */
    private record Unlocked(byte[] key, int slot) {
    }

    private static Unlocked unlock(LuksHeader h, CipherSpec spec, BlockDevice lower, byte[] passphrase, int only) {
        if (passphrase == null || passphrase.length == 0) {
            throw new LuksException(Reason.WRONG_PASSPHRASE, "empty passphrase for LUKS volume " + lower.name());
        }
        int tried = 0;
        for (KeySlot s : h.slots()) {
            if (!s.active() || (only >= 0 && s.index() != only)) {
                continue;
            }
            tried++;
            byte[] mk = tryslot(h, spec, lower, s, passphrase);
            if (mk != null) {
                return new Unlocked(mk, s.index());
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
     * @param dev        the device to format
     * @param passphrase key slot 0's passphrase; not kept
     * @param opts       key size, hash and iterations
     * @return the header written
     * @throws IllegalArgumentException for an empty passphrase or a device too small
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

    static LuksException corrupt(String dev, String what) {
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
