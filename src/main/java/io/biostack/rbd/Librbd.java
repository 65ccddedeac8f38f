package io.biostack.rbd;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.Optional;

/**
 * librados and librbd's C API through FFM downcalls (include/rados/librados.h,
 * include/rbd/librbd.h of Ceph 16 "pacific"; no JNI, no headers needed at build time).
 *
 * <p>Pointers and handles ({@code rados_t}, {@code rados_ioctx_t}, {@code rbd_image_t},
 * {@code rbd_completion_t}, {@code char *}) are passed as raw {@code long} addresses, identical to
 * a pointer in the LP64 ABI, so the I/O path builds no {@link MemorySegment} per call. Every
 * function returns what the C function returns: 0 or a count, or {@code -errno} on failure
 * (librados' and librbd's own convention), and never throws for an errno.
 *
 * <p><b>Probe.</b> The libraries are opened once, when this class is first used;
 * {@link #api()} says, in words a user can act on, when they are missing (Debian's package
 * {@code librbd1}). Symbols that older librbd lacks ({@code rbd_aio_write_zeroes}, added in
 * Ceph 15) are looked up by name and may be null: {@link Api#hasWriteZeroes()}.
 */
@SuppressWarnings("restricted")
final class Librbd {
    /** The sonames Debian's librbd1 and librados2 install (librbd1 depends on librados2). */
    static final String LIBRBD = "librbd.so.1";
    static final String LIBRADOS = "librados.so.2";

    /** librbd.h: {@code RBD_WRITE_ZEROES_FLAG_THICK_PROVISION} (1 << 0): write zeros, allocate. */
    static final int WRITE_ZEROES_FLAG_THICK_PROVISION = 1;

    /** librbd.h: {@code sizeof(rbd_image_info_t)} on LP64 (3 × u64, int, char[24], i64, char[96]). */
    static final long IMAGE_INFO_SIZE = 160;
    /** librbd.h: offset of {@code rbd_image_info_t.obj_size}. */
    static final long IMAGE_INFO_OBJ_SIZE = 8;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final Api API;
    private static final String MISSING;

    static {
        Api a = null;
        String m = null;
        try {
            a = load(LIBRBD, LIBRADOS);
        } catch (IOException e) {
            m = e.getMessage();
        }
        API = a;
        MISSING = m;
    }

    private Librbd() {
    }

    /** The loaded API, or an exception whose message names the package to install. */
    static Api api() throws IOException {
        if (API == null) {
            throw new IOException(MISSING);
        }
        return API;
    }

    /** True when librbd and librados could be opened on this machine. */
    static boolean available() {
        return API != null;
    }

    /**
     * Opens the two libraries by soname and links every function; fails with a message that
     * names the Debian packages when either is missing. Package-private so that a test can
     * probe a library name that does not exist.
     */
    static Api load(String librbd, String librados) throws IOException {
        SymbolLookup rbd;
        SymbolLookup rados;
        try {
            rados = SymbolLookup.libraryLookup(librados, Arena.global());
            rbd = SymbolLookup.libraryLookup(librbd, Arena.global());
        } catch (IllegalArgumentException e) {
            throw new IOException("cannot load Ceph's block device library (" + librbd + ", " + librados
                    + "): install Debian's package librbd1 (apt-get install librbd1; "
                    + "ceph-common gives the rbd and ceph tools): " + e.getMessage(), e);
        }
        try {
            return new Api(rbd, rados);
        } catch (java.util.NoSuchElementException e) {
            throw new IOException(librbd + " lacks a function biostack needs (" + e.getMessage()
                    + "); install Debian's librbd1 from Ceph 15 or newer", e);
        }
    }

    /** The linked functions; each wrapper returns the C result. */
    static final class Api {
        private final MethodHandle radosCreate2;
        private final MethodHandle radosConfReadFile;
        private final MethodHandle radosConfSet;
        private final MethodHandle radosConnect;
        private final MethodHandle radosShutdown;
        private final MethodHandle radosIoctxCreate;
        private final MethodHandle radosIoctxDestroy;
        private final MethodHandle rbdCreate;
        private final MethodHandle rbdOpen;
        private final MethodHandle rbdClose;
        private final MethodHandle rbdGetSize;
        private final MethodHandle rbdResize;
        private final MethodHandle rbdStat;
        private final MethodHandle rbdGetFeatures;
        private final MethodHandle rbdFlush;
        private final MethodHandle aioCreateCompletion;
        private final MethodHandle aioReadv;
        private final MethodHandle aioWritev;
        private final MethodHandle aioFlush;
        private final MethodHandle aioDiscard;
        private final MethodHandle aioWriteZeroes;
        private final MethodHandle aioGetReturnValue;
        private final MethodHandle aioRelease;
        private final MethodHandle diffIterate2;

