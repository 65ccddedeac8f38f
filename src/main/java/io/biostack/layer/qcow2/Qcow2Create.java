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
     * @param compat          "1.1" (version 3; version 2 is refused)
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
            if (compat.equals("0.10") || compat.equals("v2")) {
                throw new IllegalArgumentException("compat=0.10: biostack creates version 3 images only (compat=1.1); "
                        + "qemu-img create -o compat=0.10 makes version 2");
            }
            if (!compat.equals("1.1") && !compat.equals("v3")) {
                throw new IllegalArgumentException("Invalid compatibility level: '" + compat + "'");
            }
            if (extendedL2 && clusterSize < 16384) {
                throw new IllegalArgumentException("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
            }
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
        long blocks = 1;
        long tableClusters = 1;
        while (true) {
            long n = 1 + tableClusters + blocks + l1Clusters + nL2 + nData;
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
