package io.biostack.replay;

import io.biostack.file.FileClone;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Map;

/**
 * The file a checker is given: a copy of the replay image that the checker may write to (journal
 * recovery does) without spoiling the image, and that crash states are built on. Never copies the
 * whole image per state:
 *
 * <ul>
 * <li><b>reflink</b> where the file system shares extents (btrfs, xfs, bcachefs: {@code
 * ioctl(FICLONE)}, probed once): each state starts as a clone of the image, O(extents).</li>
 * <li><b>delta</b> elsewhere (ext4, tmpfs): one sparse copy of the image's data extents at the
 * start; after that only 64 KiB chunks known to differ are copied back from the image: chunks the
 * replay wrote to the image, chunks a crash state wrote to the scratch, and, when the checker
 * changed the file (its mtime, set to a sentinel before each run, or its size moved), the chunks it changed, found by comparing
 * the two files over their data extents ({@code SEEK_DATA}/{@code SEEK_HOLE}): a read of what is
 * allocated, no writes, where the naive loop copies (and dirties) the whole image.</li>
 * <li><b>naive</b> only on request ({@code --naive}, for benchmarks): {@code cp IMAGE SCRATCH}
 * before every check, the loop a script would write.</li>
 * </ul>
 *
 * <p>Measured with {@code bench/crash/run.sh} (256 MiB ext4, 114 flush points, the
 * journal-recovering e2fsck pair; a shared 2-core VM under load): delta with the scratch in
 * /dev/shm and two checkers at once, 2281 points/min; the naive cp-then-check loop beside the
 * image, 988/min (2.3x); the naive loop with its copy in /dev/shm, 2119/min. The checker itself
 * (two e2fsck runs, about 15-20 ms) is most of the time: once the copy is gone, only more
 * checkers at once (idle cores) make it faster.
 *
 * <p>Single-threaded; owns the scratch file and deletes it on {@link #close()}.
 */
final class Scratch implements AutoCloseable {
    static final int CHUNK = 64 << 10;

    /** How the scratch is made equal to the image; NAIVE is the baseline the others are measured against. */
    enum Mode { REFLINK, DELTA, NAIVE }

    private final Path image;
    private final FileClone imageFile;
    private final Path path;
    private final FileClone file;
    private final long size;
    private final Mode mode;
    private final BitSet dirty = new BitSet();
    private final Arena arena = Arena.ofConfined();
    private final MemorySegment a;
    private final MemorySegment b;
    private static final FileTime SEALED = FileTime.fromMillis(1000);
    private Map<String, Object> stamp;
    private boolean cloneNeeded;
    private long bytesCopied;
    private long bytesCompared;
    private int checkerWrote;
    private int checkerUntouched;

    /**
     * A scratch copy of {@code image} in {@code dir}. {@code imageFile} stays the caller's and
     * must stay open while this scratch is.
     */
    Scratch(Path image, FileClone imageFile, Path dir, boolean naive) throws IOException {
        this.image = image;
        this.imageFile = imageFile;
        this.size = Files.size(image);
        this.path = Files.createTempFile(dir, image.getFileName() + ".", ".scratch");
        this.file = FileClone.open(path);
        this.a = arena.allocate(CHUNK, 4096);
        this.b = arena.allocate(CHUNK, 4096);
        boolean clone = !naive && file.cloneFrom(imageFile);
        this.mode = naive ? Mode.NAIVE : clone ? Mode.REFLINK : Mode.DELTA;
        if (mode == Mode.DELTA) {
            file.setSize(size);
            for (long[] r : imageFile.dataExtents(size)) {
                copyRange(r[0], r[1]);
            }
        }
        stamp = stat();
    }

    Path path() { return path; }
    /** The scratch file, for reading the state on it. */
    FileClone file() { return file; }
    Mode mode() { return mode; }
    long bytesCopied() { return bytesCopied; }
    long bytesCompared() { return bytesCompared; }
    /** Checker runs that wrote to the scratch (journal recovery) and runs that did not. */
    int checkerWrote() { return checkerWrote; }
    int checkerUntouched() { return checkerUntouched; }

    /** The image changed in [off, off + len): the scratch must catch up before the next check. */
    void imageChanged(long off, long len) {
        if (len > 0) {
            dirty.set((int) (off / CHUNK), (int) ((off + len - 1) / CHUNK) + 1);
        }
    }

