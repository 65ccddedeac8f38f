package io.biostack.cli;

import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Op;
import io.biostack.block.Status;
import io.biostack.layer.qcow2.Qcow2Create;
import io.biostack.layer.qcow2.Qcow2Image;
import io.biostack.sys.ColdCalls;
import io.biostack.sys.Errno;
import io.biostack.sys.Fcntl;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.function.LongConsumer;

/**
 * The copy of {@code img convert}, as qemu-img's convert_co_do_copy runs it: the source's map is
 * cut into chunks first (the plan), then {@code depth} slots each copy one chunk at a time, a
 * READ bio into the slot's buffer whose completion submits the WRITE bio of the same buffer, so
 * reads and writes of different chunks overlap and writes land out of order (raw and qcow2 both
 * allow it: a qcow2 destination was laid out before the copy, every chunk has its place).
 *
 * <p>Holes of the source cost nothing on a fresh destination (it already reads as zeros); on a
 * device that already holds data they become WRITE_ZEROES bios.
 *
 * <p>The copy loop allocates nothing per chunk: the plan is arrays, each slot owns one bio (re-used
 * from its own end-io, as the bio's owner may) and one slice of a single buffer from the
 * destination's {@link BlockDevice#allocateIoMemory}. Free slots are bits of one word that
 * completions set and the submitting thread clears (no lock); the submitter parks until a bit
 * comes back. The first error stops new chunks; the copy then waits, bounded, for the chunks in
 * flight and reports the error with the offset it hit.
 */
final class ConvertPipeline {
    /** Kinds of chunk. */
    private static final byte DATA = 0;
    private static final byte ZERO = 1;
    private static final byte COMPRESSED = 2;
    /** Data in a local file, copied by the kernel ({@link #runFiles}). */
    private static final byte FILE = 3;

    /** Most slots: one bit each in the free word. qemu-img's -m allows at most 16. */
    static final int MAX_DEPTH = 64;

    private final BlockDevice out;
    private final Qcow2Create.Layout layout;
    private final int depth;
    private final int chunk;
    /** Longest wait with no chunk completing before the copy gives up (a hung device). */
    private final long stallNanos;

    // The plan: chunk i copies len[i] bytes of guest offset guest[i].
    private int n;
    private long[] guest = new long[256];
    private long[] srcOff = new long[256];
    private long[] dstOff = new long[256];
    private int[] len = new int[256];
    private byte[] kind = new byte[256];
    /** Source device of a DATA chunk; the source image and L2 entry of a COMPRESSED one. */
    private Object[] src = new Object[256];
    private long[] l2Entry = new long[256];
    private long planned;

    // The copy's state, shared with the completions.
    private final AtomicLong free = new AtomicLong();
    private final AtomicLong done = new AtomicLong();
    private final AtomicReference<String> failure = new AtomicReference<>();
    private volatile Thread submitter;

    /**
     * A pipeline that writes to {@code out}.
     *
     * @param out        the destination device, or null for a plan that {@link #runFiles} copies
     * @param layout     where a fresh qcow2 destination put each guest cluster, or null to write at
     *                   guest offsets
     * @param depth      chunks in flight, 1 to {@link #MAX_DEPTH}
     * @param chunk      bytes per chunk, a multiple of 4096
     * @param stallNanos how long the copy waits with nothing completing before it fails
     */
    ConvertPipeline(BlockDevice out, Qcow2Create.Layout layout, int depth, int chunk, long stallNanos) {
        if (depth < 1 || depth > MAX_DEPTH) {
            throw new IllegalArgumentException("parallel requests must be 1 to " + MAX_DEPTH + ", not " + depth);
        }
        if (chunk < 4096 || chunk % 4096 != 0) {
            throw new IllegalArgumentException("chunk size must be a multiple of 4096, not " + chunk);
        }
        this.out = out;
        this.layout = layout;
        this.depth = depth;
        this.chunk = chunk;
        this.stallNanos = stallNanos;
    }

    /**
     * Plans a copy of {@code length} bytes of data at {@code devOffset} of {@code dev} to guest
     * offset {@code guestOffset}, cut into chunks (and at the destination's discontinuities).
     *
     * @param dev         the source device that holds the data
     * @param devOffset   where on it
     * @param guestOffset the guest offset the data belongs at
     * @param length      bytes
     */
    void data(BlockDevice dev, long devOffset, long guestOffset, long length) {
        split(DATA, dev, devOffset, guestOffset, length, 0);
    }

