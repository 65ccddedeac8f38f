package io.biostack.layer.part;

import io.biostack.block.BlockDevice;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import io.biostack.layer.Linear;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.zip.CRC32;

/**
 * Finds the partitions of a disk the way the kernel's partition scanners do (block/partitions/
 * msdos.c and efi.c, then block/partitions/core.c {@code blk_add_partitions}) and makes a
 * {@link Linear} device of each, named as {@code losetup -P} names them.
 *
 * <h2>MBR (msdos.c)</h2>
 * <pre>
 * sector 0:  446  4 entries of 16 bytes       510  0x55 0xaa
 * entry:       0  status (0x00 or 0x80)         4  type        8  start LBA (le32)
 *                                                             12  sectors (le32)
 * </pre>
 * Primaries are 1-4. An extended entry (type 0x05, 0x0f, 0x85) appears as a 2-sector device, as
 * the kernel shows it, and leads to a chain of extended boot records (EBRs): each has the MBR's
 * layout, its data entries relative to the EBR itself (logical partitions 5, 6, ...) and one
 * extended entry, relative to the start of the extended partition, linking to the next EBR.
 * A type 0xee entry means a protective MBR: the disk is GPT.
 *
 * <h2>GPT (UEFI 2.x chapter 5.3, efi.c)</h2>
 * <pre>
 * header at LBA 1 (backup at the last LBA), little-endian:
 *   0 signature "EFI PART"   8 revision   12 header size   16 header CRC32 (over header size
 *   bytes, this field zero)  24 my LBA    32 alternate LBA 40 first usable LBA
 *  48 last usable LBA        56 disk GUID 72 entries LBA   80 number of entries
 *  84 entry size (128)       88 entries CRC32
 * entry:  0 type GUID  16 unique GUID  32 first LBA  40 last LBA (inclusive)  48 attributes
 *        56 name (UTF-16LE, 72 bytes)
 * </pre>
 * A header is used only when its signature, both CRCs, its own LBA and its usable range check
 * out; a bad primary falls back to the backup, with a warning. Entries with a zero type GUID are
 * unused; entries that end past the disk are skipped.
 *
 * <p>LBAs count the disk's logical blocks. As the kernel does, a partition that starts past the
 * end of the disk is dropped and one that runs past it is truncated, each with a warning.
 *
 * <p>Scanning reads the disk synchronously: call it when setting up, not on the I/O path.
 */
public final class Partitions {
    /** The kernel's limit on partitions per disk ({@code DISK_MAX_PARTS}). */
    public static final int MAX_PARTS = 256;

    private static final int MBR_ENTRIES = 446;
    private static final int MBR_ENTRY_SIZE = 16;
    private static final int MBR_SIGNATURE = 510;
    private static final int TYPE_GPT_PROTECTIVE = 0xee;

    private static final long GPT_SIGNATURE = 0x5452415020494645L; // "EFI PART" little-endian
    private static final int GPT_MIN_HEADER = 92;
    private static final int GPT_ENTRY_SIZE = 128;
    private static final int GPT_MAX_ENTRIES_BYTES = 1 << 20;

    private Partitions() {
    }

    /**
     * The partitions of {@code disk}, by number; empty when it has no partition table.
     *
     * @param disk the whole disk to read the table from (read, never written)
     * @return the partitions in number order; an empty list when the disk has no MBR or GPT
     * @throws PartitionException when the table is damaged or reading it fails
     */
    public static List<Partition> scan(BlockDevice disk) {
        return read(disk).partitions();
    }

    /**
     * One {@link Linear} device per partition, named {@code <disk>p<N>} as {@code losetup -P}
     * names them. They do not own {@code disk}.
     *
     * @param disk the whole disk; the caller keeps owning it and closes it after the partitions
     * @return one device per partition, in number order
     * @throws PartitionException when the table is damaged or reading it fails
     */
    public static List<Linear> devices(BlockDevice disk) {
        List<Linear> out = new ArrayList<>();
        for (Partition p : scan(disk)) {
            out.add(new Linear(p.deviceName(disk.name()), disk, p.startBytes(), p.lengthBytes()));
        }
        return out;
    }

    /**
     * The device for partition {@code number} of {@code disk}.
     *
     * @param disk the whole disk; the caller keeps owning it
     * @param number the partition's number as the kernel counts it (1 and up)
     * @return a window of {@code disk} over the partition
     * @throws PartitionException when there is no such partition, or the table can't be read
     */
    public static Linear device(BlockDevice disk, int number) {
        for (Partition p : scan(disk)) {
            if (p.number() == number) {
                return new Linear(p.deviceName(disk.name()), disk, p.startBytes(), p.lengthBytes());
            }
        }
        throw new PartitionException(disk.name() + " has no partition " + number);
    }

