package io.biostack.replay;

import io.biostack.layer.logwrites.LogFormat;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A dm-log-writes log read into memory: the file is mapped read-only and its entries indexed
 * (byte offsets of each entry's data, its sector, length and flags), checked from end to end before
 * anything is replayed, so that a truncated or foreign log is refused whole, never half replayed.
 *
 * <p>Owns the mapping; {@link #close()} unmaps it. Single-threaded.
 */
public final class WriteLog implements AutoCloseable {
    private final Path path;
    private final Arena arena;
    private final MemorySegment map;
    private final int sectorSize;
    private final int n;
    private final long[] sector;
    private final long[] nrSectors;
    private final long[] flags;
    private final long[] dataAt;
    private final String[] marks;

    private WriteLog(Path path, Arena arena, MemorySegment map, int sectorSize, int n) {
        this.path = path;
        this.arena = arena;
        this.map = map;
        this.sectorSize = sectorSize;
        this.n = n;
        this.sector = new long[n];
        this.nrSectors = new long[n];
        this.flags = new long[n];
        this.dataAt = new long[n];
        this.marks = new String[n];
    }

    /**
     * Opens and checks a log.
     *
     * @param path the log file (the log device's contents)
     * @return the log, owned by the caller (close it)
     * @throws ReplayException saying what is wrong with the log, when it is not a whole one
     * @throws IOException when the file cannot be read or mapped
     */
    public static WriteLog open(Path path) throws IOException {
        if (!Files.isRegularFile(path)) {
            throw new ReplayException(path + ": no such log file");
        }
        long size = Files.size(path);
        if (size < LogFormat.SUPER_BYTES) {
            throw new ReplayException(path + ": " + size + " bytes is too short for a dm-log-writes super block");
        }
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path)) {
            MemorySegment m = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            WriteLog log = index(path, arena, m, size);
            return log;
        } catch (RuntimeException | IOException e) {
            arena.close();
            throw e;
        }
    }

    private static WriteLog index(Path path, Arena arena, MemorySegment m, long size) {
        long magic = LogFormat.superMagic(m);
        if (magic != LogFormat.MAGIC) {
            throw new ReplayException(path + ": bad magic 0x" + Long.toHexString(magic) + " (a dm-log-writes log starts with 0x"
                    + Long.toHexString(LogFormat.MAGIC) + ")");
        }
        long version = LogFormat.superVersion(m);
        if (version != LogFormat.VERSION) {
            throw new ReplayException(path + ": log version " + version + " is not supported (only version " + LogFormat.VERSION + ")");
        }
        long ss = LogFormat.superSectorSize(m);
        if (ss < 512 || ss > 65536 || Long.bitCount(ss) != 1) {
            throw new ReplayException(path + ": sector size " + ss + " in the super block is not a power of two from 512 to 64k");
        }
        long nr = LogFormat.superNrEntries(m);
        // Every entry takes at least one sector: a count beyond that is a lie, not a big log.
        if (nr < 0 || nr > (size / ss)) {
            throw new ReplayException(path + ": the super block counts " + Long.toUnsignedString(nr) + " entries but the log is truncated: "
                    + size + " bytes hold at most " + Math.max(0, size / ss - 1) + " entry sectors");
        }
        int sectorSize = (int) ss;
        WriteLog log = new WriteLog(path, arena, m, sectorSize, (int) nr);
        long at = sectorSize;
        for (int i = 0; i < nr; i++) {
            if (at + sectorSize > size) {
                throw new ReplayException(path + ": the log is truncated: entry " + i + " of " + nr + " would be at byte " + at
                        + ", the file has " + size + " bytes");
            }
            long f = LogFormat.entryFlags(m, at);
            long nrs = LogFormat.entryNrSectors(m, at);
            long dataLen = LogFormat.entryDataLen(m, at);
            log.sector[i] = LogFormat.entrySector(m, at);
            log.nrSectors[i] = nrs;
            log.flags[i] = f;
            if ((f & LogFormat.MARK) != 0) {
                if (dataLen < 0 || dataLen > sectorSize - LogFormat.ENTRY_BYTES) {
                    throw new ReplayException(path + ": mark entry " + i + " has a text of " + dataLen + " bytes, more than its sector holds");
                }
                log.marks[i] = LogFormat.entryMark(m, at, (int) dataLen);
            } else if (dataLen != 0) {
                throw new ReplayException(path + ": entry " + i + " carries " + dataLen + " bytes of inline data, which this reader does not take");
            }
            at += sectorSize;
            log.dataAt[i] = at;
            if ((f & LogFormat.DISCARD) == 0) {
                if (nrs < 0 || nrs > (size - at) / sectorSize) {
                    throw new ReplayException(path + ": the log is truncated: entry " + i + " of " + nr + " at byte " + (at - sectorSize)
                            + " has " + Long.toUnsignedString(nrs) + " sectors of data, the file has " + size + " bytes");
                }
                at += nrs * sectorSize;
            }
        }
        return log;
    }

    /**
     * The log file.
     *
     * @return its path
     */
    public Path path() { return path; }
    /**
     * The log's sector size, from its super block.
     *
     * @return bytes per sector
     */
    public int sectorSize() { return sectorSize; }
    /**
     * Entries in the log.
     *
     * @return how many
     */
    public int size() { return n; }
    /**
     * The flags of entry {@code i} ({@code LOG_*_FLAG} of dm-log-writes).
     *
     * @param i the entry (0-based)
     * @return its flags
     */
    public long flags(int i) { return flags[i]; }
    /**
     * Byte offset on the device of entry {@code i}.
     *
     * @param i the entry (0-based)
     * @return the offset in bytes
     */
    public long offset(int i) { return sector[i] * sectorSize; }
    /**
     * Bytes written (or discarded) by entry {@code i}.
     *
     * @param i the entry (0-based)
     * @return the length in bytes
     */
    public long length(int i) { return nrSectors[i] * sectorSize; }
    /**
     * The label of entry {@code i} when it is a mark.
     *
     * @param i the entry (0-based)
     * @return the label, or null
     */
    public String mark(int i) { return marks[i]; }
    /**
     * Whether entry {@code i} is a mark.
     *
     * @param i the entry (0-based)
     * @return true for a mark
     */
    public boolean isMark(int i) { return (flags[i] & LogFormat.MARK) != 0; }
    /**
     * Whether entry {@code i} is a flush (or carries one).
     *
     * @param i the entry (0-based)
     * @return true with the FLUSH flag
     */
    public boolean isFlush(int i) { return (flags[i] & LogFormat.FLUSH) != 0; }
    /**
     * Whether entry {@code i} was written FUA.
     *
     * @param i the entry (0-based)
     * @return true with the FUA flag
     */
    public boolean isFua(int i) { return (flags[i] & LogFormat.FUA) != 0; }
    /**
     * Whether entry {@code i} is a discard.
     *
     * @param i the entry (0-based)
     * @return true with the DISCARD flag
     */
    public boolean isDiscard(int i) { return (flags[i] & LogFormat.DISCARD) != 0; }
    /**
     * True when entry {@code i} changes the device (a write or discard with sectors).
     *
     * @param i the entry (0-based)
     * @return whether replaying it changes the image
     */
    public boolean changesData(int i) { return !isMark(i) && nrSectors[i] > 0; }

    /**
     * The data of entry {@code i} (a write), a slice of the mapped log.
     *
     * @param i the entry (0-based)
     * @return read-only memory valid until this log is closed
     */
    public MemorySegment data(int i) {
        return map.asSlice(dataAt[i], length(i));
    }

    /**
     * The index of the first mark called {@code label}.
     *
     * @param label the mark's label
     * @return its entry index
     * @throws ReplayException when there is none (naming the marks there are)
     */
    public int findMark(String label) {
        List<String> all = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (marks[i] != null) {
                if (marks[i].equals(label)) {
                    return i;
                }
                all.add(marks[i]);
            }
        }
        throw new ReplayException(path + ": no mark '" + label + "' in the log (marks: "
                + (all.isEmpty() ? "none" : String.join(", ", all)) + ")");
    }

    /**
     * The last mark at or before entry {@code i}.
     *
     * @param i the entry (0-based)
     * @return its label, or null
     */
    public String markBefore(int i) {
        for (int j = Math.min(i, n - 1); j >= 0; j--) {
            if (marks[j] != null) {
                return marks[j];
            }
        }
        return null;
    }

    /** Unmaps the log; its data segments are invalid afterwards. */
    @Override
    public void close() {
        arena.close();
    }
}
