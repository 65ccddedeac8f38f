package io.biostack.layer.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * A qcow2 image's metadata read straight from its file, for the offline tools ({@code img info},
 * {@code check}, {@code map}, {@code convert}'s reader): the header and its extensions, the active
 * L1 table, the snapshot table, the bitmap directory, and readers for L2 tables and refcounts.
 * Not on any I/O path; every read is a positional read of the file.
 *
 * <p>Every length and offset read from the file is checked against the file's size and the
 * format's limits before it is used (qemu's {@code qcow2_do_open} refuses the same things).
 * Layout and names: qemu's {@code docs/interop/qcow2.rst}.
 *
 * <p>Ownership: the caller owns the image and closes it (that closes the file).
 */
public final class Qcow2Image implements AutoCloseable {
    /** Refcount table entries: bits 9-63 hold the refcount block offset (qcow2.rst "Refcount table"). */
    public static final long REFT_OFFSET_MASK = ~Qcow2Header.REFT_RESERVED_MASK;
    /** qemu's QCOW_MAX_SNAPSHOTS. */
    static final int MAX_SNAPSHOTS = 65536;
    /** qemu's QCOW2_MAX_BITMAPS. */
    static final int MAX_BITMAPS = 65535;

    /**
     * An internal snapshot's table entry (qcow2.rst "Snapshot table").
     *
     * @param id          its ID string
     * @param name        its name
     * @param l1Offset    its L1 table's offset
     * @param l1Size      its L1 table's entries
     * @param dateSec     creation time, seconds since the epoch
     * @param dateNsec    creation time, nanoseconds in that second
     * @param vmClockNsec the guest clock when it was taken
     * @param vmStateSize bytes of saved VM state
     * @param icount      the instruction count, or -1 when not recorded
     * @param diskSize    the virtual size when it was taken
     */
    public record Snapshot(String id, String name, long l1Offset, int l1Size, long dateSec, long dateNsec,
                           long vmClockNsec, long vmStateSize, long icount, long diskSize) {
    }

    /**
     * A persistent dirty bitmap's directory entry (qcow2.rst "Bitmap directory").
     *
     * @param name            its name
     * @param tableOffset     its bitmap table's offset
     * @param tableSize       its bitmap table's entries
     * @param flags           {@link #IN_USE}, {@link #AUTO}, ...
     * @param type            1: a dirty tracking bitmap
     * @param granularityBits log2 of the bytes one bit covers
     */
    public record Bitmap(String name, long tableOffset, int tableSize, int flags, int type,
                         int granularityBits) {
        /** Flag bit 0: in use (the bitmap may be inconsistent). */
        public static final int IN_USE = 1;
        /** Flag bit 1: auto (tracks the guest's writes). */
        public static final int AUTO = 2;
    }

    private final FileChannel ch;
    /** The parsed header (fields, extensions, feature bits). */
    public final Qcow2Header header;
    /** The file this image was read from. */
    public final Path path;
    /** Size of the file at open. */
    public final long fileSize;
    /** Header fields (qcow2.rst "Header"). */
    public final int version, clusterBits, cryptMethod, l1Size, nbSnapshots, refcountOrder,
            headerLength, compressionType;
    /** Header fields (qcow2.rst "Header"). */
    public final long size, l1Offset, snapshotsOffset, incompat, compat, autoclear;
    /** The refcount table's offset and clusters (they change when a check rebuilds the structure). */
    public long reftOffset;
    /** The refcount table's length in clusters. */
    public int reftClusters;
    /** Backing file name as stored, or null; its format from the extension, or null. */
    public final String backingFile, backingFormat;
    /** External data file name, or null. */
    public final String dataFile;
    /** Bitmaps extension: directory offset and size, or 0 without the extension. */
    public final long bitmapDirOffset, bitmapDirSize;
    /** Full disk encryption header extension: offset and length, or 0. */
    public final long cryptoOffset, cryptoLength;
    /** The active L1 table (raw entries). */
    public final long[] l1;
    /** The internal snapshots. */
    public final List<Snapshot> snapshots;
    /** The persistent bitmaps (empty unless the bitmaps extension is present). */
    public final List<Bitmap> bitmaps;
    private long[] reft;
    /** The file's size as last seen (grows when a repair writes past the end). */
    private long limit;
    private long cachedBlockOff = -1;
    private byte[] cachedBlock;