    /**
     * The table on {@code disk}: its scheme, its partitions and what was odd about it.
     *
     * @param disk the whole disk to read the table from
     * @return the table found, scheme "none" with no partitions when the disk has none
     * @throws PartitionException when the table is damaged or reading it fails
     */
    public static PartitionTable read(BlockDevice disk) {
        Scan s = new Scan(disk);
        int lbs = disk.limits().logicalBlockSize();
        if (disk.size() < 2L * lbs) {
            return new PartitionTable("none", List.of(), List.of());
        }
        byte[] mbr = s.readBlock(0);
        if (u16(mbr, MBR_SIGNATURE) != 0xaa55 || !bootFlagsValid(mbr)) {
            return new PartitionTable("none", List.of(), List.of());
        }
        String scheme;
        if (hasProtectiveEntry(mbr)) {
            scheme = "gpt";
            s.gpt();
        } else {
            scheme = "mbr";
            s.mbr(mbr);
        }
        return new PartitionTable(scheme, s.clip(), s.warnings);
    }

    // ---- MBR -----------------------------------------------------------------------------------

    private static boolean bootFlagsValid(byte[] sector) {
        for (int i = 0; i < 4; i++) {
            int status = sector[MBR_ENTRIES + i * MBR_ENTRY_SIZE] & 0xff;
            if (status != 0 && status != 0x80) {
                return false; // a boot sector without a partition table (msdos.c checks the same)
            }
        }
        return true;
    }

    private static boolean hasProtectiveEntry(byte[] mbr) {
        for (int i = 0; i < 4; i++) {
            if (type(mbr, i) == TYPE_GPT_PROTECTIVE) {
                return true;
            }
        }
        return false;
    }

    private static int type(byte[] sector, int entry) {
        return sector[MBR_ENTRIES + entry * MBR_ENTRY_SIZE + 4] & 0xff;
    }

    private static long startLba(byte[] sector, int entry) {
        return u32(sector, MBR_ENTRIES + entry * MBR_ENTRY_SIZE + 8);
    }

    private static long sectors(byte[] sector, int entry) {
        return u32(sector, MBR_ENTRIES + entry * MBR_ENTRY_SIZE + 12);
    }

    private static boolean isExtended(int type) {
        return type == 0x05 || type == 0x0f || type == 0x85;
    }

    private static String mbrType(int type) {
        return String.format(Locale.ROOT, "0x%02x", type);
    }

    // ---- byte helpers --------------------------------------------------------------------------

    private static int u16(byte[] b, int off) {
        return (b[off] & 0xff) | (b[off + 1] & 0xff) << 8;
    }

    private static long u32(byte[] b, int off) {
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getInt(off) & 0xffffffffL;
    }

    private static long u64(byte[] b, int off) {
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getLong(off);
    }

    /** A GUID as text: the first three fields are little-endian on disk, the rest big-endian. */
    static String guid(byte[] b, int off) {
        return String.format(Locale.ROOT, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                u32(b, off), u16(b, off + 4), u16(b, off + 6), b[off + 8], b[off + 9], b[off + 10], b[off + 11],
                b[off + 12], b[off + 13], b[off + 14], b[off + 15]);
    }

    private static boolean allZero(byte[] b, int off, int len) {
        for (int i = 0; i < len; i++) {
            if (b[off + i] != 0) {
                return false;
            }
        }
        return true;
    }

    /** One scan of one disk: what it found so far and its warnings. */
    private static final class Scan {
        final BlockDevice disk;
        final int lbs;
        final long lastLba;
        final List<Partition> found = new ArrayList<>();
        final List<String> warnings = new ArrayList<>();

        Scan(BlockDevice disk) {
            this.disk = disk;
            this.lbs = disk.limits().logicalBlockSize();
            this.lastLba = disk.size() / lbs - 1;
        }

        byte[] readBlock(long lba) {
            return readBytes(lba * lbs, lbs);
        }

        byte[] readBytes(long offset, int len) {
            byte[] b = new byte[len];
            try {
                disk.read(offset, MemorySegment.ofArray(b)).get();
            } catch (ExecutionException e) {
                throw new PartitionException("reading " + len + " bytes at " + offset + " of " + disk.name()
                        + " failed: " + e.getCause().getMessage(), e.getCause());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new PartitionException("interrupted while reading " + disk.name(), e);
            }
            return b;
        }

