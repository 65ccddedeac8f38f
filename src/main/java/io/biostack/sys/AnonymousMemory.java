package io.biostack.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Anonymous memory from {@code mmap(2)}: a range reserved at once and filled by the kernel, a
 * zeroed page at a time, as it is first touched, the way the kernel's own ramdisk ({@code brd})
 * takes a page per first write. {@link #release} gives pages back ({@code MADV_DONTNEED}), and
 * they read as zeros afterwards.
 *
 * <p>Why not {@code Arena.allocate}: the JDK zeroes every allocation itself, counts it against
 * {@code -XX:MaxDirectMemorySize} (by default the heap's maximum, so a ramdisk larger than the
 * heap fails with "Cannot reserve direct buffer memory"), and when near that limit it runs a GC
 * and sleeps, on whatever thread allocates: for a ramdisk, the reactor serving the write.
 * Measured here: 228 µs per 64 KiB {@code Arena.ofAuto().allocate} while filling 1 GiB.
 *
 * <p>Ownership: the mapping belongs to the arena passed to {@link #reserve}; it is unmapped when
 * that arena closes (or, for an automatic arena, once the segment is unreachable), so memory a
 * bio still copies into stays mapped.
 */
public final class AnonymousMemory {
    private AnonymousMemory() {
    }

    /**
     * True when this JVM may map memory: native access is enabled for this module and the OS is
     * Linux. Probed once; callers fall back to arena allocations otherwise.
     *
     * @return whether {@link #reserve} can work
     */
    public static boolean available() {
        return Probe.OK;
    }

    private static final class Probe {
        static final boolean OK = probe();

        private static boolean probe() {
            // Without native access a restricted call prints a warning or throws: fall back quietly.
            if (!AnonymousMemory.class.getModule().isNativeAccessEnabled()
                    || !System.getProperty("os.name", "").equals("Linux")) {
                return false;
            }
            try {
                Class.forName(Libc.class.getName());
                return true;
            } catch (ClassNotFoundException | RuntimeException | LinkageError e) {
                return false;
            }
        }
    }

    /**
     * Reserves {@code bytes} of zero-filled, private anonymous memory with no swap reservation
     * ({@code MAP_NORESERVE}): nothing is taken until a page is first written.
     *
     * @param bytes the size, more than 0
     * @param arena owns the mapping: closing it unmaps the range
     * @return the memory, page aligned, or null when {@link #available()} is false or mmap fails
     *         (the caller falls back)
     */
    public static MemorySegment reserve(long bytes, Arena arena) {
        if (!available() || bytes <= 0) {
            return null;
        }
        long addr = Libc.mmap(0L, bytes, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS | Mman.MAP_NORESERVE, -1, 0L);
        if (addr <= 0L) {
            return null; // -errno
        }
        return MemorySegment.ofAddress(addr).reinterpret(bytes, arena, s -> Libc.munmap(addr, bytes));
    }

    /**
     * Size of a transparent huge page with 4 KiB base pages (x86-64, arm64):
     * {@code /sys/kernel/mm/transparent_hugepage/hpage_pmd_size}.
     */
    public static final long HUGE_PAGE = 2L << 20;

    /**
     * Like {@link #reserve}, but starting on a {@link #HUGE_PAGE} boundary and advised
     * {@code MADV_HUGEPAGE}, so that where transparent huge pages are on ("always", or
     * "madvise" as on most distributions) the kernel fills it a 2 MiB page per fault. Why:
     * every first touch of a small page costs a fault, measured here at 4 to 30 µs a page in
     * this VM, so a 16 MiB I/O buffer cost 4096 faults (20 to 120 ms, more under load) and took
     * 2 ms with huge pages. Where huge pages are off, it is {@link #reserve} with an aligned start.
     *
     * @param bytes the size, more than 0
     * @param arena owns the mapping: closing it unmaps the range
     * @return zero-filled memory aligned to {@link #HUGE_PAGE}, or null when {@link #available()}
     *         is false or mmap fails (the caller falls back)
     */
    public static MemorySegment reserveHuge(long bytes, Arena arena) {
        if (!available() || bytes <= 0) {
            return null;
        }
        long keep = (bytes + 4095) & -4096L;
        long total = keep + HUGE_PAGE; // room to move the start up to a huge-page boundary
        long addr = Libc.mmap(0L, total, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS | Mman.MAP_NORESERVE, -1, 0L);
        if (addr <= 0L) {
            return null; // -errno
        }
        long start = (addr + HUGE_PAGE - 1) & -HUGE_PAGE;
        // Give back the parts before the boundary and after the range (munmap of whole pages
        // inside a mapping we own cannot fail but for resource limits; a failure only leaves them).
        if (start > addr) {
            Libc.munmap(addr, start - addr);
        }
        long tail = addr + total - (start + keep);
        if (tail > 0) {
            Libc.munmap(start + keep, tail);
        }
        // Advice only: a kernel without THP says EINVAL and the range keeps small pages.
        Libc.madvise(start, keep, Mman.MADV_HUGEPAGE);
        return MemorySegment.ofAddress(start).reinterpret(bytes, arena, s -> Libc.munmap(start, keep));
    }

    /**
     * Gives the pages of {@code part} (a page-aligned slice of a {@link #reserve}d range) back to
     * the kernel; they read as zeros from now on.
     *
     * @param part the slice; its address must be page aligned (its length is rounded up to a
     *         page, which the reserved range always covers)
     * @return true when done; false if madvise failed (the memory is then still in use, and
     *         still holds its old contents)
     */
    public static boolean release(MemorySegment part) {
        return Libc.madvise(part.address(), part.byteSize(), Mman.MADV_DONTNEED) == 0;
    }
}
