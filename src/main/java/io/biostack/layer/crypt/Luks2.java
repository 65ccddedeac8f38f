package io.biostack.layer.crypt;

import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;
import io.biostack.layer.crypt.Luks2Header.Copy;
import io.biostack.layer.crypt.LuksException.Reason;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ExecutionException;

/**
 * LUKS2 volumes (LUKS2 On-Disk Format Specification 1.1; cryptsetup's {@code lib/luks2/luks2.c}
 * and {@code setup.c}): reading the two header copies and choosing one, opening the payload with
 * a passphrase or key file, and the header rewrites of format, add-key, remove-key and
 * change-key.
 *
 * <h2>The two copies</h2>
 * Both copies are read and checked ({@link Luks2Header}), JSON included. Where both are good the
 * higher {@code seqid} wins; where one is damaged the other is used, with one log line, and a
 * read-write open writes the good one over it. A rewrite bumps {@code seqid} and writes the
 * primary, flushes, then the secondary, flushes: a crash between them leaves one good copy,
 * old or new, and the volume opens.
 *
 * <h2>Headers and data</h2>
 * Every method takes the device holding the header and the keyslots area ({@code hdr}), which is
 * the data device itself or a detached header ({@code cryptsetup --header}). Everything here
 * reads and writes synchronously and costs the keyslots' KDF: call it when setting up a stack,
 * never on the I/O path. Passphrases, derived keys and volume keys made here are wiped once used
 * and never logged.
 */
public final class Luks2 {
    private static final System.Logger LOG = System.getLogger("biostack.crypt");
    /** cryptsetup's default LUKS2 metadata area: 16 KiB per copy (LUKS2_HDR_16K_LEN). */
    public static final long DEFAULT_HDR_SIZE = 16 * 1024;
    /** cryptsetup's default data offset and header size: 16 MiB (LUKS2_HDR_DEFAULT_LEN... DEFAULT_LUKS2_DATA_OFFSET). */
    public static final long DEFAULT_DATA_OFFSET = 16L * 1024 * 1024;

    private Luks2() {
    }

    /** One LUKS2 header as read: the chosen copy, its metadata, and what the other copy needs. */
    static final class Volume {
        final BlockDevice hdr;
        final Copy chosen;
        final Luks2Metadata meta;
        final byte[] salt1;
        final byte[] salt2;
        /** Null, or which copy is damaged and why (then it is written over on a read-write open). */
        final String damaged;
        final boolean primaryDamaged;
        long seqid;

        Volume(BlockDevice hdr, Copy chosen, Luks2Metadata meta, byte[] salt1, byte[] salt2, String damaged,
               boolean primaryDamaged) {
            this.hdr = hdr;
            this.chosen = chosen;
            this.meta = meta;
            this.salt1 = salt1;
            this.salt2 = salt2;
            this.damaged = damaged;
            this.primaryDamaged = primaryDamaged;
            this.seqid = chosen.seqid();
        }

        long hdrSize() {
            return chosen.hdrSize();
        }

        /** The end of the keyslots area: everything a header backup holds. */
        long headerBytes() {
            return 2 * hdrSize() + meta.keyslotsSize();
        }
    }

    /**
     * Whether {@code hdr} starts with a LUKS2 header (or has only a LUKS2 secondary left).
     *
     * @param hdr the device that may hold a header
     * @return true for a LUKS2 volume, damaged or not
     */
    public static boolean isLuks2(BlockDevice hdr) {
        if (hdr.size() < Luks2Header.BIN_SIZE) {
            return false;
        }
        byte[] b = read(hdr, 0, Luks2Header.BIN_SIZE);
        if (Arrays.equals(b, 0, 6, Luks2Header.MAGIC_1ST, 0, 6)) {
            return b[6] == 0 && b[7] == 2;
        }
        // no primary magic (wiped or damaged): a LUKS2 secondary copy still makes it a volume
        for (long o : Luks2Header.SECONDARY_OFFSETS) {
            if (o + Luks2Header.BIN_SIZE <= hdr.size()
                    && Luks2Header.announcedSize(read(hdr, o, Luks2Header.BIN_SIZE), true) >= 0) {
                return true;
            }
        }
        return false;
    }

