package io.biostack.block.bitmap;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.zip.CRC32C;

/**
 * A device's persistent bitmaps in a file of their own ({@code bitmap-file=PATH} on the table
 * line), for devices whose format has no place for them.
 *
 * <h2>Layout</h2>
 * <pre>
 * block 0 (4096 bytes), the header, big-endian:
 *   0   8  magic "BSBITMAP"
 *   8   4  version (1)
 *  12   4  CRC32C of the 4096-byte header with this field zero
 *  16   8  device size in bytes (a file made for another size is refused)
 *  24   4  entry count (at most {@value #MAX_ENTRIES})
 *  28   4  reserved, 0
 *  32  64 × count entries:
 *        0  1  name length (1..47)
 *        1 47  name, ASCII, zero-padded
 *       48  1  log2 of the granularity (12..31)
 *       49  1  flags: 1 IN_USE (open and recording, or frozen by a backup: bits not to be
 *                     trusted after a crash),
 *                     2 RECORDING,
 *                     4 BACKED_UP (a backup froze it and it has not recorded since: in use
 *                       again from the next open, until it is removed; a reader that
 *                       ignores this bit only loses that)
 *       50  2  reserved, 0
 *       52  4  CRC32C of the bitmap's data bytes (checked when IN_USE is clear: the clean flag)
 *       56  8  data offset, a multiple of 4096
 * data: per entry, its words little-endian (bit i of the device = word i/64, bit i%64), padded
 * with zeros to a multiple of 4096 bytes.
 * </pre>
 * A layout change (a bitmap added or removed) writes a new file beside the old one, syncs it and
 * renames it over, so a crash leaves one or the other. Bit blocks are written in place with
 * {@code O_DSYNC} (durable when the write returns: the mark is on disk before the data write it
 * covers goes down, as md's write-intent bitmap does).
 *
 * <p>Not thread-safe; {@link DeviceBitmaps} serialises calls.
 */
public final class SideFileStore implements BitmapStore {
    /** File magic. */
    static final byte[] MAGIC = "BSBITMAP".getBytes(StandardCharsets.US_ASCII);
    /** Format version. */
    static final int VERSION = 1;
    /** Header and data block size. */
    static final int BLOCK = 4096;
    /** Entry size in the header. */
    static final int ENTRY = 64;
    /** Entries that fit the header block. */
    public static final int MAX_ENTRIES = (BLOCK - 32) / ENTRY;
    /** Longest persistent bitmap name this format keeps. */
    public static final int MAX_NAME = 47;
    static final int F_IN_USE = 1;
    static final int F_RECORDING = 2;
    static final int F_BACKED_UP = 4;

    private final Path path;
    private FileChannel ch;
    /** Data offset of each bitmap of the last saved layout (by identity). */
    private final java.util.IdentityHashMap<DirtyBitmap, Long> offsets = new java.util.IdentityHashMap<>();
    private final ByteBuffer block = ByteBuffer.allocateDirect(BLOCK).order(ByteOrder.LITTLE_ENDIAN);
    private final AtomicLong writes = new AtomicLong();
    /** The device's size, from {@link #load}: a file with no bitmaps still names its device's size. */
    private long deviceSize = -1;

    /**
     * A store in {@code path} (created on the first save when missing).
     *
     * @param path the side file
     */
    public SideFileStore(Path path) {
        this.path = path;
    }

    /**
     * Returns the side file's path.
     *
     * @return the side file's path
     */
    public Path path() {
        return path;
    }