    /** Makes the scratch equal to the image. */
    void reset() throws IOException {
        if (mode == Mode.NAIVE) {
            copyWithCp();
            dirty.clear();
        } else if (mode == Mode.REFLINK) {
            if (cloneNeeded || !dirty.isEmpty()) {
                if (!file.cloneFrom(imageFile)) {
                    throw new IOException("ioctl FICLONE " + image + " -> " + path + " worked once and fails now");
                }
                dirty.clear();
                cloneNeeded = false;
            }
        } else {
            for (int c = dirty.nextSetBit(0); c >= 0; c = dirty.nextSetBit(c + 1)) {
                long off = (long) c * CHUNK;
                long n = Math.min(CHUNK, size - off);
                if (imageFile.nextData(off) >= off + n && file.punchHole(off, n)) {
                    // a hole in the image stays a hole here: the scratch stays as sparse as the
                    // image, and comparing after a checker reads only what is allocated
                    continue;
                }
                copyRange(off, n);
            }
            dirty.clear();
        }
        stamp = stat();
    }

    /** Whether the state now on the scratch has a journal to replay (read before the checker runs). */
    JournalState journal() throws IOException {
        return JournalState.of(file, size, b);
    }

    /** Writes {@code src} at {@code off} on the scratch (a crash state); undone by {@link #reset()}. */
    void write(long off, MemorySegment src) throws IOException {
        long done = 0;
        while (done < src.byteSize()) {
            long n = Math.min(CHUNK, src.byteSize() - done);
            MemorySegment.copy(src, done, a, 0, n);
            file.write(a, n, off + done);
            done += n;
        }
        imageChanged(off, src.byteSize());
        cloneNeeded = true;
    }

    /** Zeroes [off, off + len) on the scratch (a discard in a crash state). */
    void zero(long off, long len) throws IOException {
        file.zero(off, len, a);
        imageChanged(off, len);
        cloneNeeded = true;
    }

    private void copyWithCp() throws IOException {
        try {
            Process p = new ProcessBuilder("cp", image.toString(), path.toString()).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
            if (p.waitFor() != 0) {
                throw new IOException("cp " + image + " " + path + ": " + out.trim());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while copying " + image);
        }
        bytesCopied += size;
    }

    /** Called after a checker ran on the scratch: finds what it changed so {@link #reset()} undoes it. */
    void afterChecker() throws IOException {
        if (stat().equals(stamp)) {
            checkerUntouched++;
            return;
        }
        checkerWrote++;
        cloneNeeded = true;
        if (mode != Mode.DELTA) {
            return;
        }
        if (Files.size(path) != size) {
            file.setSize(size);
        }
        List<long[]> ranges = merge(file.dataExtents(size), imageFile.dataExtents(size));
        for (long[] r : ranges) {
            long first = r[0] / CHUNK * CHUNK;
            for (long off = first; off < r[0] + r[1]; off += CHUNK) {
                int c = (int) (off / CHUNK);
                if (dirty.get(c)) {
                    continue;
                }
                long n = Math.min(CHUNK, size - off);
                imageFile.read(a, n, off);
                file.read(b, n, off);
                bytesCompared += n;
                if (a.asSlice(0, n).mismatch(b.asSlice(0, n)) >= 0) {
                    dirty.set(c);
                }
            }
        }
    }

    private Map<String, Object> stat() throws IOException {
        Map<String, Object> m = Files.readAttributes(path, "lastModifiedTime,size");
        return Map.of("m", ((FileTime) m.get("lastModifiedTime")).toInstant(), "s", m.get("size"));
    }

    /**
     * Stamps the scratch just before a checker runs: its mtime is set one second after the epoch,
     * so any write by the checker moves it to now. (Comparing "now" with "now" would miss a write
     * in the same tick of the kernel's coarse clock, which is up to 4 ms.)
     */
    void seal() throws IOException {
        Files.setLastModifiedTime(path, SEALED);
        stamp = stat();
    }

    private void copyRange(long off, long len) throws IOException {
        long done = 0;
        while (done < len) {
            long n = Math.min(CHUNK, len - done);
            imageFile.read(a, n, off + done);
            file.write(a, n, off + done);
            done += n;
        }
        bytesCopied += len;
    }

    private static List<long[]> merge(List<long[]> x, List<long[]> y) {
        List<long[]> all = new ArrayList<>(x);
        all.addAll(y);
        all.sort((p, q) -> Long.compare(p[0], q[0]));
        List<long[]> out = new ArrayList<>();
        for (long[] r : all) {
            if (!out.isEmpty()) {
                long[] last = out.getLast();
                if (r[0] <= last[0] + last[1]) {
                    last[1] = Math.max(last[1], r[0] + r[1] - last[0]);
                    continue;
                }
            }
            out.add(new long[] {r[0], r[1]});
        }
        return out;
    }

    @Override
    public void close() throws IOException {
        file.close();
        arena.close();
        Files.deleteIfExists(path);
    }
}