    /**
     * Reads both header copies of {@code hdr} and picks one.
     *
     * @throws LuksException NOT_LUKS when neither copy has a LUKS2 magic, CORRUPT_HEADER when
     *                       neither is good (the message gives both reasons)
     */
    static Volume read(BlockDevice hdr) {
        String dev = hdr.name();
        Copy p = readCopy(hdr, 0, false);
        Luks2Metadata pm = null;
        String pJson = null;
        if (p.good()) {
            try {
                pm = Luks2Metadata.read(p.json(), p.hdrSize(), dev);
            } catch (LuksException e) {
                pJson = e.getMessage();
            }
        }
        List<Long> offsets = new ArrayList<>();
        if (p.good()) {
            offsets.add(p.hdrSize());
        } else {
            long announced = announced(hdr);
            if (announced > 0) {
                offsets.add(announced);
            }
            for (long o : Luks2Header.SECONDARY_OFFSETS) {
                if (!offsets.contains(o)) {
                    offsets.add(o);
                }
            }
        }
        Copy s = null;
        Luks2Metadata sm = null;
        String sJson = null;
        for (long o : offsets) {
            Copy c = readCopy(hdr, o, true);
            if (s == null || c.good()) {
                s = c;
            }
            if (c.good()) {
                try {
                    sm = Luks2Metadata.read(c.json(), c.hdrSize(), dev);
                    sJson = null;
                    break;
                } catch (LuksException e) {
                    sJson = e.getMessage();
                }
            }
        }
        boolean pOk = pm != null;
        boolean sOk = sm != null && (!p.good() || s.hdrSize() == p.hdrSize());
        String pWhy = pOk ? null : p.good() ? pJson : p.damage();
        String sWhy = sOk ? null : s == null ? "not found" : s.good() ? (sJson != null ? sJson
                : "hdr_size differs from the primary's") : s.damage();
        if (!pOk && !sOk) {
            boolean noMagic = !p.good() && p.damage().startsWith("no ") && s != null && !s.good()
                    && s.damage().startsWith("no ");
            if (noMagic) {
                throw new LuksException(Reason.NOT_LUKS, dev + " is not a LUKS2 volume (no LUKS2 header magic)");
            }
            throw new LuksException(Reason.CORRUPT_HEADER, "both LUKS2 header copies of " + dev
                    + " are damaged: primary: " + pWhy + "; secondary: " + sWhy);
        }
        Volume v;
        if (pOk && sOk) {
            if (p.seqid() >= s.seqid()) {
                String d = p.seqid() == s.seqid() ? null : "secondary header has seqid " + s.seqid()
                        + ", older than the primary's " + p.seqid();
                v = new Volume(hdr, p, pm, p.salt(), s.salt(), d, false);
            } else {
                v = new Volume(hdr, s, sm, p.salt(), s.salt(), "primary header has seqid " + p.seqid()
                        + ", older than the secondary's " + s.seqid(), true);
            }
        } else if (pOk) {
            v = new Volume(hdr, p, pm, p.salt(), fresh(), "secondary header at " + p.hdrSize() + " is damaged: "
                    + sWhy, false);
        } else {
            v = new Volume(hdr, s, sm, fresh(), s.salt(), "primary header is damaged: " + pWhy, true);
        }
        if (v.damaged != null) {
            LOG.log(System.Logger.Level.WARNING, "LUKS2 volume " + dev + ": " + v.damaged + "; using the "
                    + (v.primaryDamaged ? "secondary" : "primary") + " copy (seqid " + v.seqid + ")");
        }
        return v;
    }

    private static long announced(BlockDevice hdr) {
        byte[] b = read(hdr, 0, Luks2Header.BIN_SIZE);
        long a = Luks2Header.announcedSize(b, false);
        return a >= Luks2Header.MIN_HDR_SIZE && a <= Luks2Header.MAX_HDR_SIZE && Long.bitCount(a) == 1 ? a : -1;
    }

    private static Copy readCopy(BlockDevice hdr, long at, boolean secondary) {
        if (at + Luks2Header.BIN_SIZE > hdr.size()) {
            return Luks2Header.parse(new byte[0], at, secondary);
        }
        byte[] bin = read(hdr, at, Luks2Header.BIN_SIZE);
        long size = Luks2Header.announcedSize(bin, secondary);
        if (size < Luks2Header.MIN_HDR_SIZE || size > Luks2Header.MAX_HDR_SIZE || Long.bitCount(size) != 1
                || at + size > hdr.size()) {
            return Luks2Header.parse(bin, at, secondary);
        }
        return Luks2Header.parse(read(hdr, at, (int) size), at, secondary);
    }

    static byte[] fresh() {
        byte[] s = new byte[Luks2Header.LEN_SALT];
        new SecureRandom().nextBytes(s);
        return s;
    }

    /** Writes the good copy over the damaged one (a read-write open of a volume with one bad copy). */
    static void repair(Volume v) {
        if (v.damaged == null) {
            return;
        }
        byte[] json = v.chosen.json().getBytes(StandardCharsets.UTF_8);
        boolean secondary = !v.primaryDamaged;
        byte[] copy = Luks2Header.build(secondary, v.hdrSize(), v.seqid, v.chosen.label(), v.chosen.subsystem(),
                v.chosen.uuid(), secondary ? v.salt2 : v.salt1, json);
        write(v.hdr, secondary ? v.hdrSize() : 0, copy);
        flush(v.hdr);
        LOG.log(System.Logger.Level.INFO, "LUKS2 volume " + v.hdr.name() + ": "
                + (secondary ? "secondary" : "primary") + " header repaired");
    }

