package io.biostack.layer.qcow2;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;

/**
 * {@code qemu-img check} for qcow2: walks the active L1/L2 tables, every snapshot's tables, the
 * snapshot table, the refcount structure, the bitmap directory and bitmap tables, counts in memory
 * how many references each host cluster has, and compares that with the stored refcounts, as
 * qemu's {@code qcow2_check_refcounts} (block/qcow2-refcount.c) does:
 * <ul>
 * <li>stored above counted: a <b>leak</b> (space wasted, no harm);</li>
 * <li>stored below counted: a <b>corruption</b> (a write could reuse a cluster still in use);</li>
 * <li>misaligned tables, refcount blocks outside the image, an OFLAG_COPIED bit that disagrees
 *     with a refcount of one, a compressed entry with OFLAG_COPIED: corruptions.</li>
 * </ul>
 * Repair ({@link #REPAIR_LEAKS}, {@link #REPAIR_ALL}) lowers leaked refcounts in place, raises
 * refcounts that are too low where a refcount block exists (a new refcount structure is written at
 * the end of the file where one is missing or damaged, as qemu's rebuild_refcount_structure does)
 * and fixes OFLAG_COPIED bits. Messages go to a stream, worded as qemu's.
 *
 * <p>The image must not be open elsewhere for writing while it is checked.
 */
public final class Qcow2Check {
    /** Repair leaks ({@code -r leaks}). */
    public static final int REPAIR_LEAKS = 1;
    /** Repair errors ({@code -r all} is leaks and errors). */
    public static final int REPAIR_ERRORS = 2;
    /** {@code -r all}. */
    public static final int REPAIR_ALL = REPAIR_LEAKS | REPAIR_ERRORS;

    /**
     * The outcome, with qemu's BdrvCheckResult fields (qemu-img's ImageCheck JSON names them).
     *
     * @param corruptions        errors left in the image
     * @param leaks              leaked clusters left
     * @param checkErrors        internal errors during the check (I/O errors)
     * @param corruptionsFixed   errors repaired
     * @param leaksFixed         leaks repaired
     * @param imageEndOffset     end of the last cluster in use
     * @param totalClusters      virtual size in clusters
     * @param allocatedClusters  clusters the active L1 maps
     * @param fragmentedClusters clusters not right after the one before
     * @param compressedClusters compressed clusters
     * @param failure            why the check could not finish (qemu-img: "Check failed: ..."), or null
     */
    public record Result(long corruptions, long leaks, long checkErrors, long corruptionsFixed, long leaksFixed,
                         long imageEndOffset, long totalClusters, long allocatedClusters,
                         long fragmentedClusters, long compressedClusters, String failure) {
        /**
         * The exit code qemu-img check gives this result.
         *
         * @return 2 corrupt, 3 leaks only, 1 check errors or failure, 0 clean
         */
        public int exitCode() {
            if (checkErrors > 0 || failure != null) {
                return 1;
            }
            if (corruptions > 0) {
                return 2;
            }
            return leaks > 0 ? 3 : 0;
        }
    }

    /** qemu's L1E_RESERVED_MASK (block/qcow2.h): L1 bits 0-8 and 56-62 (qcow2.rst "L1 table entry"). */
    private static final long L1E_RESERVED_MASK = 0x7f000000000001ffL;

    private final Qcow2Image img;
    private final PrintStream msg;
    private final int fix;
    private final long clusterSize;
    private long nbClusters;
    private long[] counted;
    /** The file's length when the references were counted. */
    private long fileLen;
    private long corruptions, leaks, checkErrors, corruptionsFixed, leaksFixed;
    private long allocated, fragmented, compressed, nextContiguous;
    private boolean rebuild;
    /** The last cluster with a stored or counted reference, as compare_refcounts finds it. */
    private long highest = -1;
    /** Why the check failed (qemu-img: "Check failed: ..."), or null. */
    private String failed;

    private Qcow2Check(Qcow2Image img, PrintStream msg, int fix) {
        this.img = img;
        this.msg = msg;
        this.fix = fix;
        this.clusterSize = img.clusterSize();
    }

