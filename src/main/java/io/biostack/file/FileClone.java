package io.biostack.file;

import io.biostack.sys.Errno;
import io.biostack.sys.Falloc;
import io.biostack.sys.Fcntl;
import io.biostack.sys.Fs;
import io.biostack.sys.Libc;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A file opened for copies that share or skip blocks: a reflink clone of another file
 * ({@code ioctl(FICLONE)}), hole punching, and the file's data extents ({@code SEEK_DATA} /
 * {@code SEEK_HOLE}), plus positioned reads and writes of whole ranges. This is what the crash
 * replayer needs to keep a scratch copy of an image equal to it without copying the whole image,
 * at the file level, so that code above the file layer needs no syscall of its own.
 *
 * <p>Buffered I/O (no {@code O_DIRECT}): these are copies, not the I/O path. Owns its file
 * descriptor; {@link #close()} closes it. Not thread-safe: one owner at a time.
 */
public final class FileClone implements AutoCloseable {
    /** {@code FICLONE = _IOW(0x94, 9, int)}, include/uapi/linux/fs.h. */
    static final long FICLONE = 0x40049409L;

    private final Path path;
    private int fd;

    private FileClone(Path path, int fd) {
        this.path = path;
        this.fd = fd;
    }

    /**
     * Opens an existing file for reading and writing.
     *
     * @param path the file
     * @return the open file, owned by the caller
     * @throws IOException when the file cannot be opened (the message names it and the errno)
     */
    public static FileClone open(Path path) throws IOException {
        int f = Libc.open(path.toString(), Fcntl.O_RDWR | Fcntl.O_CLOEXEC, 0);
        if (f < 0) {
            throw new IOException(path + ": " + Errno.name(-f));
        }
        return new FileClone(path, f);
    }

    /**
     * The path this file was opened at.
     *
     * @return the path
     */
    public Path path() {
        return path;
    }

    /**
     * Makes this file share every extent of {@code src} ({@code ioctl(FICLONE)}): afterwards it
     * reads as a copy of {@code src}, and costs O(extents), not O(bytes).
     *
     * @param src the file to clone
     * @return true when cloned; false when the file system cannot share extents between these
     *         files (ext4, tmpfs, two file systems), and this file is unchanged
     * @throws IOException on any other error
     */
    public boolean cloneFrom(FileClone src) throws IOException {
        int r = Libc.ioctl(fd(), FICLONE, src.fd());
        if (r == 0) {
            return true;
        }
        if (r == -Errno.EOPNOTSUPP || r == -Errno.EXDEV || r == -Errno.EINVAL || r == -Errno.ENOTTY) {
            return false;
        }
        throw new IOException("ioctl FICLONE " + src.path + " -> " + path + ": " + Errno.name(-r));
    }

    /**
     * Sets the file's size ({@code ftruncate}); growing leaves a hole.
     *
     * @param size the new size in bytes
     * @throws IOException when the size cannot be set
     */
    public void setSize(long size) throws IOException {
        check(Libc.ftruncate(fd(), size), "ftruncate");
    }

    /**
     * Writes what this file holds to its device ({@code fdatasync}).
     *
     * @throws IOException when the data could not be written
     */
    public void datasync() throws IOException {
        check(Libc.fdatasync(fd()), "fdatasync");
    }

    /**
     * Reads {@code len} bytes at {@code off} into {@code buf}; bytes past the end of the file
     * read as zeros.
     *
     * @param buf native memory of at least {@code len} bytes, owned by the caller
     * @param len how many bytes
     * @param off the file offset
     * @throws IOException on a read error
     */
    public void read(MemorySegment buf, long len, long off) throws IOException {
        long done = 0;
        while (done < len) {
            long r = Libc.pread(fd(), buf.address() + done, len - done, off + done);
            if (r < 0) {
                throw new IOException("pread " + path + ": " + Errno.name((int) -r));
            }
            if (r == 0) {
                buf.asSlice(done, len - done).fill((byte) 0);
                return;
            }
            done += r;
        }
    }

    /**
     * Writes {@code len} bytes of {@code buf} at {@code off}, all of them.
     *
     * @param buf native memory of at least {@code len} bytes, owned by the caller
     * @param len how many bytes
     * @param off the file offset
     * @throws IOException on a write error
     */
    public void write(MemorySegment buf, long len, long off) throws IOException {
        long done = 0;
        while (done < len) {
            long r = Libc.pwrite(fd(), buf.address() + done, len - done, off + done);
            if (r < 0) {
                throw new IOException("pwrite " + path + ": " + Errno.name((int) -r));
            }
            done += r;
        }
    }

    /**
     * Deallocates {@code [off, off + len)} so that it reads as zeros, keeping the size
     * ({@code FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE}).
     *
     * @param off the file offset
     * @param len how many bytes
     * @return true when punched; false when the file system cannot, and nothing changed
     */
    public boolean punchHole(long off, long len) {
        return Libc.fallocate(fd(), Falloc.FALLOC_FL_PUNCH_HOLE | Falloc.FALLOC_FL_KEEP_SIZE, off, len) == 0;
    }

    /**
     * Makes {@code [off, off + len)} read as zeros: a punched hole where the file system can,
     * else zeros written from {@code zeros}.
     *
     * @param off the file offset
     * @param len how many bytes
     * @param scratch native memory used for the zeros (filled with zeros here), owned by the caller
     * @throws IOException on a write error
     */
    public void zero(long off, long len, MemorySegment scratch) throws IOException {
        if (punchHole(off, len)) {
            return;
        }
        MemorySegment z = scratch.fill((byte) 0);
        long done = 0;
        while (done < len) {
            long n = Math.min(z.byteSize(), len - done);
            write(z, n, off + done);
            done += n;
        }
    }

    /**
     * Where data may start at or after {@code from} ({@code lseek SEEK_DATA}).
     *
     * @param from the file offset to look from
     * @return the offset of the next data; {@link Long#MAX_VALUE} when there is none; {@code from}
     *         itself when the file system cannot tell (everything is then taken as data)
     */
    public long nextData(long from) {
        return Fs.nextData(Libc.lseek(fd(), from, Fs.SEEK_DATA), from);
    }

    /**
     * The data extents of the file's first {@code size} bytes ({@code SEEK_DATA} /
     * {@code SEEK_HOLE}), in order; the whole range when the file system cannot tell.
     *
     * @param size how much of the file to look at, in bytes
     * @return {@code [offset, length]} pairs, a new list owned by the caller
     */
    public List<long[]> dataExtents(long size) {
        List<long[]> out = new ArrayList<>();
        long pos = 0;
        // bounded: every pass moves pos forward past one extent, or ends
        while (pos < size) {
            long d = Libc.lseek(fd(), pos, Fs.SEEK_DATA);
            if (d < 0) {
                if (d == -Errno.ENXIO) {
                    break;
                }
                out.clear();
                out.add(new long[] {0, size});
                return out;
            }
            if (d >= size) {
                break;
            }
            long h = Libc.lseek(fd(), d, Fs.SEEK_HOLE);
            h = h < 0 ? size : Math.min(h, size);
            out.add(new long[] {d, h - d});
            pos = h;
        }
        return out;
    }

    private int fd() throws IllegalStateException {
        if (fd < 0) {
            throw new IllegalStateException(path + " is closed");
        }
        return fd;
    }

    private void check(long r, String what) throws IOException {
        if (r < 0) {
            throw new IOException(what + " " + path + ": " + Errno.name((int) -r));
        }
    }

    /** Closes the file descriptor; later calls throw {@link IllegalStateException}. */
    @Override
    public void close() {
        if (fd >= 0) {
            Libc.close(fd);
            fd = -1;
        }
    }
}
