package io.biostack.layer.logwrites;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * dm-log-writes' on-disk format, as a flyweight over memory: the kernel's
 * {@code drivers/md/dm-log-writes.c} ({@code struct log_write_super}, {@code struct
 * log_write_entry}, the {@code LOG_*_FLAG} bits) and the same constants in xfstests'
 * {@code src/log-writes/log-writes.h}; described in
 * {@code Documentation/admin-guide/device-mapper/log-writes.rst}. Every field is little-endian
 * ({@code __le64}, {@code __le32}).
 *
 * <pre>
 * byte 0                         one "sector" = the logged device's logical block size (sectorsize)
 * +----------------------------+
 * | super block                |  sector 0 (WRITE_LOG_SUPER_SECTOR)
 * |  0 magic      u64          |    0x6a736677736872 (WRITE_LOG_MAGIC)
 * |  8 version    u64          |    1 (WRITE_LOG_VERSION)
 * | 16 nr_entries u64          |    entries that follow and are complete
 * | 24 sectorsize u32          |    bytes per sector in this log (512, 4096, ...)
 * | 28 zeros to the sector end |
 * +----------------------------+  byte sectorsize: entry 0
 * | entry                      |  one whole sector each
 * |  0 sector     u64          |    where the write went, in sectorsize units
 * |  8 nr_sectors u64          |    how many sectors it wrote (or discarded)
 * | 16 flags      u64          |    LOG_FLUSH_FLAG 1, LOG_FUA_FLAG 2, LOG_DISCARD_FLAG 4,
 * |                            |    LOG_MARK_FLAG 8, LOG_METADATA_FLAG 16
 * | 24 data_len   u64          |    bytes of mark text (marks only)
 * | 32 mark text, then zeros   |    data_len bytes, no NUL (at most sectorsize - 33)
 * +----------------------------+
 * | data: nr_sectors sectors   |  absent for discards (and for flushes and marks: nr_sectors 0)
 * +----------------------------+  next entry ...
 * </pre>
 *
 * <p>The kernel rewrites the super block after FUA and mark entries ({@code log_writes_kthread});
 * biostack also rewrites it after flush entries, so that a log read after a crash is complete up to
 * its last flush. A reader walks {@code nr_entries} entries and ignores whatever follows.
 *
 * <p>Stateless: static accessors over a segment the caller owns.
 */
public final class LogFormat {
    /** {@code WRITE_LOG_MAGIC}, dm-log-writes.c. */
    public static final long MAGIC = 0x6a736677736872L;
    /** {@code WRITE_LOG_VERSION}, dm-log-writes.c. */
    public static final long VERSION = 1;
    /** {@code WRITE_LOG_SUPER_SECTOR}, dm-log-writes.c: the super block is at byte 0. */
    public static final long SUPER_OFFSET = 0;

    /** {@code LOG_FLUSH_FLAG (1 << 0)}, dm-log-writes.c: a REQ_PREFLUSH bio. */
    public static final long FLUSH = 1;
    /** {@code LOG_FUA_FLAG (1 << 1)}: a REQ_FUA write. */
    public static final long FUA = 1 << 1;
    /** {@code LOG_DISCARD_FLAG (1 << 2)}: a discard, no data follows the entry. */
    public static final long DISCARD = 1 << 2;
    /** {@code LOG_MARK_FLAG (1 << 3)}: a mark from {@code dmsetup message NAME 0 mark TEXT}. */
    public static final long MARK = 1 << 3;
    /** {@code LOG_METADATA_FLAG (1 << 4)}: a REQ_META write (informational). */
    public static final long METADATA = 1 << 4;

    // struct log_write_super
    /** Offset of {@code magic} (u64) in the super block. */
    public static final int SUPER_MAGIC = 0;
    /** Offset of {@code version} (u64) in the super block. */
    public static final int SUPER_VERSION = 8;
    /** Offset of {@code nr_entries} (u64) in the super block. */
    public static final int SUPER_NR_ENTRIES = 16;
    /** Offset of {@code sectorsize} (u32) in the super block. */
    public static final int SUPER_SECTORSIZE = 24;
    /** {@code sizeof(struct log_write_super)} as packed by the kernel's write_metadata. */
    public static final int SUPER_BYTES = 28;

    // struct log_write_entry
    /** Offset of {@code sector} (u64) in an entry. */
    public static final int ENTRY_SECTOR = 0;
    /** Offset of {@code nr_sectors} (u64) in an entry. */
    public static final int ENTRY_NR_SECTORS = 8;
    /** Offset of {@code flags} (u64) in an entry. */
    public static final int ENTRY_FLAGS = 16;
    /** Offset of {@code data_len} (u64) in an entry. */
    public static final int ENTRY_DATA_LEN = 24;
    /** {@code sizeof(struct log_write_entry)}: mark text starts here. */
    public static final int ENTRY_BYTES = 32;

    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private LogFormat() {
    }

    /**
     * Longest mark text: the kernel keeps {@code sectorsize - sizeof(entry) - 1} bytes (log_mark).
     *
     * @param sectorSize the log's sector size
     * @return the most bytes of mark text an entry holds
     */
    public static int maxMarkBytes(int sectorSize) {
        return sectorSize - ENTRY_BYTES - 1;
    }

    // ---- super block ---------------------------------------------------------------------------

