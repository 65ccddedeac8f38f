package io.biostack.layer.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Lays out a new qcow2 image in a file, as {@code qemu-img create -f qcow2} does
 * (block/qcow2.c {@code qcow2_co_create}): the header and its extensions in cluster 0, the
 * refcount table, the refcount blocks, the L1 table, and, for preallocation or for a
 * {@code convert} that knows which clusters it will fill, the L2 tables and the data clusters
 * already mapped (each L2 table followed by its data clusters in guest order).
 *
 * <p>Every cluster laid out has refcount one and OFLAG_COPIED in the entries that point at it, so
 * the image passes {@code qemu-img check} before any data is written. The file is written with
 * plain positional writes and synced before this returns.
 */
public final class Qcow2Create {
    private Qcow2Create() {
    }

    /** Feature name table (qcow2.rst "Feature name table"): type, bit, name, as qemu writes it. */
    private static final Object[][] FEATURES = {
            {0, 0, "dirty bit"}, {0, 1, "corrupt bit"}, {0, 2, "external data file"},
            {0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
            {2, 0, "bitmaps"}, {2, 1, "raw external data"}};

    /**
     * The {@code -o} options of {@code qemu-img create -f qcow2}.
     *
     * @param clusterSize     cluster size, a power of two from 512 to 2 MiB
     * @param refcountBits    bits per refcount, a power of two from 1 to 64
     * @param lazyRefcounts   the lazy refcounts compatible bit
     * @param extendedL2      extended L2 entries (subclusters)
     * @param compressionType "zlib" or "zstd"
     * @param preallocation   "off", "metadata", "falloc" or "full"
     * @param compat          "1.1" or "v3" (version 3), "0.10" or "v2" (version 2: no lazy refcounts,
     *                        16-bit refcounts, zlib, no extended L2)
     */
    public record Options(int clusterSize, int refcountBits, boolean lazyRefcounts, boolean extendedL2,
                          String compressionType, String preallocation, String compat) {
        /**
         * qemu's defaults: 64 KiB clusters, 16-bit refcounts, zlib, no preallocation, compat 1.1.
         *
         * @return the options
         */
        public static Options defaults() {
            return new Options(65536, 16, false, false, "zlib", "off", "1.1");
        }

        /**
         * Checks the combination as qemu-img does; throws {@link IllegalArgumentException} with
         * qemu's wording otherwise.
         */
        public Options {
            if (Integer.bitCount(clusterSize) != 1 || clusterSize < 512 || clusterSize > (2 << 20)) {
                throw new IllegalArgumentException("Cluster size must be a power of two between 512 and 2048k");
            }
            if (Integer.bitCount(refcountBits) != 1 || refcountBits > 64) {
                throw new IllegalArgumentException("Refcount width must be a power of two and may not exceed 64 bits");
            }
            compressionType = compressionType.toLowerCase(Locale.ROOT);
            if (!compressionType.equals("zlib") && !compressionType.equals("zstd")) {
                throw new IllegalArgumentException("Parameter 'compression_type' does not accept value '" + compressionType + "'");
            }
            if (!java.util.List.of("off", "metadata", "falloc", "full").contains(preallocation)) {
                throw new IllegalArgumentException("Parameter 'preallocation' does not accept value '" + preallocation + "'");
            }
            if (!List.of("0.10", "v2", "1.1", "v3").contains(compat)) {
                throw new IllegalArgumentException("Parameter 'version' does not accept value '" + compat + "'");
            }
            // Version 2 has none of these (qcow2.rst; qemu's qcow2_co_create refuses them, in this order).
            if (compat.equals("0.10") || compat.equals("v2")) {
                if (lazyRefcounts) {
                    throw new IllegalArgumentException("Lazy refcounts only supported with compatibility level 1.1 "
                            + "and above (use version=v3 or greater)");
                }
                if (refcountBits != 16) {
                    throw new IllegalArgumentException("Different refcount widths than 16 bits require compatibility "
                            + "level 1.1 or above (use version=v3 or greater)");
                }
                if (!compressionType.equals("zlib")) {
                    throw new IllegalArgumentException("Non-zlib compression type is only supported with compatibility "
                            + "level 1.1 and above (use version=v3 or greater)");
                }
                if (extendedL2) {
                    throw new IllegalArgumentException("Extended L2 entries are only supported with compatibility "
                            + "level 1.1 and above (use version=v3 or greater)");
                }
            }
            if (extendedL2 && clusterSize < 16384) {
                throw new IllegalArgumentException("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
            }
        }

        /**
         * The qcow2 version these options make.
         *
         * @return 2 for compat 0.10 (v2), 3 for compat 1.1 (v3)
         */
        public int version() {
            return compat.equals("0.10") || compat.equals("v2") ? 2 : 3;
        }

    }

    /**
     * Where the data clusters of a new image went: guest runs and the host offset each starts at,
     * so that a copy writes data straight to the container.
     */
    public static final class Layout {
        private final long[] guestStart;
        private final long[] guestEnd;
        private final long[] hostStart;
        private final int clusterBits;
        /** End of everything laid out, in bytes (the file is at least this long when data is mapped). */
        public final long end;

        Layout(long[] gs, long[] ge, long[] hs, int clusterBits, long end) {
            this.guestStart = gs;
            this.guestEnd = ge;
            this.hostStart = hs;
            this.clusterBits = clusterBits;
            this.end = end;
        }

        /**
         * The host offset of guest byte {@code guest}, and how many bytes from it are contiguous on
         * the host too.
         *
         * @param guest a guest offset
         * @return {host offset, contiguous bytes}, or null when the cluster was not laid out
         */
        public long[] host(long guest) {
            long c = guest >>> clusterBits;
            int i = Arrays.binarySearch(guestStart, c);
            if (i < 0) {
                i = -i - 2;
            }
            if (i < 0 || c >= guestEnd[i]) {
                return null;
            }
            long h = (hostStart[i] + (c - guestStart[i]) << clusterBits) + (guest & ((1L << clusterBits) - 1));
            long run = (guestEnd[i] << clusterBits) - guest;
            return new long[] {h, run};
        }
    }

    /**
     * Creates {@code file} (replacing it) as a qcow2 image of {@code size} bytes.
     *
     * @param file          the image file
     * @param size          virtual size in bytes (rounded up to 512 as qemu does)
     * @param o             the options
     * @param backingFile   the backing file name as it goes into the header, or null
     * @param backingFormat its format ("raw", "qcow2"), or null
     * @param mapped        guest cluster runs to lay out as allocated ({start, end} pairs in
     *                      clusters, sorted, not overlapping), or null; preallocation other than
     *                      off maps every cluster
     * @return the layout of the mapped clusters
     * @throws IOException when the file can't be written
     */
    public static Layout create(Path file, long size, Options o, String backingFile, String backingFormat,
                                long[] mapped) throws IOException {
        size = (size + 511) & ~511L;
        int cs = o.clusterSize();
        int cb = Integer.numberOfTrailingZeros(cs);
        int order = Integer.numberOfTrailingZeros(o.refcountBits());
        int l2Entries = cs / (o.extendedL2() ? 16 : 8);
        long perL2Bytes = (long) cs * l2Entries;
        long l1Size = (size + perL2Bytes - 1) / perL2Bytes;
        if (l1Size * 8 > Qcow2Header.MAX_L1_BYTES) {
            throw new IllegalArgumentException("Image size too large for this cluster size (the L1 table would exceed 32 MiB)");
        }
        long virtClusters = (size + cs - 1) / cs;
        if (!o.preallocation().equals("off")) {
            mapped = virtClusters == 0 ? new long[0] : new long[] {0, virtClusters};
        }
        if (mapped == null) {
            mapped = new long[0];
        }
        // Split the runs at L2 boundaries; count the L2 tables and data clusters they need.
        long[][] pieces = splitAtL2(mapped, l2Entries);
        long nData = 0;
        long nL2 = 0;
        long lastL2 = -1;
        for (long[] p : pieces[0].length == 0 ? new long[0][] : toPairs(pieces)) {
            nData += p[1] - p[0];
            long l1i = p[0] / l2Entries;
            if (l1i != lastL2) {
                nL2++;
                lastL2 = l1i;
            }
        }
        long l1Clusters = (l1Size * 8 + cs - 1) / cs;
        long perBlock = ((long) cs * 8) >>> order;
        long[] rt = refcountClusters(1 + l1Clusters + nL2 + nData, perBlock, cs);
        long blocks = rt[0];
        long tableClusters = rt[1];
        long reftOff = (long) cs;
        long blocksOff = reftOff + tableClusters * cs;
        long l1Off = l1Size == 0 ? 0 : blocksOff + blocks * cs;
        long next = blocksOff / cs + blocks + l1Clusters;
        long totalClusters = 1 + tableClusters + blocks + l1Clusters + nL2 + nData;

        // Encoded first: a header that can't be written refuses before the file is touched.
        ByteBuffer hdr = header(o, size, cb, l1Size, l1Off, reftOff, tableClusters, backingFile, backingFormat);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.READ, StandardOpenOption.TRUNCATE_EXISTING)) {
            write(ch, 0, hdr);
            // Refcount table and blocks: every cluster laid out has refcount one.
            ByteBuffer table = ByteBuffer.allocate((int) (tableClusters * cs));
            for (long b = 0; b < blocks; b++) {
                table.putLong((int) b * 8, blocksOff + b * cs);
                byte[] block = new byte[cs];
                for (long k = 0; k < perBlock; k++) {
                    long c = b * perBlock + k;
                    if (c >= totalClusters) {
                        break;
                    }
                    Qcow2Image.setRefcountIn(block, (int) k, order, 1);
                }
                write(ch, blocksOff + b * cs, ByteBuffer.wrap(block));
            }
            write(ch, reftOff, table);
            // L1, L2 tables and the data clusters behind them.
            ByteBuffer l1 = ByteBuffer.allocate((int) (l1Size * 8));
            long[][] pairs = pieces[0].length == 0 ? new long[0][] : toPairs(pieces);
            long[] gs = new long[pairs.length];
            long[] ge = new long[pairs.length];
            long[] hs = new long[pairs.length];
            ByteBuffer l2 = null;
            long curL1 = -1;
            long l2Off = 0;
            for (int i = 0; i < pairs.length; i++) {
                long l1i = pairs[i][0] / l2Entries;
                if (l1i != curL1) {
                    if (l2 != null) {
                        write(ch, l2Off, l2);
                    }
                    curL1 = l1i;
                    l2Off = next++ * cs;
                    l2 = ByteBuffer.allocate(cs);
                    l1.putLong((int) l1i * 8, l2Off | Qcow2Header.OFLAG_COPIED);
                }
                gs[i] = pairs[i][0];
                ge[i] = pairs[i][1];
                hs[i] = next;
                for (long c = pairs[i][0]; c < pairs[i][1]; c++) {
                    int j = (int) (c - l1i * l2Entries);
                    long host = next++ * cs;
                    if (o.extendedL2()) {
                        l2.putLong(j * 16, host | Qcow2Header.OFLAG_COPIED);
                        l2.putLong(j * 16 + 8, 0xffffffffL); // every subcluster allocated
                    } else {
                        l2.putLong(j * 8, host | Qcow2Header.OFLAG_COPIED);
                    }
                }
            }
            if (l2 != null) {
                write(ch, l2Off, l2);
            }
            if (l1Size > 0) {
                write(ch, l1Off, l1);
            }
            long end = next * cs;
            if (nData > 0) {
                if (o.preallocation().equals("full")) {
                    zeroFill(ch, pairs, hs, cs);
                }
                if (ch.size() < end) {
                    write(ch, end - 1, ByteBuffer.allocate(1)); // extends the file, sparse up to there
                }
            }
            ch.force(true);
            return new Layout(gs, ge, hs, cb, Math.max(end, ch.size()));
        }
    }