    /**
     * Checks {@code img}, repairing what {@code fix} asks for (the image must then be open
     * writable). After a repair the image is checked again and that second result is returned, with
     * the first pass's fixed counts, as qemu-img does.
     *
     * @param img the image (not closed here)
     * @param msg where the per-cluster messages go (qemu prints them to stderr)
     * @param fix 0, {@link #REPAIR_LEAKS} or {@link #REPAIR_ALL}
     * @return the result
     * @throws IOException when the image can't be read or written
     */
    public static Result check(Qcow2Image img, PrintStream msg, int fix) throws IOException {
        Result r = new Qcow2Check(img, msg, fix).run();
        if (fix != 0 && r.failure() == null && r.checkErrors() == 0 && r.corruptions() == 0) {
            markCleanAndConsistent(img);
        }
        if (fix == 0 || r.failure() != null || (r.corruptionsFixed() == 0 && r.leaksFixed() == 0)) {
            return r;
        }
        img.sync();
        img.dropRefcountCache();
        // On the same descriptor: closing another one would release the repair's write lock while
        // the image is still open for writing (POSIX locks are per process), letting a qemu in.
        Result again = new Qcow2Check(img.reread(), msg, 0).run();
        return new Result(again.corruptions(), again.leaks(), again.checkErrors(), r.corruptionsFixed(),
                r.leaksFixed(), again.imageEndOffset(), again.totalClusters(), again.allocatedClusters(),
                again.fragmentedClusters(), again.compressedClusters(), again.failure());
    }

    /**
     * Clears the dirty and corrupt bits once a repair left no corruption, as qcow2_co_check_locked
     * does (qcow2_mark_clean, qcow2_mark_consistent): the refcounts are now right, and an image
     * still marked corrupt is one qemu (and {@link Qcow2Device}) refuse to open for writing.
     */
    private static void markCleanAndConsistent(Qcow2Image img) throws IOException {
        long bits = Qcow2Header.INCOMPAT_DIRTY | Qcow2Header.INCOMPAT_CORRUPT;
        if ((img.incompat & bits) == 0) {
            return; // also every version 2 image: its header has no feature bits
        }
        img.sync();
        ByteBuffer b = ByteBuffer.allocate(8);
        b.putLong(0, img.incompat & ~bits);
        img.write(72, b); // incompatible_features (qcow2.rst "Header", bytes 72-79)
        img.sync();
    }

    private Result run() throws IOException {
        long fileSize = img.currentFileSize();
        nbClusters = (fileSize + clusterSize - 1) / clusterSize;
        if (nbClusters > Integer.MAX_VALUE - 8) {
            throw new IOException(img.path + ": too many clusters to check in memory");
        }
        calculate();
        // As qcow2_check_refcounts: compare without fixing first (its messages), then rebuild the
        // refcount structure or fix in place, then the OFLAG_COPIED bits.
        long c0 = corruptions;
        long l0 = leaks;
        compare(0);
        if (rebuild && (fix & REPAIR_ERRORS) != 0) {
            long oldCorruptions = corruptions;
            long oldLeaks = leaks;
            rebuildRefcounts();
            img.dropRefcountCache();
            corruptions = 0;
            leaks = 0;
            rebuild = false;
            recount();
            // The old structure is leaked now: free it quietly (qemu counts what it can't as fresh leaks).
            long savedC = corruptions;
            highest = -1;
            compare(REPAIR_LEAKS);
            long fresh = leaks;
            corruptions = savedC;
            leaksFixed = 0;
            leaks = 0;
            if (corruptions < oldCorruptions) {
                corruptionsFixed += oldCorruptions - corruptions;
            }
            if (leaks < oldLeaks) {
                leaksFixed += oldLeaks - leaks;
            }
            leaks += fresh;
        } else if (fix != 0) {
            if (rebuild) {
                msg.println("ERROR need to rebuild refcount structures");
                checkErrors++;
                failed = "Input/output error";
            } else if (leaks > l0 || corruptions > c0) {
                corruptions = c0;
                leaks = l0;
                compare(fix);
            }
        }
        if (failed == null) {
            checkCopiedFlags();
        }
        long totalClusters = (img.size + clusterSize - 1) / clusterSize;
        return new Result(corruptions, leaks, checkErrors, corruptionsFixed, leaksFixed, (highest + 1) * clusterSize,
                totalClusters, allocated, fragmented, compressed, failed);
    }

