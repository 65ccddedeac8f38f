package io.biostack.cli;

import io.biostack.block.ImageLocking;
import io.biostack.file.QemuLocks;
import io.biostack.layer.qcow2.Qcow2Header;
import io.biostack.layer.qcow2.Qcow2Image;
import io.biostack.sys.ColdCalls;
import io.biostack.sys.Fcntl;
import io.biostack.sys.Fs;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * An image file and its backing chain, opened read-only for {@code img info}, {@code map} and
 * {@code convert}: each layer is raw or qcow2, backing names resolve against the folder of the
 * image that names them (as qemu's bdrv_get_full_backing_filename), a loop in the chain is an error.
 *
 * <p>{@link #status} answers what qemu-img map's get_block_status answers: which layer a run
 * comes from (its depth), whether it is allocated there, reads as zero, holds data, and where.
 * The caller owns the chain and closes it.
 */
final class ImgChain implements AutoCloseable {
    /** Deeper chains are refused (qemu has no limit, but a loop must end somewhere). */
    static final int MAX_DEPTH = 64;

    /** One image of the chain. */
    static final class Layer {
        final String name;
        final Path path;
        final String format;
        final Qcow2Image q;
        final long size;
        /*
         * Opened on first use (map's lseek), not at open: info and check need no descriptor, and
         * each libc call linked costs a short command ~20 ms of generated classes that the AOT
         * cache cannot hold (bench/startup).
         */
        private int fd = -1;
        private final Map<Long, long[]> l2Cache = new HashMap<>();
        /** qemu's reader locks on the image, held while the chain is open (none with -U). */
        private ImageLocking.Held lock = ImageLocking.NONE;

        Layer(String name, Path path, String format, Qcow2Image q, long size) {
            this.name = name;
            this.path = path;
            this.format = format;
            this.q = q;
            this.size = size;
        }

        /** The image file's descriptor, read-only, opened on the first call. */
        int fd() throws IOException {
            if (fd < 0) {
                int r = ColdCalls.open(path.toString(), Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
                if (r < 0) {
                    throw new IOException("Could not open '" + name + "': errno " + -r);
                }
                fd = r;
            }
            return fd;
        }

        /*
         * The data extent of the file that the last hole check found (SEEK_DATA..SEEK_HOLE): the
         * clusters of an image are laid out mostly in order, so one pair of lseeks answers for
         * the clusters of a whole extent, not one lseek per cluster (16k of them in 1 GiB of 64k
         * clusters, most of a map's time while those downcalls still run interpreted).
         */
        private long dataFrom = -1;
        private long dataTo = -1;

        /** True if {@code hostAt} lies in a hole of the file (reads as zeros), as SEEK_DATA says. */
        boolean hole(long hostAt) throws IOException {
            if (hostAt >= dataFrom && hostAt < dataTo) {
                return false;
            }
            long data = Fs.nextData(ColdCalls.lseek(fd(), hostAt, Fs.SEEK_DATA), hostAt);
            if (data != hostAt) {
                return true;
            }
            long end = ColdCalls.lseek(fd(), hostAt, Fs.SEEK_HOLE);
            dataFrom = hostAt;
            dataTo = end < 0 ? hostAt + 1 : end;
            return false;
        }

        void closeFd() {
            if (fd >= 0) {
                ColdCalls.close(fd);
                fd = -1;
            }
        }

        long[] l2(long off) throws IOException {
            long[] t = l2Cache.get(off);
            if (t == null) {
                if (l2Cache.size() > 256) {
                    l2Cache.clear();
                }
                t = q.readL2(off);
                l2Cache.put(off, t);
            }
            return t;
        }
    }

    /**
     * A run with one state (qemu's MapEntry).
     *
     * @param start   guest offset
     * @param length  bytes
     * @param depth   the layer it was resolved in (0 is the top image)
     * @param present allocated in that layer
     * @param zero    reads as zeros
     * @param data    holds data
     * @param offset  host offset in that layer's file, or -1
     * @param layer   the layer it was resolved in
     * @param l2Entry the raw L2 entry for compressed clusters (else 0)
     */
    record Status(long start, long length, int depth, boolean present, boolean zero, boolean data, long offset,
                  Layer layer, long l2Entry) {
        boolean compressed() {
            return (l2Entry & Qcow2Header.OFLAG_COMPRESSED) != 0;
        }
    }

    final List<Layer> layers;

    private ImgChain(List<Layer> layers) {
        this.layers = layers;
    }

    /**
     * Opens {@code file} and its backing chain.
     *
     * @param file   the top image as the user named it
     * @param format "raw", "qcow2", or null to probe
     * @param chain  false to open only the top image
     * @return the chain; the caller closes it
     * @throws IOException when an image can't be opened, or the chain loops
     */
    static ImgChain open(String file, String format, boolean chain) throws IOException {
        return open(file, format, chain, false);
    }

    /**
     * Opens {@code file} and its backing chain, each image under qemu's reader locks unless
     * {@code forceShare}: as qemu-img info, map, check and convert without {@code -U}, an image
     * that someone writes (qemu-nbd, qemu, a biostack stack) is refused, its metadata changing
     * under the reader ("Failed to get shared "write" lock").
     *
     * @param file       the top image as the user named it
     * @param format     "raw", "qcow2", or null to probe
     * @param chain      false to open only the top image
     * @param forceShare qemu-img's -U: take no locks, read whatever the image holds now
     * @return the chain; the caller closes it
     * @throws IOException when an image can't be opened or is in use, or the chain loops
     */
    static ImgChain open(String file, String format, boolean chain, boolean forceShare) throws IOException {
        List<Layer> layers = new ArrayList<>();
        Set<Path> seen = new HashSet<>();
        String name = file;
        String fmt = format;
        try {
            while (name != null) {
                Path p = Path.of(name);
                if (!Files.exists(p)) {
                    throw new IOException("Could not open '" + name + "': No such file or directory");
                }
                if (!seen.add(p.toRealPath())) {
                    throw new IOException("Backing file '" + name + "' loops back into the chain");
                }
                if (layers.size() >= MAX_DEPTH) {
                    throw new IOException("backing chain deeper than " + MAX_DEPTH);
                }
                if (fmt == null) {
                    fmt = Qcow2Image.probe(p) ? "qcow2" : "raw";
                }
                ImageLocking.Held lock = forceShare ? ImageLocking.NONE : QemuLocks.onFile(p, false);
                Layer l;
                try {
                    l = switch (fmt) {
                        case "qcow2" -> {
                            Qcow2Image q = Qcow2Image.open(p, false);
                            yield new Layer(name, p, fmt, q, q.size);
                        }
                        case "raw" -> new Layer(name, p, fmt, null, rawSize(p));
                        default -> throw new IOException("Unknown format '" + fmt + "' (raw or qcow2)");
                    };
                } catch (IOException | RuntimeException e) {
                    lock.close();
                    throw e;
                }
                l.lock = lock;
                layers.add(l);
                if (!chain || l.q == null || l.q.backingFile == null) {
                    break;
                }
                name = fullBackingName(name, l.q.backingFile);
                fmt = l.q.backingFormat;
            }
        } catch (IOException | RuntimeException e) {
            new ImgChain(layers).close();
            throw e;
        }
        return new ImgChain(layers);
    }

    /** qemu's BDRV_SECTOR_SIZE (include/block/block-common.h): qemu sizes every disk in these. */
    static final long SECTOR = 512;

    /**
     * A raw image's size: a block device's st_size is 0 (Files.size says so), and FileChannel's
     * size asks the device (BLKGETSIZE64) as qemu's raw driver does. A file whose size is not a
     * whole number of sectors is, to qemu, one sector more (block.c bdrv_refresh_total_sectors:
     * DIV_ROUND_UP(length, BDRV_SECTOR_SIZE)), its tail past the end of the file reading as zeros:
     * info, map and convert say and copy that size.
     */
    private static long rawSize(Path p) throws IOException {
        long bytes;
        if (Files.isRegularFile(p)) {
            bytes = Files.size(p);
        } else {
            try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(p)) {
                bytes = ch.size();
            }
        }
        return (bytes + SECTOR - 1) / SECTOR * SECTOR;
    }

    /** qemu's path_combine: a relative backing name is relative to the image's folder. */
    static String fullBackingName(String image, String backing) {
        if (backing.startsWith("/") || backing.contains("://")) {
            return backing;
        }
        int slash = image.lastIndexOf('/');
        return slash < 0 ? backing : image.substring(0, slash + 1) + backing;
    }

    Layer top() {
        return layers.get(0);
    }

    long size() {
        return top().size;
    }

    /**
     * The state of the run at {@code off}, at most {@code max} bytes, through the chain.
     *
     * @param off guest offset, below {@link #size()}
     * @param max longest run wanted
     * @return the run
     * @throws IOException on a metadata read error or a damaged table
     */
    Status status(long off, long max) throws IOException {
        max = Math.min(max, size() - off);
        for (int d = 0; d < layers.size(); d++) {
            Layer l = layers.get(d);
            Status s = layerStatus(l, d, off, max);
            if (s.present()) {
                return s;
            }
            max = s.length();
            boolean last = d + 1 == layers.size() || l.q == null || l.q.backingFile == null;
            if (last) {
                return new Status(off, max, d, false, true, false, -1, l, 0);
            }
            Layer below = layers.get(d + 1);
            if (off >= below.size) {
                return new Status(off, max, d, false, true, false, -1, l, 0);
            }
            max = Math.min(max, below.size - off);
        }
        throw new IllegalStateException("unreachable");
    }

    private static Status layerStatus(Layer l, int d, long off, long max) throws IOException {
        if (l.q == null) {
            return rawStatus(l, d, off, max);
        }
        Qcow2Image q = l.q;
        int cb = q.clusterBits;
        long cs = 1L << cb;
        boolean ext = q.extendedL2();
        long unit = ext ? cs / 32 : cs;
        long runEnd = Math.min(off + max, (off / unit + 1) * unit);
        long len = runEnd - off;
        long cluster = off >>> cb;
        long l1i = cluster / q.l2Entries();
        if (l1i >= q.l1.length) {
            throw new IOException(l.name + ": L1 index " + l1i + " beyond the L1 table");
        }
        long l2Off = q.l1[(int) l1i] & Qcow2Header.OFFSET_MASK;
        if (l2Off == 0) {
            long l2End = (l1i + 1) * q.l2Entries() * cs;
            return new Status(off, Math.min(off + max, l2End) - off, d, false, false, false, -1, l, 0);
        }
        long[] l2 = l.l2(l2Off);
        int j = (int) (cluster % q.l2Entries());
        long e = ext ? l2[j * 2] : l2[j];
        long host = e & Qcow2Header.OFFSET_MASK;
        if ((e & Qcow2Header.OFLAG_COMPRESSED) != 0) {
            long cEnd = Math.min(off + max, (cluster + 1) * cs);
            return new Status(off, cEnd - off, d, true, false, true, -1, l, e);
        }
        boolean zero;
        boolean alloc;
        if (ext) {
            long bm = l2[j * 2 + 1];
            int sc = (int) ((off & (cs - 1)) / unit);
            alloc = ((bm >>> sc) & 1) != 0;
            zero = ((bm >>> (32 + sc)) & 1) != 0;
        } else {
            zero = q.version >= 3 && (e & Qcow2Header.OFLAG_ZERO) != 0;
            alloc = host != 0 && !zero;
        }
        long hostAt = host == 0 ? -1 : host + (off & (cs - 1));
        if (zero) {
            return new Status(off, len, d, true, true, false, hostAt, l, 0);
        }
        if (alloc) {
            if ((host & (cs - 1)) != 0) {
                throw new IOException(l.name + ": cluster offset 0x" + Long.toHexString(host) + " is not aligned");
            }
            // As qemu's bdrv_co_block_status: data whose host range is a hole in the file reads as zeros.
            boolean hole = hostAt >= l.q.fileSize || l.hole(hostAt);
            return new Status(off, len, d, true, hole, true, hostAt, l, 0);
        }
        return new Status(off, len, d, false, false, false, -1, l, 0);
    }

    private static Status rawStatus(Layer l, int d, long off, long max) throws IOException {
        long data = Fs.nextData(ColdCalls.lseek(l.fd(), off, Fs.SEEK_DATA), off);
        if (data == off) {
            long hole = ColdCalls.lseek(l.fd(), off, Fs.SEEK_HOLE);
            long end = hole < 0 ? off + max : Math.min(hole, off + max);
            return new Status(off, end - off, d, true, false, true, off, l, 0);
        }
        long end = Math.min(data, off + max);
        return new Status(off, end - off, d, true, true, false, off, l, 0);
    }

    @Override
    public void close() {
        for (Layer l : layers) {
            l.closeFd();
            if (l.q != null) {
                try {
                    l.q.close();
                } catch (IOException ignored) {
                    // read-only: nothing to lose
                }
            }
            l.lock.close();
        }
    }
}