    /**
     * Plans a copy of {@code length} bytes at {@code fileOffset} of the local file {@code file}
     * to guest offset {@code guestOffset}, for {@link #runFiles} (the kernel copies it).
     *
     * @param file        the source file that holds the data
     * @param fileOffset  where in it
     * @param guestOffset the guest offset the data belongs at
     * @param length      bytes
     */
    void fileData(Path file, long fileOffset, long guestOffset, long length) {
        split(FILE, file, fileOffset, guestOffset, length, 0);
    }

    /**
     * Plans zeros for a range: nothing on a fresh destination, WRITE_ZEROES otherwise.
     *
     * @param guestOffset the start
     * @param length      bytes
     * @param fresh       the destination already reads as zeros there
     */
    void zero(long guestOffset, long length, boolean fresh) {
        if (fresh) {
            planned += length;
            return;
        }
        // One bio per range: WRITE_ZEROES carries no data, so no buffer limits it. Its length
        // goes in srcOff (a ZERO chunk reads nothing).
        add(ZERO, null, length, guestOffset, guestOffset, 0, 0);
        planned += length;
    }

    /**
     * Plans a compressed source cluster, inflated when its chunk starts.
     *
     * @param q           the source image that holds it
     * @param entry       its L2 entry
     * @param inCluster   where the run starts inside the cluster
     * @param guestOffset the guest offset of the run
     * @param length      bytes of the run (within the cluster)
     */
    void compressed(Qcow2Image q, long entry, long inCluster, long guestOffset, long length) {
        split(COMPRESSED, q, inCluster, guestOffset, length, entry);
    }

    /**
     * Cuts a source run into chunks of at most {@code chunk} bytes, each also within one
     * contiguous piece of the destination's layout, and plans each.
     */
    private void split(byte k, Object source, long sourceOffset, long guestOffset, long length, long entry) {
        for (long d = 0; d < length; ) {
            long g = guestOffset + d;
            long n = Math.min(chunk, length - d);
            long target = g;
            if (layout != null) {
                long[] h = layout.host(g);
                if (h == null) {
                    throw new IllegalStateException("guest offset " + g + " was not laid out in the destination");
                }
                target = h[0];
                n = Math.min(n, h[1]);
            }
            add(k, source, sourceOffset + d, g, target, (int) n, entry);
            d += n;
        }
    }

    private void add(byte k, Object source, long so, long g, long d, int length, long entry) {
        if (n == guest.length) {
            int c = n * 2;
            guest = Arrays.copyOf(guest, c);
            srcOff = Arrays.copyOf(srcOff, c);
            dstOff = Arrays.copyOf(dstOff, c);
            len = Arrays.copyOf(len, c);
            kind = Arrays.copyOf(kind, c);
            src = Arrays.copyOf(src, c);
            l2Entry = Arrays.copyOf(l2Entry, c);
        }
        kind[n] = k;
        src[n] = source;
        srcOff[n] = so;
        guest[n] = g;
        dstOff[n] = d;
        len[n] = length;
        l2Entry[n] = entry;
        planned += length;
        n++;
    }

    /** Guest bytes chunk {@code i} covers. */
    private long bytes(int i) {
        return kind[i] == ZERO ? srcOff[i] : len[i];
    }

    /** Guest bytes planned that no chunk copies: holes left as holes on a fresh destination, done from the start. */
    private long holes() {
        long h = planned;
        for (int i = 0; i < n; i++) {
            h -= bytes(i);
        }
        return h;
    }

    /**
     * Chunks planned so far.
     *
     * @return the number of bios the copy will start (reads and zeroes)
     */
    int chunks() {
        return n;
    }

    /** One buffer and its bio; the bio's end-io is the slot itself (no allocation per chunk). */
    private final class Slot implements EndIo {
        final int id;
        final MemorySegment buf;
        final Bio bio = new Bio();
        int chunk;
        boolean writing;

        Slot(int id, MemorySegment buf) {
            this.id = id;
            this.buf = buf;
        }

        @Override
        public void endIo(Bio b) {
            int i = chunk;
            if (b.status() != Status.OK) {
                failed(i, writing, b.status(), b.detail());
                release(this);
            } else if (!writing) {
                writing = true;
                if (failure.get() != null) {
                    release(this);
                    return;
                }
                write(this, i);
            } else {
                done.addAndGet(bytes(i));
                release(this);
            }
        }
    }

