package io.biostack.layer.crypt;

import io.biostack.layer.crypt.Luks2Json.Obj;
import io.biostack.layer.crypt.LuksException.Reason;

import java.security.SecureRandom;
import java.util.Arrays;
import java.util.Locale;

/**
 * A LUKS2 keyslot of type {@code luks2} (LUKS2 On-Disk Format, section 3.2; cryptsetup's
 * {@code lib/luks2/luks2_keyslot_luks2.c}): the volume key, AF-split into {@code stripes} stripes
 * with {@code af.hash}, encrypted with a key derived from the passphrase by {@code kdf}, stored in
 * a raw area of the keyslots area. The area is encrypted like a LUKS1 key material area: its own
 * cipher ({@code area.encryption}, aes-xts-plain64) over 512-byte sectors with IVs from 0.
 *
 * @param id         the keyslot's id (0 to 31)
 * @param keySize    volume key bytes ({@code key_size})
 * @param priority   0 ignore, 1 normal, 2 high (absent means normal)
 * @param stripes    AF stripes ({@code af.stripes}, 4000)
 * @param afHash     AF diffusion hash
 * @param areaOffset first byte of the area on the header device
 * @param areaSize   bytes of the area
 * @param areaCipher the area's cipher
 * @param areaKeySize bytes of the area key the KDF derives
 * @param kdf        the key derivation
 */