    /**
     * Writes the metadata of {@code v} as a new header: {@code seqid} bumped, the primary first,
     * then the secondary, each flushed. Refuses metadata that does not fit its area, before
     * anything is written.
     */
    static void writeHeader(Volume v, String label, String subsystem) {
        byte[] json = v.meta.toBytes();
        long seq = v.seqid + 1;
        byte[] first = Luks2Header.build(false, v.hdrSize(), seq, label, subsystem, v.chosen.uuid(), v.salt1, json);
        byte[] second = Luks2Header.build(true, v.hdrSize(), seq, label, subsystem, v.chosen.uuid(), v.salt2, json);
        write(v.hdr, 0, first);
        flush(v.hdr);
        write(v.hdr, v.hdrSize(), second);
        flush(v.hdr);
        v.seqid = seq;
    }

    // ---- opening ---------------------------------------------------------------------------

    /**
     * The volume key and the keyslot that gave it.
     *
     * @param key     the volume key; the caller wipes it
     * @param keyslot the keyslot id
     * @param digest  the digest that checked it
     */
    record Unlocked(byte[] key, int keyslot, Luks2Digest digest) {
    }

    /**
     * Finds the volume key with {@code passphrase}: in keyslot {@code only}, or (-1) in any
     * keyslot, high priority first, skipping priority 0 as cryptsetup does.
     */
    static Unlocked unlock(Volume v, byte[] passphrase, int only) {
        String dev = v.hdr.name();
        if (passphrase == null || passphrase.length == 0) {
            throw new LuksException(Reason.WRONG_PASSPHRASE, "empty passphrase for LUKS2 volume " + dev);
        }
        List<Luks2Keyslot> slots = new ArrayList<>(v.meta.keyslots());
        if (only >= 0) {
            slots.removeIf(s -> s.id() != only);
            if (slots.isEmpty()) {
                throw new LuksException(Reason.WRONG_PASSPHRASE, "LUKS2 volume " + dev + " has no keyslot " + only);
            }
        } else {
            slots.removeIf(s -> s.priority() == 0);
            slots.sort(Comparator.comparingInt(s -> -s.priority()));
        }
        long end = v.hdr.size();
        int tried = 0;
        for (Luks2Keyslot s : slots) {
            Luks2Digest d = v.meta.digestOf(s.id());
            if (d == null) {
                continue;
            }
            if (s.areaOffset() < 2 * v.hdrSize() || s.areaOffset() + s.materialBytes() > end) {
                throw Luks2Metadata.corrupt(dev, "keyslot " + s.id() + " area at " + s.areaOffset()
                        + " overlaps the headers or lies beyond " + dev + " (" + end + " bytes)");
            }
            tried++;
            byte[] material = read(v.hdr, s.areaOffset(), s.materialBytes());
            byte[] key = null;
            try {
                key = s.unlock(passphrase, material);
                if (d.matches(key)) {
                    byte[] k = key;
                    key = null;
                    return new Unlocked(k, s.id(), d);
                }
            } finally {
                Arrays.fill(material, (byte) 0);
                if (key != null) {
                    Arrays.fill(key, (byte) 0);
                }
            }
        }
        throw new LuksException(Reason.WRONG_PASSPHRASE, tried == 0
                ? "LUKS2 volume " + dev + " has no usable keyslot" + (only >= 0 ? " " + only : "")
                : "no keyslot of LUKS2 volume " + dev + " opens with this passphrase (" + tried + " tried)");
    }

    /**
     * Opens the LUKS2 volume whose header is on {@code hdr} and whose data is on {@code data}
     * (the same device unless the header is detached) and returns its payload as a crypt device
     * named {@code name}.
     *
     * @param name       the new device's name
     * @param data       the device holding the encrypted payload
     * @param hdr        the device holding the header and keyslots ({@code data}, or a detached header)
     * @param passphrase the passphrase or key file content; not kept
     * @param keyslot    the only keyslot to try, or -1 for any
     * @param readOnly   open read-only: nothing is written, not even a repair
     * @return the payload; the caller owns it (closing it leaves {@code data} open)
     * @throws LuksException when the volume cannot be opened; nothing was written then
     */
    public static BlockDevice open(String name, BlockDevice data, BlockDevice hdr, byte[] passphrase, int keyslot,
                                   boolean readOnly) {
        Volume v = read(hdr);
        v.meta.checkUsable();
        Luks2Segment seg = v.meta.segment();
        if (hdr == data && seg.offset() == 0) {
            throw Luks.detachedAsData(hdr.name());
        }
        Unlocked u = unlock(v, passphrase, keyslot);
        try {
            if (!u.digest().segments().contains(seg.id())) {
                throw Luks2Metadata.corrupt(hdr.name(), "digest " + u.digest().id() + " does not cover segment "
                        + seg.id());
            }
            if (u.key().length != keyBytesOf(v, u.keyslot())) {
                throw Luks2Metadata.corrupt(hdr.name(), "keyslot key size differs");
            }
            if (hdr == data && seg.offset() < v.headerBytes()) {
                throw Luks2Metadata.corrupt(hdr.name(), "segment offset " + seg.offset()
                        + " lies inside the header and keyslots area (" + v.headerBytes() + " bytes)");
            }
            if (!readOnly && !hdr.isReadOnly()) {
                repair(v);
            }
            return seg.open(name, data, u.key(), readOnly);
        } finally {
            Arrays.fill(u.key(), (byte) 0);
        }
    }