    private void write(Slot s, int i) {
        try {
            s.bio.init(Op.WRITE, 0, dstOff[i], s).addSegment(s.buf).trim(len[i]);
            out.submit(s.bio);
        } catch (RuntimeException e) {
            failed(i, true, Status.IOERR, e.getMessage());
            release(s);
        }
    }

    private void failed(int i, boolean writing, Status st, String detail) {
        failure.compareAndSet(null, (writing ? "writing the destination" : "reading the source")
                + " at guest offset " + guest[i] + ": " + st.text() + " (" + st.name() + ")"
                + (detail == null || detail.isEmpty() ? "" : ": " + detail));
    }

    private void release(Slot s) {
        long bit = 1L << s.id;
        long m;
        do {
            m = free.get();
        } while (!free.compareAndSet(m, m | bit));
        Thread t = submitter;
        if (t != null) {
            LockSupport.unpark(t);
        }
    }

    /**
     * Runs the plan: starts every chunk, at most {@code depth} in flight, and waits for the last.
     *
     * @param progress called on this thread with the guest bytes done so far (planned holes on a
     *                 fresh destination count as done from the start)
     * @throws IOException the first error of the copy (source or destination, with the guest
     *                     offset), or a copy that stalled
     */
    void run(LongConsumer progress) throws IOException {
        int slots = (int) Math.min(depth, Math.max(1, n));
        done.set(holes());
        submitter = Thread.currentThread();
        Arena arena = Arena.ofShared();
        boolean quiet = false;
        try {
            MemorySegment all = out.allocateIoMemory((long) slots * chunk, arena);
            Slot[] slot = new Slot[slots];
            for (int i = 0; i < slots; i++) {
                slot[i] = new Slot(i, all.asSlice((long) i * chunk, chunk));
            }
            long allFree = slots == 64 ? -1L : (1L << slots) - 1;
            free.set(allFree);
            for (int i = 0; i < n && failure.get() == null; i++) {
                int id = take(progress);
                if (id < 0) {
                    break;
                }
                start(slot[id], i);
            }
            // Every slot back: nothing of ours is in flight any more.
            long lastDone = done.get();
            long lastFree = free.get();
            long since = System.nanoTime();
            while (free.get() != allFree) {
                LockSupport.parkNanos(this, TimeUnit.MILLISECONDS.toNanos(50));
                progress.accept(done.get());
                // Progress is a chunk done or a slot back (after an error slots come back without
                // bytes done); nothing of either for stallNanos is a hang below us.
                if (done.get() != lastDone || free.get() != lastFree) {
                    lastDone = done.get();
                    lastFree = free.get();
                    since = System.nanoTime();
                } else if (System.nanoTime() - since > stallNanos) {
                    throw stalled();
                }
            }
            quiet = true;
            progress.accept(done.get());
            String f = failure.get();
            if (f != null) {
                throw new IOException(f);
            }
        } finally {
            submitter = null;
            // A stalled device may still write into the buffers: then they stay (the process ends soon).
            if (quiet) {
                arena.close();
            }
        }
    }

    private IOException stalled() {
        String f = failure.get();
        return new IOException((f != null ? f + "; " : "") + "no I/O completed for "
                + TimeUnit.NANOSECONDS.toSeconds(stallNanos) + " s: giving up");
    }

    /** A free slot's index, or -1 once the copy failed; waits (parked) while all are busy. */
    private int take(LongConsumer progress) throws IOException {
        long lastDone = done.get();
        long since = System.nanoTime();
        while (true) {
            long m = free.get();
            if (m != 0) {
                int id = Long.numberOfTrailingZeros(m);
                if (free.compareAndSet(m, m & ~(1L << id))) {
                    return id;
                }
                continue;
            }
            if (failure.get() != null) {
                return -1;
            }
            LockSupport.parkNanos(this, TimeUnit.MILLISECONDS.toNanos(50));
            long d = done.get();
            progress.accept(d);
            if (d != lastDone) {
                lastDone = d;
                since = System.nanoTime();
            } else if (free.get() == 0 && System.nanoTime() - since > stallNanos) {
                throw stalled();
            }
        }
    }

