package io.biostack.layer.qcow2;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The on-disk pieces of qcow2's persistent dirty bitmaps, from qemu's
 * {@code docs/interop/qcow2.rst} ("Bitmaps extension", "Bitmap directory", "Bitmap table",
 * "Bitmap data") with the limits qemu enforces in {@code block/qcow2-bitmap.c}. Parsing checks
 * every offset and size against the container before anything is read through it (hostile input
 * is the normal case); each refusal names what is wrong.
 *
 * <pre>
 * bitmaps extension (header extension 0x23852875), 24 bytes, big-endian:
 *    0  4 nb_bitmaps                 1..65535
 *    4  4 reserved                   0
 *    8  8 bitmap_directory_size      bytes, at most 1024 * 65535
 *   16  8 bitmap_directory_offset    cluster aligned
 *
 * bitmap directory entry, 8-byte aligned:
 *    0  8 bitmap_table_offset        cluster aligned, not 0
 *    8  4 bitmap_table_size          entries, 1..0x8000000
 *   12  4 flags                      bit 0 in_use, bit 1 auto, the rest reserved (0)
 *   16  1 type                       1: dirty tracking bitmap
 *   17  1 granularity_bits           9..31
 *   18  2 name_size                  1..1023
 *   20  4 extra_data_size            0 (qemu refuses extra data)
 *   24    extra data, then the name (UTF-8, not terminated), padded to 8
 *
 * bitmap table entry, 8 bytes:
 *   bit 0      with offset 0: 1 = the cluster's bits are all ones, 0 = all zeros
 *   bits 9-55  the data cluster's offset (0: none)
 *   bits 1-8 and 56-63 reserved (0)
 *
 * bitmap data: bit i of the bitmap (bytes [i*granularity, (i+1)*granularity) of the virtual
 * disk) is bit (i % 8) of byte i / 8, least significant first; one cluster holds
 * cluster_size * 8 bits.
 * </pre>
 */
final class Qcow2Bitmaps {
    /** The extension's size (qcow2.rst "Bitmaps extension"). */
    static final int EXT_SIZE = 24;
    /** qemu's {@code QCOW2_MAX_BITMAPS}. */
    static final int MAX_BITMAPS = 65535;
    /** qemu's {@code QCOW2_MAX_BITMAP_DIRECTORY_SIZE}: 1024 bytes per bitmap. */
    static final long MAX_DIRECTORY_SIZE = 1024L * MAX_BITMAPS;
    /** qemu's {@code BME_MAX_TABLE_SIZE} (entries). */
    static final int MAX_TABLE_SIZE = 0x8000000;
    /** qemu's {@code BME_MAX_PHYS_SIZE}: bytes of bitmap data (a bound on memory). */
    static final long MAX_PHYS_SIZE = 0x20000000L;
    /** qemu's {@code BME_MIN_GRANULARITY_BITS}. */
    static final int MIN_GRANULARITY_BITS = 9;
    /** qemu's {@code BME_MAX_GRANULARITY_BITS}. */
    static final int MAX_GRANULARITY_BITS = 31;
    /** qemu's {@code BME_MAX_NAME_SIZE} (bytes). */
    static final int MAX_NAME_SIZE = 1023;
    /** Directory entry flag: the bitmap may be inconsistent with the data ({@code BME_FLAG_IN_USE}). */
    static final int FLAG_IN_USE = 1;
    /** Directory entry flag: the bitmap records writes ({@code BME_FLAG_AUTO}). */
    static final int FLAG_AUTO = 1 << 1;
    /** Directory entry flags no one knows ({@code BME_RESERVED_FLAGS}). */
    static final int RESERVED_FLAGS = 0xfffffffc;
    /** Bitmap type 1 ({@code BT_DIRTY_TRACKING_BITMAP}): the only one there is. */
    static final int TYPE_DIRTY_TRACKING = 1;
    /** Bitmap table entry bits that must be 0 ({@code BME_TABLE_ENTRY_RESERVED_MASK}). */
    static final long TABLE_RESERVED_MASK = 0xff000000000001feL;
    /** Bitmap table entry: the data cluster's offset ({@code BME_TABLE_ENTRY_OFFSET_MASK}). */
    static final long TABLE_OFFSET_MASK = 0x00fffffffffffe00L;
    /** Bitmap table entry without a cluster: its bits are all ones ({@code BME_TABLE_ENTRY_FLAG_ALL_ONES}). */
    static final long TABLE_ALL_ONES = 1L;
    /** Bytes of a directory entry before its name. */
    static final int ENTRY_HEADER = 24;

    private Qcow2Bitmaps() {
    }