    /**
     * Writes a whole super-block sector at {@code at}: fields, then zeros to {@code sectorSize}.
     *
     * @param m          the memory to write in
     * @param at         where the sector starts in {@code m}
     * @param nrEntries  the {@code nr_entries} field
     * @param sectorSize the {@code sectorsize} field, and the bytes written
     */
    public static void writeSuper(MemorySegment m, long at, long nrEntries, int sectorSize) {
        m.asSlice(at, sectorSize).fill((byte) 0);
        m.set(LE64, at + SUPER_MAGIC, MAGIC);
        m.set(LE64, at + SUPER_VERSION, VERSION);
        m.set(LE64, at + SUPER_NR_ENTRIES, nrEntries);
        m.set(LE32, at + SUPER_SECTORSIZE, sectorSize);
    }

    /**
     * Reads the {@code magic} field.
     *
     * @param m a super block at offset 0
     * @return its {@code magic}
     */
    public static long superMagic(MemorySegment m) { return m.get(LE64, SUPER_MAGIC); }
    /**
     * Reads the {@code version} field.
     *
     * @param m a super block at offset 0
     * @return its {@code version}
     */
    public static long superVersion(MemorySegment m) { return m.get(LE64, SUPER_VERSION); }
    /**
     * Reads the {@code nr_entries} field.
     *
     * @param m a super block at offset 0
     * @return its {@code nr_entries}
     */
    public static long superNrEntries(MemorySegment m) { return m.get(LE64, SUPER_NR_ENTRIES); }
    /**
     * The sector size as an unsigned 32-bit value.
     *
     * @param m a super block at offset 0
     * @return its {@code sectorsize}
     */
    public static long superSectorSize(MemorySegment m) { return Integer.toUnsignedLong(m.get(LE32, SUPER_SECTORSIZE)); }

    // ---- entries -------------------------------------------------------------------------------

    /**
     * Writes a whole entry sector at {@code at}: the four fields, the mark text when {@code mark}
     * is not null (its length becomes data_len), zeros to {@code sectorSize}.
     *
     * @param m          the memory to write in
     * @param at         where the entry sector starts in {@code m}
     * @param sectorSize the log's sector size: the bytes written
     * @param sector     the {@code sector} field
     * @param nrSectors  the {@code nr_sectors} field
     * @param flags      the {@code flags} field ({@link #FLUSH}, {@link #FUA}, ...)
     * @param mark       the mark text, or null
     */
    public static void writeEntry(MemorySegment m, long at, int sectorSize, long sector, long nrSectors,
                                  long flags, byte[] mark) {
        m.asSlice(at, sectorSize).fill((byte) 0);
        m.set(LE64, at + ENTRY_SECTOR, sector);
        m.set(LE64, at + ENTRY_NR_SECTORS, nrSectors);
        m.set(LE64, at + ENTRY_FLAGS, flags);
        m.set(LE64, at + ENTRY_DATA_LEN, mark == null ? 0 : mark.length);
        if (mark != null) {
            MemorySegment.copy(MemorySegment.ofArray(mark), 0, m, at + ENTRY_BYTES, mark.length);
        }
    }

    /**
     * Reads the {@code sector} field.
     *
     * @param m  memory holding an entry
     * @param at where the entry starts
     * @return its {@code sector}
     */
    public static long entrySector(MemorySegment m, long at) { return m.get(LE64, at + ENTRY_SECTOR); }
    /**
     * Reads the {@code nr_sectors} field.
     *
     * @param m  memory holding an entry
     * @param at where the entry starts
     * @return its {@code nr_sectors}
     */
    public static long entryNrSectors(MemorySegment m, long at) { return m.get(LE64, at + ENTRY_NR_SECTORS); }
    /**
     * Reads the {@code flags} field.
     *
     * @param m  memory holding an entry
     * @param at where the entry starts
     * @return its {@code flags}
     */
    public static long entryFlags(MemorySegment m, long at) { return m.get(LE64, at + ENTRY_FLAGS); }
    /**
     * Reads the {@code data_len} field.
     *
     * @param m  memory holding an entry
     * @param at where the entry starts
     * @return its {@code data_len} (bytes of mark text)
     */
    public static long entryDataLen(MemorySegment m, long at) { return m.get(LE64, at + ENTRY_DATA_LEN); }

    /**
     * The mark text of the entry at {@code at} ({@code len} bytes after the fields).
     *
     * @param m   memory holding an entry
     * @param at  where the entry starts
     * @param len bytes of text ({@link #entryDataLen})
     * @return the text, as UTF-8
     */
    public static String entryMark(MemorySegment m, long at, int len) {
        byte[] b = new byte[len];
        MemorySegment.copy(m, at + ENTRY_BYTES, MemorySegment.ofArray(b), 0, len);
        return new String(b, StandardCharsets.UTF_8);
    }

    /**
     * The flags as words: "FLUSH|FUA", "DISCARD", "MARK", "" for a plain write.
     *
     * @param flags an entry's flags
     * @return their names joined by '|'
     */
    public static String flagNames(long flags) {
        StringBuilder sb = new StringBuilder();
        String[] names = {"FLUSH", "FUA", "DISCARD", "MARK", "METADATA"};
        for (int i = 0; i < names.length; i++) {
            if ((flags & (1L << i)) != 0) {
                sb.append(sb.isEmpty() ? "" : "|").append(names[i]);
            }
        }
        return sb.toString();
    }
}