    private void start(Slot s, int i) throws IOException {
        s.chunk = i;
        try {
            switch (kind[i]) {
                case DATA -> {
                    s.writing = false;
                    s.bio.init(Op.READ, 0, srcOff[i], s).addSegment(s.buf).trim(len[i]);
                    ((BlockDevice) src[i]).submit(s.bio);
                }
                case ZERO -> {
                    s.writing = true;
                    s.bio.init(Op.WRITE_ZEROES, 0, dstOff[i], s).setSize(bytes(i));
                    out.submit(s.bio);
                }
                default -> {
                    // Inflated here, on the submitting thread: compressed sources are rare and
                    // their clusters small; the write still overlaps the next chunks.
                    s.writing = true;
                    Qcow2Image q = (Qcow2Image) src[i];
                    byte[] plain = q.readCompressed(l2Entry[i]);
                    MemorySegment.copy(MemorySegment.ofArray(plain), srcOff[i], s.buf, 0, len[i]);
                    write(s, i);
                }
            }
        } catch (IOException e) {
            failure.compareAndSet(null, "reading the source at guest offset " + guest[i] + ": " + e.getMessage());
            release(s);
        } catch (RuntimeException e) {
            failed(i, s.writing, Status.IOERR, e.getMessage());
            release(s);
        }
    }

    /**
     * Runs a plan of {@link #fileData} (and compressed) chunks from local files to the local file
     * {@code dst} in the page cache, without a byte through user space: each data chunk is one
     * {@link FileChannel#transferTo}, which the JDK makes a {@code copy_file_range(2)} between
     * two files on Linux (the kernel copies page cache to page cache once, where a read and a
     * write copy twice). Measured on bench/img's 525 MiB: 0.19-0.20 s single-threaded, against
     * 0.26 s for pread+pwrite and 0.30 s for this pipeline's bios over the thread engine.
     *
     * <p>{@code threads} workers take chunks in turn; this thread is one of them and reports the
     * progress. Each worker has its own channels, so that no position is shared. ext4 takes the
     * destination's inode lock for each write, so a second thread gains only the overlap of its
     * reads (about 10% here); more than the cores gain nothing. A compressed chunk is inflated by
     * its worker and written with a positional write.
     *
     * @param dst      the destination file, already created (and laid out, for qcow2)
     * @param threads  workers, 1 or more
     * @param flush    fdatasync the destination at the end (every cache mode but unsafe)
     * @param progress called on this thread with the guest bytes done so far
     * @throws IOException the first error of the copy, with the guest offset it hit
     */
    void runFiles(Path dst, int threads, boolean flush, LongConsumer progress) throws IOException {
        for (int i = 0; i < n; i++) {
            if (kind[i] == ZERO || kind[i] == DATA) {
                throw new IllegalStateException("runFiles copies file and compressed chunks only");
            }
        }
        done.set(holes());
        progress.accept(done.get());
        preallocate(dst);
        AtomicInteger next = new AtomicInteger();
        int extra = Math.max(0, Math.min(threads, n) - 1);
        Thread[] helpers = new Thread[extra];
        for (int t = 0; t < extra; t++) {
            helpers[t] = Thread.ofPlatform().name("biostack-convert-" + (t + 1)).daemon(true)
                    .start(() -> {
                        try {
                            copyFiles(dst, next, null);
                        } catch (Throwable e) {
                            // An Error here would end this worker with its chunk taken and not
                            // copied: the copy must fail, never finish without it.
                            failure.compareAndSet(null, "copying: " + e);
                            throw e;
                        }
                    });
        }
        copyFiles(dst, next, progress);
        for (Thread t : helpers) {
            try {
                // Each worker ends after its chunk once the plan runs out or a copy failed: a
                // local file copy has no hang of its own to time out.
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                failure.compareAndSet(null, "interrupted");
            }
        }
        progress.accept(done.get());
        String f = failure.get();
        if (f != null) {
            throw new IOException(f);
        }
        if (flush) {
            try (FileChannel ch = FileChannel.open(dst, StandardOpenOption.WRITE)) {
                ch.force(false);
            }
        }
    }