        void put(int number, long startLba, long lbas, String type) {
            found.add(new Partition(number, startLba * lbs, lbas * lbs, type));
        }

        // ---- MBR ----

        void mbr(byte[] mbr) {
            for (int i = 0; i < 4; i++) {
                long start = startLba(mbr, i);
                long size = sectors(mbr, i);
                int type = type(mbr, i);
                // msdos.c skips an entry without sectors only: one of type 0 with sectors is a
                // partition (partx shows it too), and skipping it would renumber the logical ones
                if (size == 0) {
                    continue;
                }
                if (isExtended(type)) {
                    // the kernel shows the container as a tiny device: 2 sectors, or 1 block
                    long n = Math.min(size, Math.max(1, 1024 / lbs));
                    put(i + 1, start, n, mbrType(type));
                    extended(start, size);
                } else {
                    put(i + 1, start, size, mbrType(type));
                }
            }
        }

        /** Follows the EBR chain of the extended partition at {@code first} ({@code parse_extended}). */
        void extended(long first, long firstSize) {
            int next = 5;
            long thisLba = first;
            long thisSize = firstSize;
            Set<Long> seen = new HashSet<>();
            while (true) {
                if (next > MAX_PARTS) {
                    warnings.add(disk.name() + ": more than " + MAX_PARTS + " partitions; the rest are ignored");
                    return;
                }
                if (!seen.add(thisLba)) {
                    warnings.add(disk.name() + ": the extended partition's EBR chain loops back to LBA "
                            + thisLba + "; logical partitions after it are ignored");
                    return;
                }
                if (thisLba > lastLba) {
                    warnings.add(disk.name() + ": EBR at LBA " + thisLba + " is beyond the end of the disk;"
                            + " logical partitions from " + next + " on are ignored");
                    return;
                }
                byte[] ebr = readBlock(thisLba);
                if (u16(ebr, MBR_SIGNATURE) != 0xaa55) {
                    warnings.add(disk.name() + ": EBR at LBA " + thisLba + " has no 0x55aa signature;"
                            + " logical partitions from " + next + " on are ignored");
                    return;
                }
                for (int i = 0; i < 4; i++) {
                    long offs = startLba(ebr, i);
                    long size = sectors(ebr, i);
                    int type = type(ebr, i);
                    if (size == 0 || isExtended(type)) {
                        continue;
                    }
                    // msdos.c: the 3rd and 4th entries of an EBR sometimes hold garbage; one is
                    // taken only when it lies within its EBR's link and, whole, within the
                    // extended partition (next + size > first_sector + first_size)
                    if (i >= 2 && (offs + size > thisSize || thisLba + offs + size > first + firstSize)) {
                        continue;
                    }
                    put(next++, thisLba + offs, size, mbrType(type));
                }
                int link = -1;
                for (int i = 0; i < 4; i++) {
                    if (sectors(ebr, i) != 0 && isExtended(type(ebr, i))) {
                        link = i;
                        break;
                    }
                }
                if (link < 0) {
                    return;
                }
                thisLba = first + startLba(ebr, link);
                thisSize = sectors(ebr, link);
            }
        }

        // ---- GPT ----

        void gpt() {
            byte[] primary = readBlock(1);
            String bad = checkGptHeader(primary, 1);
            byte[] header = primary;
            if (bad != null) {
                long alt = lastLba;
                byte[] backup = readBlock(alt);
                String badBackup = checkGptHeader(backup, alt);
                if (badBackup != null) {
                    throw new PartitionException(disk.name() + " has a protective MBR but no valid GPT: primary header "
                            + bad + "; backup header at LBA " + alt + " " + badBackup);
                }
                warnings.add(disk.name() + ": primary GPT header " + bad + "; using the backup at LBA " + alt);
                header = backup;
            } else {
                long alt = u64(primary, 32);
                if (alt != lastLba) {
                    warnings.add(disk.name() + ": the backup GPT header is not at the end of the disk (LBA " + alt
                            + " instead of " + lastLba + ")");
                }
            }
            byte[] entries = entries(header);
            int count = (int) u32(header, 80);
            for (int i = 0; i < count && i < MAX_PARTS; i++) {
                int o = i * GPT_ENTRY_SIZE;
                if (allZero(entries, o, 16)) {
                    continue;
                }
                long firstLba = u64(entries, o + 32);
                long endLba = u64(entries, o + 40);
                if (firstLba > lastLba || endLba > lastLba || endLba < firstLba) {
                    warnings.add(disk.name() + ": GPT entry " + (i + 1) + " [LBA " + firstLba + ", " + endLba
                            + "] does not fit the disk (last LBA " + lastLba + "); skipped");
                    continue;
                }
                put(i + 1, firstLba, endLba - firstLba + 1, guid(entries, o));
            }
        }

