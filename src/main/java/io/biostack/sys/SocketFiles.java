package io.biostack.sys;

import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.EnumSet;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Unix sockets bound with the file mode asked for, whatever the umask: a socket that drives a
 * disk is {@code 0600} unless its owner says otherwise ({@code serve --socket-mode}).
 *
 * <p>bind(2) creates the socket file with {@code 0777 & ~umask} (unix(7): "the file is created
 * with the permissions of the umask"), and connecting needs write permission on it. Binding and
 * then chmod-ing would leave a moment when anyone may connect; so the socket is bound inside a
 * fresh {@code 0700} directory beside its path, given its mode there, and renamed into place
 * (rename(2) is atomic and keeps the bound inode). Only where that detour would make the path too
 * long for {@code sun_path} (108 bytes, unix(7)) is it bound in place and chmod-ed at once.
 */
public final class SocketFiles {
    /** The mode of a socket nobody asked otherwise for: the owner reads and writes. */
    public static final int DEFAULT_MODE = 0600;
    /** unix(7): sizeof(sun_path), with its terminating NUL. */
    private static final int SUN_PATH = 108;

    /** Binds a socket to a path (an NIO channel's bind, or bind(2) on a descriptor). */
    @FunctionalInterface
    public interface Binder {
        /**
         * Binds the socket to {@code at}.
         *
         * @param at the path to bind to
         * @throws IOException when bind fails
         */
        void bind(Path at) throws IOException;
    }

    private SocketFiles() {
    }

    /**
     * Makes way for a socket at {@code path}: removes a stale socket (its server died), and
     * refuses a file that is not a socket (a mistyped path must not cost the user that file) or
     * a socket that still answers (another server's).
     *
     * @param path where a socket is to be bound
     * @param cant what failed, as messages begin ("can't listen on /run/x.sock")
     * @throws IOException when something other than a stale socket is at {@code path}
     */
    public static void removeStale(Path path, String cant) throws IOException {
        if (!Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        Object type = Files.getAttribute(path, "unix:mode", LinkOption.NOFOLLOW_LINKS);
        if ((((Integer) type) & 0170000) != 0140000) { // S_IFSOCK, inode(7)
            throw new IOException(cant + ": a file that is not a socket is in the way");
        }
        try (SocketChannel c = SocketChannel.open(UnixDomainSocketAddress.of(path))) {
            throw new IOException(cant + ": socket already in use: another server is listening on it");
        } catch (java.net.ConnectException e) {
            Files.delete(path); // nobody listens: a stale socket
        }
    }

    /**
     * Binds a unix socket to {@code path} with file mode {@code mode}, as the class comment says.
     * A file already at {@code path} is replaced (callers check for a live server first).
     *
     * @param path   where the socket is to be found
     * @param mode   its permission bits, 0 to 0777
     * @param binder binds the caller's socket to the path given
     * @throws IOException when the socket can't be bound or given its mode
     */
    public static void bind(Path path, int mode, Binder binder) throws IOException {
        Set<PosixFilePermission> perms = permissions(mode);
        Path parent = path.toAbsolutePath().getParent();
        Path dir = parent.resolve(".biostack-" + Integer.toHexString(ThreadLocalRandom.current().nextInt() >>> 4));
        Path tmp = dir.resolve("s");
        if (tmp.toString().getBytes(StandardCharsets.UTF_8).length >= SUN_PATH) {
            binder.bind(path);
            Files.setPosixFilePermissions(path, perms);
            return;
        }
        try {
            // mkdir applies the umask too, which can only take bits away from 0700
            Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(EnumSet.of(PosixFilePermission.OWNER_READ,
                    PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE)));
        } catch (FileAlreadyExistsException e) {
            throw new IOException("can't bind " + path + ": " + dir + " is in the way", e);
        }
        try {
            binder.bind(tmp);
            Files.setPosixFilePermissions(tmp, perms);
            Files.move(tmp, path, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
            Files.deleteIfExists(dir);
        }
    }

    /**
     * Reads a socket mode given in octal ({@code 600}, {@code 0660}).
     *
     * @param text the option's value
     * @return the mode
     * @throws IllegalArgumentException when it is not octal, beyond 0777, or takes read or write
     *         away from the owner (who must be able to reach the socket: {@code biostack dm})
     */
    public static int parseMode(String text) {
        int mode;
        try {
            mode = Integer.parseInt(text.trim(), 8);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("socket mode '" + text + "' is not an octal mode such as 0600 or 0660");
        }
        if (mode < 0 || mode > 0777) {
            throw new IllegalArgumentException("socket mode '" + text + "' must be within 0000..0777 (permission bits only)");
        }
        if ((mode & 0600) != 0600) {
            throw new IllegalArgumentException("socket mode '" + text + "' must let the owner read and write (0600)");
        }
        return mode;
    }

    /**
     * A mode as {@code ls -l} and {@code stat -c %a} would show its bits, in four octal digits.
     *
     * @param mode permission bits
     * @return for example {@code "0600"}
     */
    public static String format(int mode) {
        return String.format("%04o", mode);
    }

    private static Set<PosixFilePermission> permissions(int mode) {
        if (mode < 0 || mode > 0777) {
            throw new IllegalArgumentException("socket mode " + format(mode) + " is not within 0000..0777");
        }
        PosixFilePermission[] bits = {
            PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_READ,
            PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
            PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_READ,
        };
        Set<PosixFilePermission> out = EnumSet.noneOf(PosixFilePermission.class);
        for (int i = 0; i < bits.length; i++) {
            if ((mode & (1 << i)) != 0) {
                out.add(bits[i]);
            }
        }
        return out;
    }
}
