package io.biostack.replay;

import io.biostack.file.FileClone;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Whether a crash state's file system journal has anything to replay, so that {@code --recover}
 * (journal recovery, {@code e2fsck -E journal_only -y}) runs only on states that need it.
 *
 * <p>Knows ext3/ext4 with an internal jbd2 journal: the journal is clean when the super block
 * does not have {@code needs_recovery} ({@code EXT3_FEATURE_INCOMPAT_RECOVER}), or when the
 * journal's own super block says the log is empty ({@code s_start == 0}, jbd2's "journal is
 * clean", fs/jbd2/journal.c {@code jbd2_mark_journal_empty}). Anything else (another file system,
 * a journal this code cannot find, a layout it does not know) is {@link #DIRTY}: recovery runs,
 * as it would without this check. Offsets are those of e2fsprogs' {@code lib/ext2fs/ext2_fs.h}
 * and {@code lib/ext2fs/kernel-jbd.h}.
 */
enum JournalState {
    /** Nothing to replay: recovery would change nothing the check looks at. */
    CLEAN,
    /** Recovery may change the state (or this code cannot tell). */
    DIRTY;

    // ext2_super_block, at byte 1024 of the device (ext2_fs.h)
    static final int SUPER_OFFSET = 1024;
    static final int S_LOG_BLOCK_SIZE = 0x18;
    static final int S_MAGIC = 0x38;
    static final int S_INODE_SIZE = 0x58;
    static final int S_FEATURE_COMPAT = 0x5C;
    static final int S_FEATURE_INCOMPAT = 0x60;
    static final int S_JOURNAL_INUM = 0xE0;
    static final int S_JOURNAL_DEV = 0xE4;
    static final int S_DESC_SIZE = 0xFE;
    static final int S_FIRST_DATA_BLOCK = 0x14;
    static final int S_INODES_PER_GROUP = 0x28;
    static final int EXT2_SUPER_MAGIC = 0xEF53;
    static final int COMPAT_HAS_JOURNAL = 0x0004;
    static final int INCOMPAT_RECOVER = 0x0004;
    static final int INCOMPAT_64BIT = 0x0080;
    // ext4_group_desc: bg_inode_table_lo/hi
    static final int BG_INODE_TABLE_LO = 0x08;
    static final int BG_INODE_TABLE_HI = 0x28;
    // ext2_inode: i_flags, i_block
    static final int I_FLAGS = 0x20;
    static final int I_BLOCK = 0x28;
    static final int EXT4_EXTENTS_FL = 0x80000;
    static final int EXT4_EXT_MAGIC = 0xF30A;
    // journal_superblock_t, big-endian (kernel-jbd.h)
    static final int JBD2_MAGIC = 0xC03B3998;
    static final int JS_START = 0x1C;

    private static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort LE16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /**
     * Reads the state's journal state.
     *
     * @param f the state (a scratch copy), read only
     * @param size the state's size in bytes; nothing past it is read
     * @param buf native memory of at least 4 KiB, owned by the caller
     * @return CLEAN when the journal has nothing to replay, else DIRTY
     * @throws IOException on a read error
     */
    static JournalState of(FileClone f, long size, MemorySegment buf) throws IOException {
        if (size < SUPER_OFFSET + 1024) {
            return DIRTY;
        }
        f.read(buf, 1024, SUPER_OFFSET);
        if ((buf.get(LE16, S_MAGIC) & 0xFFFF) != EXT2_SUPER_MAGIC) {
            return DIRTY;
        }
        int incompat = buf.get(LE32, S_FEATURE_INCOMPAT);
        if ((buf.get(LE32, S_FEATURE_COMPAT) & COMPAT_HAS_JOURNAL) == 0 || (incompat & INCOMPAT_RECOVER) == 0) {
            return CLEAN;
        }
        int logBs = buf.get(LE32, S_LOG_BLOCK_SIZE);
        int inum = buf.get(LE32, S_JOURNAL_INUM);
        int ipg = buf.get(LE32, S_INODES_PER_GROUP);
        int isz = buf.get(LE16, S_INODE_SIZE) & 0xFFFF;
        long first = buf.get(LE32, S_FIRST_DATA_BLOCK) & 0xFFFFFFFFL;
        boolean is64 = (incompat & INCOMPAT_64BIT) != 0;
        int descSize = is64 ? buf.get(LE16, S_DESC_SIZE) & 0xFFFF : 32;
        if (logBs < 0 || logBs > 6 || buf.get(LE32, S_JOURNAL_DEV) != 0 || inum <= 0 || ipg <= 0
                || isz < 128 || isz > 1024 || descSize < 32 || descSize > 1024) {
            return DIRTY; // an external journal, or values this code does not trust
        }
        long bs = 1024L << logBs;
        if (bs > buf.byteSize()) {
            return DIRTY;
        }
        long group = (inum - 1) / ipg;
        long index = (inum - 1) % ipg;
        long gdt = (first + 1) * bs + group * descSize;
        if (gdt + descSize > size) {
            return DIRTY;
        }
        f.read(buf, descSize, gdt);
        long table = buf.get(LE32, BG_INODE_TABLE_LO) & 0xFFFFFFFFL;
        if (is64 && descSize >= 64) {
            table |= (buf.get(LE32, BG_INODE_TABLE_HI) & 0xFFFFFFFFL) << 32;
        }
        long inodeAt = table * bs + index * isz;
        if (inodeAt + 128 > size) {
            return DIRTY;
        }
        f.read(buf, 128, inodeAt);
        long block0 = firstBlock(buf);
        if (block0 <= 0 || (block0 + 1) * bs > size) {
            return DIRTY;
        }
        f.read(buf, 1024, block0 * bs);
        if (buf.get(BE32, 0) != JBD2_MAGIC) {
            return DIRTY;
        }
        return buf.get(BE32, JS_START) == 0 ? CLEAN : DIRTY;
    }

    /** The physical block of the journal inode's logical block 0, or -1 when not found simply. */
    private static long firstBlock(MemorySegment inode) {
        int flags = inode.get(LE32, I_FLAGS);
        if ((flags & EXT4_EXTENTS_FL) == 0) {
            return inode.get(LE32, I_BLOCK) & 0xFFFFFFFFL; // i_block[0], the first direct block
        }
        // ext4_extent_header, then (depth 0) ext4_extent {ee_block, ee_len, ee_start_hi, ee_start_lo}
        if ((inode.get(LE16, I_BLOCK) & 0xFFFF) != EXT4_EXT_MAGIC || inode.get(LE16, I_BLOCK + 2) == 0
                || inode.get(LE16, I_BLOCK + 6) != 0) {
            return -1;
        }
        int e = I_BLOCK + 12;
        if (inode.get(LE32, e) != 0) {
            return -1;
        }
        long hi = inode.get(LE16, e + 6) & 0xFFFF;
        long lo = inode.get(LE32, e + 8) & 0xFFFFFFFFL;
        return hi << 32 | lo;
    }
}
