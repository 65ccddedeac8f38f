package io.biostack.layer.qcow2;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The qcow2 image header and its header extensions, from qemu's {@code docs/interop/qcow2.rst}
 * ("Header", "Header extensions", "Feature name table"). All integers are big-endian.
 *
 * <pre>
 * offset size field                    (version 2 ends at 72; version 3 adds the rest)
 *      0    4 magic                    "QFI" 0xfb
 *      4    4 version                  2 or 3
 *      8    8 backing_file_offset      0: no backing file; the name is in the first cluster
 *     16    4 backing_file_size        at most 1023 bytes, not NUL-terminated
 *     20    4 cluster_bits             9 (512 B) .. 21 (2 MiB) as qemu writes them
 *     24    8 size                     virtual disk size in bytes
 *     32    4 crypt_method             0 none, 1 AES, 2 LUKS (biostack opens only 0)
 *     36    4 l1_size                  entries in the active L1 table
 *     40    8 l1_table_offset          cluster aligned
 *     48    8 refcount_table_offset    cluster aligned
 *     56    4 refcount_table_clusters
 *     60    4 nb_snapshots
 *     64    8 snapshots_offset
 *     72    8 incompatible_features    bit 0 dirty, 1 corrupt, 2 external data file,
 *                                      3 compression type, 4 extended L2
 *     80    8 compatible_features      bit 0 lazy refcounts
 *     88    8 autoclear_features       bit 0 bitmaps consistent, 1 raw external data
 *     96    4 refcount_order           refcount_bits = 1 &lt;&lt; refcount_order (0..6)
 *    100    4 header_length            104 or 112 (with compression_type)
 *    104    1 compression_type         0 deflate, 1 zstd (only with incompatible bit 3)
 *    105    7 padding
 * header_length: extensions, each {u32 type, u32 length, data padded to 8}, ended by type 0
 * </pre>
 *
 * <p>A header is a value: {@link #parse} checks every field against the spec and the container's
 * size before anything else uses it (hostile input is normal), and {@link #encode} writes it
 * back (extensions it does not know kept byte for byte). The {@code with*} methods return a
 * changed copy. Immutable and thread-safe.
 */
public final class Qcow2Header {
    /** "QFI\xfb" (qcow2.rst, "Header", bytes 0-3). */
    public static final int MAGIC = 0x514649fb;
    /** Header size of version 2 (bytes 0-71). */
    public static final int V2_HEADER_LENGTH = 72;
    /** Header size of version 3 without the compression type field. */
    public static final int V3_HEADER_LENGTH = 104;
    /** Header size of version 3 with the compression type field, padded to 8 (qemu writes this). */
    public static final int V3_HEADER_LENGTH_COMPRESSION = 112;
    /** Smallest cluster_bits qemu accepts (512 bytes; qcow2.rst "cluster_bits"). */
    public static final int MIN_CLUSTER_BITS = 9;
    /** Largest cluster_bits qemu accepts (2 MiB; qemu's MAX_CLUSTER_BITS). */
    public static final int MAX_CLUSTER_BITS = 21;
    /** Longest backing file name (qcow2.rst: "Must not be longer than 1023 bytes"). */
    public static final int MAX_BACKING_NAME = 1023;
    /** Largest refcount_order (64-bit refcounts; qcow2.rst "refcount_order"). */
    public static final int MAX_REFCOUNT_ORDER = 6;
    /** Largest L1 table qemu opens, in bytes (qemu's QCOW_MAX_L1_SIZE, 32 MiB). */
    public static final long MAX_L1_BYTES = 32L << 20;
    /** Largest refcount table qemu opens, in bytes (qemu's QCOW_MAX_REFTABLE_SIZE, 8 MiB). */
    public static final long MAX_REFTABLE_BYTES = 8L << 20;

    /** Incompatible bit 0: refcounts may be stale (lazy refcounts); rebuild before writing. */
    public static final long INCOMPAT_DIRTY = 1L;
    /** Incompatible bit 1: the image is corrupt; open read-only only. */
    public static final long INCOMPAT_CORRUPT = 1L << 1;
    /** Incompatible bit 2: guest data lives in an external data file. */
    public static final long INCOMPAT_DATA_FILE = 1L << 2;
    /** Incompatible bit 3: the compression_type field is not deflate. */
    public static final long INCOMPAT_COMPRESSION = 1L << 3;
    /** Incompatible bit 4: L2 entries are 128 bits with 32 subclusters. */
    public static final long INCOMPAT_EXTL2 = 1L << 4;
    /** The incompatible bits biostack understands. */
    public static final long INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE
            | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
    /** Compatible bit 0: refcount updates may be deferred (the dirty bit says when they were). */
    public static final long COMPAT_LAZY_REFCOUNTS = 1L;
    /** Autoclear bit 0: the bitmaps extension is consistent with the data. */
    public static final long AUTOCLEAR_BITMAPS = 1L;
    /** Autoclear bit 1: the external data file is a raw image readable on its own. */
    public static final long AUTOCLEAR_DATA_FILE_RAW = 1L << 1;

    /** compression_type 0: raw deflate (zlib without header, window bits -12). */
    public static final int COMPRESSION_DEFLATE = 0;
    /** compression_type 1: zstd frames. */
    public static final int COMPRESSION_ZSTD = 1;

    /** Extension type: end of the extension area. */
    public static final int EXT_END = 0;
    /** Extension type: the backing file's format name ("raw", "qcow2"). */
    public static final int EXT_BACKING_FORMAT = 0xe2792aca;
    /** Extension type: names of feature bits, 48-byte entries. */
    public static final int EXT_FEATURE_NAMES = 0x6803f857;
    /** Extension type: the bitmaps directory pointer. */
    public static final int EXT_BITMAPS = 0x23852875;
    /** Extension type: full disk encryption header pointer. */
    public static final int EXT_CRYPTO = 0x0537be77;
    /** Extension type: the external data file's name ("DATA"). */
    public static final int EXT_DATA_FILE = 0x44415441;

    /** L1/L2 entry bit 63: the cluster's refcount is exactly 1 (it may be written in place). */
    public static final long OFLAG_COPIED = 1L << 63;
    /** L2 entry bit 62: the cluster is compressed. */
    public static final long OFLAG_COMPRESSED = 1L << 62;
    /** Standard L2 entry bit 0 (version 3): the cluster reads as zeros. */
    public static final long OFLAG_ZERO = 1L;
    /** Bits 9-55 of an L1 entry, a standard L2 entry and a refcount table entry: a host offset. */
    public static final long OFFSET_MASK = 0x00fffffffffffe00L;
    /** L1 bits 1-8 and 56-62 are reserved and must be zero ("L1 table entry"). */
    public static final long L1_RESERVED_MASK = 0x7f000000000001feL;
    /** Standard L2 bits 1-8 and 56-61 are reserved and must be zero ("Standard Cluster Descriptor"). */
    public static final long L2_RESERVED_MASK = 0x3f000000000001feL;
    /** Refcount table entry bits 0-8 are reserved and must be zero. */
    public static final long REFT_RESERVED_MASK = 0x1ffL;
    /** Subclusters per cluster with extended L2 entries ("Extended L2 Entries"). */
    public static final int SUBCLUSTERS = 32;
    /** Bytes of a feature name table entry. */
    public static final int FEATURE_NAME_ENTRY = 48;

    /**
     * A header extension as it sits on disk (data without its padding).
     *
     * @param type its type code
     * @param data its bytes, not padded
     */
    public record Extension(int type, byte[] data) {
        /**
         * An extension.
         *
         * @param type its type code
         * @param data its bytes, not padded; kept as given
         */
        public Extension {
            data = data.clone();
        }

        /**
         * The extension's bytes.
         *
         * @return a copy of them, not padded
         */
        @Override
        public byte[] data() {
            return data.clone();
        }
    }

    /**
     * One entry of the feature name table.
     *
     * @param type 0 incompatible, 1 compatible, 2 autoclear
     * @param bit  the bit number, 0..63
     * @param name the name (NUL padding removed)
     */
    public record FeatureName(int type, int bit, String name) {
    }

    private final int version;
    private final long backingFileOffset;
    private final int backingFileSize;
    private final int clusterBits;
    private final long size;
    private final int cryptMethod;
    private final int l1Size;
    private final long l1TableOffset;
    private final long refcountTableOffset;
    private final int refcountTableClusters;
    private final int nbSnapshots;
    private final long snapshotsOffset;
    private final long incompatible;
    private final long compatible;
    private final long autoclear;
    private final int refcountOrder;
    private final int headerLength;
    private final int compressionType;
    private final String backingFile;
    private final List<Extension> extensions;

    private Qcow2Header(int version, long backingFileOffset, int backingFileSize, int clusterBits, long size,
                        int cryptMethod, int l1Size, long l1TableOffset, long refcountTableOffset,
                        int refcountTableClusters, int nbSnapshots, long snapshotsOffset, long incompatible,
                        long compatible, long autoclear, int refcountOrder, int headerLength, int compressionType,
                        String backingFile, List<Extension> extensions) {
        this.version = version;
        this.backingFileOffset = backingFileOffset;
        this.backingFileSize = backingFileSize;
        this.clusterBits = clusterBits;
        this.size = size;
        this.cryptMethod = cryptMethod;
        this.l1Size = l1Size;
        this.l1TableOffset = l1TableOffset;
        this.refcountTableOffset = refcountTableOffset;
        this.refcountTableClusters = refcountTableClusters;
        this.nbSnapshots = nbSnapshots;
        this.snapshotsOffset = snapshotsOffset;
        this.incompatible = incompatible;
        this.compatible = compatible;
        this.autoclear = autoclear;
        this.refcountOrder = refcountOrder;
        this.headerLength = headerLength;
        this.compressionType = compressionType;
        this.backingFile = backingFile;
        this.extensions = List.copyOf(extensions);
    }

    /**
     * A new version 3 header for {@code img create}: no backing file, no snapshots, no extensions.
     * The tables' offsets and sizes are the caller's to set with the {@code with*} methods.
     *
     * @param clusterBits   log2 of the cluster size, 9..21
     * @param size          virtual size in bytes
     * @param refcountOrder log2 of refcount_bits, 0..6
     * @return the header
     */
    public static Qcow2Header create(int clusterBits, long size, int refcountOrder) {
        if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
            throw new IllegalArgumentException("cluster_bits " + clusterBits + " is outside 9..21");
        }
        if (refcountOrder < 0 || refcountOrder > MAX_REFCOUNT_ORDER) {
            throw new IllegalArgumentException("refcount_order " + refcountOrder + " is outside 0..6");
        }
        return new Qcow2Header(3, 0, 0, clusterBits, size, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, refcountOrder,
                V3_HEADER_LENGTH_COMPRESSION, COMPRESSION_DEFLATE, null, List.of());
    }

    /**
     * A new version 2 header ({@code compat=0.10}): 72 bytes, no feature bits, refcount_order 4,
     * deflate only (qcow2.rst: version 2 ends before incompatible_features). Header extensions
     * (the backing format) may still follow it.
     *
     * @param clusterBits log2 of the cluster size, 9..21
     * @param size        virtual size in bytes
     * @return the header
     */
    public static Qcow2Header createV2(int clusterBits, long size) {
        Qcow2Header h = create(clusterBits, size, 4);
        return new Qcow2Header(2, 0, 0, clusterBits, size, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, V2_HEADER_LENGTH,
                COMPRESSION_DEFLATE, null, h.extensions);
    }

    /**
     * True when {@code first} starts with the qcow2 magic (format probing, as qemu-nbd does).
     *
     * @param first the first bytes of a file (at least 4 to say yes)
     * @return whether they are the qcow2 magic
     */
    public static boolean hasMagic(byte[] first) {
        return first.length >= 4 && ByteBuffer.wrap(first).getInt(0) == MAGIC;
    }

    /**
     * Parses and checks the header from the first bytes of a container.
     *
     * @param buf           the container's first bytes: at least the whole first cluster, or the
     *                      whole container when it is shorter (a truncated image fails clearly)
     * @param containerSize the container's size in bytes, to check offsets against
     * @return the header
     * @throws Qcow2Exception when the bytes are not a qcow2 header biostack can open, naming why
     */
    public static Qcow2Header parse(byte[] buf, long containerSize) {
        ByteBuffer b = ByteBuffer.wrap(buf).order(ByteOrder.BIG_ENDIAN);
        if (buf.length < V2_HEADER_LENGTH) {
            throw new Qcow2Exception("image is truncated: " + buf.length + " bytes, a qcow2 header needs "
                    + V2_HEADER_LENGTH);
        }
        if (b.getInt(0) != MAGIC) {
            throw new Qcow2Exception("not a qcow2 image (no QFI\\xfb magic)");
        }
        int version = b.getInt(4);
        if (version != 2 && version != 3) {
            throw new Qcow2Exception("unsupported qcow2 version " + Integer.toUnsignedString(version));
        }
        long backingOff = b.getLong(8);
        int backingLen = b.getInt(16);
        int clusterBits = b.getInt(20);
        if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
            throw new Qcow2Exception("unsupported cluster size: cluster_bits " + Integer.toUnsignedString(clusterBits)
                    + " is outside 9..21");
        }
        long clusterSize = 1L << clusterBits;
        long size = b.getLong(24);
        if (size < 0 || size > (1L << 62)) {
            throw new Qcow2Exception("virtual size " + Long.toUnsignedString(size) + " is too large");
        }
        int crypt = b.getInt(32);
        if (crypt != 0) {
            throw new Qcow2Exception("encrypted qcow2 images (crypt_method " + Integer.toUnsignedString(crypt)
                    + ") are not supported");
        }
        int l1Size = b.getInt(36);
        long l1Off = b.getLong(40);
        long reftOff = b.getLong(48);
        int reftClusters = b.getInt(56);
        int nbSnap = b.getInt(60);
        long snapOff = b.getLong(64);
        long incompat = 0, compat = 0, autoclear = 0;
        int refOrder = 4, hdrLen = V2_HEADER_LENGTH, compression = COMPRESSION_DEFLATE;
        if (version == 3) {
            if (buf.length < V3_HEADER_LENGTH) {
                throw new Qcow2Exception("image is truncated inside its version 3 header");
            }
            incompat = b.getLong(72);
            compat = b.getLong(80);
            autoclear = b.getLong(88);
            refOrder = b.getInt(96);
            hdrLen = b.getInt(100);
            if (hdrLen < V3_HEADER_LENGTH || hdrLen % 8 != 0 && hdrLen != V3_HEADER_LENGTH + 1
                    || Integer.toUnsignedLong(hdrLen) > Math.min(clusterSize, buf.length)) {
                throw new Qcow2Exception("header_length " + Integer.toUnsignedString(hdrLen)
                        + " is invalid (at least 104, within the first cluster)");
            }
            if (hdrLen > V3_HEADER_LENGTH) {
                compression = buf[104] & 0xff;
            }
        }
        long unknown = incompat & ~INCOMPAT_KNOWN;
        if (unknown != 0) {
            int bit = Long.numberOfTrailingZeros(unknown);
            throw new Qcow2Exception("unsupported qcow2 feature: incompatible bit " + bit
                    + featureNameSuffix(buf, hdrLen, version, clusterSize, 0, bit));
        }
        if ((incompat & INCOMPAT_COMPRESSION) == 0 && compression != COMPRESSION_DEFLATE) {
            throw new Qcow2Exception("compression_type " + compression
                    + " is set but the compression type incompatible bit is not");
        }
        if (compression != COMPRESSION_DEFLATE && compression != COMPRESSION_ZSTD) {
            throw new Qcow2Exception("unknown compression_type " + compression);
        }
        if (refOrder < 0 || refOrder > MAX_REFCOUNT_ORDER) {
            throw new Qcow2Exception("refcount_order " + Integer.toUnsignedString(refOrder) + " is outside 0..6");
        }
        // Tables: aligned, inside the container, sizes bounded (qemu's checks in qcow2_do_open).
        long l1Bytes = Integer.toUnsignedLong(l1Size) * 8;
        if (l1Bytes > MAX_L1_BYTES) {
            throw new Qcow2Exception("L1 table is too large: " + Integer.toUnsignedString(l1Size) + " entries");
        }
        int l2Bits = clusterBits - ((incompat & INCOMPAT_EXTL2) != 0 ? 4 : 3);
        long needL1 = ceilDiv(size, 1L << (clusterBits + l2Bits));
        if (Integer.toUnsignedLong(l1Size) < needL1) {
            throw new Qcow2Exception("L1 table has " + Integer.toUnsignedString(l1Size) + " entries, the virtual size "
                    + size + " needs " + needL1);
        }
        // qemu checks the tables' alignment and bounds (qcow2_validate_table), not the file's end:
        // an image fresh from qemu-img create has its L1 table past the end (it reads zeros).
        checkTable("L1 table", l1Off, l1Bytes, clusterSize, Long.MAX_VALUE, l1Size != 0);
        long reftBytes = Integer.toUnsignedLong(reftClusters) * clusterSize;
        if (reftBytes > MAX_REFTABLE_BYTES) {
            throw new Qcow2Exception("refcount table is too large: " + Integer.toUnsignedString(reftClusters)
                    + " clusters");
        }
        checkTable("refcount table", reftOff, reftBytes, clusterSize, Long.MAX_VALUE, true);
        if (reftClusters == 0) {
            throw new Qcow2Exception("refcount table is empty");
        }
        if (overlaps(reftOff, reftBytes, 0, clusterSize)) {
            throw new Qcow2Exception("refcount table at " + reftOff + " overlaps the header");
        }
        if (l1Size != 0 && overlaps(l1Off, l1Bytes, 0, clusterSize)) {
            throw new Qcow2Exception("L1 table at " + l1Off + " overlaps the header");
        }
        if (Integer.toUnsignedLong(nbSnap) > 65536) {
            throw new Qcow2Exception("too many snapshots: " + Integer.toUnsignedString(nbSnap));
        }
        if (nbSnap != 0) {
            checkTable("snapshot table", snapOff, 8, clusterSize, containerSize, true);
        }
        // Extensions: within the first cluster, each length checked before it is used.
        List<Extension> exts = new ArrayList<>();
        {
            // Version 2 has header extensions too (qemu writes the backing format after byte 72).
            int end = (int) Math.min(clusterSize, buf.length);
            if (backingOff > 0 && backingOff < end) {
                end = (int) backingOff;
            }
            int pos = (hdrLen + 7) & ~7;
            while (true) {
                if (pos + 8 > end) {
                    if (pos + 8 > Math.min(clusterSize, buf.length)) {
                        throw new Qcow2Exception("header extensions run past the first cluster");
                    }
                    break;
                }
                int type = b.getInt(pos);
                long len = Integer.toUnsignedLong(b.getInt(pos + 4));
                if (type == EXT_END) {
                    break;
                }
                if (pos + 8 + len > Math.min(clusterSize, buf.length)) {
                    throw new Qcow2Exception("header extension 0x" + Integer.toHexString(type) + " of " + len
                            + " bytes runs past the first cluster");
                }
                exts.add(new Extension(type, Arrays.copyOfRange(buf, pos + 8, pos + 8 + (int) len)));
                pos += 8 + (int) ((len + 7) & ~7L);
            }
        }
        String backing = null;
        if (backingOff != 0) {
            long bl = Integer.toUnsignedLong(backingLen);
            if (bl > MAX_BACKING_NAME) {
                throw new Qcow2Exception("backing file name is too long: " + bl + " bytes (at most 1023)");
            }
            if (backingOff < 0 || backingOff + bl > clusterSize || backingOff + bl > buf.length) {
                throw new Qcow2Exception("backing file name at " + backingOff + " (" + bl
                        + " bytes) lies outside the first cluster");
            }
            backing = new String(buf, (int) backingOff, (int) bl, StandardCharsets.UTF_8);
        }
        Qcow2Header h = new Qcow2Header(version, backingOff, backingLen, clusterBits, size, crypt, l1Size, l1Off,
                reftOff, reftClusters, nbSnap, snapOff, incompat, compat, autoclear, refOrder, hdrLen, compression,
                backing, exts);
        if (h.hasDataFile() && h.dataFileName() == null) {
            throw new Qcow2Exception("the external data file bit is set but the image names no data file");
        }
        return h;
    }

    private static String featureNameSuffix(byte[] buf, int hdrLen, int version, long clusterSize, int type, int bit) {
        if (version != 3) {
            return "";
        }
        ByteBuffer b = ByteBuffer.wrap(buf);
        int end = (int) Math.min(clusterSize, buf.length);
        int pos = (hdrLen + 7) & ~7;
        for (int n = 0; n < 1024 && pos + 8 <= end; n++) {
            int t = b.getInt(pos);
            long len = Integer.toUnsignedLong(b.getInt(pos + 4));
            if (t == EXT_END || pos + 8 + len > end) {
                break;
            }
            if (t == EXT_FEATURE_NAMES) {
                for (FeatureName f : parseFeatureNames(Arrays.copyOfRange(buf, pos + 8, pos + 8 + (int) len))) {
                    if (f.type() == type && f.bit() == bit) {
                        return " (" + f.name() + ")";
                    }
                }
            }
            pos += 8 + (int) ((len + 7) & ~7L);
        }
        return "";
    }

    private static void checkTable(String what, long off, long bytes, long clusterSize, long containerSize,
                                   boolean required) {
        if (!required) {
            return;
        }
        if (off <= 0 || (off & (clusterSize - 1)) != 0) {
            throw new Qcow2Exception(what + " offset " + Long.toUnsignedString(off)
                    + " is invalid (zero or not cluster aligned)");
        }
        if (off + bytes < off || off + bytes > containerSize) {
            throw new Qcow2Exception(what + " at " + off + " (" + bytes + " bytes) runs past the end of the image ("
                    + containerSize + " bytes)");
        }
    }

    private static boolean overlaps(long a, long alen, long b, long blen) {
        return a < b + blen && b < a + alen;
    }

    private static long ceilDiv(long a, long b) {
        return a == 0 ? 0 : (a - 1) / b + 1;
    }

    /**
     * The entries of a feature name table extension's data.
     *
     * @param data the extension's bytes
     * @return its entries, in order
     */
    public static List<FeatureName> parseFeatureNames(byte[] data) {
        List<FeatureName> out = new ArrayList<>();
        for (int p = 0; p + FEATURE_NAME_ENTRY <= data.length; p += FEATURE_NAME_ENTRY) {
            int n = 0;
            while (n < 46 && data[p + 2 + n] != 0) {
                n++;
            }
            out.add(new FeatureName(data[p] & 0xff, data[p + 1] & 0xff,
                    new String(data, p + 2, n, StandardCharsets.UTF_8)));
        }
        return out;
    }

    /**
     * Encodes the header, its extensions and the backing file name, as they sit at the start of
     * the first cluster: the extensions follow the header, the backing name follows the end
     * marker (so {@code backing_file_offset} is recomputed).
     *
     * @return the bytes, at most one cluster
     * @throws Qcow2Exception when they do not fit in the first cluster
     */
    public byte[] encode() {
        int hdr = version == 2 ? V2_HEADER_LENGTH : headerLength;
        if (version == 2 && (incompatible | compatible | autoclear) != 0) {
            throw new Qcow2Exception("a version 2 header has no feature bits");
        }
        int len = (hdr + 7) & ~7;
        // Extensions follow the header in both versions (qemu's qcow2_update_header writes the
        // backing format and the end marker for version 2 too).
        for (Extension e : extensions) {
            len += 8 + ((e.data.length + 7) & ~7);
        }
        len += 8;
        byte[] name = backingFile == null ? new byte[0] : backingFile.getBytes(StandardCharsets.UTF_8);
        long bOff = name.length == 0 ? 0 : len;
        len += name.length;
        if (len > clusterSize()) {
            throw new Qcow2Exception("header, extensions and backing name (" + len + " bytes) exceed the first cluster");
        }
        ByteBuffer b = ByteBuffer.allocate(len).order(ByteOrder.BIG_ENDIAN);
        b.putInt(0, MAGIC).putInt(4, version).putLong(8, bOff).putInt(16, name.length).putInt(20, clusterBits)
                .putLong(24, size).putInt(32, cryptMethod).putInt(36, l1Size).putLong(40, l1TableOffset)
                .putLong(48, refcountTableOffset).putInt(56, refcountTableClusters).putInt(60, nbSnapshots)
                .putLong(64, snapshotsOffset);
        if (version == 3) {
            b.putLong(72, incompatible).putLong(80, compatible).putLong(88, autoclear).putInt(96, refcountOrder)
                    .putInt(100, headerLength);
            if (headerLength > V3_HEADER_LENGTH) {
                b.put(104, (byte) compressionType);
            }
        }
        int pos = (hdr + 7) & ~7;
        for (Extension e : extensions) {
            b.putInt(pos, e.type).putInt(pos + 4, e.data.length);
            b.put(pos + 8, e.data);
            pos += 8 + ((e.data.length + 7) & ~7);
        }
        b.putInt(pos, EXT_END).putInt(pos + 4, 0);
        b.put((int) bOff, name);
        return b.array();
    }

    // ---- fields -----------------------------------------------------------------------------

    /**
     * Returns 2 or 3.
     *
     * @return 2 or 3
     */
    public int version() {
        return version;
    }

    /**
     * Returns log2 of the cluster size.
     *
     * @return log2 of the cluster size
     */
    public int clusterBits() {
        return clusterBits;
    }

    /**
     * Returns the cluster size in bytes.
     *
     * @return the cluster size in bytes
     */
    public int clusterSize() {
        return 1 << clusterBits;
    }

    /**
     * Returns the virtual disk's size in bytes.
     *
     * @return the virtual disk's size in bytes
     */
    public long size() {
        return size;
    }

    /**
     * Returns entries in the active L1 table.
     *
     * @return entries in the active L1 table
     */
    public int l1Size() {
        return l1Size;
    }

    /**
     * Returns where the active L1 table starts in the container.
     *
     * @return where the active L1 table starts in the container
     */
    public long l1TableOffset() {
        return l1TableOffset;
    }

    /**
     * Returns where the refcount table starts in the container.
     *
     * @return where the refcount table starts in the container
     */
    public long refcountTableOffset() {
        return refcountTableOffset;
    }

    /**
     * Returns clusters the refcount table occupies.
     *
     * @return clusters the refcount table occupies
     */
    public int refcountTableClusters() {
        return refcountTableClusters;
    }

    /**
     * Returns internal snapshots in the snapshot table.
     *
     * @return internal snapshots in the snapshot table
     */
    public int nbSnapshots() {
        return nbSnapshots;
    }

    /**
     * Returns where the snapshot table starts (0 when there is none).
     *
     * @return where the snapshot table starts (0 when there is none)
     */
    public long snapshotsOffset() {
        return snapshotsOffset;
    }

    /**
     * Returns the incompatible feature bits.
     *
     * @return the incompatible feature bits
     */
    public long incompatibleFeatures() {
        return incompatible;
    }

    /**
     * Returns the compatible feature bits.
     *
     * @return the compatible feature bits
     */
    public long compatibleFeatures() {
        return compatible;
    }

    /**
     * Returns the autoclear feature bits.
     *
     * @return the autoclear feature bits
     */
    public long autoclearFeatures() {
        return autoclear;
    }

    /**
     * Returns log2 of refcount_bits.
     *
     * @return log2 of refcount_bits
     */
    public int refcountOrder() {
        return refcountOrder;
    }

    /**
     * Returns bits per refcount, 1..64.
     *
     * @return bits per refcount, 1..64
     */
    public int refcountBits() {
        return 1 << refcountOrder;
    }

    /**
     * Returns the header's length field (72 for version 2).
     *
     * @return the header's length field (72 for version 2)
     */
    public int headerLength() {
        return version == 2 ? V2_HEADER_LENGTH : headerLength;
    }

    /**
     * Returns {@link #COMPRESSION_DEFLATE} or {@link #COMPRESSION_ZSTD}.
     *
     * @return {@link #COMPRESSION_DEFLATE} or {@link #COMPRESSION_ZSTD}
     */
    public int compressionType() {
        return compressionType;
    }

    /**
     * Returns the backing file's name as written in the image, or null.
     *
     * @return the backing file's name as written in the image, or null
     */
    public String backingFile() {
        return backingFile;
    }

    /**
     * Returns the offset the backing name was read from (0 when none; recomputed by encode).
     *
     * @return the offset the backing name was read from (0 when none; recomputed by encode)
     */
    public long backingFileOffset() {
        return backingFileOffset;
    }

    /**
     * Returns the extensions in on-disk order, unknown ones included.
     *
     * @return the extensions in on-disk order, unknown ones included
     */
    public List<Extension> extensions() {
        return extensions;
    }

    /**
     * Returns whether L2 entries are extended (128 bits, 32 subclusters).
     *
     * @return whether L2 entries are extended (128 bits, 32 subclusters)
     */
    public boolean extendedL2() {
        return (incompatible & INCOMPAT_EXTL2) != 0;
    }

    /**
     * Returns whether guest data lives in an external data file.
     *
     * @return whether guest data lives in an external data file
     */
    public boolean hasDataFile() {
        return (incompatible & INCOMPAT_DATA_FILE) != 0;
    }

    /**
     * Returns whether lazy refcounts are enabled.
     *
     * @return whether lazy refcounts are enabled
     */
    public boolean lazyRefcounts() {
        return (compatible & COMPAT_LAZY_REFCOUNTS) != 0;
    }

    /**
     * Returns whether the dirty bit is set.
     *
     * @return whether the dirty bit is set
     */
    public boolean isDirty() {
        return (incompatible & INCOMPAT_DIRTY) != 0;
    }

    /**
     * Returns whether the corrupt bit is set.
     *
     * @return whether the corrupt bit is set
     */
    public boolean isCorrupt() {
        return (incompatible & INCOMPAT_CORRUPT) != 0;
    }

    /**
     * Returns bytes of one L2 entry: 8, or 16 with extended L2.
     *
     * @return bytes of one L2 entry: 8, or 16 with extended L2
     */
    public int l2EntryBytes() {
        return extendedL2() ? 16 : 8;
    }

    /**
     * Returns entries in one L2 table.
     *
     * @return entries in one L2 table
     */
    public int l2Entries() {
        return clusterSize() / l2EntryBytes();
    }

    /**
     * Returns refcount entries in one refcount block.
     *
     * @return refcount entries in one refcount block
     */
    public long refcountBlockEntries() {
        return (long) clusterSize() * 8 / refcountBits();
    }

    /**
     * Returns the data of the first extension of {@code type}, or null.
     *
     * @return the data of the first extension of {@code type}, or null
     */
    private byte[] extension(int type) {
        for (Extension e : extensions) {
            if (e.type == type) {
                return e.data;
            }
        }
        return null;
    }

    /**
     * Returns the backing format extension's name ("raw", "qcow2"), or null.
     *
     * @return the backing format extension's name ("raw", "qcow2"), or null
     */
    public String backingFormat() {
        byte[] d = extension(EXT_BACKING_FORMAT);
        return d == null ? null : new String(d, StandardCharsets.UTF_8);
    }

    /**
     * Returns the external data file's name, or null.
     *
     * @return the external data file's name, or null
     */
    public String dataFileName() {
        byte[] d = extension(EXT_DATA_FILE);
        return d == null ? null : new String(d, StandardCharsets.UTF_8);
    }

    /**
     * Returns the bitmaps extension's raw bytes, or null when the image has none.
     *
     * @return the bitmaps extension's raw bytes, or null when the image has none
     */
    public byte[] bitmapsExtension() {
        byte[] d = extension(EXT_BITMAPS);
        return d == null ? null : d.clone();
    }

    /**
     * Returns the feature name table's entries (empty when the image has none).
     *
     * @return the feature name table's entries (empty when the image has none)
     */
    public List<FeatureName> featureNames() {
        byte[] d = extension(EXT_FEATURE_NAMES);
        return d == null ? List.of() : parseFeatureNames(d);
    }

    // ---- changed copies -----------------------------------------------------------------------

    private Qcow2Header copy(long incompat, long compat, long auto, int l1Sz, long l1Off, long reftOff, int reftCl,
                             String backing, List<Extension> exts, int compression, int nbSnap, long snapOff) {
        return new Qcow2Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod, l1Sz, l1Off,
                reftOff, reftCl, nbSnap, snapOff, incompat, compat, auto, refcountOrder, headerLength, compression,
                backing, exts);
    }

    /**
     * A copy of this header with the fields below changed.
     *
     * @param incompat the incompatible bits
     * @param compat   the compatible bits
     * @param auto     the autoclear bits (ignored by version 2)
     * @return a copy with these feature bits
     */
    public Qcow2Header withFeatures(long incompat, long compat, long auto) {
        return copy(incompat, compat, auto, l1Size, l1TableOffset, refcountTableOffset, refcountTableClusters,
                backingFile, extensions, compressionType, nbSnapshots, snapshotsOffset);
    }

    /**
     * A copy of this header with the fields below changed.
     *
     * @param entries L1 entries
     * @param offset  the L1 table's offset
     * @return a copy with this active L1 table
     */
    public Qcow2Header withL1(int entries, long offset) {
        return copy(incompatible, compatible, autoclear, entries, offset, refcountTableOffset, refcountTableClusters,
                backingFile, extensions, compressionType, nbSnapshots, snapshotsOffset);
    }

    /**
     * A copy of this header with the fields below changed.
     *
     * @param offset   the refcount table's offset
     * @param clusters its length in clusters
     * @return a copy with this refcount table
     */
    public Qcow2Header withRefcountTable(long offset, int clusters) {
        return copy(incompatible, compatible, autoclear, l1Size, l1TableOffset, offset, clusters, backingFile,
                extensions, compressionType, nbSnapshots, snapshotsOffset);
    }

    /**
     * A copy of this header with the fields below changed.
     *
     * @param count  snapshots in the table
     * @param offset the snapshot table's offset
     * @return a copy with this snapshot table
     */
    public Qcow2Header withSnapshots(int count, long offset) {
        return copy(incompatible, compatible, autoclear, l1Size, l1TableOffset, refcountTableOffset,
                refcountTableClusters, backingFile, extensions, compressionType, count, offset);
    }

    /**
     * A copy of this header with the fields below changed.
     *
     * @param name   the backing file's name, or null for none
     * @param format its format ("raw", "qcow2"), or null to write no backing format extension
     * @return a copy with this backing file
     */
    public Qcow2Header withBacking(String name, String format) {
        if (name != null && name.getBytes(StandardCharsets.UTF_8).length > MAX_BACKING_NAME) {
            throw new IllegalArgumentException("backing file name is longer than 1023 bytes");
        }
        List<Extension> exts = new ArrayList<>();
        for (Extension e : extensions) {
            if (e.type != EXT_BACKING_FORMAT) {
                exts.add(e);
            }
        }
        if (format != null && name != null) {
            exts.addFirst(new Extension(EXT_BACKING_FORMAT, format.getBytes(StandardCharsets.UTF_8)));
        }
        return copy(incompatible, compatible, autoclear, l1Size, l1TableOffset, refcountTableOffset,
                refcountTableClusters, name, exts, compressionType, nbSnapshots, snapshotsOffset);
    }

    /**
     * A copy of this header with the fields below changed.
     *
     * @param exts the header extensions, in order
     * @return a copy with these extensions
     */
    public Qcow2Header withExtensions(List<Extension> exts) {
        return copy(incompatible, compatible, autoclear, l1Size, l1TableOffset, refcountTableOffset,
                refcountTableClusters, backingFile, exts, compressionType, nbSnapshots, snapshotsOffset);
    }

    /**
     * A copy of this header with the fields below changed.
     *
     * @param type {@link #COMPRESSION_DEFLATE} or {@link #COMPRESSION_ZSTD}; zstd sets the
     *             compression type incompatible bit, deflate clears it
     * @return a copy with this compression type
     */
    public Qcow2Header withCompressionType(int type) {
        long inc = type == COMPRESSION_DEFLATE ? incompatible & ~INCOMPAT_COMPRESSION : incompatible
                | INCOMPAT_COMPRESSION;
        return copy(inc, compatible, autoclear, l1Size, l1TableOffset, refcountTableOffset, refcountTableClusters,
                backingFile, extensions, type, nbSnapshots, snapshotsOffset);
    }

    @Override
    public String toString() {
        return "Qcow2Header[v" + version + " cluster=" + clusterSize() + " size=" + size + " l1=" + l1Size + "@"
                + l1TableOffset + " reft=" + refcountTableClusters + "@" + refcountTableOffset + " refbits="
                + refcountBits() + " incompat=0x" + Long.toHexString(incompatible) + " compat=0x"
                + Long.toHexString(compatible) + " autoclear=0x" + Long.toHexString(autoclear)
                + (backingFile != null ? " backing=" + backingFile : "") + "]";
    }
}