    @Override
    public List<DirtyBitmap> load(long deviceSize, List<String> problems) throws IOException {
        List<DirtyBitmap> out = new ArrayList<>();
        this.deviceSize = deviceSize;
        if (!Files.exists(path)) {
            return out;
        }
        long fileSize = Files.size(path);
        String where = "bitmap file " + path;
        if (fileSize < BLOCK) {
            throw new IOException(where + " is truncated (" + fileSize + " bytes; its header alone is " + BLOCK
                    + "): no bitmap in it can be trusted; move it away and make the next backup a full one");
        }
        ByteBuffer h = ByteBuffer.allocate(BLOCK);
        try (FileChannel c = FileChannel.open(path, StandardOpenOption.READ)) {
            readFully(c, h, 0);
            h.flip();
            byte[] magic = new byte[8];
            h.get(0, magic);
            if (!java.util.Arrays.equals(magic, MAGIC)) {
                throw new IOException(where + " is not a biostack bitmap file (bad magic)");
            }
            int version = h.getInt(8);
            if (version != VERSION) {
                throw new IOException(where + ": version " + version + " is not supported (this biostack reads " + VERSION + ")");
            }
            int crc = h.getInt(12);
            h.putInt(12, 0);
            if (crc32c(h, 0, BLOCK) != crc) {
                throw new IOException(where + ": header checksum mismatch (the file is damaged): no bitmap in it can be "
                        + "trusted; move it away and make the next backup a full one");
            }
            long size = h.getLong(16);
            int count = h.getInt(24);
            if (count < 0 || count > MAX_ENTRIES) {
                throw new IOException(where + ": " + count + " entries (at most " + MAX_ENTRIES + ")");
            }
            if (count == 0) {
                return out; // no bitmap to fit the device: one resized after its last bitmap was removed
            }
            if (size != deviceSize) {
                throw new IOException(where + " was made for a device of " + size + " bytes; this device has " + deviceSize
                        + ": its bitmaps can't be trusted; move it away and make the next backup a full one");
            }
            for (int i = 0; i < count; i++) {
                int e = 32 + i * ENTRY;
                int nlen = h.get(e) & 0xff;
                if (nlen < 1 || nlen > MAX_NAME) {
                    throw new IOException(where + ": entry " + i + " has a name of " + nlen + " bytes");
                }
                byte[] nb = new byte[nlen];
                h.get(e + 1, nb);
                String name = new String(nb, StandardCharsets.US_ASCII);
                int g = h.get(e + 48) & 0xff;
                if (g < 12 || g > 31) {
                    throw new IOException(where + ": bitmap " + name + " has a granularity of 2^" + g);
                }
                int flags = h.get(e + 49) & 0xff;
                int dataCrc = h.getInt(e + 52);
                long off = h.getLong(e + 56);
                DirtyBitmap b = new DirtyBitmap(name, 1L << g, deviceSize);
                b.setPersistent(true);
                b.setRecording((flags & F_RECORDING) != 0);
                b.setBackedUp((flags & F_BACKED_UP) != 0); // a clean stop doesn't end it: only a remove does
                long bytes = dataBytes(b);
                // off > fileSize - bytes, not off + bytes > fileSize: a huge offset must not wrap.
                if (off < BLOCK || off % BLOCK != 0 || off > fileSize - bytes) {
                    problems.add("bitmap " + name + ": its bits are missing from " + path + " (truncated at " + fileSize
                            + " bytes, they end at " + (off + bytes) + "): loaded inconsistent");
                    b.markInconsistent();
                } else {
                    ByteBuffer d = ByteBuffer.allocate((int) bytes).order(ByteOrder.LITTLE_ENDIAN);
                    readFully(c, d, off);
                    d.flip();
                    if ((flags & F_IN_USE) != 0) {
                        problems.add("bitmap " + name + " was in use when biostack stopped (not closed cleanly): "
                                + "loaded inconsistent; remove it, and make the next backup a full one");
                        b.markInconsistent();
                    } else if (crc32c(d, 0, (int) bytes) != dataCrc) {
                        problems.add("bitmap " + name + ": checksum mismatch in " + path + ": loaded inconsistent");
                        b.markInconsistent();
                    } else {
                        long[] w = new long[b.wordCount()];
                        d.asLongBuffer().get(0, w);
                        b.load(w);
                    }
                }
                out.add(b);
            }
        }
        return out;
    }

    private static long dataBytes(DirtyBitmap b) {
        long bytes = (long) b.wordCount() * 8;
        return (bytes + BLOCK - 1) / BLOCK * BLOCK;
    }

    @Override
    public void saveLayout(List<DirtyBitmap> bitmaps) throws IOException {
        write(bitmaps, false);
    }

    @Override
    public void closeClean(List<DirtyBitmap> bitmaps) throws IOException {
        write(bitmaps, true);
    }

