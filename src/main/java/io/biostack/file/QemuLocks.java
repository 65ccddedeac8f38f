package io.biostack.file;

import io.biostack.block.ImageLocking;
import io.biostack.sys.Errno;
import io.biostack.sys.Fcntl;
import io.biostack.sys.Libc;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;

/**
 * qemu's image locks on one open file (block/file-posix.c). Each permission bit {@code i} of
 * include/block/block-common.h ({@code BLK_PERM_CONSISTENT_READ} 0x01, {@code BLK_PERM_WRITE}
 * 0x02, {@code BLK_PERM_WRITE_UNCHANGED} 0x04, {@code BLK_PERM_RESIZE} 0x08) has two bytes: a
 * holder of the permission takes a shared lock on byte {@code RAW_LOCK_PERM_BASE + i} (100 +
 * i), and a holder that does not share it with others takes one on byte
 * {@code RAW_LOCK_SHARED_BASE + i} (200 + i). A new holder first takes its bytes, then tests
 * ({@code F_OFD_GETLK} with an exclusive lock) byte 200 + i for each permission it wants, and
 * byte 100 + i for each it does not share; any lock there from another open file description
 * is a conflict. qemu uses open file description locks, as here: they belong to the open file,
 * not the process, so a second open of the same file in this process conflicts too, and closing
 * another descriptor of the file drops nothing.
 *
 * <p>A qcow2 format holds consistent read, write and resize when it writes (consistent read
 * alone when it only reads) and shares neither write nor resize: its metadata must not change
 * under it (qemu's {@code bdrv_default_perms_for_storage}). So qemu-img, qemu-io and qemu-nbd
 * refuse an image biostack has open for writing, as they refuse one qemu has open, and biostack
 * refuses theirs.
 */
public final class QemuLocks implements ImageLocking.Held {
    private static final System.Logger LOG = System.getLogger("biostack.file");
    /** block/file-posix.c. */
    static final int RAW_LOCK_PERM_BASE = 100;
    /** block/file-posix.c. */
    static final int RAW_LOCK_SHARED_BASE = 200;
    /** include/block/block-common.h. */
    static final int CONSISTENT_READ = 0x01;
    static final int WRITE = 0x02;
    static final int RESIZE = 0x08;
    /** The bits PERM_FOREACH walks (BLK_PERM_ALL without the retired graph-mod bit). */
    private static final int PERM_BITS = 4;
    private static final String[] PERM_NAMES = {"consistent read", "write", "write unchanged", "resize"};
    /** Set once open file description locks turned out to be unsupported (Linux before 3.15). */
    private static volatile boolean unsupported;

    /** The device's file whose descriptor this locks, or null when the locks own {@link #fd}. */
    private final BackingFile file;
    private final int fd;
    private final int perm;
    private final int unshared;
    private boolean released;

    private QemuLocks(BackingFile file, int fd, int perm, int unshared) {
        this.file = file;
        this.fd = fd;
        this.perm = perm;
        this.unshared = unshared;
    }

    /**
     * Takes the locks of a qcow2-like format on {@code fd}: consistent read (and write and
     * resize when {@code write}), write and resize not shared.
     */
    static ImageLocking.Held take(BackingFile file, boolean write) throws IOException {
        return take(file, file.fd(), file.path(), write);
    }

    /**
     * Opens {@code path} and takes on it the locks of a qcow2-like format that writes it (when
     * {@code write}) or reads it, for a command that has no device over the file: img create
     * and img convert's destination, which truncate it and write it through descriptors of
     * their own, and the images img info, map, check and convert read. qemu-img takes the same
     * bytes before it truncates an image (block/file-posix.c {@code raw_co_create}: "Step one:
     * Take locks", then the check, then the truncate) or reads its metadata, so a refusal here
     * has changed nothing. Opening for writing creates a missing file, as {@code raw_co_create}
     * does (O_CREAT, no O_TRUNC).
     *
     * @param path  the image
     * @param write true to write it (it is created when missing)
     * @return the locks; closing them closes the descriptor that holds them
     * @throws IOException when the file can't be opened, or another user conflicts (qemu-img's
     *                     words)
     */
    public static ImageLocking.Held onFile(Path path, boolean write) throws IOException {
        int fd = Libc.open(path.toString(), (write ? Fcntl.O_RDWR | Fcntl.O_CREAT : Fcntl.O_RDONLY) | Fcntl.O_CLOEXEC,
                0644);
        if (fd < 0) {
            throw new IOException(path + ": Could not open: " + Errno.describe(-fd));
        }
        try {
            ImageLocking.Held l = take(null, fd, path, write);
            if (l == ImageLocking.NONE) {
                Libc.close(fd); // no locks here: nothing to hold the descriptor for
            }
            return l;
        } catch (IOException | RuntimeException e) {
            Libc.close(fd); // take gave back what it took; the descriptor is this method's
            throw e;
        }
    }

