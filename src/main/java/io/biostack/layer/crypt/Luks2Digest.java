package io.biostack.layer.crypt;

import io.biostack.layer.crypt.Luks2Json.Arr;
import io.biostack.layer.crypt.Luks2Json.Obj;
import io.biostack.layer.crypt.Luks2Json.Str;
import io.biostack.layer.crypt.Luks2Json.Value;
import io.biostack.layer.crypt.LuksException.Reason;

import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;

/**
 * A LUKS2 digest (LUKS2 On-Disk Format, section 3.5; cryptsetup's
 * {@code lib/luks2/luks2_digest_pbkdf2.c}): the check that a candidate volume key is the one,
 * {@code PBKDF2-hash(key, salt, iterations)} compared with {@code digest}. The digest is as long
 * as written: the hash's size on volumes cryptsetup formats as LUKS2, 20 bytes on volumes converted
 * from LUKS1 (whose {@code mk-digest} is 20 bytes).
 *
 * @param id         the digest's id
 * @param keyslots   the keyslots whose keys it checks
 * @param segments   the segments those keys open
 * @param hash       the PBKDF2 hash
 * @param iterations PBKDF2 iterations
 * @param salt       the salt
 * @param digest     the expected value
 */
record Luks2Digest(int id, List<Integer> keyslots, List<String> segments, String hash, int iterations, byte[] salt,
                   byte[] digest) {
    static Luks2Digest read(int id, Obj d, String dev) {
        String where = "digests." + id;
        try {
            String type = Luks2Json.str(d, "type", where);
            if (!type.equals("pbkdf2")) {
                throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + " is refused: digest " + id
                        + " is of type " + type + " (only pbkdf2)");
            }
            String hash = Luks2Json.str(d, "hash", where);
            LuksKdf.jdkNames(hash);
            int it = Luks2Json.integer(d, "iterations", where);
            if (it < 1) {
                throw Luks2Metadata.corrupt(dev, where + ".iterations is " + it);
            }
            byte[] digest = Luks2Json.base64(d, "digest", where);
            if (digest.length < 16 || digest.length > 64) {
                throw Luks2Metadata.corrupt(dev, where + ".digest is " + digest.length + " bytes");
            }
            return new Luks2Digest(id, ids(d, "keyslots", where, dev), strs(d, "segments", where, dev), hash, it,
                    Luks2Json.base64(d, "salt", where), digest);
        } catch (Luks2Json.FieldException e) {
            throw Luks2Metadata.corrupt(dev, e.getMessage());
        }
    }

    private static List<String> strs(Obj d, String key, String where, String dev) {
        if (!(d.get(key) instanceof Arr a)) {
            throw Luks2Metadata.corrupt(dev, where + "." + key + " is not an array");
        }
        List<String> out = new ArrayList<>();
        for (Value v : a.items()) {
            if (!(v instanceof Str s)) {
                throw Luks2Metadata.corrupt(dev, where + "." + key + " holds a non-string");
            }
            out.add(s.value);
        }
        return out;
    }

    private static List<Integer> ids(Obj d, String key, String where, String dev) {
        List<Integer> out = new ArrayList<>();
        for (String s : strs(d, key, where, dev)) {
            try {
                out.add(Integer.parseInt(s));
            } catch (NumberFormatException e) {
                throw Luks2Metadata.corrupt(dev, where + "." + key + " holds '" + s + "'");
            }
        }
        return out;
    }

    /** Whether {@code key} is the volume key this digest checks. */
    boolean matches(byte[] key) {
        byte[] d = LuksKdf.pbkdf2(hash, key, salt, iterations, digest.length);
        try {
            return MessageDigest.isEqual(d, digest);
        } finally {
            java.util.Arrays.fill(d, (byte) 0);
        }
    }

    /**
     * A new digest object of {@code key} for {@code segment}, with no keyslot yet;
     * {@code length} bytes long (32 for sha256, as cryptsetup makes them; 20 to carry a LUKS1
     * mk-digest over).
     */
    static Obj json(byte[] key, String hash, int iterations, byte[] salt, int length, String segment) {
        Obj o = new Obj();
        o.put("type", "pbkdf2");
        o.put("keyslots", new Arr());
        o.put("segments", new Arr().add(new Str(segment)));
        o.put("hash", hash);
        o.put("iterations", iterations);
        o.put("salt", Luks2Json.base64(salt));
        o.put("digest", Luks2Json.base64(LuksKdf.pbkdf2(hash, key, salt, iterations, length)));
        return o;
    }
}
