package io.biostack.layer.crypt;

import io.biostack.block.BlockDevice;
import io.biostack.layer.Linear;
import io.biostack.layer.crypt.Luks2Json.Obj;
import io.biostack.layer.crypt.LuksException.Reason;

/**
 * The data segment of a LUKS2 volume (LUKS2 On-Disk Format, section 3.3; cryptsetup's
 * {@code lib/luks2/luks2_segment.c}): a {@code crypt} segment that maps the payload, from
 * {@code offset} bytes into the data device, for {@code size} bytes or ({@code "dynamic"}) to its
 * end, through the {@link Crypt} layer with its {@code sector_size}. The IV is {@code plain64}
 * over 512-byte units plus {@code iv_tweak} even with 4096-byte sectors: LUKS2 never sets
 * dm-crypt's {@code iv_large_sectors} ({@code LUKS2_get_segment_dm_params} leaves it out).
 *
 * @param id         the segment's id in {@code segments}
 * @param offset     first byte of the payload on the data device
 * @param size       payload bytes, or -1 for {@code "dynamic"} (to the end of the device)
 * @param ivTweak    added to the 512-byte sector number for the IV
 * @param cipher     the {@code encryption}, e.g. aes-xts-plain64
 * @param sectorSize the encryption sector size
 */
record Luks2Segment(String id, long offset, long size, long ivTweak, CipherSpec cipher, int sectorSize) {
    static Luks2Segment read(String id, Obj seg, String dev) {
        String where = "segments." + id;
        try {
            String type = Luks2Json.str(seg, "type", where);
            if (!type.equals("crypt")) {
                throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + " is refused: segment " + id
                        + " is of type " + type + "; biostack opens only crypt segments");
            }
            if (seg.get("integrity") != null) {
                throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + " is refused: segment " + id
                        + " has integrity " + seg.get("integrity").text()
                        + " (dm-integrity is not implemented by biostack)");
            }
            long offset = Luks2Json.u64(seg, "offset", where);
            String sizeText = Luks2Json.str(seg, "size", where);
            long size = sizeText.equals("dynamic") ? -1 : Luks2Json.u64(sizeText, where + ".size");
            long ivTweak = Luks2Json.u64(seg, "iv_tweak", where);
            String enc = Luks2Json.str(seg, "encryption", where);
            CipherSpec spec;
            try {
                spec = CipherSpec.parse(enc);
            } catch (IllegalArgumentException e) {
                throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + " is refused: segment " + id
                        + " encryption: " + e.getMessage());
            }
            int ss = Luks2Json.integer(seg, "sector_size", where);
            if (ss < 512 || ss > 4096 || Integer.bitCount(ss) != 1) {
                throw Luks2Metadata.corrupt(dev, where + ".sector_size is " + ss + " (512, 1024, 2048 or 4096)");
            }
            if (offset % 512 != 0 || (size > 0 && size % ss != 0)) {
                throw Luks2Metadata.corrupt(dev, where + " offset " + offset + " or size " + size
                        + " is not aligned to its sector size");
            }
            return new Luks2Segment(id, offset, size, ivTweak, spec, ss);
        } catch (Luks2Json.FieldException e) {
            throw Luks2Metadata.corrupt(dev, e.getMessage());
        }
    }

    /** A new crypt segment's JSON object, as cryptsetup writes it. */
    static Obj json(long offset, long size, CipherSpec cipher, int sectorSize) {
        Obj o = new Obj();
        o.put("type", "crypt");
        o.put("offset", Long.toString(offset));
        o.put("size", size < 0 ? "dynamic" : Long.toString(size));
        o.put("iv_tweak", "0");
        o.put("encryption", cipher.toString());
        o.put("sector_size", sectorSize);
        return o;
    }

    /**
     * The payload of {@code data} as a crypt device named {@code name}; {@code key} is copied.
     * The caller owns the device; closing it leaves {@code data} open.
     */
    BlockDevice open(String name, BlockDevice data, byte[] key, boolean readOnly) {
        if (offset > data.size()) {
            throw new LuksException(Reason.CORRUPT_HEADER, "LUKS2 segment " + id + " starts at " + offset
                    + ", beyond the end of " + data.name() + " (" + data.size() + " bytes)");
        }
        // dm-crypt's crypt_ctr refuses an iv_offset that is not a multiple of sector_size/512
        // ("Invalid iv_offset sector"), so cryptsetup cannot activate such a segment either; its
        // header validation (hdr_validate_crypt_segment) does not look, so say here what is wrong
        if (ivTweak % (sectorSize / 512) != 0) {
            throw new LuksException(Reason.CORRUPT_HEADER, "LUKS2 segment " + id + " of " + data.name()
                    + " has iv_tweak " + ivTweak + ", not a multiple of " + sectorSize / 512 + " (its " + sectorSize
                    + "-byte sectors in 512-byte units): dm-crypt cannot open it, and neither does biostack");
        }
        BlockDevice lower = data;
        long start = offset;
        if (size >= 0) {
            if (offset + size > data.size()) {
                throw new LuksException(Reason.CORRUPT_HEADER, "LUKS2 segment " + id + " [" + offset + ", "
                        + (offset + size) + ") ends beyond " + data.name() + " (" + data.size() + " bytes)");
            }
            lower = new Linear(name + "-data", data, offset, size);
            start = 0;
        }
        return Crypt.create(name, lower, cipher.toString(), key, ivTweak, start, sectorSize, false,
                Crypt.Tuning.defaults(), readOnly);
    }
}
