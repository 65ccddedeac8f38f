package io.biostack.layer.crypt;

import io.biostack.block.BlockDevice;
import io.biostack.layer.crypt.Luks2Header.Copy;
import io.biostack.layer.crypt.LuksException.Reason;
import io.biostack.layer.crypt.LuksHeader.KeySlot;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * {@code cryptsetup convert --type luks2|luks1} (cryptsetup's {@code lib/luks2/luks2_luks1_convert.c}):
 * the header of a LUKS1 volume rewritten as LUKS2 and back, the volume key and keyslots kept, the
 * payload untouched. No passphrase is needed: the keyslots' encrypted areas are moved as they are.
 *
 * <h2>Layout</h2>
 * LUKS1 key material starts at 4 KiB ({@code LUKS_ALIGN_KEYSLOTS}); LUKS2 keyslot areas start after
 * the two 16 KiB header copies, at 32 KiB. Converting moves the areas by 28 KiB
 * ({@code 2 * LUKS2_HDR_16K_LEN - LUKS_ALIGN_KEYSLOTS}) and writes the other header; the data
 * offset stays, so the payload is neither moved nor re-encrypted. The result is byte for byte the
 * layout cryptsetup 2.6 makes: keyslot {@code i} of LUKS1 at sector {@code s} becomes LUKS2
 * keyslot {@code i} at {@code s * 512 + 28672}, and the way back puts inactive LUKS1 slots in the
 * first free gaps, as {@code LUKS2_find_area_gap} does.
 *
 * <h2>Refusals</h2>
 * Each is checked before anything is written, with cryptsetup's reason: to LUKS1, a sector size
 * other than 512, a keyslot that is not pbkdf2 (argon2), whose hashes differ from the digest's or
 * whose area is not LUKS1-sized, a keyslot above 7, an unbound keyslot, tokens, more than one
 * digest or segment, a segment with an {@code iv_tweak} (which cryptsetup lets through, to a volume that
 * decrypts to garbage), requirements, and a layout whose key material would run into the payload;
 * to LUKS2, key material not starting at 4 KiB (a LUKS1 header that was itself converted from a
 * LUKS2 header bigger than 16 KiB), a cipher LUKS2 keyslots cannot use, too little room before the
 * payload for the 28 KiB shift, and {@code luksmeta} data after the keyslots.
 *
 * <h2>Crashes</h2>
 * The new header is written last, after the moved areas are flushed; a LUKS2 header is written
 * primary first, then secondary, each flushed, so a crash between the copies leaves a volume that
 * opens from the primary. The move itself overlaps the areas it moves (there is no free room of
 * that size in a LUKS1 layout), exactly as in cryptsetup: a crash during the move leaves
 * neither header able to open the volume. Take a {@code header-backup} first.
 */
public final class Luks2Convert {
    /** LUKS_ALIGN_KEYSLOTS: LUKS1 key material starts at 4 KiB (sector 8). */
    static final int LUKS1_KEYSLOTS_OFFSET = 4096;
    /** LUKS2_HDR_16K_LEN: a converted LUKS2 header has two 16 KiB copies. */
    static final int HDR_16K = 16 * 1024;
    /** The shift of every keyslot area: {@code 2 * LUKS2_HDR_16K_LEN - LUKS_ALIGN_KEYSLOTS}. */
    static final int SHIFT = 2 * HDR_16K - LUKS1_KEYSLOTS_OFFSET;
    /** LUKSMETA_MAGIC of the luksmeta package, which cryptsetup refuses to convert over. */
    private static final byte[] LUKSMETA = {'L', 'U', 'K', 'S', 'M', 'E', 'T', 'A'};
    /** Bytes moved per read and write. */
    private static final int CHUNK = 1 << 20;

    private Luks2Convert() {
    }

    /**
     * Bytes the header device must have for {@link #toLuks2} of the LUKS1 header on {@code hdr}:
     * the LUKS1 keyslots plus the 28 KiB shift. A detached header file smaller than this can be
     * grown first (cryptsetup fallocates it).
     *
     * @param hdr the device holding the LUKS1 header
     * @return bytes needed from the start of {@code hdr}
     * @throws LuksException NOT_LUKS or CORRUPT_HEADER when {@code hdr} holds no usable LUKS1 header
     */
    public static long luks2Bytes(BlockDevice hdr) {
        LuksHeader h = Luks.readHeader(hdr);
        return luks1Size(h, hdr.name()) + SHIFT;
    }

    /** End of the LUKS1 keyslots, rounded up to 4 KiB (cryptsetup's {@code LUKS_device_sectors}, aligned). */
    private static long luks1Size(LuksHeader h, String dev) {
        long end = 0;
        for (KeySlot s : h.slots()) {
            end = Math.max(end, s.keyMaterialOffset() + afSectors(h.keyBytes()));
        }
        if (end == 0) {
            throw Luks.corrupt(dev, "it has no key material");
        }
        return (end * LuksHeader.SECTOR + 4095) / 4096 * 4096;
    }

    /** AF_split_sectors: 512-byte sectors of {@code keyBytes} x 4000 stripes. */
    private static long afSectors(int keyBytes) {
        return ((long) keyBytes * LuksHeader.STRIPES + LuksHeader.SECTOR - 1) / LuksHeader.SECTOR;
    }

    // ---- LUKS1 -> LUKS2 ------------------------------------------------------------------------

    /**
     * Rewrites the LUKS1 header on {@code hdr} as a LUKS2 header ({@code cryptsetup convert --type
     * luks2}): the key material moves from 4 KiB to 32 KiB, then the two LUKS2 copies are written
     * (seqid 2, as cryptsetup's). The UUID, keyslot numbers, PBKDF2 settings and the 20-byte
     * master key digest are kept.
     *
     * @param hdr the device holding the header: the volume, or its detached header
     * @return the ids of the keyslots carried over
     * @throws LuksException NOT_LUKS, UNSUPPORTED (already LUKS2, or a refusal named in the
     *                       message) or CORRUPT_HEADER, with nothing written; IO when a write fails
     */
    public static List<Integer> toLuks2(BlockDevice hdr) {
        String dev = hdr.name();
        if (Luks2.isLuks2(hdr)) {
            throw new LuksException(Reason.UNSUPPORTED, dev + " is already LUKS2");
        }
        LuksHeader h = Luks.readHeader(hdr);
        CipherSpec spec;
        try {
            spec = CipherSpec.fromLuks(h.cipherName(), h.cipherMode());
            spec.checkKeyLength(h.keyBytes());
        } catch (IllegalArgumentException e) {
            throw refused(dev, 2, "cipher " + h.cipherName() + "-" + h.cipherMode() + " cannot be used for LUKS2"
                    + " keyslots here: " + e.getMessage());
        }
        LuksKdf.jdkNames(h.hashSpec());
        long minOffset = Long.MAX_VALUE;
        for (KeySlot s : h.slots()) {
            if (s.stripes() != LuksHeader.STRIPES) {
                throw Luks.corrupt(dev, "key slot " + s.index() + " has " + s.stripes() + " stripes, not 4000");
            }
            minOffset = Math.min(minOffset, s.keyMaterialOffset());
        }
        if (minOffset * LuksHeader.SECTOR != LUKS1_KEYSLOTS_OFFSET) {
            throw refused(dev, 2, "its key material starts at sector " + minOffset + ", not 8 (4 KiB): only"
                    + " the standard LUKS1 layout converts (cryptsetup: unsupported keyslots material offset)");
        }
        long luks1Size = luks1Size(h, dev);
        long maxSize = h.payloadOffset() * LuksHeader.SECTOR;
        if (maxSize == 0) {
            maxSize = hdr.size(); // a detached header: its whole device
        }
        long required = luks1Size + SHIFT;
        if (maxSize < required) {
            throw refused(dev, 2, "the keyslots cannot move by " + SHIFT + " bytes: LUKS2 needs " + required
                    + " bytes before the " + (h.payloadOffset() == 0 ? "end of the header device" : "payload")
                    + ", there are " + maxSize + " (not enough space)");
        }
        if (luks1Size + LUKSMETA.length <= hdr.size()
                && Arrays.equals(Luks2.read(hdr, luks1Size, LUKSMETA.length), LUKSMETA)) {
            throw refused(dev, 2, "it has luksmeta metadata after its keyslots, which the move would destroy");
        }
        List<KeySlot> slots = h.slots();
        long stride = (slots.get(1).keyMaterialOffset() - slots.get(0).keyMaterialOffset()) * LuksHeader.SECTOR;
        long keyslotsSize = maxSize - 2 * HDR_16K;

        Luks2Metadata meta = Luks2Metadata.empty(dev, HDR_16K - Luks2Header.BIN_SIZE, keyslotsSize);
        Luks2Json.Arr bound = new Luks2Json.Arr();
        List<Integer> ids = new ArrayList<>();
        List<long[]> areas = new ArrayList<>();
        for (KeySlot s : slots) {
            if (!s.active()) {
                continue;
            }
            long at = s.keyMaterialOffset() * LuksHeader.SECTOR + SHIFT;
            if (stride < afSectors(h.keyBytes()) * LuksHeader.SECTOR || at + stride > 2 * HDR_16K + keyslotsSize) {
                throw refused(dev, 2, "key slot " + s.index() + " would get area [" + at + ", +" + stride
                        + ") outside the LUKS2 keyslots area");
            }
            areas.add(new long[] {at, at + stride});
            meta.keyslotsObj().put(Integer.toString(s.index()), keyslotJson(h, spec, s, at, stride));
            bound.add(new Luks2Json.Str(Integer.toString(s.index())));
            ids.add(s.index());
        }
        if (ids.isEmpty()) {
            throw refused(dev, 2, "it has no active key slot");
        }
        checkDisjoint(areas, dev);
        Luks2Json.Obj seg = new Luks2Json.Obj(); // json_luks1_segment's members, in its order
        seg.put("type", "crypt");
        seg.put("offset", Long.toString(h.payloadOffset() * LuksHeader.SECTOR));
        seg.put("iv_tweak", "0");
        seg.put("size", "dynamic");
        seg.put("encryption", spec.toString());
        seg.put("sector_size", LuksHeader.SECTOR);
        meta.segmentsObj().put("0", seg);
        Luks2Json.Obj digest = new Luks2Json.Obj();
        digest.put("type", "pbkdf2");
        digest.put("keyslots", bound);
        digest.put("segments", new Luks2Json.Arr().add(new Luks2Json.Str("0")));
        digest.put("hash", h.hashSpec());
        digest.put("salt", Luks2Json.base64(h.mkDigestSalt()));
        digest.put("digest", Luks2Json.base64(h.mkDigest()));
        digest.put("iterations", h.mkDigestIterations());
        meta.digestsObj().put("0", digest);

        // Everything the new header says is checked as any LUKS2 header would be, before a write.
        Luks2Metadata check = Luks2Metadata.read(new String(meta.toBytes(), java.nio.charset.StandardCharsets.UTF_8),
                HDR_16K, dev);
        check.checkUsable();
        check.keyslots();
        check.digests();
        Copy c = new Copy(0, null, HDR_16K, 1, "", "", h.uuid(), Luks2.fresh(), "{}");
        Luks2.Volume v = new Luks2.Volume(hdr, c, meta, Luks2.fresh(), Luks2.fresh(), null, false);
        Luks2Header.build(false, HDR_16K, 2, "", "", h.uuid(), v.salt1, meta.toBytes()); // fits, or throws

        move(hdr, LUKS1_KEYSLOTS_OFFSET, 2 * HDR_16K, luks1Size - LUKS1_KEYSLOTS_OFFSET);
        Luks2.writeHeader(v, "", "");
        return ids;
    }

    /** A keyslot object as cryptsetup's {@code json_luks1_keyslot} writes it, members in its order. */
    private static Luks2Json.Obj keyslotJson(LuksHeader h, CipherSpec spec, KeySlot s, long at, long size) {
        Luks2Json.Obj kdf = new Luks2Json.Obj();
        kdf.put("type", "pbkdf2");
        kdf.put("hash", h.hashSpec());
        kdf.put("iterations", s.iterations() & 0xffffffffL);
        kdf.put("salt", Luks2Json.base64(s.salt()));
        Luks2Json.Obj af = new Luks2Json.Obj();
        af.put("type", "luks1");
        af.put("hash", h.hashSpec());
        af.put("stripes", LuksHeader.STRIPES);
        Luks2Json.Obj area = new Luks2Json.Obj();
        area.put("type", "raw");
        area.put("encryption", spec.toString());
        area.put("key_size", h.keyBytes());
        area.put("offset", Long.toString(at));
        area.put("size", Long.toString(size));
        Luks2Json.Obj o = new Luks2Json.Obj();
        o.put("type", "luks2");
        o.put("key_size", h.keyBytes());
        o.put("kdf", kdf);
        o.put("af", af);
        o.put("area", area);
        return o;
    }

    // ---- LUKS2 -> LUKS1 ------------------------------------------------------------------------

    /**
     * Rewrites the LUKS2 header on {@code hdr} as a LUKS1 header ({@code cryptsetup convert --type
     * luks1}), where the volume allows it: the keyslots area moves from 32 KiB to 4 KiB, then the
     * LUKS1 header is written over the first 4 KiB. The label, subsystem and seqid are lost, as
     * LUKS1 has none.
     *
     * @param hdr the device holding the header: the volume, or its detached header
     * @return the ids of the keyslots carried over
     * @throws LuksException NOT_LUKS, UNSUPPORTED (already LUKS1, or a refusal named in the
     *                       message) or CORRUPT_HEADER, with nothing written; IO when a write fails
     */
    public static List<Integer> toLuks1(BlockDevice hdr) {
        String dev = hdr.name();
        if (!Luks2.isLuks2(hdr)) {
            Luks.readHeader(hdr); // NOT_LUKS when it is neither
            throw new LuksException(Reason.UNSUPPORTED, dev + " is already LUKS1");
        }
        Luks2.Volume v = Luks2.read(hdr);
        Luks2Metadata m = v.meta;
        if (!m.mandatoryRequirements().isEmpty()) {
            throw refused(dev, 1, "it has mandatory requirements " + m.mandatoryRequirements());
        }
        m.checkUsable();
        Luks2Segment seg = m.segment();
        if (!seg.id().equals("0")) {
            throw refused(dev, 1, "its segment is " + seg.id() + ", not 0");
        }
        if (seg.sectorSize() != LuksHeader.SECTOR) {
            throw refused(dev, 1, "its segment has " + seg.sectorSize() + "-byte sectors; LUKS1 has only 512");
        }
        // LUKS1's IV is the sector number from the payload's start, with no offset (dm-crypt's
        // iv_offset 0): a segment whose IVs start elsewhere (cryptsetup's reencryption writes
        // iv_tweak) would decrypt with the wrong IVs, every sector garbage. cryptsetup converts it
        // regardless (LUKS2_luks2_to_luks1 never reads iv_tweak); biostack refuses.
        if (seg.ivTweak() != 0) {
            throw refused(dev, 1, "its segment has iv_tweak " + seg.ivTweak() + ", and LUKS1 has none: its"
                    + " data would decrypt with the wrong IVs");
        }
        if (seg.offset() % LuksHeader.SECTOR != 0 || seg.offset() / LuksHeader.SECTOR > 0xffffffffL) {
            throw refused(dev, 1, "its data offset " + seg.offset() + " does not fit a LUKS1 header");
        }
        int tokens = m.tokensObj().members().size();
        if (tokens > 0) {
            throw refused(dev, 1, "it has " + tokens + " token(s), which LUKS1 cannot hold");
        }
        List<Luks2Digest> digests = m.digests();
        if (digests.size() != 1 || digests.get(0).id() != 0) {
            throw refused(dev, 1, "its digests are not LUKS1 compatible (LUKS1 has exactly one, digest 0; it has "
                    + digests.size() + ")");
        }
        Luks2Digest d = digests.get(0);
        if (d.digest().length < LuksHeader.DIGEST_SIZE || d.salt().length != LuksHeader.SALT_SIZE) {
            throw refused(dev, 1, "its digest is " + d.digest().length + " bytes with a " + d.salt().length
                    + "-byte salt (LUKS1: at least 20 and 32)");
        }
        List<Luks2Keyslot> slots = m.keyslots();
        if (slots.isEmpty()) {
            throw refused(dev, 1, "there are no active keyslots");
        }
        int keyBytes = slots.get(0).keySize();
        long areaLen = (afSectors(keyBytes) * LuksHeader.SECTOR + 4095) / 4096 * 4096;
        for (Luks2Keyslot s : slots) {
            compatible(s, d, seg, keyBytes, areaLen, dev);
        }
        long hdrSize = v.hdrSize();
        long ksStart = 2 * hdrSize;
        long ksEnd = ksStart + m.keyslotsSize();
        long moveSize = m.keyslotsSize();
        if (2L * HDR_16K + moveSize > hdr.size()) {
            throw refused(dev, 1, "its keyslots area ends beyond " + dev + " (" + hdr.size() + " bytes)");
        }
        // Slots 0..7: an active one keeps its area; an inactive one gets the first free gap, which
        // then counts as used (cryptsetup's placeholder keyslots), so no two share an area.
        List<long[]> used = new ArrayList<>();
        for (Luks2Keyslot s : slots) {
            used.add(new long[] {s.areaOffset(), s.areaOffset() + s.areaSize()});
        }
        long payload = seg.offset() / LuksHeader.SECTOR;
        List<KeySlot> out = new ArrayList<>();
        String hash = null;
        for (int i = 0; i < LuksHeader.NUM_SLOTS; i++) {
            Luks2Keyslot s = null;
            for (Luks2Keyslot k : slots) {
                if (k.id() == i) {
                    s = k;
                }
            }
            long at;
            if (s != null) {
                at = s.areaOffset();
            } else {
                at = gap(used, ksStart, ksEnd, areaLen);
                if (at < 0) {
                    throw refused(dev, 1, "there is no free " + areaLen + "-byte gap in the keyslots area for"
                            + " inactive LUKS1 key slot " + i);
                }
                used.add(new long[] {at, at + areaLen});
            }
            long sector = at / LuksHeader.SECTOR - SHIFT / LuksHeader.SECTOR;
            if (at % LuksHeader.SECTOR != 0 || sector < LUKS1_KEYSLOTS_OFFSET / LuksHeader.SECTOR
                    || sector > 0xffffffffL) {
                throw refused(dev, 1, "key slot " + i + " area at " + at + " has no LUKS1 place");
            }
            long limit = payload != 0 ? payload : hdr.size() / LuksHeader.SECTOR;
            if (limit < sector + afSectors(keyBytes)) {
                throw refused(dev, 1, "key slot " + i + " would end at sector " + (sector + afSectors(keyBytes))
                        + ", beyond the " + (payload != 0 ? "payload" : "header device") + " at sector " + limit);
            }
            if (s == null) {
                out.add(new KeySlot(i, false, 0, new byte[LuksHeader.SALT_SIZE], sector, LuksHeader.STRIPES));
            } else {
                Luks2Keyslot.Kdf k = s.kdf();
                hash = k.hash();
                out.add(new KeySlot(i, true, k.iterations(), k.salt(), sector, LuksHeader.STRIPES));
            }
        }
        LuksHeader h1 = new LuksHeader(1, seg.cipher().cipher(), seg.cipher().chainMode() + "-"
                + seg.cipher().ivMode(), hash, payload, keyBytes, Arrays.copyOf(d.digest(), LuksHeader.DIGEST_SIZE),
                d.salt(), d.iterations(), v.chosen.uuid(), List.copyOf(out));
        byte[] head = new byte[LUKS1_KEYSLOTS_OFFSET];
        h1.writeTo(head); // throws for a field that does not fit, before any write

        move(hdr, 2 * HDR_16K, LUKS1_KEYSLOTS_OFFSET, moveSize);
        Luks2.write(hdr, 0, head);
        Luks2.flush(hdr);
        List<Integer> ids = new ArrayList<>();
        for (Luks2Keyslot s : slots) {
            ids.add(s.id());
        }
        return ids;
    }

    /** cryptsetup's {@code keyslot_LUKS1_compatible}, and the limits around it, as refusals. */
    private static void compatible(Luks2Keyslot s, Luks2Digest d, Luks2Segment seg, int keyBytes, long areaLen,
                                   String dev) {
        int id = s.id();
        if (id >= LuksHeader.NUM_SLOTS) {
            throw refused(dev, 1, "keyslot " + id + " is active, and LUKS1 has only keyslots 0 to 7 (remove it,"
                    + " or move its passphrase to a lower slot, first)");
        }
        if (!d.keyslots().contains(id)) {
            throw refused(dev, 1, "keyslot " + id + " is unbound (no digest lists it)");
        }
        Luks2Keyslot.Kdf k = s.kdf();
        if (!k.type().equals("pbkdf2")) {
            throw refused(dev, 1, "keyslot " + id + " uses " + k.type() + "; LUKS1 keyslots use pbkdf2"
                    + " (cryptsetup luksConvertKey --pbkdf pbkdf2 changes it)");
        }
        if (!k.hash().equals(d.hash()) || !s.afHash().equals(d.hash())) {
            throw refused(dev, 1, "keyslot " + id + " hashes with " + k.hash() + " (AF " + s.afHash()
                    + ") but the digest with " + d.hash() + "; LUKS1 has one hash");
        }
        if (s.keySize() != keyBytes || s.areaKeySize() != keyBytes || !s.areaCipher().equals(seg.cipher())) {
            throw refused(dev, 1, "keyslot " + id + " area cipher " + s.areaCipher() + " with a " + s.areaKeySize()
                    + "-byte key differs from the volume's " + seg.cipher() + " with " + keyBytes);
        }
        if (k.salt().length != LuksHeader.SALT_SIZE) {
            throw refused(dev, 1, "keyslot " + id + " has a " + k.salt().length + "-byte salt; LUKS1's is 32");
        }
        if (s.areaSize() != areaLen) {
            throw refused(dev, 1, "keyslot " + id + " area is " + s.areaSize() + " bytes, LUKS1's would be "
                    + areaLen);
        }
    }

    /** The first 4 KiB-aligned gap of {@code len} bytes in {@code [start, end)} that no used area covers, or -1. */
    private static long gap(List<long[]> used, long start, long end, long len) {
        List<long[]> sorted = new ArrayList<>(used);
        sorted.sort(Comparator.comparingLong(a -> a[0]));
        long at = start;
        for (long[] u : sorted) {
            if (at + len <= u[0]) {
                break;
            }
            at = Math.max(at, (u[1] + 4095) / 4096 * 4096);
        }
        return at + len <= end ? at : -1;
    }

    private static void checkDisjoint(List<long[]> areas, String dev) {
        List<long[]> sorted = new ArrayList<>(areas);
        sorted.sort(Comparator.comparingLong(a -> a[0]));
        for (int i = 1; i < sorted.size(); i++) {
            if (sorted.get(i)[0] < sorted.get(i - 1)[1]) {
                throw Luks.corrupt(dev, "key slot areas overlap at " + sorted.get(i)[0]);
            }
        }
    }

    /**
     * Copies {@code [from, from + len)} to {@code [to, to + len)} on {@code dev} in chunks, in the
     * order that reads each byte before the copy overwrites it (from the end when moving up, from
     * the start when moving down), then flushes.
     */
    static void move(BlockDevice dev, long from, long to, long len) {
        long n = (len + CHUNK - 1) / CHUNK;
        for (long i = 0; i < n; i++) {
            long k = to > from ? n - 1 - i : i;
            long off = k * CHUNK;
            int size = (int) Math.min(CHUNK, len - off);
            byte[] b = Luks2.read(dev, from + off, size);
            try {
                Luks2.write(dev, to + off, b);
            } finally {
                Arrays.fill(b, (byte) 0);
            }
        }
        Luks2.flush(dev);
    }

    private static LuksException refused(String dev, int to, String why) {
        return new LuksException(Reason.UNSUPPORTED, "cannot convert " + dev + " to LUKS" + to + ": " + why);
    }
}