    /** Counts every reference to every cluster (qemu's calculate_refcounts). */
    private void calculate() throws IOException {
        long fileSize = img.currentFileSize();
        fileLen = fileSize;
        nbClusters = (fileSize + clusterSize - 1) / clusterSize;
        // One more than the file's clusters: a region may end up to a cluster past the end (inc).
        counted = new long[(int) nbClusters + 1];
        inc(0, clusterSize); // header
        checkL1(img.l1Offset, img.l1.length, img.l1, true);
        for (Qcow2Image.Snapshot sn : img.snapshots) {
            if (sn.l1Offset() < 0 || (sn.l1Offset() & (clusterSize - 1)) != 0) {
                msg.printf("ERROR snapshot %s (%s) l1_offset=%x: L1 table is not cluster aligned; snapshot table entry corrupted%n",
                        sn.id(), sn.name(), sn.l1Offset());
                corruptions++;
                continue;
            }
            if (sn.l1Offset() + (long) sn.l1Size() * 8 > fileSize) {
                msg.printf("ERROR snapshot %s (%s) l1_offset=%x: L1 table runs past the end of the image%n",
                        sn.id(), sn.name(), sn.l1Offset());
                corruptions++;
                continue;
            }
            checkL1(sn.l1Offset(), sn.l1Size(), img.longs(sn.l1Offset(), sn.l1Size()), false);
        }
        if (img.nbSnapshots > 0) {
            inc(img.snapshotsOffset, img.snapshotTableSize());
        }
        inc(img.reftOffset, (long) img.reftClusters * clusterSize);
        if (img.cryptoOffset != 0) {
            inc(img.cryptoOffset, img.cryptoLength);
        }
        checkBitmaps();
        checkRefblocks();
    }

    private void recount() throws IOException {
        allocated = 0;
        fragmented = 0;
        compressed = 0;
        nextContiguous = 0;
        calculate();
    }

    /**
     * Counts a reference to every cluster of [offset, offset + size). A region that ends a cluster
     * or more past the end of the file is a corruption and is not counted, as qemu's
     * qcow2_inc_refcounts_imrt: counting it would size the count (and a rebuilt refcount
     * structure) by what a hostile entry asks for.
     */
    private void inc(long offset, long size) {
        if (size <= 0) {
            return;
        }
        long end = offset + size;
        if (offset < 0 || end < offset || end - fileLen >= clusterSize) {
            msg.printf("ERROR: counting reference for region exceeding the end of the file by one cluster or more:"
                    + " offset 0x%x size 0x%x%n", offset, size);
            corruptions++;
            return;
        }
        long first = offset / clusterSize;
        long last = (end - 1) / clusterSize;
        for (long c = first; c <= last; c++) {
            counted[(int) c]++;
        }
    }

    private void checkL1(long l1Off, int l1Size, long[] l1, boolean active) throws IOException {
        inc(l1Off, (long) l1Size * 8);
        for (int i = 0; i < l1Size; i++) {
            // As check_refcounts_l1: only an entry that is all zero is skipped; one with offset 0
            // and other bits set has its table walked at 0 (the header), as qemu walks it.
            if (l1[i] == 0) {
                continue;
            }
            if ((l1[i] & L1E_RESERVED_MASK) != 0) {
                msg.printf("ERROR found L1 entry with reserved bits set: %x%n", l1[i]);
                corruptions++;
            }
            long l2Off = l1[i] & Qcow2Header.OFFSET_MASK;
            inc(l2Off, clusterSize);
            if ((l2Off & (clusterSize - 1)) != 0) {
                msg.printf("ERROR l2_offset=%x: Table is not cluster aligned; L1 entry corrupted%n", l2Off);
                corruptions++;
            }
            // As qemu's check_refcounts_l1: the table is walked even where it is misaligned or past
            // the end (inc reported that; the read gives zeros there, as qemu's reads past EOF), so
            // the counts, the leaks and the exit code are the ones qemu-img check gives.
            boolean table = (l2Off & (clusterSize - 1)) == 0 && l2Off + clusterSize <= fileLen && !otherMetadata(l2Off);
            checkL2(img.longs(l2Off, (int) (clusterSize / 8)), active, table ? l2Off : -1);
        }
    }