    private Qcow2Image(FileChannel ch, Path path) throws IOException {
        this.ch = ch;
        this.path = path;
        this.fileSize = ch.size();
        this.limit = fileSize;
        try {
            int bits = fileSize >= 24 ? read(20, 4).getInt(0) : 0;
            long first = 1L << Math.clamp(bits, Qcow2Header.MIN_CLUSTER_BITS, Qcow2Header.MAX_CLUSTER_BITS);
            header = Qcow2Header.parse(read(0, (int) Math.min(fileSize, first)).array(), fileSize);
        } catch (Qcow2Exception e) {
            throw bad(e.getMessage());
        }
        Qcow2Header h = header;
        version = h.version();
        clusterBits = h.clusterBits();
        size = h.size();
        cryptMethod = 0;
        l1Size = h.l1Size();
        l1Offset = h.l1TableOffset();
        reftOffset = h.refcountTableOffset();
        reftClusters = h.refcountTableClusters();
        nbSnapshots = h.nbSnapshots();
        snapshotsOffset = h.snapshotsOffset();
        incompat = h.incompatibleFeatures();
        compat = h.compatibleFeatures();
        autoclear = h.autoclearFeatures();
        refcountOrder = h.refcountOrder();
        headerLength = h.headerLength();
        compressionType = h.compressionType();
        backingFile = h.backingFile();
        String bfmt = h.backingFormat();
        String dfile = h.dataFileName();
        long bdo = 0;
        long bds = 0;
        long cro = 0;
        long crl = 0;
        int nbBitmaps = 0;
        byte[] bm = h.bitmapsExtension();
        if (bm != null) {
            if (bm.length < 24) {
                throw bad("bitmaps extension is " + bm.length + " bytes, shorter than 24");
            }
            ByteBuffer d = ByteBuffer.wrap(bm);
            nbBitmaps = d.getInt(0);
            bds = d.getLong(8);
            bdo = d.getLong(16);
        }
        for (Qcow2Header.Extension e : h.extensions()) {
            if (e.type() == Qcow2Header.EXT_CRYPTO && e.data().length >= 16) {
                ByteBuffer d = ByteBuffer.wrap(e.data());
                cro = d.getLong(0);
                crl = d.getLong(8);
            }
        }
        backingFormat = bfmt;
        dataFile = dfile;
        cryptoOffset = cro;
        cryptoLength = crl;
        // Active L1 table.
        if (l1Size < 0 || (long) l1Size * 8 > Qcow2Header.MAX_L1_BYTES) {
            throw bad("L1 table of " + Integer.toUnsignedString(l1Size) + " entries is too large");
        }
        long need = (size + clusterSize() * (long) l2Entries() - 1) / (clusterSize() * (long) l2Entries());
        if (l1Size < need) {
            throw bad("L1 table of " + l1Size + " entries is too small for the virtual size");
        }
        checkTable(l1Offset, (long) l1Size * 8, "L1 table");
        l1 = longs(l1Offset, l1Size);
        // Refcount table.
        if (reftClusters < 0 || (long) reftClusters * clusterSize() > Qcow2Header.MAX_REFTABLE_BYTES) {
            throw bad("refcount table of " + Integer.toUnsignedString(reftClusters) + " clusters is too large");
        }
        checkTable(reftOffset, (long) reftClusters * clusterSize(), "refcount table");
        if (reftOffset == 0 && reftClusters > 0) {
            throw bad("refcount table overlaps the header");
        }
        // Snapshots.
        if (nbSnapshots < 0 || nbSnapshots > MAX_SNAPSHOTS) {
            throw bad(Integer.toUnsignedString(nbSnapshots) + " snapshots are too many");
        }
        snapshots = nbSnapshots == 0 ? List.of() : readSnapshots();
        // Bitmaps.
        if (bdo != 0 && (autoclear & Qcow2Header.AUTOCLEAR_BITMAPS) != 0) {
            if (nbBitmaps < 0 || nbBitmaps > MAX_BITMAPS) {
                throw bad(nbBitmaps + " bitmaps are too many");
            }
            if (bds < 0 || bds > 64L << 20) {
                throw bad("bitmap directory of " + bds + " bytes is too large");
            }
            checkTable(bdo, bds, "bitmap directory");
            bitmaps = readBitmaps(bdo, (int) bds, nbBitmaps);
        } else {
            bitmaps = List.of();
        }
        bitmapDirOffset = bdo;
        bitmapDirSize = bds;
    }