    private static int keyBytesOf(Volume v, int slot) {
        for (Luks2Keyslot s : v.meta.keyslots()) {
            if (s.id() == slot) {
                return s.keySize();
            }
        }
        return -1;
    }

    /**
     * The volume key that {@code passphrase} opens (for {@code luksDump --dump-volume-key} and
     * tests).
     *
     * @param hdr        the header device
     * @param passphrase the passphrase or key file content
     * @param keyslot    the only keyslot to try, or -1
     * @return a new array; the caller wipes it
     */
    public static byte[] volumeKey(BlockDevice hdr, byte[] passphrase, int keyslot) {
        Volume v = read(hdr);
        v.meta.checkUsable();
        return unlock(v, passphrase, keyslot).key();
    }

    /**
     * The keyslot {@code passphrase} opens ({@code cryptsetup open --test-passphrase}).
     *
     * @param hdr        the header device
     * @param passphrase the passphrase or key file content
     * @param keyslot    the only keyslot to try, or -1
     * @return the keyslot id
     */
    public static int testPassphrase(BlockDevice hdr, byte[] passphrase, int keyslot) {
        Volume v = read(hdr);
        v.meta.checkUsable();
        Unlocked u = unlock(v, passphrase, keyslot);
        Arrays.fill(u.key(), (byte) 0);
        return u.keyslot();
    }

    // ---- format and keyslot changes ------------------------------------------------------------

    /**
     * How a keyslot's key is derived: {@code type} pbkdf2, argon2i or argon2id; with
     * {@code forceIterations} above 0 the cost is taken as given, else benchmarked to
     * {@code iterTimeMs} with at most {@code maxMemoryKiB} and {@code parallel} lanes.
     *
     * @param type            pbkdf2, argon2i or argon2id
     * @param hash            the PBKDF2 hash (pbkdf2 only)
     * @param iterTimeMs      the time an unlock should take
     * @param maxMemoryKiB    Argon2 memory (the most the benchmark may use)
     * @param parallel        Argon2 lanes
     * @param forceIterations PBKDF2 iterations or Argon2 time, skipping the benchmark (0: benchmark)
     */
    public record KdfOptions(String type, String hash, int iterTimeMs, int maxMemoryKiB, int parallel,
                             int forceIterations) {
        /**
         * cryptsetup's defaults: argon2id, 2 s, memory at most 1 GiB and half the RAM, lanes up
         * to 4 and the processors.
         *
         * @return the defaults
         */
        public static KdfOptions defaults() {
            long ramKiB = totalRamKiB();
            int mem = (int) Math.min(1024 * 1024, ramKiB > 0 ? ramKiB / 2 : 1024 * 1024);
            return new KdfOptions("argon2id", "sha256", 2000, mem, Math.min(4,
                    Runtime.getRuntime().availableProcessors()), 0);
        }

        Luks2Keyslot.Kdf make(SecureRandom rnd) {
            byte[] salt = new byte[32];
            rnd.nextBytes(salt);
            switch (type) {
                case "pbkdf2" -> {
                    LuksKdf.jdkNames(hash);
                    int it = forceIterations > 0 ? forceIterations : Luks2Bench.pbkdf2Iterations(hash, iterTimeMs);
                    return new Luks2Keyslot.Kdf("pbkdf2", hash, it, 0, 0, salt);
                }
                case "argon2i", "argon2id" -> {
                    if (maxMemoryKiB > Luks2Keyslot.MAX_ARGON2_KIB || maxMemoryKiB < 8 * parallel || parallel < 1) {
                        throw new IllegalArgumentException("Argon2 memory " + maxMemoryKiB + " KiB with " + parallel
                                + " lanes is out of range (8 KiB per lane to 4 GiB)");
                    }
                    if (forceIterations > 0) {
                        return new Luks2Keyslot.Kdf(type, null, forceIterations, maxMemoryKiB, parallel, salt);
                    }
                    int[] tm = Luks2Bench.argon2(type, iterTimeMs, maxMemoryKiB, parallel);
                    return new Luks2Keyslot.Kdf(type, null, tm[0], tm[1], parallel, salt);
                }
                default -> throw new IllegalArgumentException("unknown pbkdf '" + type
                        + "' (argon2id, argon2i, pbkdf2)");
            }
        }
    }

    /**
     * How {@link #format} lays a volume out.
     *
     * @param keyBytes   volume key bytes: 64 (AES-256-XTS, cryptsetup's default) or 32
     * @param kdf        the first keyslot's KDF
     * @param sectorSize encryption sector size, or 0 for 4096 where the device allows it
     * @param label      the label ("" for none)
     * @param dataOffset payload offset on the data device: -1 for 16 MiB (0 with a detached header)
     */
    public record FormatOptions(int keyBytes, KdfOptions kdf, int sectorSize, String label, long dataOffset) {
        /**
         * cryptsetup's defaults.
         *
         * @return 512-bit key, default KDF, automatic sector size, no label, default offset
         */
        public static FormatOptions defaults() {
            return new FormatOptions(64, KdfOptions.defaults(), 0, "", -1);
        }
    }