    /**
     * Whether the cluster at {@code off} holds the header, the active L1 table, the refcount table
     * or a refcount block, the snapshot table or the bitmap directory: an L1 entry that points
     * there is corrupt, and a repair must not write into what its "table" really is (qemu's
     * qcow2_pre_write_overlap_check refuses that write).
     */
    private boolean otherMetadata(long off) throws IOException {
        long end = off + clusterSize;
        if (off < clusterSize || overlaps(off, end, img.l1Offset, (long) img.l1.length * 8)
                || overlaps(off, end, img.reftOffset, (long) img.reftClusters * clusterSize)
                || img.nbSnapshots > 0 && overlaps(off, end, img.snapshotsOffset, img.snapshotTableSize())
                || overlaps(off, end, img.bitmapDirOffset, img.bitmapDirSize)) {
            return true;
        }
        for (long r : img.refcountTable()) {
            if ((r & Qcow2Image.REFT_OFFSET_MASK) == off) {
                return true;
            }
        }
        return false;
    }

    private static boolean overlaps(long off, long end, long start, long len) {
        return len > 0 && off < start + len && start < end;
    }

    /** One L2 table's entries; {@code l2Off} is where it lies, or -1 when it is no table (nothing is written there). */
    private void checkL2(long[] l2, boolean active, long l2Off) throws IOException {
        int step = img.extendedL2() ? 2 : 1;
        nextContiguous = 0; // per L2 table, as check_refcounts_l2's local next_contiguous_offset
        boolean external = img.dataFile != null;
        for (int j = 0; j < l2.length; j += step) {
            long e = l2[j];
            if ((e & Qcow2Header.OFLAG_COMPRESSED) != 0) {
                if ((e & Qcow2Header.OFLAG_COPIED) != 0) {
                    msg.printf("ERROR: coffset=0x%x: copied flag must never be set for compressed clusters%n",
                            compressedOffset(e));
                    corruptions++;
                }
                // As check_refcounts_l2: a compressed entry in an image with a data file (which
                // holds no compressed clusters) or with subclusters allocated is a corruption and
                // not counted: its offset is no reference, and a repair that counted it raised a
                // refcount of whatever metadata cluster it points into.
                if (external) {
                    msg.printf("ERROR compressed cluster %d with data file, entry=0x%x%n",
                            j / step, e & ~Qcow2Header.OFLAG_COPIED);
                    corruptions++;
                    continue;
                }
                if (step == 2 && l2[j + 1] != 0) {
                    msg.printf("ERROR compressed cluster %d with non-zero subcluster allocation bitmap, entry=0x%x%n",
                            j / step, e & ~Qcow2Header.OFLAG_COPIED);
                    corruptions++;
                    continue;
                }
                if (active) {
                    allocated++;
                    compressed++;
                    fragmented++;
                }
                long co = compressedOffset(e);
                int csizeShift = 62 - (img.clusterBits - 8);
                long csizeMask = (1L << (img.clusterBits - 8)) - 1;
                long nbCsectors = ((e >>> csizeShift) & csizeMask) + 1;
                inc(co, nbCsectors * 512 - (co & 511));
                continue;
            }
            if ((e & Qcow2Header.L2_RESERVED_MASK) != 0) {
                // qemu's check_refcounts_l2: reported, and the entry still counted.
                msg.printf("ERROR found l2 entry with reserved bits set: %x%n", e);
                corruptions++;
            }
            long off = e & Qcow2Header.OFFSET_MASK;
            // Offset 0 is unallocated, except in an external data file where it is a cluster like
            // any other, told apart by OFLAG_COPIED (qemu's qcow2_get_cluster_type).
            if (off == 0 && !(external && (e & Qcow2Header.OFLAG_COPIED) != 0)) {
                if (step == 2 && (l2[j + 1] & 0xffffffffL) != 0) {
                    // Subclusters allocated in a cluster with no host offset: qemu reads them as
                    // QCOW2_SUBCLUSTER_INVALID (EIO) and check_refcounts_l2 reports a corruption.
                    msg.println("ERROR: Unallocated cluster has non-zero subcluster allocation map");
                    corruptions++;
                }
                continue;
            }
            if (step == 2) {
                long bm = l2[j + 1];
                if (((bm >>> 32) & bm & 0xffffffffL) != 0) {
                    msg.printf("ERROR invalid subcluster allocation bitmap, entry=0x%x%n", e);
                    corruptions++;
                }
            }
            if (active) {
                allocated++;
                if (nextContiguous != 0 && off != nextContiguous) {
                    fragmented++;
                }
                nextContiguous = off + clusterSize;
            }
            if ((off & (clusterSize - 1)) != 0) {
                // As check_refcounts_l2: reported, and still counted as a reference, except that
                // -r all makes a preallocated one (no data) a plain zero cluster and counts nothing.
                boolean data = step == 2 ? (l2[j + 1] & 0xffffffffL) != 0 : (e & Qcow2Header.OFLAG_ZERO) == 0;
                boolean repair = !data && (fix & REPAIR_ERRORS) != 0;
                msg.printf("%s offset=%x: %s cluster is not properly aligned; L2 entry corrupted.%n",
                        repair && l2Off >= 0 ? "Repairing" : "ERROR", off, data ? "Data" : "Preallocated");
                corruptions++;
                if (repair) {
                    // Only in a real table: qemu's overlap check keeps its write off the header
                    // and other metadata that a misaligned L1 entry makes it walk.
                    if (l2Off >= 0) {
                        l2[j] = step == 2 ? 0 : Qcow2Header.OFLAG_ZERO;
                        img.write(l2Off + (long) j * 8, ByteBuffer.allocate(8).putLong(0, l2[j]));
                        img.sync();
                        corruptions--;
                        corruptionsFixed++;
                    }
                    continue;
                }
            }
            if (!external) {
                inc(off, clusterSize);
            }
        }
    }