    /**
     * Opens {@code path} read-only, or read-write when {@code writable}, and reads its metadata.
     *
     * @param path     the image file
     * @param writable true to allow {@link #write}
     * @return the image; the caller closes it
     * @throws IOException when the file can't be read or is not a valid qcow2 image (the message
     *                     names the file and what is wrong)
     */
    public static Qcow2Image open(Path path, boolean writable) throws IOException {
        FileChannel ch = writable
                ? FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE)
                : FileChannel.open(path, StandardOpenOption.READ);
        try {
            return new Qcow2Image(ch, path);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    /**
     * True when {@code path} starts with the qcow2 magic.
     *
     * @param path a file
     * @return whether it looks like a qcow2 image
     * @throws IOException when it can't be read
     */
    public static boolean probe(Path path) throws IOException {
        try (FileChannel c = FileChannel.open(path, StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate(4);
            return c.read(b, 0) == 4 && b.getInt(0) == Qcow2Header.MAGIC;
        }
    }

    /**
     * The cluster size.
     *
     * @return bytes per cluster
     */
    public int clusterSize() {
        return 1 << clusterBits;
    }

    /**
     * Whether L2 entries are extended.
     *
     * @return true with extended L2 entries (128 bits, 32 subclusters)
     */
    public boolean extendedL2() {
        return (incompat & Qcow2Header.INCOMPAT_EXTL2) != 0;
    }

    /**
     * The L2 table size.
     *
     * @return entries per L2 table
     */
    public int l2Entries() {
        return clusterSize() / (extendedL2() ? 16 : 8);
    }

    /**
     * The refcount width.
     *
     * @return bits per refcount
     */
    public int refcountBits() {
        return 1 << refcountOrder;
    }

    /**
     * The refcount table.
     *
     * @return its entries (read once, then kept)
     * @throws IOException when it can't be read
     */
    public long[] refcountTable() throws IOException {
        if (reft == null) {
            reft = longs(reftOffset, reftClusters * (clusterSize() / 8));
        }
        return reft;
    }

    /**
     * The refcount stored for host cluster {@code cluster}: 0 where no refcount block covers it.
     *
     * @param cluster host cluster index
     * @return the stored refcount
     * @throws IOException on a read error, or a refcount block outside the file
     */
    public long storedRefcount(long cluster) throws IOException {
        int perBlockBits = clusterBits + 3 - refcountOrder;
        long idx = cluster >>> perBlockBits;
        long[] t = refcountTable();
        if (idx >= t.length) {
            return 0;
        }
        long off = t[(int) idx] & REFT_OFFSET_MASK;
        if (off == 0) {
            return 0;
        }
        if ((off & (clusterSize() - 1)) != 0 || off + clusterSize() > limit) {
            throw bad("refcount block at 0x" + Long.toHexString(off) + " is outside the image or misaligned");
        }
        if (off != cachedBlockOff) {
            cachedBlock = read(off, clusterSize()).array();
            cachedBlockOff = off;
        }
        return refcountIn(cachedBlock, (int) (cluster & ((1L << perBlockBits) - 1)), refcountOrder);
    }

    /**
     * Says that the header now points at a new refcount table (after a rebuild wrote one).
     *
     * @param offset   its offset
     * @param clusters its length in clusters
     */
    void refcountTableMoved(long offset, int clusters) throws IOException {
        limit = ch.size();
        reftOffset = offset;
        reftClusters = clusters;
        dropRefcountCache();
    }

    /** Forgets the cached refcount table and block (after {@link #write}s to them). */
    public void dropRefcountCache() {
        reft = null;
        cachedBlockOff = -1;
        cachedBlock = null;
    }

    /**
     * Entry {@code i} of a refcount block of the given order (qcow2.rst "Refcount blocks"; orders
     * below 3 pack several entries in a byte, lowest bits first, as qemu's get_refcount_ro0..2).
     *
     * @param block the block
     * @param i     entry index
     * @param order refcount_order
     * @return the refcount
     */
    public static long refcountIn(byte[] block, int i, int order) {
        return switch (order) {
            case 0 -> (block[i >>> 3] >>> (i & 7)) & 1;
            case 1 -> (block[i >>> 2] >>> (2 * (i & 3))) & 3;
            case 2 -> (block[i >>> 1] >>> (4 * (i & 1))) & 15;
            case 3 -> block[i] & 0xff;
            case 4 -> ByteBuffer.wrap(block).getShort(i * 2) & 0xffff;
            case 5 -> ByteBuffer.wrap(block).getInt(i * 4) & 0xffffffffL;
            default -> ByteBuffer.wrap(block).getLong(i * 8);
        };
    }

    /**
     * Sets entry {@code i} of a refcount block of the given order.
     *
     * @param block the block
     * @param i     entry index
     * @param order refcount_order
     * @param v     the refcount (must fit in the order's width)
     */
    public static void setRefcountIn(byte[] block, int i, int order, long v) {
        switch (order) {
            case 0, 1, 2 -> {
                int bits = 1 << order;
                int per = 8 / bits;
                int shift = bits * (i % per);
                int mask = ((1 << bits) - 1) << shift;
                block[i / per] = (byte) ((block[i / per] & ~mask) | (((int) v << shift) & mask));
            }
            case 3 -> block[i] = (byte) v;
            case 4 -> ByteBuffer.wrap(block).putShort(i * 2, (short) v);
            case 5 -> ByteBuffer.wrap(block).putInt(i * 4, (int) v);
            default -> ByteBuffer.wrap(block).putLong(i * 8, v);
        }
    }

    /**
     * Reads the L2 table at {@code off} (one cluster), as raw entries (two longs per entry with
     * extended L2: the mapping, then the subcluster bitmap).
     *
     * @param off the table's offset, cluster aligned and inside the file
     * @return the entries
     * @throws IOException when it is misaligned, outside the file, or can't be read
     */
    public long[] readL2(long off) throws IOException {
        if ((off & (clusterSize() - 1)) != 0 || off + clusterSize() > limit) {
            throw bad("L2 table at 0x" + Long.toHexString(off) + " is outside the image or misaligned");
        }
        return longs(off, clusterSize() / 8);
    }

    /**
     * Reads {@code len} bytes at {@code off} of the file; bytes past its end read as zeros.
     *
     * @param off file offset
     * @param len byte count
     * @return a big-endian buffer of {@code len} bytes
     * @throws IOException on a read error
     */
    public ByteBuffer read(long off, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(len);
        while (b.hasRemaining()) {
            int n = ch.read(b, off + b.position());
            if (n < 0) {
                break;
            }
        }
        return b.clear();
    }

    /**
     * Writes {@code data} at {@code off} of the file (repairs).
     *
     * @param off  file offset
     * @param data the bytes
     * @throws IOException on a write error
     */
    public void write(long off, ByteBuffer data) throws IOException {
        ByteBuffer b = data.duplicate();
        while (b.hasRemaining()) {
            ch.write(b, off + (data.remaining() - b.remaining()));
        }
    }

    /**
     * Makes the writes durable.
     *
     * @throws IOException when fsync fails
     */
    public void sync() throws IOException {
        ch.force(true);
    }

    /**
     * The file's size now.
     *
     * @return bytes
     * @throws IOException when it can't be read
     */
    public long currentFileSize() throws IOException {
        return ch.size();
    }

    @Override
    public void close() throws IOException {
        ch.close();
    }

    long[] longs(long off, int count) throws IOException {
        ByteBuffer b = read(off, count * 8);
        long[] r = new long[count];
        b.asLongBuffer().get(r);
        return r;
    }

    private void checkTable(long off, long bytes, String what) throws IOException {
        if (bytes == 0) {
            return;
        }
        if ((off & (clusterSize() - 1)) != 0) {
            throw bad(what + " at 0x" + Long.toHexString(off) + " is not cluster aligned");
        }
        if (off < 0 || off + bytes > fileSize) {
            throw bad(what + " at 0x" + Long.toHexString(off) + " (" + bytes + " bytes) runs past the end of the file");
        }
    }

    private List<Snapshot> readSnapshots() throws IOException {
        checkTable(snapshotsOffset, 1, "snapshot table");
        List<Snapshot> r = new ArrayList<>();
        long pos = snapshotsOffset;
        for (int i = 0; i < nbSnapshots; i++) {
            if (pos + 40 > fileSize) {
                throw bad("snapshot table runs past the end of the file");
            }
            ByteBuffer e = read(pos, 40);
            int idLen = e.getShort(12) & 0xffff;
            int nameLen = e.getShort(14) & 0xffff;
            long extra = Integer.toUnsignedLong(e.getInt(36));
            if (extra > 1024) {
                throw bad("snapshot " + i + " has " + extra + " bytes of extra data (at most 1024)");
            }
            ByteBuffer x = read(pos + 40, (int) extra);
            long vmState = Integer.toUnsignedLong(e.getInt(32));
            if (extra >= 8) {
                vmState = x.getLong(0);
            }
            long disk = extra >= 16 ? x.getLong(8) : size;
            long icount = extra >= 24 ? x.getLong(16) : -1;
            long p = pos + 40 + extra;
            if (p + idLen + nameLen > fileSize) {
                throw bad("snapshot " + i + " runs past the end of the file");
            }
            String id = string(read(p, idLen));
            String name = string(read(p + idLen, nameLen));
            int snL1 = e.getInt(8);
            if (snL1 < 0 || (long) snL1 * 8 > Qcow2Header.MAX_L1_BYTES) {
                throw bad("snapshot " + id + " has an L1 table too large");
            }
            r.add(new Snapshot(id, name, e.getLong(0), snL1, Integer.toUnsignedLong(e.getInt(16)),
                    Integer.toUnsignedLong(e.getInt(20)), e.getLong(24), vmState, icount, disk));
            pos = (p + idLen + nameLen + 7) & ~7L;
        }
        return List.copyOf(r);
    }

    /**
     * The snapshot table's length.
     *
     * @return bytes the snapshot table takes (for refcounting)
     * @throws IOException when it can't be read
     */
    public long snapshotTableSize() throws IOException {
        long pos = snapshotsOffset;
        for (int i = 0; i < nbSnapshots; i++) {
            ByteBuffer e = read(pos, 40);
            long p = pos + 40 + Integer.toUnsignedLong(e.getInt(36)) + (e.getShort(12) & 0xffff)
                    + (e.getShort(14) & 0xffff);
            pos = (p + 7) & ~7L;
        }
        return pos - snapshotsOffset;
    }

    private List<Bitmap> readBitmaps(long off, int bytes, int count) throws IOException {
        ByteBuffer d = read(off, bytes);
        List<Bitmap> r = new ArrayList<>();
        int p = 0;
        for (int i = 0; i < count; i++) {
            if (p + 24 > bytes) {
                throw bad("bitmap directory is shorter than its " + count + " entries");
            }
            int nameLen = d.getShort(p + 18) & 0xffff;
            int extra = d.getInt(p + 20);
            if (extra < 0 || p + 24L + extra + nameLen > bytes) {
                throw bad("bitmap directory entry " + i + " runs past the directory");
            }
            byte[] n = new byte[nameLen];
            d.get(p + 24 + extra, n);
            r.add(new Bitmap(new String(n, StandardCharsets.UTF_8), d.getLong(p), d.getInt(p + 8),
                    d.getInt(p + 12), d.get(p + 16) & 0xff, d.get(p + 17) & 0xff));
            p = (p + 24 + extra + nameLen + 7) & ~7;
        }
        return List.copyOf(r);
    }

    private static String string(ByteBuffer b) {
        return new String(b.array(), b.arrayOffset(), b.limit(), StandardCharsets.UTF_8);
    }

    private IOException bad(String why) {
        return new IOException(path + ": " + why);
    }
}