    /**
     * Writes a new LUKS2 volume: a random volume key in keyslot 0 for {@code passphrase}, the
     * header and keyslots on {@code hdr} (16 MiB), the payload on {@code data} from the data offset.
     * Everything in the header area is lost.
     *
     * @param data       the data device
     * @param hdr        the header device: {@code data}, or a detached header file's device
     * @param passphrase the first keyslot's passphrase; not kept
     * @param opts       the layout
     * @return the UUID of the new volume
     */
    public static String format(BlockDevice data, BlockDevice hdr, byte[] passphrase, FormatOptions opts) {
        if (passphrase == null || passphrase.length == 0) {
            throw new IllegalArgumentException("empty passphrase");
        }
        CipherSpec spec = CipherSpec.AES_XTS_PLAIN64;
        spec.checkKeyLength(opts.keyBytes());
        boolean detached = hdr != data;
        long offset = opts.dataOffset() >= 0 ? opts.dataOffset() : detached ? 0 : DEFAULT_DATA_OFFSET;
        long hdrArea = detached ? Math.max(DEFAULT_DATA_OFFSET, offset) : offset;
        if (offset % 4096 != 0 || (!detached && offset < 2 * DEFAULT_HDR_SIZE + Luks2Keyslot.areaSizeFor(opts.keyBytes()))) {
            throw new IllegalArgumentException("data offset " + offset + " is too small or not 4 KiB-aligned");
        }
        if (hdr.size() < hdrArea) {
            throw new IllegalArgumentException(hdr.name() + " (" + hdr.size() + " bytes) is too small for a "
                    + hdrArea + "-byte LUKS2 header");
        }
        if (data.size() <= offset) {
            throw new IllegalArgumentException(data.name() + " (" + data.size() + " bytes) has no room for data after"
                    + " the " + offset + "-byte header");
        }
        long payload = data.size() - offset;
        int ss = opts.sectorSize();
        if (ss == 0) {
            ss = data.limits().logicalBlockSize() <= 4096 && payload % 4096 == 0 ? 4096 : 512;
        }
        if (ss != 512 && ss != 1024 && ss != 2048 && ss != 4096) {
            throw new IllegalArgumentException("sector size must be 512, 1024, 2048 or 4096, not " + ss);
        }
        if (ss < data.limits().logicalBlockSize()) {
            throw new IllegalArgumentException("sector size " + ss + " is smaller than " + data.name()
                    + "'s logical block size " + data.limits().logicalBlockSize());
        }
        SecureRandom rnd = new SecureRandom();
        byte[] key = new byte[opts.keyBytes()];
        rnd.nextBytes(key);
        try {
            long keyslotsSize = hdrArea - 2 * DEFAULT_HDR_SIZE;
            Luks2Metadata meta = Luks2Metadata.empty(hdr.name(), DEFAULT_HDR_SIZE - Luks2Header.BIN_SIZE, keyslotsSize);
            meta.segmentsObj().put("0", Luks2Segment.json(offset, -1, spec, ss));
            byte[] dsalt = new byte[32];
            rnd.nextBytes(dsalt);
            meta.digestsObj().put("0", Luks2Digest.json(key, "sha256", Luks2Bench.digestIterations(), dsalt, 32, "0"));
            Copy c = new Copy(0, null, DEFAULT_HDR_SIZE, 0, opts.label(), "", UUID.randomUUID().toString(),
                    fresh(), "{}");
            Volume v = new Volume(hdr, c, meta, fresh(), fresh(), null, false);
            // every refusal comes before the wipe, which destroys whatever volume was there: the
            // KDF (an unknown pbkdf or hash, Argon2 memory or lanes out of range) and the label
            Luks2Keyslot.Kdf kdf = opts.kdf().make(rnd);
            Luks2Header.build(false, DEFAULT_HDR_SIZE, 1, opts.label(), "", c.uuid(), v.salt1, meta.toBytes());
            // the whole header area starts zeroed, as cryptsetup wipes it
            byte[] zeros = new byte[1 << 20];
            for (long o = 0; o < hdrArea; o += zeros.length) {
                write(hdr, o, Arrays.copyOf(zeros, (int) Math.min(zeros.length, hdrArea - o)));
            }
            addSlot(v, key, passphrase, kdf, 0, 0, rnd, freeArea(v, Luks2Keyslot.areaSizeFor(key.length)));
            writeHeader(v, opts.label(), "");
            return c.uuid();
        } finally {
            Arrays.fill(key, (byte) 0);
        }
    }