    private long compressedOffset(long e) {
        int csizeShift = 62 - (img.clusterBits - 8);
        return e & ((1L << csizeShift) - 1);
    }

    private void checkBitmaps() throws IOException {
        if (img.bitmapDirOffset == 0) {
            return;
        }
        inc(img.bitmapDirOffset, img.bitmapDirSize);
        for (Qcow2Image.Bitmap b : img.bitmaps) {
            long tOff = b.tableOffset();
            long tBytes = (long) b.tableSize() * 8;
            if (tOff < 0 || b.tableSize() < 0 || (tOff & (clusterSize - 1)) != 0
                    || tOff + tBytes > img.currentFileSize() || tBytes > Qcow2Header.MAX_L1_BYTES) {
                msg.printf("ERROR bitmap table entry of bitmap '%s' is corrupted%n", b.name());
                corruptions++;
                continue;
            }
            inc(tOff, tBytes);
            long[] t = img.longs(tOff, b.tableSize());
            for (long e : t) {
                long off = e & Qcow2Header.OFFSET_MASK;
                if (off == 0) {
                    continue;
                }
                if ((off & (clusterSize - 1)) != 0) {
                    msg.printf("ERROR bitmap data cluster is not aligned: 0x%x%n", off);
                    corruptions++;
                    continue;
                }
                inc(off, clusterSize);
            }
        }
    }

    private void checkRefblocks() throws IOException {
        long[] t = img.refcountTable();
        for (int i = 0; i < t.length; i++) {
            long off = t[i] & Qcow2Image.REFT_OFFSET_MASK;
            if (off == 0) {
                continue;
            }
            long c = off / clusterSize;
            if ((off & (clusterSize - 1)) != 0) {
                msg.printf("ERROR refcount block %d is not cluster aligned; refcount table entry corrupted%n", i);
                problem();
                continue;
            }
            if (off < 0 || c >= nbClusters) {
                msg.printf("ERROR refcount block %d is outside image%n", i);
                problem();
                continue;
            }
            inc(off, clusterSize);
            if (counted[(int) c] != 1) {
                msg.printf("ERROR refcount block %d refcount=%d%n", i, counted[(int) c]);
                problem();
            }
        }
    }