    /**
     * Allocates the ranges of {@code dst} that the copy will write, before it writes them, in as
     * few {@code fallocate(2)} calls as their order allows. ext4 then copies into allocated
     * (unwritten) extents, without reserving delayed-allocation blocks page by page: the 525 MiB
     * of bench/img copied in 0.18-0.22 s after it, against 0.24-0.32 s without (copy_file_range,
     * 2 MiB at a time, 1 GiB sparse destination and a dense one alike). Parts of a range that the
     * copy leaves unwritten (the end of a partly filled cluster) read as zeros, as unwritten
     * extents do. No space left fails here, before a byte is copied. A file system without
     * fallocate (-EOPNOTSUPP) copies as before.
     */
    private void preallocate(Path dst) throws IOException {
        int fd = ColdCalls.open(dst.toString(), Fcntl.O_WRONLY | Fcntl.O_CLOEXEC, 0);
        if (fd < 0) {
            throw new IOException("opening the destination " + dst + ": " + Errno.describe(fd));
        }
        try {
            long from = -1;
            long to = -1;
            long guestFrom = -1;
            for (int i = 0; i <= n; i++) {
                if (i < n && kind[i] != FILE && kind[i] != COMPRESSED) {
                    continue;
                }
                if (i < n && dstOff[i] == to) {
                    to += len[i];
                    continue;
                }
                if (from >= 0) {
                    int r = ColdCalls.fallocate(fd, 0, from, to - from);
                    if (r == -Errno.ENOSPC || r == -Errno.EFBIG || r == -Errno.EDQUOT) {
                        throw new IOException("writing the destination at guest offset " + guestFrom
                                + " (allocating " + (to - from) + " bytes): " + Errno.describe(r));
                    }
                    if (r < 0) {
                        return; // no fallocate here: the copy allocates as it writes
                    }
                }
                if (i < n) {
                    from = dstOff[i];
                    to = from + len[i];
                    guestFrom = guest[i];
                }
            }
        } finally {
            ColdCalls.close(fd);
        }
    }

    /** One worker of {@link #runFiles}: takes chunk after chunk until none is left or one failed. */
    private void copyFiles(Path dst, AtomicInteger next, LongConsumer progress) {
        Map<Object, FileChannel> sources = new HashMap<>();
        FileChannel out = null;
        int i = -1;
        try {
            out = FileChannel.open(dst, StandardOpenOption.WRITE);
            while (failure.get() == null && (i = next.getAndIncrement()) < n) {
                if (kind[i] == FILE) {
                    FileChannel in = sources.get(src[i]);
                    if (in == null) {
                        in = FileChannel.open((Path) src[i], StandardOpenOption.READ);
                        sources.put(src[i], in);
                    }
                    long from = srcOff[i];
                    long to = dstOff[i];
                    long left = len[i];
                    while (left > 0) {
                        out.position(to);
                        long k = in.transferTo(from, left, out);
                        if (k <= 0 && from + left - in.size() < ImgChain.SECTOR && from >= in.size()) {
                            break; // the file ends inside its last sector: the rest reads as zeros, as qemu's
                        }
                        if (k <= 0) {
                            throw new IOException(src[i] + " ends at " + in.size() + ", before " + (from + left) + " bytes");
                        }
                        from += k;
                        to += k;
                        left -= k;
                    }
                } else {
                    byte[] plain = ((Qcow2Image) src[i]).readCompressed(l2Entry[i]);
                    ByteBuffer b = ByteBuffer.wrap(plain, (int) srcOff[i], len[i]);
                    for (long at = dstOff[i]; b.hasRemaining(); ) {
                        at += out.write(b, at);
                    }
                }
                done.addAndGet(len[i]);
                if (progress != null) {
                    progress.accept(done.get());
                }
            }
        } catch (IOException | RuntimeException e) {
            // copy_file_range reports the errors of both files as one: a full or failing
            // destination is by far the likelier (ENOSPC, EFBIG, EIO on writeback), so say that.
            String at = i >= 0 && i < n ? " at guest offset " + guest[i] : "";
            failure.compareAndSet(null, "writing the destination" + at + " (copied by the kernel): "
                    + (e.getMessage() == null ? e.toString() : e.getMessage()));
        } finally {
            for (FileChannel c : sources.values()) {
                closeQuietly(c);
            }
            closeQuietly(out);
        }
    }

    private static void closeQuietly(FileChannel c) {
        if (c != null) {
            try {
                c.close();
            } catch (IOException ignored) {
                // read-only source, or a destination whose data is already written (flush comes after)
            }
        }
    }
}