        /** Null when {@code h}, read at {@code lba}, is a valid GPT header; else what is wrong with it. */
        String checkGptHeader(byte[] h, long lba) {
            if (u64(h, 0) != GPT_SIGNATURE) {
                return "has no 'EFI PART' signature";
            }
            long size = u32(h, 12);
            if (size < GPT_MIN_HEADER || size > lbs) {
                return "has a bad size " + size;
            }
            long crc = u32(h, 16);
            byte[] copy = h.clone();
            copy[16] = copy[17] = copy[18] = copy[19] = 0;
            CRC32 c = new CRC32();
            c.update(copy, 0, (int) size);
            if (c.getValue() != crc) {
                return "fails its CRC32 check";
            }
            if (u64(h, 24) != lba) {
                return "says it is at LBA " + u64(h, 24) + " but was read at LBA " + lba;
            }
            long firstUsable = u64(h, 40);
            long lastUsable = u64(h, 48);
            if (Long.compareUnsigned(firstUsable, lastLba) > 0 || Long.compareUnsigned(lastUsable, lastLba) > 0
                    || Long.compareUnsigned(lastUsable, firstUsable) < 0) {
                return "has usable LBAs " + firstUsable + "-" + lastUsable + " outside the disk (last LBA "
                        + lastLba + ")";
            }
            long entrySize = u32(h, 84);
            long count = u32(h, 80);
            if (entrySize != GPT_ENTRY_SIZE) {
                return "has " + entrySize + "-byte entries (only " + GPT_ENTRY_SIZE + " is supported)";
            }
            if (count * entrySize > GPT_MAX_ENTRIES_BYTES) {
                return "claims " + count + " entries";
            }
            long entriesLba = u64(h, 72);
            long entriesEnd = entriesLba + (count * entrySize + lbs - 1) / lbs - 1;
            if (entriesLba < 1 || entriesLba > lastLba || entriesEnd > lastLba) {
                return "puts its entries at LBA " + entriesLba + ", outside the disk";
            }
            byte[] e = entries(h);
            CRC32 ec = new CRC32();
            ec.update(e, 0, (int) (count * entrySize));
            if (ec.getValue() != u32(h, 88)) {
                return "has entries that fail their CRC32 check";
            }
            return null;
        }

        byte[] entries(byte[] h) {
            long count = u32(h, 80);
            long bytes = count * GPT_ENTRY_SIZE;
            int blocks = (int) ((bytes + lbs - 1) / lbs);
            return readBytes(u64(h, 72) * lbs, Math.max(blocks, 1) * lbs);
        }

        /** blk_add_partitions: drop what starts past the end, truncate what runs past it. */
        List<Partition> clip() {
            long cap = disk.size();
            List<Partition> out = new ArrayList<>();
            for (Partition p : found) {
                if (p.startBytes() >= cap) {
                    warnings.add(disk.name() + ": p" + p.number() + " start " + p.startBytes()
                            + " is beyond the end of the disk (" + cap + " bytes); ignored");
                    continue;
                }
                if (p.lengthBytes() > cap - p.startBytes()) {
                    warnings.add(disk.name() + ": p" + p.number() + " size " + p.lengthBytes()
                            + " extends beyond the end of the disk; truncated to " + (cap - p.startBytes()));
                    p = new Partition(p.number(), p.startBytes(), cap - p.startBytes(), p.type());
                }
                out.add(p);
            }
            out.sort(Comparator.comparingInt(Partition::number));
            return out;
        }
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The leaf table line {@code partition DEV N}: partition N of the table on DEV, as
     * {@code losetup -P} shows it ({@code DEVpN}), a window as the kernel's partitions are.
     *
     * @param a the line's arguments
     * @return the spec, to open once DEV is
     */
    public static TableSpec parseTable(TableArgs a) {
        String disk = a.dev("DEV");
        long n = a.number("partition number");
        a.end();
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(disk);
            for (Partition p : scan(d)) {
                if (p.number() == n) {
                    return new Linear(name, d, p.startBytes(), p.lengthBytes());
                }
            }
            throw new IllegalArgumentException(disk + " has no partition " + n);
        });
    }
}