    /**
     * The bitmaps extension.
     *
     * @param count     bitmaps in the directory
     * @param dirSize   the directory's bytes
     * @param dirOffset the directory's offset in the container
     */
    record Ext(int count, long dirSize, long dirOffset) {
        /**
         * Parses and checks the extension against the image.
         *
         * @param d             the extension's bytes
         * @param clusterSize   the image's cluster size
         * @param containerSize the container's bytes
         * @return the extension
         * @throws Qcow2Exception naming what is wrong
         */
        static Ext parse(byte[] d, int clusterSize, long containerSize) {
            if (d.length < EXT_SIZE) {
                throw new Qcow2Exception("the bitmaps extension is " + d.length + " bytes, not " + EXT_SIZE);
            }
            ByteBuffer b = ByteBuffer.wrap(d);
            long count = b.getInt(0) & 0xffffffffL;
            int reserved = b.getInt(4);
            long size = b.getLong(8);
            long off = b.getLong(16);
            if (reserved != 0) {
                throw new Qcow2Exception("the bitmaps extension's reserved field is not zero");
            }
            if (count == 0 || count > MAX_BITMAPS) {
                throw new Qcow2Exception("the bitmaps extension says " + count + " bitmaps (1 to " + MAX_BITMAPS + ")");
            }
            if (size <= 0 || size > MAX_DIRECTORY_SIZE) {
                throw new Qcow2Exception("the bitmap directory is " + size + " bytes (1 to " + MAX_DIRECTORY_SIZE + ")");
            }
            if (off <= 0 || off % clusterSize != 0 || off > containerSize - size) {
                throw new Qcow2Exception("the bitmap directory at " + off + " (" + size + " bytes) is "
                        + (off % clusterSize != 0 ? "not cluster aligned" : "past the end of the image (" + containerSize
                        + " bytes)"));
            }
            return new Ext((int) count, size, off);
        }

        /**
         * Encodes the extension.
         *
         * @return its 24 bytes
         */
        byte[] encode() {
            return ByteBuffer.allocate(EXT_SIZE).putInt(0, count).putLong(8, dirSize).putLong(16, dirOffset).array();
        }
    }

    /**
     * One bitmap directory entry (no extra data: qemu refuses it, and so do we).
     *
     * @param name            the bitmap's name
     * @param tableOffset     its bitmap table's offset
     * @param tableSize       its bitmap table's entries
     * @param flags           {@link #FLAG_IN_USE}, {@link #FLAG_AUTO}
     * @param granularityBits log2 of the bytes per bit
     */
    record Entry(String name, long tableOffset, int tableSize, int flags, int granularityBits) {
        boolean inUse() {
            return (flags & FLAG_IN_USE) != 0;
        }

        Entry withFlags(int f) {
            return new Entry(name, tableOffset, tableSize, f, granularityBits);
        }

        int bytes() {
            return entrySize(name.getBytes(StandardCharsets.UTF_8).length);
        }
    }

    /**
     * The bytes of a directory entry with a name of {@code nameBytes}, padded to 8.
     *
     * @param nameBytes the name's UTF-8 bytes
     * @return the entry's size
     */
    static int entrySize(int nameBytes) {
        return (ENTRY_HEADER + nameBytes + 7) & ~7;
    }

    /**
     * Bitmap table entries a bitmap of this geometry has: qemu's
     * {@code size_to_clusters(bdrv_dirty_bitmap_serialization_size())}, the bits serialised in
     * 64-bit words. qemu refuses a table of any other size.
     *
     * @param virtualSize     the virtual disk's bytes
     * @param granularityBits log2 of the bytes per bit
     * @param clusterSize     the image's cluster size
     * @return the table's entries
     */
    static long tableSize(long virtualSize, int granularityBits, int clusterSize) {
        long bits = (virtualSize + (1L << granularityBits) - 1) >>> granularityBits;
        long bytes = (bits + 63) / 64 * 8;
        return (bytes + clusterSize - 1) / clusterSize;
    }

