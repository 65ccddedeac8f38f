package io.biostack.layer.crypt;

import io.biostack.layer.crypt.Luks2Json.Arr;
import io.biostack.layer.crypt.Luks2Json.Obj;
import io.biostack.layer.crypt.Luks2Json.Str;
import io.biostack.layer.crypt.Luks2Json.Value;
import io.biostack.layer.crypt.LuksException.Reason;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The JSON metadata of a LUKS2 volume (LUKS2 On-Disk Format, section 3; cryptsetup's
 * {@code lib/luks2/luks2_json_metadata.c}): the top-level objects {@code keyslots},
 * {@code tokens}, {@code segments}, {@code digests} and {@code config}, read into the typed
 * views of {@link Luks2Keyslot}, {@link Luks2Digest} and {@link Luks2Segment}, over the JSON tree
 * that keeps everything else as it was read.
 *
 * <p>{@link #read} checks what every use needs (the five objects, {@code config.json_size}
 * against the area); {@link #checkUsable} makes the refusals of the format that biostack cannot
 * honour (mandatory requirements, reencryption, several or non-crypt segments, integrity), each
 * naming what it found. Mutable through the methods that add and remove keyslots; not
 * thread-safe.
 */
final class Luks2Metadata {
    /** The tree, whose unknown parts are written back as they were read. */
    final Obj root;
    private final String dev;

    private Luks2Metadata(Obj root, String dev) {
        this.root = root;
        this.dev = dev;
    }

    /** A new, empty tree (for format): the five objects and the config sizes. */
    static Luks2Metadata empty(String dev, long jsonSize, long keyslotsSize) {
        Obj root = new Obj();
        root.put("keyslots", new Obj());
        root.put("tokens", new Obj());
        root.put("segments", new Obj());
        root.put("digests", new Obj());
        Obj config = new Obj();
        config.put("json_size", Long.toString(jsonSize));
        config.put("keyslots_size", Long.toString(keyslotsSize));
        root.put("config", config);
        return new Luks2Metadata(root, dev);
    }

    /** Parses and checks the JSON of a good header copy of {@code hdrSize} bytes. */
    static Luks2Metadata read(String json, long hdrSize, String dev) {
        Value v;
        try {
            v = Luks2Json.parse(json);
        } catch (IllegalArgumentException e) {
            throw corrupt(dev, "the JSON metadata is not valid JSON: " + e.getMessage());
        }
        if (!(v instanceof Obj root)) {
            throw corrupt(dev, "the JSON metadata is not an object");
        }
        Luks2Metadata m = new Luks2Metadata(root, dev);
        try {
            for (String k : new String[] {"keyslots", "tokens", "segments", "digests", "config"}) {
                Luks2Json.obj(root, k, "");
            }
            long jsonSize = Luks2Json.u64(m.config(), "json_size", "config");
            if (jsonSize != hdrSize - Luks2Header.BIN_SIZE) {
                throw corrupt(dev, "config.json_size is " + jsonSize + " but the header's JSON area is "
                        + (hdrSize - Luks2Header.BIN_SIZE) + " bytes");
            }
            Luks2Json.u64(m.config(), "keyslots_size", "config");
        } catch (Luks2Json.FieldException e) {
            throw corrupt(dev, "JSON metadata: " + e.getMessage());
        }
        return m;
    }

    Obj keyslotsObj() {
        return (Obj) root.get("keyslots");
    }

    Obj segmentsObj() {
        return (Obj) root.get("segments");
    }

    Obj digestsObj() {
        return (Obj) root.get("digests");
    }

    Obj tokensObj() {
        return (Obj) root.get("tokens");
    }

    Obj config() {
        return (Obj) root.get("config");
    }

    long keyslotsSize() {
        return Luks2Json.u64(config(), "keyslots_size", "config");
    }

    /** {@code config.requirements.mandatory}, as written (empty when absent). */
    List<String> mandatoryRequirements() {
        Obj req = Luks2Json.optObj(config(), "requirements", "config");
        if (req == null || !(req.get("mandatory") instanceof Arr a)) {
            return List.of();
        }
        List<String> out = new ArrayList<>();
        for (Value v : a.items()) {
            out.add(v instanceof Str s ? s.value : v.text());
        }
        return out;
    }

    /**
     * The refusals (issue's list; cryptsetup refuses the same, or needs dm features biostack does
     * not have): throws UNSUPPORTED naming the first one found.
     */
    void checkUsable() {
        try {
            List<String> req = mandatoryRequirements();
            if (!req.isEmpty()) {
                throw unsupported("it has mandatory requirements " + req + " (" + explain(req)
                        + "); biostack opens only volumes without requirements");
            }
            for (Map.Entry<String, Value> e : keyslotsObj().members().entrySet()) {
                if (e.getValue() instanceof Obj ks) {
                    String type = Luks2Json.str(ks, "type", "keyslots." + e.getKey());
                    if (type.equals("reencrypt")) {
                        throw unsupported("keyslot " + e.getKey()
                                + " is of type reencrypt (a reencryption is in progress; finish it with cryptsetup"
                                + " reencrypt --resume-only)");
                    }
                }
            }
            segment();
        } catch (Luks2Json.FieldException e) {
            throw corrupt(dev, "JSON metadata: " + e.getMessage());
        }
    }

    private static String explain(List<String> req) {
        List<String> out = new ArrayList<>();
        for (String r : req) {
            out.add(switch (r) {
                case "online-reencrypt", "online-reencrypt-v2", "online-reencrypt-v3" -> r + ": reencryption in progress";
                case "opal" -> r + ": OPAL hardware encryption";
                default -> r + ": unknown";
            });
        }
        return String.join(", ", out);
    }

    /** The one data segment; refuses any other number or kind. */
    Luks2Segment segment() {
        Map<String, Value> segs = segmentsObj().members();
        if (segs.size() != 1) {
            throw unsupported("it has " + segs.size() + " segments " + segs.keySet()
                    + "; biostack opens volumes with exactly one crypt segment");
        }
        Map.Entry<String, Value> e = segs.entrySet().iterator().next();
        if (!(e.getValue() instanceof Obj seg)) {
            throw corrupt(dev, "segment " + e.getKey() + " is not an object");
        }
        return Luks2Segment.read(e.getKey(), seg, dev);
    }

    /** The keyslots, in id order. */
    List<Luks2Keyslot> keyslots() {
        List<Luks2Keyslot> out = new ArrayList<>();
        for (Map.Entry<String, Value> e : keyslotsObj().members().entrySet()) {
            if (!(e.getValue() instanceof Obj ks)) {
                throw corrupt(dev, "keyslot " + e.getKey() + " is not an object");
            }
            out.add(Luks2Keyslot.read(id(e.getKey(), "keyslot"), ks, dev));
        }
        out.sort((a, b) -> Integer.compare(a.id(), b.id()));
        return out;
    }

    /** The digests. */
    List<Luks2Digest> digests() {
        List<Luks2Digest> out = new ArrayList<>();
        for (Map.Entry<String, Value> e : digestsObj().members().entrySet()) {
            if (!(e.getValue() instanceof Obj d)) {
                throw corrupt(dev, "digest " + e.getKey() + " is not an object");
            }
            out.add(Luks2Digest.read(id(e.getKey(), "digest"), d, dev));
        }
        return out;
    }

    /** The digest that lists {@code keyslot}, or null. */
    Luks2Digest digestOf(int keyslot) {
        for (Luks2Digest d : digests()) {
            if (d.keyslots().contains(keyslot)) {
                return d;
            }
        }
        return null;
    }

    /** Adds {@code ks} under its id, and its id to digest {@code digestId}. */
    void addKeyslot(int id, Obj ks, int digestId) {
        keyslotsObj().put(Integer.toString(id), ks);
        Obj d = (Obj) digestsObj().get(Integer.toString(digestId));
        ((Arr) d.get("keyslots")).add(new Str(Integer.toString(id)));
    }

    /** Removes keyslot {@code id} and its mention in every digest. */
    void removeKeyslot(int id) {
        String key = Integer.toString(id);
        keyslotsObj().remove(key);
        for (Value v : digestsObj().members().values()) {
            if (v instanceof Obj d && d.get("keyslots") instanceof Arr a) {
                a.removeIf(x -> x instanceof Str s && s.value.equals(key));
            }
        }
    }

    /**
     * Takes keyslot {@code id} out of every token's {@code keyslots}, the tokens themselves kept
     * (as cryptsetup's LUKS2_keyslot_wipe unassigns them): cryptsetup refuses a header whose token
     * names a keyslot that does not exist (validate_keyslots_array in luks2_json_metadata.c).
     */
    void unassignTokens(int id) {
        String key = Integer.toString(id);
        for (Value v : tokensObj().members().values()) {
            if (v instanceof Obj t && t.get("keyslots") instanceof Arr a) {
                a.removeIf(x -> x instanceof Str s && s.value.equals(key));
            }
        }
    }

    private int id(String key, String what) {
        try {
            int i = Integer.parseInt(key);
            if (i >= 0 && i < Luks2Keyslot.MAX_KEYSLOTS) {
                return i;
            }
        } catch (NumberFormatException e) {
            // below
        }
        throw corrupt(dev, what + " id '" + key + "' is not a number from 0 to " + (Luks2Keyslot.MAX_KEYSLOTS - 1));
    }

    private LuksException unsupported(String why) {
        return new LuksException(Reason.UNSUPPORTED, "LUKS2 volume " + dev + " is refused: " + why);
    }

    static LuksException corrupt(String dev, String why) {
        return new LuksException(Reason.CORRUPT_HEADER, "LUKS2 header of " + dev + " is corrupt: " + why);
    }

    /** The compact JSON text of the tree, unknown parts as read. */
    byte[] toBytes() {
        return Luks2Json.bytes(root);
    }
}