    private static ImageLocking.Held take(BackingFile file, int fd, Path path, boolean write) throws IOException {
        if (unsupported) {
            return ImageLocking.NONE;
        }
        int perm = CONSISTENT_READ | (write ? WRITE | RESIZE : 0);
        int unshared = WRITE | RESIZE;
        QemuLocks l = new QemuLocks(file, fd, perm, unshared);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment f = a.allocate(Fcntl.FLOCK_SIZE, 8);
            for (int i = 0; i < PERM_BITS; i++) {
                if ((perm & 1 << i) != 0) {
                    l.set(f, RAW_LOCK_PERM_BASE + i, Fcntl.F_RDLCK, path);
                }
                if ((unshared & 1 << i) != 0) {
                    l.set(f, RAW_LOCK_SHARED_BASE + i, Fcntl.F_RDLCK, path);
                }
            }
            if (unsupported) {
                return ImageLocking.NONE;
            }
            for (int i = 0; i < PERM_BITS; i++) {
                if ((perm & 1 << i) != 0 && l.held(f, RAW_LOCK_SHARED_BASE + i)) {
                    throw conflict(path, "Failed to get \"" + PERM_NAMES[i] + "\" lock");
                }
                if ((unshared & 1 << i) != 0 && l.held(f, RAW_LOCK_PERM_BASE + i)) {
                    throw conflict(path, "Failed to get shared \"" + PERM_NAMES[i] + "\" lock");
                }
            }
        } catch (IOException | RuntimeException e) {
            l.unlockAll();
            throw e;
        }
        return l;
    }

    private static IOException conflict(Path path, String what) {
        return new IOException(path + ": " + what + " (is another process using the image? qemu, qemu-nbd, qemu-img"
                + " and biostack lock the same bytes; stop the other user first)");
    }

    private static void fill(MemorySegment f, short type, int at) {
        f.fill((byte) 0);
        f.set(ValueLayout.JAVA_SHORT, Fcntl.FLOCK_TYPE, type);
        f.set(ValueLayout.JAVA_SHORT, Fcntl.FLOCK_WHENCE, (short) 0); // SEEK_SET
        f.set(ValueLayout.JAVA_LONG, Fcntl.FLOCK_START, at);
        f.set(ValueLayout.JAVA_LONG, Fcntl.FLOCK_LEN, 1);
    }

    private void set(MemorySegment f, int at, short type, Path path) throws IOException {
        fill(f, type, at);
        int r = Libc.fcntl(fd, Fcntl.F_OFD_SETLK, f.address());
        if (r == -Errno.EINVAL) {
            // probe, don't assume: a kernel without F_OFD_SETLK locks nothing, as qemu without them
            if (!unsupported) {
                unsupported = true;
                LOG.log(System.Logger.Level.WARNING, "open file description locks are not supported here: "
                        + "images are opened without qemu's locks, so nothing refuses a second writer");
            }
        } else if (r == -Errno.EAGAIN || r == -Errno.EACCES) {
            // someone holds an exclusive lock on the byte: qemu-img check -r's (and biostack img check -r's)
            throw conflict(path, "Failed to lock byte " + at);
        } else if (r < 0 && r != -Errno.ENOLCK && r != -Errno.EOPNOTSUPP) {
            throw new IOException(path + ": cannot lock byte " + at + ": " + Errno.describe(-r));
        }
    }

    /** True when another open file description holds a lock on byte {@code at}. */
    private boolean held(MemorySegment f, int at) throws IOException {
        fill(f, Fcntl.F_WRLCK, at);
        int r = Libc.fcntl(fd, Fcntl.F_OFD_GETLK, f.address());
        if (r < 0) {
            return false; // a file system without locks (ENOLCK): as qemu, nothing to test against
        }
        return f.get(ValueLayout.JAVA_SHORT, Fcntl.FLOCK_TYPE) != Fcntl.F_UNLCK;
    }

    private void unlock(MemorySegment f, int at) {
        fill(f, Fcntl.F_UNLCK, at);
        Libc.fcntl(fd, Fcntl.F_OFD_SETLK, f.address()); // a byte this description does not hold: a no-op
    }

    /**
     * Gives the bytes back (from {@link #onFile}: closes their own descriptor). After the file
     * closed there is nothing to give (closing its descriptor dropped them), and its number may
     * name another file by now: nothing is done.
     */
    @Override
    public synchronized void close() {
        if (released || file != null && file.isClosed()) {
            return;
        }
        released = true;
        if (file == null) {
            Libc.close(fd); // the locks' own descriptor: closing it drops them all
            return;
        }
        unlockAll();
    }

    private void unlockAll() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment f = a.allocate(Fcntl.FLOCK_SIZE, 8);
            for (int i = 0; i < PERM_BITS; i++) {
                if ((perm & 1 << i) != 0) {
                    unlock(f, RAW_LOCK_PERM_BASE + i);
                }
                if ((unshared & 1 << i) != 0) {
                    unlock(f, RAW_LOCK_SHARED_BASE + i);
                }
            }
        }
    }
}