    /**
     * Parses and checks the directory, as qemu's {@code bitmap_list_load} and
     * {@code check_dir_entry} do; a bitmap's table is checked against the container too.
     *
     * @param dir           the directory's bytes
     * @param ext           the extension that points at it
     * @param clusterSize   the image's cluster size
     * @param virtualSize   the virtual disk's bytes
     * @param containerSize the container's bytes
     * @return the entries, in directory order
     * @throws Qcow2Exception naming the bitmap and what is wrong
     */
    static List<Entry> parseDirectory(byte[] dir, Ext ext, int clusterSize, long virtualSize, long containerSize) {
        ByteBuffer b = ByteBuffer.wrap(dir);
        List<Entry> out = new ArrayList<>();
        int pos = 0;
        while (pos < dir.length) {
            if (out.size() == ext.count()) {
                throw new Qcow2Exception("the bitmap directory holds more bitmaps than the " + ext.count()
                        + " the header says");
            }
            if (pos + ENTRY_HEADER > dir.length) {
                throw new Qcow2Exception("the bitmap directory is broken: entry " + out.size() + " runs past its end");
            }
            long tOff = b.getLong(pos);
            long tSize = b.getInt(pos + 8) & 0xffffffffL;
            int flags = b.getInt(pos + 12);
            int type = b.get(pos + 16) & 0xff;
            int gbits = b.get(pos + 17) & 0xff;
            int nameSize = b.getShort(pos + 18) & 0xffff;
            long extra = b.getInt(pos + 20) & 0xffffffffL;
            if (extra != 0) {
                throw new Qcow2Exception("bitmap directory entry " + out.size() + " has extra data, which qemu does"
                        + " not support either");
            }
            if (nameSize == 0 || nameSize > MAX_NAME_SIZE || pos + entrySize(nameSize) > dir.length) {
                throw new Qcow2Exception("the bitmap directory is broken: entry " + out.size() + " has a name of "
                        + nameSize + " bytes" + (nameSize > 0 && nameSize <= MAX_NAME_SIZE ? ", past its end" : ""));
            }
            String name = new String(dir, pos + ENTRY_HEADER, nameSize, StandardCharsets.UTF_8);
            String what = "bitmap '" + name + "'";
            if (type != TYPE_DIRTY_TRACKING) {
                throw new Qcow2Exception(what + " has type " + type + " (1, dirty tracking, is the only one)");
            }
            if (gbits < MIN_GRANULARITY_BITS || gbits > MAX_GRANULARITY_BITS) {
                throw new Qcow2Exception(what + " has a granularity of 2^" + gbits + " bytes (2^"
                        + MIN_GRANULARITY_BITS + " to 2^" + MAX_GRANULARITY_BITS + ")");
            }
            if ((flags & RESERVED_FLAGS) != 0) {
                throw new Qcow2Exception(what + " has unknown flags 0x" + Integer.toHexString(flags & RESERVED_FLAGS));
            }
            if (tSize == 0 || tSize > MAX_TABLE_SIZE || tSize * clusterSize > MAX_PHYS_SIZE) {
                throw new Qcow2Exception(what + " has a bitmap table of " + tSize + " entries");
            }
            if (tOff <= 0 || tOff % clusterSize != 0 || tOff > containerSize - tSize * 8) {
                throw new Qcow2Exception(what + "'s bitmap table at " + tOff + " is "
                        + (tOff > 0 && tOff % clusterSize == 0 ? "past the end of the image (" + containerSize
                        + " bytes)" : "not cluster aligned"));
            }
            if ((flags & FLAG_IN_USE) == 0 && tSize != tableSize(virtualSize, gbits, clusterSize)) {
                throw new Qcow2Exception(what + " has a bitmap table of " + tSize + " entries; a disk of " + virtualSize
                        + " bytes needs " + tableSize(virtualSize, gbits, clusterSize));
            }
            out.add(new Entry(name, tOff, (int) tSize, flags, gbits));
            pos += entrySize(nameSize);
        }
        if (out.size() != ext.count()) {
            throw new Qcow2Exception("the bitmap directory holds " + out.size() + " bitmaps, the header says "
                    + ext.count());
        }
        return out;
    }

    /**
     * Checks one bitmap table entry (qemu's {@code check_table_entry}, and the data cluster
     * inside the container).
     *
     * @param e             the entry
     * @param clusterSize   the image's cluster size
     * @param containerSize the container's bytes
     * @param what          the bitmap and the entry's index, for the message
     * @return the data cluster's offset, or 0 when the entry has none
     * @throws Qcow2Exception naming what is wrong
     */
    static long checkTableEntry(long e, int clusterSize, long containerSize, String what) {
        if ((e & TABLE_RESERVED_MASK) != 0) {
            throw new Qcow2Exception(what + " has reserved bits set: 0x" + Long.toHexString(e));
        }
        long off = e & TABLE_OFFSET_MASK;
        if (off == 0) {
            return 0;
        }
        if ((e & TABLE_ALL_ONES) != 0 || off % clusterSize != 0) {
            throw new Qcow2Exception(what + " is malformed: 0x" + Long.toHexString(e));
        }
        if (off > containerSize - clusterSize) {
            throw new Qcow2Exception(what + " points past the end of the image: data cluster at " + off + ", the image"
                    + " has " + containerSize + " bytes");
        }
        return off;
    }

    /**
     * Encodes a directory.
     *
     * @param entries the entries, in order
     * @return the directory's bytes
     */
    static byte[] encodeDirectory(List<Entry> entries) {
        int size = 0;
        for (Entry e : entries) {
            size += e.bytes();
        }
        ByteBuffer b = ByteBuffer.allocate(size);
        int pos = 0;
        for (Entry e : entries) {
            byte[] n = e.name().getBytes(StandardCharsets.UTF_8);
            b.putLong(pos, e.tableOffset()).putInt(pos + 8, e.tableSize()).putInt(pos + 12, e.flags())
                    .put(pos + 16, (byte) TYPE_DIRTY_TRACKING).put(pos + 17, (byte) e.granularityBits())
                    .putShort(pos + 18, (short) n.length).putInt(pos + 20, 0).put(pos + ENTRY_HEADER, n);
            pos += e.bytes();
        }
        return b.array();
    }
}