    /** A damaged refcount structure: counted as a corruption, or rebuilt under -r all. */
    private void problem() {
        if ((fix & REPAIR_ERRORS) != 0) {
            rebuild = true;
        } else {
            corruptions++;
        }
    }

    private void compare(int mode) throws IOException {
        long maxStored = img.refcountBits() == 64 ? Long.MAX_VALUE : (1L << img.refcountBits()) - 1;
        for (int i = 0; i < counted.length; i++) {
            compareOne(i, counted[i], maxStored, mode);
        }
    }

    private void compareOne(long i, long reference, long maxStored, int mode) throws IOException {
        long stored;
        try {
            stored = img.storedRefcount(i);
        } catch (IOException e) {
            msg.printf("ERROR getting refcount of cluster %d: %s%n", i, e.getMessage());
            checkErrors++;
            return;
        }
        if (stored > 0 || reference > 0) {
            highest = Math.max(highest, i);
        }
        if (stored == reference) {
            return;
        }
        boolean tooLow = stored < reference;
        boolean repair = false;
        if (stored == 0) {
            rebuild = true; // maybe no refcount block covers it: only a new structure fixes that
        } else {
            repair = tooLow ? (mode & REPAIR_ERRORS) != 0 : (mode & REPAIR_LEAKS) != 0;
        }
        msg.printf("%s cluster %d refcount=%d reference=%d%n",
                repair ? "Repairing" : tooLow ? "ERROR" : "Leaked", i, stored, reference);
        if (repair && reference <= maxStored && setStored(i, reference)) {
            if (tooLow) {
                corruptionsFixed++;
            } else {
                leaksFixed++;
            }
            return;
        }
        if (tooLow) {
            corruptions++;
        } else {
            leaks++;
        }
    }

    /** Writes a refcount in its existing block; false when no block covers the cluster. */
    private boolean setStored(long cluster, long value) throws IOException {
        int perBlockBits = img.clusterBits + 3 - img.refcountOrder;
        long idx = cluster >>> perBlockBits;
        long[] t = img.refcountTable();
        if (idx >= t.length || (t[(int) idx] & Qcow2Image.REFT_OFFSET_MASK) == 0) {
            return false;
        }
        long off = t[(int) idx] & Qcow2Image.REFT_OFFSET_MASK;
        byte[] block = img.read(off, (int) clusterSize).array();
        Qcow2Image.setRefcountIn(block, (int) (cluster & ((1L << perBlockBits) - 1)), img.refcountOrder, value);
        img.write(off, ByteBuffer.wrap(block));
        img.dropRefcountCache();
        return true;
    }

    /**
     * A stored refcount for the OFLAG_COPIED pass, or -1 when it can't be read: compare already
     * counted that as a check error, and check_oflag_copied skips the entry without a message, so
     * the check still ends with its result (and its JSON) rather than an exception.
     */
    private long refcountOrMinusOne(long cluster) {
        try {
            return img.storedRefcount(cluster);
        } catch (IOException e) {
            return -1;
        }
    }

