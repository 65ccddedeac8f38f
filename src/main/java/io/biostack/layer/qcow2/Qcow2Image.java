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
    /** qemu's lock byte for "does not share BLK_PERM_WRITE" (block/file-posix.c: 200 + bit 1). */
    private static final long WRITE_UNSHARED_LOCK_BYTE = 201;
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
    private final long snapshotBytes;
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
        byte[] bm = h.bitmapsExtension();
        BitmapsExtension bx;
        try {
            bx = bm == null ? null : BitmapsExtension.parse(bm);
        } catch (Qcow2Exception e) {
            throw bad(e.getMessage());
        }
        if (bx != null) {
            bdo = bx.directoryOffset();
            bds = bx.directorySize();
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
        try {
            // Snapshots, then bitmaps: each length checked before it is used (qcow2_read_snapshots,
            // qcow2_read_bitmaps).
            SnapshotTable st = readSnapshotTable(this::readArray, fileSize, h);
            snapshots = st.entries();
            snapshotBytes = st.bytes();
            bitmaps = readBitmapDirectory(this::readArray, fileSize, h);
        } catch (Qcow2Exception e) {
            throw bad(e.getMessage());
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
            if (writable && ch.tryLock(WRITE_UNSHARED_LOCK_BYTE, 1, false) == null) {
                // qemu holds a read lock on this byte while it writes the image without sharing
                // writes (raw_apply_lock_bytes: 200 + the bit of BLK_PERM_WRITE): a repair now
                // would write metadata under a running qemu. The lock is held until close.
                throw new IOException(path + ": Failed to get \"write\" lock\nIs another process using the image?");
            }
            return new Qcow2Image(ch, path);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    /**
     * Reads the metadata again from this image's own descriptor: a new view that shares the
     * channel (and its lock) and must not be closed. A second descriptor would drop the lock when
     * closed, since POSIX record locks belong to the process and any close of the file releases
     * them (fcntl(2), "Advisory record locking").
     *
     * @return the image as the file holds it now
     * @throws IOException when it can't be read or is no longer valid
     */
    Qcow2Image reread() throws IOException {
        return new Qcow2Image(ch, path);
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
     * @throws IOException on a read error, or a misaligned refcount block
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
        // A misaligned block is EIO, as qcow2_get_refcount's; a block past the end of the file
        // reads as zeros (read() fills them, as qemu's reads past EOF): every refcount it holds is
        // 0, which check reports as corruptions and -r all rebuilds, as qemu-img check does.
        if ((off & (clusterSize() - 1)) != 0) {
            throw bad("refcount block at 0x" + Long.toHexString(off) + " is misaligned");
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
        if (off < 0 || (off & (clusterSize() - 1)) != 0 || off + clusterSize() > limit) {
            throw bad("L2 table at 0x" + Long.toHexString(off) + " is outside the image or misaligned");
        }
        return longs(off, clusterSize() / 8);
    }

    /**
     * Reads and decompresses the compressed cluster that an L2 entry describes (qcow2.rst
     * "Compressed Clusters Descriptor"): deflate or zstd, as the header's compression_type says.
     * The run of sectors is cut at the end of the file, as qemu reads it (the last sector of a
     * compressed image is often partial).
     *
     * @param entry the L2 entry, with {@link Qcow2Header#OFLAG_COMPRESSED} set
     * @return the cluster's bytes, exactly one cluster
     * @throws IOException when the run lies past the end of the file, can't be read, or does not
     *                     decompress to exactly one cluster (the message names the offset)
     */
    public byte[] readCompressed(long entry) throws IOException {
        int shift = 62 - (clusterBits - 8);
        long off = entry & ((1L << shift) - 1);
        long sectors = ((entry >>> shift) & ((1L << (clusterBits - 8)) - 1)) + 1;
        long len = Math.min(sectors * 512 - (off & 511), limit - off);
        if (off == 0 || len <= 0) {
            throw bad("compressed cluster at 0x" + Long.toHexString(off) + " lies past the end of the file");
        }
        try {
            return Qcow2Compression.decompress(compressionType, read(off, (int) len).array(), clusterSize());
        } catch (Qcow2Exception e) {
            throw bad("compressed cluster at 0x" + Long.toHexString(off) + ": " + e.getMessage());
        }
    }

    /**
     * Reads {@code len} bytes at {@code off} of the file; bytes past its end read as zeros.
     *
     * @param off file offset
     * @param len byte count
     * @return a big-endian buffer of {@code len} bytes
     * @throws IOException on a read error, or a negative offset or length
     */
    public ByteBuffer read(long off, int len) throws IOException {
        if (off < 0 || len < 0) {
            throw bad("read of " + len + " bytes at offset " + off + " is outside the file");
        }
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

    /**
     * The snapshot table's length.
     *
     * @return bytes the snapshot table takes (for refcounting)
     */
    public long snapshotTableSize() {
        return snapshotBytes;
    }

    private byte[] readArray(long off, int len) throws IOException {
        return read(off, len).array();
    }

    // ---- metadata parsers, shared with the device's open (hostile input is normal) -------------

    /** qemu's QCOW_MAX_SNAPSHOT_EXTRA_DATA: bytes of extra data a snapshot entry may have. */
    static final int MAX_SNAPSHOT_EXTRA = 1024;
    /** qemu's QCOW_MAX_SNAPSHOTS_SIZE: bytes the whole snapshot table may take. */
    static final long MAX_SNAPSHOTS_BYTES = 1024L * MAX_SNAPSHOTS;
    /** qemu's QCOW2_MAX_BITMAP_DIRECTORY_SIZE. */
    static final long MAX_BITMAP_DIRECTORY = 1024L * MAX_BITMAPS;
    /** Fixed part of a snapshot table entry (qcow2.rst "Snapshot table"). */
    static final int SNAPSHOT_ENTRY = 40;
    /** Fixed part of a bitmap directory entry (qcow2.rst "Bitmap directory"). */
    static final int BITMAP_ENTRY = 24;
    /** qemu's BME_MAX_NAME_SIZE. */
    static final int MAX_BITMAP_NAME = 1023;

    /**
     * Where the metadata parsers read an image's bytes from: a file, a container device, or a
     * fuzzer's array. Bytes past the end read as zeros.
     */
    @FunctionalInterface
    interface Source {
        /**
         * @param off byte offset in the image
         * @param len byte count (callers bound it before asking)
         * @return {@code len} bytes
         * @throws IOException on a read error
         */
        byte[] read(long off, int len) throws IOException;
    }

    /**
     * A snapshot table as read: its entries and the bytes it takes.
     *
     * @param entries the snapshots, in table order
     * @param bytes   the table's length, each entry padded to 8
     */
    record SnapshotTable(List<Snapshot> entries, long bytes) {
    }

    /**
     * The fields of the bitmaps header extension (qcow2.rst "Bitmaps extension").
     *
     * @param count           nb_bitmaps
     * @param directorySize   bitmap_directory_size in bytes
     * @param directoryOffset bitmap_directory_offset
     */
    record BitmapsExtension(int count, long directorySize, long directoryOffset) {
        /**
         * @param d the extension's data
         * @return its fields
         * @throws Qcow2Exception when it is shorter than 24 bytes or its reserved field is not zero
         */
        static BitmapsExtension parse(byte[] d) {
            if (d.length < 24) {
                throw new Qcow2Exception("bitmaps extension is " + d.length + " bytes, shorter than 24");
            }
            ByteBuffer b = ByteBuffer.wrap(d);
            if (b.getInt(4) != 0) {
                throw new Qcow2Exception("bitmaps extension has non-zero reserved bytes");
            }
            return new BitmapsExtension(b.getInt(0), b.getLong(8), b.getLong(16));
        }
    }

    /**
     * Reads and checks the snapshot table that {@code h} points at, as qemu's
     * {@code qcow2_read_snapshots}: the table inside the image and at most 64 MiB, each entry's
     * extra data at most 1 KiB, its L1 table at most 32 MiB.
     *
     * @param src      the image's bytes
     * @param fileSize the image's size
     * @param h        the header
     * @return the table
     * @throws IOException    on a read error
     * @throws Qcow2Exception when the table is bad, naming what is wrong
     */
    static SnapshotTable readSnapshotTable(Source src, long fileSize, Qcow2Header h) throws IOException {
        int n = h.nbSnapshots();
        if (n < 0 || n > MAX_SNAPSHOTS) {
            throw new Qcow2Exception(Integer.toUnsignedString(n) + " snapshots are too many");
        }
        if (n == 0) {
            return new SnapshotTable(List.of(), 0);
        }
        long start = h.snapshotsOffset();
        if (start <= 0 || (start & (h.clusterSize() - 1)) != 0 || start > fileSize) {
            throw new Qcow2Exception("snapshot table at 0x" + Long.toHexString(start)
                    + " is misaligned or past the end of the image");
        }
        List<Snapshot> r = new ArrayList<>(Math.min(n, 64));
        long pos = start;
        for (int i = 0; i < n; i++) {
            if (pos + SNAPSHOT_ENTRY > fileSize || pos + SNAPSHOT_ENTRY - start > MAX_SNAPSHOTS_BYTES) {
                throw new Qcow2Exception("snapshot table runs past the end of the image (entry " + i + ")");
            }
            ByteBuffer e = ByteBuffer.wrap(src.read(pos, SNAPSHOT_ENTRY));
            int idLen = e.getShort(12) & 0xffff;
            int nameLen = e.getShort(14) & 0xffff;
            long extra = Integer.toUnsignedLong(e.getInt(36));
            if (extra > MAX_SNAPSHOT_EXTRA) {
                throw new Qcow2Exception("snapshot " + i + " has " + extra + " bytes of extra data (at most "
                        + MAX_SNAPSHOT_EXTRA + ")");
            }
            long end = pos + SNAPSHOT_ENTRY + extra + idLen + nameLen;
            if (end > fileSize || end - start > MAX_SNAPSHOTS_BYTES) {
                throw new Qcow2Exception("snapshot " + i + " runs past the end of the snapshot table");
            }
            ByteBuffer x = ByteBuffer.wrap(src.read(pos + SNAPSHOT_ENTRY, (int) extra));
            long vmState = Integer.toUnsignedLong(e.getInt(32));
            if (extra >= 8) {
                vmState = x.getLong(0);
            }
            long disk = extra >= 16 ? x.getLong(8) : h.size();
            long icount = extra >= 24 ? x.getLong(16) : -1;
            long p = pos + SNAPSHOT_ENTRY + extra;
            byte[] idName = src.read(p, idLen + nameLen);
            String id = new String(idName, 0, idLen, StandardCharsets.UTF_8);
            String name = new String(idName, idLen, nameLen, StandardCharsets.UTF_8);
            int snL1 = e.getInt(8);
            if (snL1 < 0 || (long) snL1 * 8 > Qcow2Header.MAX_L1_BYTES) {
                throw new Qcow2Exception("snapshot " + id + " has an L1 table too large ("
                        + Integer.toUnsignedString(snL1) + " entries)");
            }
            r.add(new Snapshot(id, name, e.getLong(0), snL1, Integer.toUnsignedLong(e.getInt(16)),
                    Integer.toUnsignedLong(e.getInt(20)), e.getLong(24), vmState, icount, disk));
            pos = (end + 7) & ~7L;
        }
        return new SnapshotTable(List.copyOf(r), pos - start);
    }

    /**
     * Reads and checks the bitmap directory that {@code h}'s bitmaps extension points at, as
     * qemu's {@code bitmap_list_load}: only when the bitmaps autoclear bit says the bitmaps are
     * consistent (otherwise qemu ignores them, and so does this).
     *
     * @param src      the image's bytes
     * @param fileSize the image's size
     * @param h        the header
     * @return the bitmaps (empty without the extension or the autoclear bit)
     * @throws IOException    on a read error
     * @throws Qcow2Exception when the extension or the directory is bad, naming what is wrong
     */
    static List<Bitmap> readBitmapDirectory(Source src, long fileSize, Qcow2Header h) throws IOException {
        byte[] ext = h.bitmapsExtension();
        if (ext == null) {
            return List.of();
        }
        BitmapsExtension bx = BitmapsExtension.parse(ext);
        if ((h.autoclearFeatures() & Qcow2Header.AUTOCLEAR_BITMAPS) == 0 || bx.directoryOffset() == 0) {
            return List.of();
        }
        if (bx.count() <= 0 || bx.count() > MAX_BITMAPS) {
            throw new Qcow2Exception(Integer.toUnsignedString(bx.count()) + " bitmaps are too many (1.."
                    + MAX_BITMAPS + ")");
        }
        long size = bx.directorySize();
        long off = bx.directoryOffset();
        if (size < (long) BITMAP_ENTRY * bx.count() || size > MAX_BITMAP_DIRECTORY) {
            throw new Qcow2Exception("bitmap directory of " + Long.toUnsignedString(size) + " bytes is invalid for "
                    + bx.count() + " bitmaps (at most " + MAX_BITMAP_DIRECTORY + ")");
        }
        if (off < 0 || (off & (h.clusterSize() - 1)) != 0 || off + size > fileSize) {
            throw new Qcow2Exception("bitmap directory at 0x" + Long.toHexString(off) + " (" + size
                    + " bytes) is misaligned or runs past the end of the image");
        }
        return parseBitmapDirectory(src.read(off, (int) size), bx.count());
    }

    /**
     * Parses the entries of a bitmap directory (qcow2.rst "Bitmap directory"): each entry, its
     * extra data and its name inside the directory, names at most 1023 bytes.
     *
     * @param d     the directory's bytes
     * @param count nb_bitmaps
     * @return the bitmaps, in directory order
     * @throws Qcow2Exception when an entry runs past the directory, naming it
     */
    static List<Bitmap> parseBitmapDirectory(byte[] d, int count) {
        ByteBuffer b = ByteBuffer.wrap(d);
        List<Bitmap> r = new ArrayList<>(Math.min(count, 64));
        long p = 0;
        for (int i = 0; i < count; i++) {
            if (p + BITMAP_ENTRY > d.length) {
                throw new Qcow2Exception("bitmap directory is shorter than its " + count + " entries");
            }
            int at = (int) p;
            int nameLen = b.getShort(at + 18) & 0xffff;
            long extra = Integer.toUnsignedLong(b.getInt(at + 20));
            if (nameLen > MAX_BITMAP_NAME || p + BITMAP_ENTRY + extra + nameLen > d.length) {
                throw new Qcow2Exception("bitmap directory entry " + i + " runs past the directory");
            }
            String name = new String(d, (int) (at + BITMAP_ENTRY + extra), nameLen, StandardCharsets.UTF_8);
            r.add(new Bitmap(name, b.getLong(at), b.getInt(at + 8), b.getInt(at + 12), b.get(at + 16) & 0xff,
                    b.get(at + 17) & 0xff));
            p = (p + BITMAP_ENTRY + extra + nameLen + 7) & ~7L;
        }
        return List.copyOf(r);
    }

    private IOException bad(String why) {
        return new IOException(path + ": " + why);
    }
}