    /** Seals {@code key} into a new area for slot {@code id}, writes it, and puts the slot in the metadata. */
    private static void addSlot(Volume v, byte[] key, byte[] passphrase, Luks2Keyslot.Kdf kdf, int id, int digest,
                                SecureRandom rnd, long at) {
        long size = Luks2Keyslot.areaSizeFor(key.length);
        byte[] area = Luks2Keyslot.seal(key, passphrase, kdf, CipherSpec.AES_XTS_PLAIN64, 64, size, rnd);
        try {
            write(v.hdr, at, area);
            flush(v.hdr);
        } finally {
            Arrays.fill(area, (byte) 0);
        }
        v.meta.addKeyslot(id, Luks2Keyslot.json(key.length, at, size, CipherSpec.AES_XTS_PLAIN64, 64, kdf), digest);
    }

    /** The first 4 KiB-aligned gap of {@code size} bytes in the keyslots area. */
    private static long freeArea(Volume v, long size) {
        long start = 2 * v.hdrSize();
        long end = start + v.meta.keyslotsSize();
        List<long[]> used = new ArrayList<>();
        for (Luks2Keyslot s : v.meta.keyslots()) {
            used.add(new long[] {s.areaOffset(), s.areaOffset() + s.areaSize()});
        }
        used.sort(Comparator.comparingLong(a -> a[0]));
        long at = start;
        for (long[] u : used) {
            if (at + size <= u[0]) {
                break;
            }
            at = Math.max(at, (u[1] + 4095) / 4096 * 4096);
        }
        if (at + size > end) {
            throw new LuksException(Reason.UNSUPPORTED, "no room for another keyslot in the keyslots area of "
                    + v.hdr.name());
        }
        return at;
    }

    private static int freeSlot(Volume v, int wanted) {
        List<Integer> ids = new ArrayList<>();
        for (Luks2Keyslot s : v.meta.keyslots()) {
            ids.add(s.id());
        }
        if (wanted >= 0) {
            if (wanted >= Luks2Keyslot.MAX_KEYSLOTS || ids.contains(wanted)) {
                throw new IllegalArgumentException("keyslot " + wanted + " is in use or out of range (0 to 31)");
            }
            return wanted;
        }
        for (int i = 0; i < Luks2Keyslot.MAX_KEYSLOTS; i++) {
            if (!ids.contains(i)) {
                return i;
            }
        }
        throw new LuksException(Reason.UNSUPPORTED, "all 32 keyslots of " + v.hdr.name() + " are in use");
    }

    /**
     * Adds a keyslot for {@code newPassphrase}, unlocking the volume key with {@code passphrase}
     * ({@code cryptsetup luksAddKey}). The area is written and flushed before the header names it.
     *
     * @param hdr           the header device
     * @param passphrase    an existing passphrase
     * @param newPassphrase the new one
     * @param kdf           the new keyslot's KDF
     * @param slot          the new keyslot's id, or -1 for the first free
     * @return the new keyslot's id
     */
    public static int addKey(BlockDevice hdr, byte[] passphrase, byte[] newPassphrase, KdfOptions kdf, int slot) {
        Volume v = read(hdr);
        v.meta.checkUsable();
        if (newPassphrase == null || newPassphrase.length == 0) {
            throw new IllegalArgumentException("empty new passphrase");
        }
        Unlocked u = unlock(v, passphrase, -1);
        try {
            int id = freeSlot(v, slot);
            SecureRandom rnd = new SecureRandom();
            Luks2Keyslot.Kdf k = kdf.make(rnd);
            repair(v);
            addSlot(v, u.key(), newPassphrase, k, id, u.digest().id(), rnd,
                    freeArea(v, Luks2Keyslot.areaSizeFor(u.key().length)));
            writeHeader(v, v.chosen.label(), v.chosen.subsystem());
            return id;
        } finally {
            Arrays.fill(u.key(), (byte) 0);
        }
    }

    /**
     * Removes keyslot {@code slot} ({@code cryptsetup luksKillSlot}), or the keyslot that
     * {@code passphrase} opens when {@code slot} is -1 ({@code luksRemoveKey}): the header first,
     * then the area is overwritten with zeros.
     *
     * @param hdr        the header device
     * @param passphrase the passphrase of the slot to remove (used when {@code slot} is -1)
     * @param slot       the keyslot, or -1
     * @return the removed keyslot's id
     */
    public static int removeKey(BlockDevice hdr, byte[] passphrase, int slot) {
        Volume v = read(hdr);
        v.meta.checkUsable();
        int id = slot;
        if (id < 0) {
            Unlocked u = unlock(v, passphrase, -1);
            Arrays.fill(u.key(), (byte) 0);
            id = u.keyslot();
        }
        Luks2Keyslot gone = null;
        for (Luks2Keyslot s : v.meta.keyslots()) {
            if (s.id() == id) {
                gone = s;
            }
        }
        if (gone == null) {
            throw new IllegalArgumentException("LUKS2 volume " + hdr.name() + " has no keyslot " + id);
        }
        repair(v);
        v.meta.removeKeyslot(id);
        v.meta.unassignTokens(id);
        writeHeader(v, v.chosen.label(), v.chosen.subsystem());
        write(hdr, gone.areaOffset(), new byte[(int) gone.areaSize()]);
        flush(hdr);
        return id;
    }