record Luks2Keyslot(int id, int keySize, int priority, int stripes, String afHash, long areaOffset, long areaSize,
                    CipherSpec areaCipher, int areaKeySize, Kdf kdf) {
    /** LUKS2_KEYSLOTS_MAX. */
    static final int MAX_KEYSLOTS = 32;
    /** Argon2 memory biostack refuses above: 4 GiB in KiB (the limit; cryptsetup caps at 4 GiB too). */
    static final long MAX_ARGON2_KIB = 4L * 1024 * 1024;
    /** AF stripes of every keyslot cryptsetup writes (LUKS_STRIPES). */
    static final int STRIPES = 4000;

    /**
     * A key derivation: {@code pbkdf2} with {@code hash} and {@code iterations}, or
     * {@code argon2i}/{@code argon2id} with {@code time}, {@code memoryKiB} and {@code cpus}.
     *
     * @param type       pbkdf2, argon2i or argon2id
     * @param hash       the PBKDF2 hash (null for Argon2)
     * @param iterations PBKDF2 iterations or the Argon2 time cost
     * @param memoryKiB  Argon2 memory (0 for PBKDF2)
     * @param cpus       Argon2 lanes (0 for PBKDF2)
     * @param salt       the salt
     */
    record Kdf(String type, String hash, int iterations, int memoryKiB, int cpus, byte[] salt) {
        byte[] derive(byte[] passphrase, int len) {
            return switch (type) {
                case "pbkdf2" -> LuksKdf.pbkdf2(hash, passphrase, salt, iterations, len);
                case "argon2i" -> Argon2.derive(Argon2.Type.ARGON2I, passphrase, salt, iterations, memoryKiB, cpus, len);
                case "argon2id" -> Argon2.derive(Argon2.Type.ARGON2ID, passphrase, salt, iterations, memoryKiB, cpus,
                        len);
                default -> throw new IllegalStateException(type);
            };
        }

        Obj json() {
            Obj o = new Obj();
            o.put("type", type);
            if (type.equals("pbkdf2")) {
                o.put("hash", hash);
                o.put("iterations", iterations);
            } else {
                o.put("time", iterations);
                o.put("memory", memoryKiB);
                o.put("cpus", cpus);
            }
            o.put("salt", Luks2Json.base64(salt));
            return o;
        }

        @Override
        public String toString() {
            return type.equals("pbkdf2") ? "pbkdf2 " + hash + " " + iterations + " iterations"
                    : type + " time " + iterations + " memory " + memoryKiB + " KiB cpus " + cpus;
        }
    }

    static Luks2Keyslot read(int id, Obj ks, String dev) {
        String w = "keyslots." + id;
        try {
            String type = Luks2Json.str(ks, "type", w);
            if (!type.equals("luks2")) {
                throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + ": keyslot " + id + " is of type "
                        + type + " (biostack unlocks luks2 keyslots)");
            }
            int keySize = Luks2Json.integer(ks, "key_size", w);
            if (keySize < 1 || keySize > 512) {
                throw Luks2Metadata.corrupt(dev, w + ".key_size is " + keySize);
            }
            int prio = ks.get("priority") == null ? 1 : Luks2Json.integer(ks, "priority", w);
            Obj af = Luks2Json.obj(ks, "af", w);
            String afType = Luks2Json.str(af, "type", w + ".af");
            if (!afType.equals("luks1")) {
                throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + ": keyslot " + id + " has AF type "
                        + afType + " (only luks1)");
            }
            int stripes = Luks2Json.integer(af, "stripes", w + ".af");
            if (stripes != STRIPES) {
                throw Luks2Metadata.corrupt(dev, w + ".af.stripes is " + stripes + ", not " + STRIPES);
            }
            String afHash = Luks2Json.str(af, "hash", w + ".af").toLowerCase(Locale.ROOT);
            LuksKdf.jdkNames(afHash);
            Obj area = Luks2Json.obj(ks, "area", w);
            String areaType = Luks2Json.str(area, "type", w + ".area");
            if (!areaType.equals("raw")) {
                throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + ": keyslot " + id + " has area type "
                        + areaType + " (only raw)");
            }
            long off = Luks2Json.u64(area, "offset", w + ".area");
            long size = Luks2Json.u64(area, "size", w + ".area");
            CipherSpec cipher;
            try {
                cipher = CipherSpec.parse(Luks2Json.str(area, "encryption", w + ".area"));
            } catch (IllegalArgumentException e) {
                throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + ": keyslot " + id + " area: "
                        + e.getMessage());
            }
            int areaKey = Luks2Json.integer(area, "key_size", w + ".area");
            try {
                cipher.checkKeyLength(areaKey);
            } catch (IllegalArgumentException e) {
                throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + ": keyslot " + id + " area: "
                        + e.getMessage());
            }
            if (off % 512 != 0 || size < (long) keySize * stripes) {
                throw Luks2Metadata.corrupt(dev, w + ".area [" + off + ", +" + size + ") cannot hold "
                        + keySize + " x " + stripes + " bytes");
            }
            return new Luks2Keyslot(id, keySize, prio, stripes, afHash, off, size, cipher, areaKey,
                    kdf(Luks2Json.obj(ks, "kdf", w), w + ".kdf", id, dev));
        } catch (Luks2Json.FieldException e) {
            throw Luks2Metadata.corrupt(dev, e.getMessage());
        }
    }

    private static Kdf kdf(Obj k, String w, int id, String dev) {
        String type = Luks2Json.str(k, "type", w);
        byte[] salt = Luks2Json.base64(k, "salt", w);
        switch (type) {
            case "pbkdf2" -> {
                String hash = Luks2Json.str(k, "hash", w).toLowerCase(Locale.ROOT);
                LuksKdf.jdkNames(hash);
                int it = Luks2Json.integer(k, "iterations", w);
                if (it < 1) {
                    throw Luks2Metadata.corrupt(dev, w + ".iterations is " + it);
                }
                return new Kdf(type, hash, it, 0, 0, salt);
            }
            case "argon2i", "argon2id" -> {
                int time = Luks2Json.integer(k, "time", w);
                int mem = Luks2Json.integer(k, "memory", w);
                int cpus = Luks2Json.integer(k, "cpus", w);
                if (mem > MAX_ARGON2_KIB) {
                    throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + ": keyslot " + id + " asks "
                            + mem + " KiB of Argon2 memory, more than the 4 GiB biostack allows");
                }
                if (time < 1 || cpus < 1 || cpus > 0xffffff || mem < 8L * cpus || salt.length < 8) {
                    throw Luks2Metadata.corrupt(dev, w + " has time " + time + ", memory " + mem + ", cpus " + cpus
                            + ", a " + salt.length + "-byte salt");
                }
                return new Kdf(type, null, time, mem, cpus, salt);
            }
            default -> throw new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + ": keyslot " + id
                    + " uses kdf " + type + " (pbkdf2, argon2i, argon2id)");
        }
    }

    /** Bytes of key material: key size times stripes, rounded up to whole 512-byte sectors. */
    int materialBytes() {
        return ((keySize * stripes) + 511) / 512 * 512;
    }

    /**
     * The volume key candidate from this slot's {@code material} (read from its area) and
     * {@code passphrase}; the caller checks it against the digest and wipes it.
     */
    byte[] unlock(byte[] passphrase, byte[] material) {
        byte[] areaKey = kdf.derive(passphrase, areaKeySize);
        try (Xts xts = new Xts(areaKey, areaCipher)) {
            xts.decrypt(material, 0, materialBytes(), 0, 512, 1);
            return LuksKdf.afMerge(material, keySize, stripes, afHash);
        } finally {
            Arrays.fill(areaKey, (byte) 0);
        }
    }

    /**
     * The encrypted area content that {@code passphrase} unlocks to {@code key} under {@code kdf}:
     * {@code areaSize} bytes, to be written at the area's offset.
     */
    static byte[] seal(byte[] key, byte[] passphrase, Kdf kdf, CipherSpec areaCipher, int areaKeySize, long areaSize,
                       SecureRandom rnd) {
        byte[] split = LuksKdf.afSplit(key, STRIPES, "sha256", rnd);
        byte[] area = Arrays.copyOf(split, (int) areaSize);
        Arrays.fill(split, (byte) 0);
        byte[] areaKey = kdf.derive(passphrase, areaKeySize);
        try (Xts xts = new Xts(areaKey, areaCipher)) {
            xts.encrypt(area, 0, area.length, 0, 512, 1);
        } finally {
            Arrays.fill(areaKey, (byte) 0);
        }
        return area;
    }

    /** A keyslot object as cryptsetup writes it (af sha256, area aes-xts-plain64). */
    static Obj json(int keySize, long areaOffset, long areaSize, CipherSpec areaCipher, int areaKeySize, Kdf kdf) {
        Obj af = new Obj();
        af.put("type", "luks1");
        af.put("stripes", STRIPES);
        af.put("hash", "sha256");
        Obj area = new Obj();
        area.put("type", "raw");
        area.put("offset", Long.toString(areaOffset));
        area.put("size", Long.toString(areaSize));
        area.put("encryption", areaCipher.toString());
        area.put("key_size", areaKeySize);
        Obj o = new Obj();
        o.put("type", "luks2");
        o.put("key_size", keySize);
        o.put("af", af);
        o.put("area", area);
        o.put("kdf", kdf.json());
        return o;
    }

    /** Area bytes a keyslot of {@code keySize} takes: its material rounded up to 4 KiB, as cryptsetup does. */
    static long areaSizeFor(int keySize) {
        return ((long) keySize * STRIPES + 4095) / 4096 * 4096;
    }
}