    /**
     * Where {@link #createCompressed} reads the guest's data from.
     */
    @FunctionalInterface
    public interface ClusterSource {
        /**
         * Fills {@code dst} with guest cluster {@code cluster} (zeros past the virtual end).
         *
         * @param cluster the guest cluster index
         * @param dst     one cluster's bytes, to be filled completely
         * @throws IOException when the source can't be read
         */
        void read(long cluster, byte[] dst) throws IOException;
    }

    /**
     * What {@link #createCompressed} wrote.
     *
     * @param compressed   clusters stored compressed
     * @param uncompressed clusters stored whole, because deflate did not shrink them
     * @param zero         clusters of zeros, left unallocated
     * @param fileSize     the image file's size in bytes
     */
    public record CompressedResult(long compressed, long uncompressed, long zero, long fileSize) {
    }

    /** Guest clusters read and compressed at once: one batch goes to the common pool. */
    private static final int COMPRESS_BATCH = 64;

    /**
     * Creates {@code file} as a qcow2 image whose data clusters are compressed, as
     * {@code qemu-img convert -c} writes them: each cluster of {@code mapped} is compressed on its
     * own (raw deflate, or one zstd frame by {@link ZstdEncoder} for compression_type=zstd) and packed byte after byte behind the metadata (a compressed cluster may straddle two
     * host clusters; each host cluster's refcount counts the compressed clusters in it). A cluster
     * that does not shrink is stored whole, and one of zeros is left unallocated (it reads as
     * zeros: there is no backing file).
     *
     * <p>The deflate stream is qemu's: raw deflate whose matches reach back at most 4 KiB,
     * because qemu inflates with a 4 KiB window ({@code inflateInit2(-12)} in
     * block/qcow2-threads.c). The JDK's Deflater has a 32 KiB window and no way to narrow it, so
     * the input is fed in 4 KiB pieces with a full flush after each, which resets the history a
     * match may reach into.
     *
     * <p>Layout: header, refcount table and blocks sized for the worst case (nothing shrinks),
     * L1, the L2 tables, then the data. Refcount blocks beyond the final end stay in place with
     * refcount one (qemu-img does the same: its table covers more than it uses). The file is
     * synced before this returns. No crash safety is claimed: like {@code qemu-img convert}, a
     * convert that stops half-way leaves a file to delete.
     *
     * @param file     the image file (replaced)
     * @param size     virtual size in bytes
     * @param o        options; zlib or zstd, no preallocation
     * @param mapped   guest cluster runs that hold data ({start, end} pairs, sorted)
     * @param src      the guest's data
     * @param progress called with the guest bytes done so far, or null
     * @return counts of the clusters as stored
     * @throws IOException when the source or the file fails
     */
    public static CompressedResult createCompressed(Path file, long size, Options o, long[] mapped, ClusterSource src,
                                                    java.util.function.LongConsumer progress) throws IOException {
        if (!o.preallocation().equals("off")) {
            throw new IllegalArgumentException("Compression and preallocation not supported at the same time");
        }
        size = (size + 511) & ~511L;
        int cs = o.clusterSize();
        int cb = Integer.numberOfTrailingZeros(cs);
        int order = Integer.numberOfTrailingZeros(o.refcountBits());
        int entryBytes = o.extendedL2() ? 16 : 8;
        int l2Entries = cs / entryBytes;
        long perL2Bytes = (long) cs * l2Entries;
        long l1Size = (size + perL2Bytes - 1) / perL2Bytes;
        if (l1Size * 8 > Qcow2Header.MAX_L1_BYTES) {
            throw new IllegalArgumentException("Image size too large for this cluster size (the L1 table would exceed 32 MiB)");
        }
        long[][] pairs = mapped == null || mapped.length == 0 ? new long[0][] : toPairs(splitAtL2(mapped, l2Entries));
        long nData = 0;
        long nL2 = 0;
        long lastL2 = -1;
        for (long[] p : pairs) {
            nData += p[1] - p[0];
            if (p[0] / l2Entries != lastL2) {
                nL2++;
                lastL2 = p[0] / l2Entries;
            }
        }
        long l1Clusters = (l1Size * 8 + cs - 1) / cs;
        long perBlock = ((long) cs * 8) >>> order;
        // More clusters than the data at worst: a compressed run may end in a cluster of its own,
        // and each batch or run of guest clusters that stores some whole may leave the tail of
        // the compressed run's last cluster unused.
        long slack = 2 + pairs.length + nData / COMPRESS_BATCH;
        long[] rt = refcountClusters(1 + l1Clusters + nL2 + nData + slack, perBlock, cs);
        long blocks = rt[0];
        long tableClusters = rt[1];
        long worst = 1 + tableClusters + blocks + l1Clusters + nL2 + nData + slack;
        if (worst > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("image too large to convert compressed (" + worst + " clusters)");
        }
        long reftOff = cs;
        long blocksOff = reftOff + tableClusters * cs;
        long l1Off = l1Size == 0 ? 0 : blocksOff + blocks * cs;
        long l2Base = blocksOff + (blocks + l1Clusters) * cs;
        long dataStart = l2Base + nL2 * cs;
        long maxRef = order == 6 ? Long.MAX_VALUE : (1L << (1 << order)) - 1;
        int[] rc = new int[(int) worst];
        java.util.Arrays.fill(rc, 0, (int) (dataStart / cs), 1);
        int shift = 62 - (cb - 8);

        ByteBuffer hdr = header(o, size, cb, l1Size, l1Off, reftOff, tableClusters, null, null);
        ByteBuffer l1 = ByteBuffer.allocate((int) (l1Size * 8));
        long compressed = 0;
        long raw = 0;
        long zero = 0;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.READ, StandardOpenOption.TRUNCATE_EXISTING)) {
            long pos = -1; // where the next compressed cluster goes, inside a cluster taken for them
            long next = dataStart; // the first cluster never used
            long end = dataStart; // the end of what was written
            long curL1 = -1;
            long l2Off = l2Base - cs;
            ByteBuffer l2 = null;
            byte[][] in = new byte[COMPRESS_BATCH][cs];
            byte[][] out = new byte[COMPRESS_BATCH][cs];
            int[] outLen = new int[COMPRESS_BATCH];
            boolean zstd = o.compressionType().equals("zstd");
            long[] guest = new long[COMPRESS_BATCH];
            for (long[] p : pairs) {
                if (p[0] / l2Entries != curL1) {
                    if (l2 != null) {
                        write(ch, l2Off, l2);
                    }
                    curL1 = p[0] / l2Entries;
                    l2Off += cs;
                    l2 = ByteBuffer.allocate(cs);
                    l1.putLong((int) curL1 * 8, l2Off | Qcow2Header.OFLAG_COPIED);
                }
                for (long c = p[0]; c < p[1]; ) {
                    int n = (int) Math.min(COMPRESS_BATCH, p[1] - c);
                    for (int i = 0; i < n; i++) {
                        guest[i] = c + i;
                        src.read(c + i, in[i]);
                    }
                    java.util.stream.IntStream.range(0, n).parallel()
                            .forEach(i -> outLen[i] = compressCluster(zstd, in[i], out[i]));
                    // Compressed clusters first, packed byte after byte from where the last
                    // batch's stopped; then the ones stored whole, each in a fresh cluster behind
                    // them (as qemu's qcow2_alloc_bytes keeps packing into its partial cluster
                    // while whole clusters are allocated past it).
                    for (int i = 0; i < n; i++) {
                        int j = (int) (guest[i] - curL1 * l2Entries);
                        int len = outLen[i];
                        if (len == ZERO_CLUSTER) {
                            zero++;
                            continue;
                        }
                        if (len == STORE_RAW) {
                            continue;
                        }
                        if (pos < 0 || (pos & (cs - 1)) == 0 || rc[(int) (pos / cs)] >= maxRef) {
                            pos = next; // a fresh cluster: none in use, or its refcount can't count one more
                            next += cs;
                        }
                        long last = (pos + len - 1) / cs;
                        if (last > pos / cs && next != (pos / cs + 1) * cs) {
                            pos = next; // the cluster after it is taken: start afresh
                            next += cs;
                            last = (pos + len - 1) / cs;
                        }
                        next = Math.max(next, (last + 1) * cs);
                        write(ch, pos, ByteBuffer.wrap(out[i], 0, len));
                        for (long h = pos / cs; h <= last; h++) {
                            rc[(int) h]++;
                        }
                        long sectors = ((pos + len - 1) >>> 9) - (pos >>> 9) + 1;
                        l2.putLong(j * entryBytes, Qcow2Header.OFLAG_COMPRESSED | pos | ((sectors - 1) << shift));
                        pos += len;
                        end = Math.max(end, (pos + 511) & ~511L);
                        compressed++;
                    }
                    for (int i = 0; i < n; i++) {
                        if (outLen[i] != STORE_RAW) {
                            continue;
                        }
                        int j = (int) (guest[i] - curL1 * l2Entries);
                        long at = next;
                        next += cs;
                        write(ch, at, ByteBuffer.wrap(in[i]));
                        rc[(int) (at / cs)] = 1;
                        l2.putLong(j * entryBytes, at | Qcow2Header.OFLAG_COPIED);
                        if (entryBytes == 16) {
                            l2.putLong(j * 16 + 8, 0xffffffffL); // every subcluster allocated
                        }
                        end = Math.max(end, at + cs);
                        raw++;
                    }
                    c += n;
                    if (progress != null) {
                        progress.accept(Math.min(size, c * cs));
                    }
                }
            }
            if (l2 != null) {
                write(ch, l2Off, l2);
            }
            if (l1Size > 0) {
                write(ch, l1Off, l1);
            }
            // qemu reads a compressed cluster's last 512-byte sector whole: the file reaches past it.
            if (ch.size() < end) {
                write(ch, end - 1, ByteBuffer.allocate(1));
            }
            ByteBuffer table = ByteBuffer.allocate((int) (tableClusters * cs));
            for (long b = 0; b < blocks; b++) {
                table.putLong((int) b * 8, blocksOff + b * cs);
                byte[] block = new byte[cs];
                for (long k = 0; k < perBlock; k++) {
                    long c = b * perBlock + k;
                    if (c >= worst) {
                        break;
                    }
                    if (rc[(int) c] != 0) {
                        Qcow2Image.setRefcountIn(block, (int) k, order, rc[(int) c]);
                    }
                }
                write(ch, blocksOff + b * cs, ByteBuffer.wrap(block));
            }
            write(ch, reftOff, table);
            write(ch, 0, hdr);
            ch.force(true);
            return new CompressedResult(compressed, raw, zero, ch.size());
        }
    }

    /** {@link #compressCluster}: the cluster is all zeros (left unallocated). */
    private static final int ZERO_CLUSTER = -1;
    /** {@link #compressCluster}: the cluster does not shrink (stored whole). */
    private static final int STORE_RAW = -2;
    /** One zstd encoder per compressing thread: its tables and buffers (about 1.6 MiB) are reused. */
    private static final ThreadLocal<ZstdEncoder> ZSTD = ThreadLocal.withInitial(ZstdEncoder::new);

    /**
     * One cluster compressed into {@code out} (one cluster long): its length, or
     * {@link #ZERO_CLUSTER} or {@link #STORE_RAW}. zstd frames must fit in cluster_size - 1
     * bytes, the output buffer qemu's {@code qcow2_co_pwritev_compressed_task} gives
     * {@code qcow2_zstd_compress}; a cluster whose frame does not is stored whole, as qemu does.
     */
    private static int compressCluster(boolean zstd, byte[] in, byte[] out) {
        boolean allZero = true;
        for (int i = 0; i < in.length && allZero; i += 8) {
            allZero = (long) LONG.get(in, i) == 0;
        }
        if (allZero) {
            return ZERO_CLUSTER;
        }
        if (zstd) {
            int n = ZSTD.get().compress(in, in.length, out, in.length - 1);
            return n < 0 ? STORE_RAW : n;
        }
        byte[] d = deflate(in);
        if (d == in) {
            return STORE_RAW;
        }
        System.arraycopy(d, 0, out, 0, d.length);
        return d.length;
    }

    /**
     * One cluster deflated with at most 4 KiB match distances (see {@link #createCompressed}):
     * {@code in} itself when it does not shrink.
     */
    private static byte[] deflate(byte[] in) {
        java.util.zip.Deflater d = new java.util.zip.Deflater(java.util.zip.Deflater.DEFAULT_COMPRESSION, true);
        try {
            // qemu stores a cluster compressed only when it fits in cluster_size - 1 bytes
            // (qcow2_co_pwritev_compressed_task); the buffer has room to notice it doesn't.
            byte[] out = new byte[in.length + 64];
            int n = 0;
            for (int off = 0; off < in.length; off += 4096) {
                d.setInput(in, off, Math.min(4096, in.length - off));
                boolean last = off + 4096 >= in.length;
                if (last) {
                    d.finish();
                }
                while (true) {
                    int k = last ? d.deflate(out, n, out.length - n)
                            : d.deflate(out, n, out.length - n, java.util.zip.Deflater.FULL_FLUSH);
                    n += k;
                    if (n >= in.length - 1) {
                        return in;
                    }
                    if (last ? d.finished() : (k < out.length - n + k && d.needsInput())) {
                        break;
                    }
                }
            }
            return java.util.Arrays.copyOf(out, n);
        } finally {
            d.end();
        }
    }

    private static final java.lang.invoke.VarHandle LONG =
            java.lang.invoke.MethodHandles.byteArrayViewVarHandle(long[].class, java.nio.ByteOrder.LITTLE_ENDIAN);

    /**
     * How many refcount blocks and refcount table clusters cover {@code others} clusters plus
     * themselves: both counts grow until they cover their own clusters too.
     *
     * @return {blocks, table clusters}
     * @throws IllegalArgumentException when the table would pass qemu's limit
     */
    private static long[] refcountClusters(long others, long perBlock, int cs) {
        long blocks = 1;
        long tableClusters = 1;
        while (true) {
            long n = others + tableClusters + blocks;
            long b = (n + perBlock - 1) / perBlock;
            long t = (b * 8 + cs - 1) / cs;
            if (b == blocks && t == tableClusters) {
                break;
            }
            blocks = Math.max(b, blocks);
            tableClusters = Math.max(t, tableClusters);
        }
        if (tableClusters * cs > Qcow2Header.MAX_REFTABLE_BYTES) {
            throw new IllegalArgumentException("Image too large for this cluster size and refcount width");
        }
        return new long[] {blocks, tableClusters};
    }

    /** Writes zeros over every data cluster laid out (preallocation=full). */
    private static void zeroFill(FileChannel ch, long[][] pairs, long[] hs, int cs)
            throws IOException {
        ByteBuffer z = ByteBuffer.allocateDirect(1 << 20);
        for (int i = 0; i < pairs.length; i++) {
            long from = hs[i] * cs;
            long to = from + (pairs[i][1] - pairs[i][0]) * cs;
            for (long p = from; p < to; ) {
                int n = (int) Math.min(z.capacity(), to - p);
                write(ch, p, z.clear().limit(n));
                p += n;
            }
        }
    }

    private static long[][] splitAtL2(long[] runs, int l2Entries) {
        java.util.ArrayList<Long> s = new java.util.ArrayList<>();
        java.util.ArrayList<Long> e = new java.util.ArrayList<>();
        for (int i = 0; i + 1 < runs.length; i += 2) {
            long a = runs[i];
            long b = runs[i + 1];
            if (i > 0 && a < runs[i - 1]) {
                throw new IllegalArgumentException("mapped runs must be sorted and not overlap");
            }
            while (a < b) {
                long lim = Math.min(b, (a / l2Entries + 1) * l2Entries);
                s.add(a);
                e.add(lim);
                a = lim;
            }
        }
        long[] sa = s.stream().mapToLong(Long::longValue).toArray();
        long[] ea = e.stream().mapToLong(Long::longValue).toArray();
        return new long[][] {sa, ea};
    }

    private static long[][] toPairs(long[][] pieces) {
        long[][] r = new long[pieces[0].length][];
        for (int i = 0; i < r.length; i++) {
            r[i] = new long[] {pieces[0][i], pieces[1][i]};
        }
        return r;
    }

    private static ByteBuffer header(Options o, long size, int cb, long l1Size, long l1Off, long reftOff,
                                     long reftClusters, String backing, String backingFmt) {
        byte[] t = new byte[FEATURES.length * Qcow2Header.FEATURE_NAME_ENTRY];
        for (int i = 0; i < FEATURES.length; i++) {
            int p = i * Qcow2Header.FEATURE_NAME_ENTRY;
            t[p] = (byte) (int) (Integer) FEATURES[i][0];
            t[p + 1] = (byte) (int) (Integer) FEATURES[i][1];
            byte[] n = ((String) FEATURES[i][2]).getBytes(StandardCharsets.US_ASCII);
            System.arraycopy(n, 0, t, p + 2, n.length);
        }
        if (o.version() == 2) {
            // No feature bits and no feature name table in version 2 (qemu writes that table for v3 only).
            Qcow2Header h = Qcow2Header.createV2(cb, size).withL1((int) l1Size, l1Off)
                    .withRefcountTable(reftOff, (int) reftClusters).withBacking(backing, backingFmt);
            try {
                return ByteBuffer.wrap(h.encode());
            } catch (Qcow2Exception e) {
                throw new IllegalArgumentException(e.getMessage());
            }
        }
        Qcow2Header h = Qcow2Header.create(cb, size, Integer.numberOfTrailingZeros(o.refcountBits()))
                .withL1((int) l1Size, l1Off)
                .withRefcountTable(reftOff, (int) reftClusters)
                .withFeatures(o.extendedL2() ? Qcow2Header.INCOMPAT_EXTL2 : 0,
                        o.lazyRefcounts() ? Qcow2Header.COMPAT_LAZY_REFCOUNTS : 0, 0)
                .withCompressionType(o.compressionType().equals("zstd")
                        ? Qcow2Header.COMPRESSION_ZSTD : Qcow2Header.COMPRESSION_DEFLATE)
                .withExtensions(List.of(new Qcow2Header.Extension(Qcow2Header.EXT_FEATURE_NAMES, t)))
                .withBacking(backing, backingFmt);
        try {
            return ByteBuffer.wrap(h.encode());
        } catch (Qcow2Exception e) {
            throw new IllegalArgumentException(e.getMessage());
        }
    }

    private static void write(FileChannel ch, long off, ByteBuffer b) throws IOException {
        ByteBuffer d = b.duplicate();
        long p = off;
        while (d.hasRemaining()) {
            p += ch.write(d, p);
        }
    }
}