        private Api(SymbolLookup rbd, SymbolLookup rados) {
            radosCreate2 = link(rados, "rados_create2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
            radosConfReadFile = link(rados, "rados_conf_read_file", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
            radosConfSet = link(rados, "rados_conf_set", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
            radosConnect = link(rados, "rados_connect", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
            radosShutdown = link(rados, "rados_shutdown", FunctionDescriptor.ofVoid(JAVA_LONG));
            radosIoctxCreate = link(rados, "rados_ioctx_create", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
            radosIoctxDestroy = link(rados, "rados_ioctx_destroy", FunctionDescriptor.ofVoid(JAVA_LONG));
            rbdCreate = link(rbd, "rbd_create", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
            rbdOpen = link(rbd, "rbd_open", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
            rbdClose = link(rbd, "rbd_close", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
            rbdGetSize = link(rbd, "rbd_get_size", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
            // int rbd_resize(rbd_image_t image, uint64_t size) (include/rbd/librbd.h)
            rbdResize = link(rbd, "rbd_resize", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
            rbdStat = link(rbd, "rbd_stat", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
            rbdGetFeatures = link(rbd, "rbd_get_features", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
            rbdFlush = link(rbd, "rbd_flush", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
            aioCreateCompletion = link(rbd, "rbd_aio_create_completion", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
            aioReadv = link(rbd, "rbd_aio_readv", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG));
            aioWritev = link(rbd, "rbd_aio_writev", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG));
            aioFlush = link(rbd, "rbd_aio_flush", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
            aioDiscard = link(rbd, "rbd_aio_discard", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
            aioWriteZeroes = optional(rbd, "rbd_aio_write_zeroes",
                    FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_INT));
            aioGetReturnValue = link(rbd, "rbd_aio_get_return_value", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG));
            aioRelease = link(rbd, "rbd_aio_release", FunctionDescriptor.ofVoid(JAVA_LONG));
            diffIterate2 = link(rbd, "rbd_diff_iterate2", FunctionDescriptor.of(JAVA_INT,
                    JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_BYTE, JAVA_BYTE, JAVA_LONG, JAVA_LONG));
        }

        private static MethodHandle link(SymbolLookup lib, String name, FunctionDescriptor fd) {
            return LINKER.downcallHandle(lib.find(name).orElseThrow(() -> new java.util.NoSuchElementException(name)), fd);
        }

        private static MethodHandle optional(SymbolLookup lib, String name, FunctionDescriptor fd) {
            Optional<MemorySegment> s = lib.find(name);
            return s.map(a -> LINKER.downcallHandle(a, fd)).orElse(null);
        }

        /** True when this librbd has {@code rbd_aio_write_zeroes} (Ceph 15 and newer). */
        boolean hasWriteZeroes() {
            return aioWriteZeroes != null;
        }

        int radosCreate2(long pcluster, long clusterName, long name, long flags) {
            try {
                return (int) radosCreate2.invokeExact(pcluster, clusterName, name, flags);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int radosConfReadFile(long cluster, long path) {
            try {
                return (int) radosConfReadFile.invokeExact(cluster, path);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int radosConfSet(long cluster, long option, long value) {
            try {
                return (int) radosConfSet.invokeExact(cluster, option, value);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int radosConnect(long cluster) {
            try {
                return (int) radosConnect.invokeExact(cluster);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        void radosShutdown(long cluster) {
            try {
                radosShutdown.invokeExact(cluster);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int radosIoctxCreate(long cluster, long pool, long pioctx) {
            try {
                return (int) radosIoctxCreate.invokeExact(cluster, pool, pioctx);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        void radosIoctxDestroy(long ioctx) {
            try {
                radosIoctxDestroy.invokeExact(ioctx);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int rbdCreate(long ioctx, long name, long size, long porder) {
            try {
                return (int) rbdCreate.invokeExact(ioctx, name, size, porder);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int rbdOpen(long ioctx, long name, long pimage, long snap) {
            try {
                return (int) rbdOpen.invokeExact(ioctx, name, pimage, snap);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int rbdClose(long image) {
            try {
                return (int) rbdClose.invokeExact(image);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int rbdGetSize(long image, long psize) {
            try {
                return (int) rbdGetSize.invokeExact(image, psize);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int rbdResize(long image, long size) {
            try {
                return (int) rbdResize.invokeExact(image, size);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int rbdStat(long image, long info, long infoSize) {
            try {
                return (int) rbdStat.invokeExact(image, info, infoSize);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int rbdGetFeatures(long image, long pfeatures) {
            try {
                return (int) rbdGetFeatures.invokeExact(image, pfeatures);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int rbdFlush(long image) {
            try {
                return (int) rbdFlush.invokeExact(image);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int aioCreateCompletion(long cbArg, long cb, long pc) {
            try {
                return (int) aioCreateCompletion.invokeExact(cbArg, cb, pc);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int aioReadv(long image, long iov, int iovcnt, long off, long c) {
            try {
                return (int) aioReadv.invokeExact(image, iov, iovcnt, off, c);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int aioWritev(long image, long iov, int iovcnt, long off, long c) {
            try {
                return (int) aioWritev.invokeExact(image, iov, iovcnt, off, c);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int aioFlush(long image, long c) {
            try {
                return (int) aioFlush.invokeExact(image, c);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int aioDiscard(long image, long off, long len, long c) {
            try {
                return (int) aioDiscard.invokeExact(image, off, len, c);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int aioWriteZeroes(long image, long off, long len, long c, int zeroFlags, int opFlags) {
            try {
                return (int) aioWriteZeroes.invokeExact(image, off, len, c, zeroFlags, opFlags);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        long aioGetReturnValue(long c) {
            try {
                return (long) aioGetReturnValue.invokeExact(c);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        void aioRelease(long c) {
            try {
                aioRelease.invokeExact(c);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        int diffIterate2(long image, long fromSnap, long ofs, long len, boolean includeParent, boolean wholeObject,
                long cb, long arg) {
            try {
                return (int) diffIterate2.invokeExact(image, fromSnap, ofs, len,
                        (byte) (includeParent ? 1 : 0), (byte) (wholeObject ? 1 : 0), cb, arg);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        private static RuntimeException rethrow(Throwable t) {
            if (t instanceof RuntimeException r) {
                return r;
            }
            if (t instanceof Error e) {
                throw e;
            }
            return new IllegalStateException(t);
        }
    }
}