    /** Writes the whole file anew beside the old one, syncs it and renames it over. */
    private void write(List<DirtyBitmap> bitmaps, boolean clean) throws IOException {
        if (bitmaps.size() > MAX_ENTRIES) {
            throw new IOException("a bitmap file holds at most " + MAX_ENTRIES + " bitmaps");
        }
        long size = bitmaps.isEmpty() ? deviceSize : bitmaps.getFirst().deviceSize();
        ByteBuffer h = ByteBuffer.allocate(BLOCK);
        h.put(0, MAGIC).putInt(8, VERSION).putLong(16, size).putInt(24, bitmaps.size());
        long off = BLOCK;
        List<long[]> data = new ArrayList<>();
        java.util.IdentityHashMap<DirtyBitmap, Long> offs = new java.util.IdentityHashMap<>();
        for (int i = 0; i < bitmaps.size(); i++) {
            DirtyBitmap b = bitmaps.get(i);
            byte[] nb = b.bitmapName().getBytes(StandardCharsets.US_ASCII);
            int e = 32 + i * ENTRY;
            h.put(e, (byte) nb.length).put(e + 1, nb);
            h.put(e + 48, (byte) Long.numberOfTrailingZeros(b.granularity()));
            // In use too while a backup holds it frozen, and after its backup-end until it is
            // removed (docs/backup.md: remove it, or merge it into the new bitmap): its bits end
            // at the backup's instant and the writes since were only in the new bitmap, which
            // loads inconsistent after a crash; this one loaded consistent would give a silently
            // partial incremental.
            boolean inUse = !clean && (b.isRecording() || b.busy() != null || b.isBackedUp());
            int flags = (b.isRecording() ? F_RECORDING : 0) | (inUse || !b.isConsistent() ? F_IN_USE : 0)
                    | (b.isBackedUp() ? F_BACKED_UP : 0);
            h.put(e + 49, (byte) flags);
            long[] w = b.words();
            data.add(w);
            ByteBuffer d = ByteBuffer.allocate((int) dataBytes(b)).order(ByteOrder.LITTLE_ENDIAN);
            d.asLongBuffer().put(w);
            h.putInt(e + 52, crc32c(d, 0, d.capacity()));
            h.putLong(e + 56, off);
            offs.put(b, off);
            off += dataBytes(b);
        }
        h.putInt(12, crc32c(h, 0, BLOCK));
        Path tmp = path.resolveSibling(path.getFileName() + ".new");
        try (FileChannel c = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            writeFully(c, h.rewind(), 0);
            for (int i = 0; i < bitmaps.size(); i++) {
                ByteBuffer d = ByteBuffer.allocate((int) dataBytes(bitmaps.get(i))).order(ByteOrder.LITTLE_ENDIAN);
                d.asLongBuffer().put(data.get(i));
                writeFully(c, d, offs.get(bitmaps.get(i)));
            }
            c.force(true);
        }
        closeChannel();
        Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        syncDir(path.toAbsolutePath().getParent());
        offsets.clear();
        offsets.putAll(offs);
    }

    @Override
    public void saveWords(DirtyBitmap b, int first, int last) throws IOException {
        Long base = offsets.get(b);
        if (base == null) {
            throw new IOException("bitmap " + b.bitmapName() + " is not in " + path + "'s layout");
        }
        if (ch == null) {
            ch = FileChannel.open(path, StandardOpenOption.WRITE, StandardOpenOption.DSYNC);
        }
        int per = wordsPerBlock();
        for (int blk = first / per; blk <= last / per; blk++) {
            block.clear();
            for (int i = 0; i < per; i++) {
                int w = blk * per + i;
                block.putLong(i * 8, w < b.wordCount() ? b.word(w) : 0L);
            }
            writeFully(ch, block, base + (long) blk * BLOCK);
            writes.incrementAndGet();
        }
    }

    @Override
    public void checkPersistent(String name, long granularity, long deviceSize) {
        if (name.length() > MAX_NAME) {
            throw new IllegalArgumentException("a persistent bitmap's name has at most " + MAX_NAME + " characters");
        }
    }

    @Override
    public int wordsPerBlock() {
        return BLOCK / 8;
    }

    @Override
    public long metadataWrites() {
        return writes.get();
    }

    @Override
    public String describe() {
        return "file=" + path;
    }

    @Override
    public void close() {
        closeChannel();
    }

    private void closeChannel() {
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException e) {
                // Nothing was pending: every write was DSYNC.
            }
            ch = null;
        }
    }

    private static void syncDir(Path dir) {
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
            d.force(true);
        } catch (IOException e) {
            // Some file systems can't sync a directory; the rename is then as durable as they make it.
        }
    }

    static int crc32c(ByteBuffer b, int from, int len) {
        CRC32C c = new CRC32C();
        c.update(b.duplicate().clear().position(from).limit(from + len));
        return (int) c.getValue();
    }

    private static void readFully(FileChannel c, ByteBuffer b, long pos) throws IOException {
        while (b.hasRemaining()) {
            int n = c.read(b, pos);
            if (n < 0) {
                throw new IOException("short read");
            }
            pos += n;
        }
    }

    private static void writeFully(FileChannel c, ByteBuffer b, long pos) throws IOException {
        b.rewind();
        while (b.hasRemaining()) {
            pos += c.write(b, pos);
        }
    }
}
