package io.biostack.layer.crypt;

import io.biostack.sys.Libc;
import io.biostack.sys.Mman;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The memory of one Argon2 derivation: {@code bytes} of native memory, zeroed and given back on
 * {@link #close}.
 *
 * <p>Why not just {@link Arena#allocate}: Argon2 memory is touched once per page before it is
 * used, and on this project's virtual machines a 4 KiB page fault costs 7 to 15 us, which for
 * cryptsetup's default keyslot (about 474 MiB) is about a second, half of cryptsetup's own
 * unlock time (measured in bench/argon2: {@code Arena.allocate} of 256 MiB, which also zeroes it
 * on one thread, took 0.9 to 1.1 s of CPU; an anonymous mapping advised {@code MADV_HUGEPAGE}
 * 0.02 to 0.03 s). So where this module may call native code, the memory is an anonymous private
 * mapping, aligned to 2 MiB and advised for transparent huge pages ({@code MADV_HUGEPAGE}) and
 * out of core dumps ({@code MADV_DONTDUMP}: it holds key-derived data). The kernel hands it out
 * zeroed. Where native access is not enabled, or a call fails, it is an {@link Arena} allocation.
 *
 * <p>The three calls go through {@link Libc}, the one place for syscalls (DESIGN.md): this is
 * the only import of {@code io.biostack.sys} from a layer, for memory set-up at unlock time,
 * never on the I/O path. The segment belongs to a shared arena: closing it waits until no thread
 * is accessing it, then wipes and unmaps it. Owned by the one derivation that made it.
 */
final class Argon2Memory implements AutoCloseable {
    /** x86_64 and arm64 with 4 KiB base pages: a PMD-sized transparent huge page. */
    private static final long HUGE = 2L << 20;
    /** include/uapi/asm-generic/mman-common.h: MADV_DONTDUMP 16 (not in {@link Mman}, which this package does not own). */
    private static final int MADV_DONTDUMP = 16;

    private final Arena arena;
    private final MemorySegment segment;
    private final boolean mapped;

    private Argon2Memory(Arena arena, MemorySegment segment, boolean mapped) {
        this.arena = arena;
        this.segment = segment;
        this.mapped = mapped;
    }

    /**
     * {@code bytes} of zeroed native memory, 64-byte aligned (2 MiB when mapped).
     *
     * @param bytes the size
     * @return the memory; the caller closes it
     */
    static Argon2Memory allocate(long bytes) {
        return allocate(bytes, true);
    }

    /** {@link #allocate(long)}, with the mapping refused when {@code map} is false (for tests). */
    static Argon2Memory allocate(long bytes, boolean map) {
        Arena arena = Arena.ofShared();
        try {
            MemorySegment m = !map || Native.INSTANCE == null ? null : Native.INSTANCE.map(bytes, arena);
            if (m != null) {
                return new Argon2Memory(arena, m, true);
            }
            return new Argon2Memory(arena, arena.allocate(bytes, 64), false);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    /** True when derivations here get mappings advised for huge pages (native access is on). */
    static boolean mapsHugePages() {
        return Native.INSTANCE != null;
    }

    /** The memory; valid until {@link #close}. */
    MemorySegment segment() {
        return segment;
    }

    /** True when the memory is a mapping advised for huge pages (false: an arena allocation). */
    boolean mapped() {
        return mapped;
    }

    /** Zeroes the memory, then gives it back. Call only when no thread uses it any more. */
    @Override
    public void close() {
        try {
            segment.fill((byte) 0);
        } finally {
            arena.close();
        }
    }

    /** The mapping calls of {@link Libc}, usable only where native access is on (probed once). */
    private static final class Native {
        static final Native INSTANCE = probe();

        private static Native probe() {
            // Without native access a restricted call prints a warning (or throws): fall back quietly.
            if (!Argon2Memory.class.getModule().isNativeAccessEnabled()
                    || !System.getProperty("os.name", "").equals("Linux")) {
                return null;
            }
            try {
                Class.forName(Libc.class.getName()); // its downcall handles are made here, once
                return new Native();
            } catch (ClassNotFoundException | RuntimeException | LinkageError e) {
                return null;
            }
        }

        /** A 2 MiB-aligned anonymous mapping of {@code bytes} tied to {@code arena}, or null if mmap fails. */
        MemorySegment map(long bytes, Arena arena) {
            long len = (bytes + HUGE - 1) / HUGE * HUGE;
            long whole = len + HUGE; // room to align the start
            long addr;
            try {
                addr = Libc.mmap(0L, whole, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS,
                        -1, 0L);
            } catch (RuntimeException e) {
                return null;
            }
            if (addr <= 0L) {
                return null; // -errno: let the arena try, and fail with the JDK's own message
            }
            long start = (addr + HUGE - 1) & -HUGE;
            try {
                // Advice only: a kernel without THP, or with it set to never, just keeps small pages.
                Libc.madvise(start, len, Mman.MADV_HUGEPAGE);
                Libc.madvise(start, len, MADV_DONTDUMP);
            } catch (RuntimeException e) {
                // advice failed: the mapping still works
            }
            return MemorySegment.ofAddress(start).reinterpret(bytes, arena, s -> unmap(addr, whole));
        }

        private static void unmap(long addr, long whole) {
            int r = Libc.munmap(addr, whole);
            if (r < 0) {
                throw new IllegalStateException("argon2: munmap failed with errno " + -r);
            }
        }
    }
}