    /**
     * Replaces the passphrase of the keyslot {@code passphrase} opens ({@code luksChangeKey}):
     * a new area is written, then the header points the same keyslot id at it, then the old
     * area is zeroed.
     *
     * @param hdr           the header device
     * @param passphrase    the current passphrase
     * @param newPassphrase the new passphrase
     * @param kdf           the KDF of the new keyslot
     * @return the keyslot id
     */
    public static int changeKey(BlockDevice hdr, byte[] passphrase, byte[] newPassphrase, KdfOptions kdf) {
        Volume v = read(hdr);
        v.meta.checkUsable();
        // as in addKey: unlock refuses an empty passphrase, so a keyslot sealed with one would
        // never open here again (and the old passphrase is gone)
        if (newPassphrase == null || newPassphrase.length == 0) {
            throw new IllegalArgumentException("empty new passphrase");
        }
        Unlocked u = unlock(v, passphrase, -1);
        try {
            Luks2Keyslot old = null;
            for (Luks2Keyslot s : v.meta.keyslots()) {
                if (s.id() == u.keyslot()) {
                    old = s;
                }
            }
            SecureRandom rnd = new SecureRandom();
            Luks2Keyslot.Kdf k = kdf.make(rnd);
            repair(v);
            // the new area is chosen while the old one is still taken: a crash before the header
            // write leaves the old keyslot whole
            long at = freeArea(v, Luks2Keyslot.areaSizeFor(u.key().length));
            v.meta.removeKeyslot(u.keyslot());
            addSlot(v, u.key(), newPassphrase, k, u.keyslot(), u.digest().id(), rnd, at);
            writeHeader(v, v.chosen.label(), v.chosen.subsystem());
            write(hdr, old.areaOffset(), new byte[(int) old.areaSize()]);
            flush(hdr);
            return u.keyslot();
        } finally {
            Arrays.fill(u.key(), (byte) 0);
        }
    }

    /**
     * PBKDF2 iterations of {@code hash} that take about {@code ms} here, at least 1000
     * (cryptsetup's benchmark, for LUKS1 keyslots).
     *
     * @param hash the hash, e.g. sha256
     * @param ms   the time to aim at
     * @return the iterations
     */
    public static int pbkdf2Iterations(String hash, int ms) {
        return Luks2Bench.pbkdf2Iterations(hash, ms);
    }

    // ---- inspection ----------------------------------------------------------------------------

    /**
     * The JSON metadata text as on disk ({@code luksDump --dump-json-metadata}).
     *
     * @param hdr the header device
     * @return the JSON text of the copy in use
     */
    public static String json(BlockDevice hdr) {
        return read(hdr).chosen.json();
    }

    /**
     * A description in the spirit of {@code cryptsetup luksDump}.
     *
     * @param hdr the header device
     * @return the text, several lines
     */
    public static String dump(BlockDevice hdr) {
        Volume v = read(hdr);
        StringBuilder sb = new StringBuilder("LUKS header information\n");
        sb.append("Version:       \t2\n");
        sb.append("Epoch:         \t").append(v.seqid).append('\n');
        sb.append("Metadata area: \t").append(v.hdrSize() - Luks2Header.BIN_SIZE + Luks2Header.BIN_SIZE)
                .append(" [bytes]\n");
        sb.append("Keyslots area: \t").append(v.meta.keyslotsSize()).append(" [bytes]\n");
        sb.append("UUID:          \t").append(v.chosen.uuid()).append('\n');
        sb.append("Label:         \t").append(v.chosen.label().isEmpty() ? "(no label)" : v.chosen.label()).append('\n');
        List<String> req = v.meta.mandatoryRequirements();
        sb.append("Requirements:  \t").append(req.isEmpty() ? "(no requirements)" : String.join(" ", req)).append("\n\n");
        sb.append("Data segments:\n");
        for (var e : v.meta.segmentsObj().members().entrySet()) {
            sb.append("  ").append(e.getKey()).append(": ").append(e.getValue().text()).append('\n');
        }
        sb.append("\nKeyslots:\n");
        for (var e : v.meta.keyslotsObj().members().entrySet()) {
            try {
                Luks2Keyslot s = Luks2Keyslot.read(Integer.parseInt(e.getKey()), (Luks2Json.Obj) e.getValue(), hdr.name());
                sb.append("  ").append(s.id()).append(": luks2\n\tKey:        ").append(s.keySize() * 8)
                        .append(" bits\n\tPBKDF:      ").append(s.kdf()).append("\n\tArea offset:")
                        .append(s.areaOffset()).append(" [bytes]\n\tArea length:").append(s.areaSize())
                        .append(" [bytes]\n");
            } catch (RuntimeException x) {
                sb.append("  ").append(e.getKey()).append(": ").append(e.getValue().text()).append('\n');
            }
        }
        sb.append("Tokens:\n");
        for (var e : v.meta.tokensObj().members().entrySet()) {
            sb.append("  ").append(e.getKey()).append(": ").append(e.getValue().text()).append('\n');
        }
        sb.append("Digests:\n");
        for (Luks2Digest d : v.meta.digests()) {
            sb.append("  ").append(d.id()).append(": pbkdf2 ").append(d.hash()).append(' ').append(d.iterations())
                    .append(" iterations, keyslots ").append(d.keyslots()).append('\n');
        }
        return sb.toString();
    }