    private void checkCopiedFlags() throws IOException {
        int step = img.extendedL2() ? 2 : 1;
        // As qemu's check_oflag_copied: -r all always repairs; -r leaks too when nothing else is
        // wrong, for the refcounts (their leaks just fixed) are then right and the flag must follow.
        boolean fixIt = (fix & REPAIR_ERRORS) != 0
                || ((fix & REPAIR_LEAKS) != 0 && checkErrors == 0 && corruptions == 0 && leaks == 0);
        long[] l1 = img.l1;
        boolean l1Dirty = false;
        for (int i = 0; i < l1.length; i++) {
            long l2Off = l1[i] & Qcow2Header.OFFSET_MASK;
            if (l2Off == 0) {
                continue;
            }
            // A misaligned or outside table's flag is checked too, as check_oflag_copied does (its
            // refcount is 0 past the refcount table): qemu counts that corruption. Its entries are
            // not: rewriting flags in a table that is not one would write into whatever is there.
            boolean table = (l2Off & (clusterSize - 1)) == 0 && l2Off + clusterSize <= img.currentFileSize();
            long rc = refcountOrMinusOne(l2Off / clusterSize);
            if (rc < 0) {
                continue;
            }
            if ((rc == 1) != ((l1[i] & Qcow2Header.OFLAG_COPIED) != 0)) {
                msg.printf("%s OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%x refcount=%d%n",
                        fixIt ? "Repairing" : "ERROR", i, l1[i], rc);
                if (fixIt) {
                    l1[i] = rc == 1 ? l1[i] | Qcow2Header.OFLAG_COPIED : l1[i] & ~Qcow2Header.OFLAG_COPIED;
                    l1Dirty = true;
                    corruptionsFixed++;
                } else {
                    corruptions++;
                }
            }
            if (!table) {
                continue;
            }
            long[] l2 = img.readL2(l2Off);
            boolean l2Dirty = false;
            for (int j = 0; j < l2.length; j += step) {
                long e = l2[j];
                long off = e & Qcow2Header.OFFSET_MASK;
                if ((e & Qcow2Header.OFLAG_COMPRESSED) != 0 || off == 0 || img.dataFile != null) {
                    continue;
                }
                long r = refcountOrMinusOne(off / clusterSize);
                if (r < 0) {
                    continue;
                }
                if ((r == 1) != ((e & Qcow2Header.OFLAG_COPIED) != 0)) {
                    msg.printf("%s OFLAG_COPIED data cluster: l2_entry=%x refcount=%d%n",
                            fixIt ? "Repairing" : "ERROR", e, r);
                    if (fixIt) {
                        l2[j] = r == 1 ? e | Qcow2Header.OFLAG_COPIED : e & ~Qcow2Header.OFLAG_COPIED;
                        l2Dirty = true;
                        corruptionsFixed++;
                    } else {
                        corruptions++;
                    }
                }
            }
            if (l2Dirty) {
                ByteBuffer b = ByteBuffer.allocate((int) clusterSize);
                b.asLongBuffer().put(l2);
                img.write(l2Off, b);
            }
        }
        if (l1Dirty) {
            ByteBuffer b = ByteBuffer.allocate(l1.length * 8);
            b.asLongBuffer().put(l1);
            img.write(img.l1Offset, b);
        }
    }

    /**
     * Writes a new refcount table and blocks after the end of the file holding the counted
     * references (and their own), then points the header at them: the old structure becomes
     * unreferenced, as qemu's rebuild_refcount_structure leaves it.
     */
    private void rebuildRefcounts() throws IOException {
        msg.println("Rebuilding refcount structure");
        int order = img.refcountOrder;
        long perBlock = (clusterSize * 8) >>> order;
        long end = counted[(int) nbClusters] != 0 ? nbClusters + 1 : nbClusters;
        long blocks;
        long tableClusters;
        long total = end;
        while (true) {
            blocks = (total + perBlock - 1) / perBlock;
            tableClusters = (blocks * 8 + clusterSize - 1) / clusterSize;
            long need = end + blocks + tableClusters;
            if (need <= total) {
                break;
            }
            total = need;
        }
        long firstNew = end;
        long[] table = new long[(int) (tableClusters * clusterSize / 8)];
        for (long b = 0; b < blocks; b++) {
            byte[] block = new byte[(int) clusterSize];
            for (long k = 0; k < perBlock; k++) {
                long c = b * perBlock + k;
                long v;
                if (c < end) {
                    v = Math.max(0, counted[(int) c]);
                } else if (c >= firstNew && c < firstNew + blocks + tableClusters) {
                    v = 1;
                } else {
                    v = 0;
                }
                if (v != 0) {
                    Qcow2Image.setRefcountIn(block, (int) k, order, v);
                }
            }
            long off = (firstNew + b) * clusterSize;
            img.write(off, ByteBuffer.wrap(block));
            table[(int) b] = off;
        }
        ByteBuffer tb = ByteBuffer.allocate(table.length * 8);
        tb.asLongBuffer().put(table);
        long tableOff = (firstNew + blocks) * clusterSize;
        img.write(tableOff, tb);
        img.sync();
        ByteBuffer h = ByteBuffer.allocate(12);
        h.putLong(0, tableOff);
        h.putInt(8, (int) tableClusters);
        img.write(48, h);
        img.sync();
        img.refcountTableMoved(tableOff, (int) tableClusters);
    }
}