    /**
     * Bytes of header and keyslots area, what {@code luksHeaderBackup} saves.
     *
     * @param hdr the header device
     * @return {@code 2 * hdr_size + keyslots_size}
     */
    public static long headerBytes(BlockDevice hdr) {
        return read(hdr).headerBytes();
    }

    /**
     * Refuses to write the LUKS2 header backup held on {@code backup} over {@code dev} when
     * {@code dev} already has a readable LUKS2 header with another data offset, or another size
     * of header and keyslots area, as cryptsetup's {@code LUKS2_hdr_restore} refuses it: the
     * backup's keyslots area would be written over the payload, or leave the old one's tail.
     * A device without a readable LUKS2 header, or in the middle of a reencryption (whose
     * segments move), is not compared, as in cryptsetup.
     *
     * @param dev    the device the backup is to be written on
     * @param backup the backup's bytes, as a device
     * @throws IllegalArgumentException naming both values when they differ
     */
    public static void checkRestore(BlockDevice dev, BlockDevice backup) {
        Volume have;
        try {
            have = read(dev);
        } catch (LuksException e) {
            return;
        }
        if (have.meta.mandatoryRequirements().stream().anyMatch(r -> r.startsWith("online-reencrypt"))) {
            return;
        }
        Volume want = read(backup);
        long haveOffset = dataOffset(have);
        long wantOffset = dataOffset(want);
        if (haveOffset != wantOffset) {
            throw new IllegalArgumentException("the data offset differs on " + dev.name() + " (" + haveOffset
                    + ") and in the backup (" + wantOffset + "): restore refused, nothing written");
        }
        if (have.headerBytes() != want.headerBytes()) {
            throw new IllegalArgumentException("the header and keyslots area is " + have.headerBytes() + " bytes on "
                    + dev.name() + " and " + want.headerBytes() + " in the backup: restore refused, nothing written");
        }
    }

    /** The smallest segment offset, as cryptsetup's LUKS2_get_data_offset (0 without segments). */
    private static long dataOffset(Volume v) {
        long min = Long.MAX_VALUE;
        try {
            for (var e : v.meta.segmentsObj().members().entrySet()) {
                if (e.getValue() instanceof Luks2Json.Obj seg) {
                    min = Math.min(min, Luks2Json.u64(seg, "offset", "segments." + e.getKey()));
                }
            }
        } catch (Luks2Json.FieldException e) {
            throw Luks2Metadata.corrupt(v.hdr.name(), e.getMessage());
        }
        return min == Long.MAX_VALUE ? 0 : min;
    }

    // ---- synchronous I/O at set-up time --------------------------------------------------------

    static byte[] read(BlockDevice dev, long offset, int len) {
        int lbs = dev.limits().logicalBlockSize();
        long from = offset / lbs * lbs;
        long to = Math.min(dev.size(), (offset + len + lbs - 1) / lbs * lbs);
        byte[] buf = new byte[(int) (to - from)];
        try {
            dev.read(from, MemorySegment.ofArray(buf)).get();
        } catch (ExecutionException e) {
            throw new LuksException(Reason.IO, "reading " + len + " bytes at " + offset + " of " + dev.name()
                    + " failed: " + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new LuksException(Reason.IO, "interrupted while reading " + dev.name(), e);
        }
        if (from == offset && buf.length == len) {
            return buf;
        }
        return Arrays.copyOfRange(buf, (int) (offset - from), (int) (offset - from) + len);
    }

    static void write(BlockDevice dev, long offset, byte[] data) {
        try {
            dev.write(offset, IoIter.of(data), 0).get();
        } catch (ExecutionException e) {
            throw new LuksException(Reason.IO, "writing " + data.length + " bytes at " + offset + " of " + dev.name()
                    + " failed: " + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new LuksException(Reason.IO, "interrupted while writing " + dev.name(), e);
        }
    }

    static void flush(BlockDevice dev) {
        try {
            dev.flush().get();
        } catch (ExecutionException e) {
            throw new LuksException(Reason.IO, "flushing " + dev.name() + " failed: " + e.getCause().getMessage(),
                    e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new LuksException(Reason.IO, "interrupted while flushing " + dev.name(), e);
        }
    }

    static long totalRamKiB() {
        try {
            var os = (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory
                    .getOperatingSystemMXBean();
            return os.getTotalMemorySize() / 1024;
        } catch (RuntimeException | LinkageError e) {
            return -1;
        }
    }
}
