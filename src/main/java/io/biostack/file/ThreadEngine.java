package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.block.Op;
import io.biostack.block.Status;
import io.biostack.sys.Iovec;
import io.biostack.sys.Libc;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The fallback engine where io_uring is missing or forbidden (an old kernel, a container's
 * seccomp, {@code kernel.io_uring_disabled}): a fixed pool of platform threads doing
 * {@code preadv2}/{@code pwritev2}/{@code fdatasync}/{@code fallocate}, with the same contract as
 * {@link UringEngine}. Slower (a thread hop per bio and a lock in the queue), but correct
 * everywhere. Each thread owns its iovec array; nothing is allocated per bio (the queue is an
 * array).
 */
final class ThreadEngine implements FileEngine {
    private final BlockingQueue<Bio> queue = new ArrayBlockingQueue<>(4096);
    /**
     * Each worker's own bios: those its end-io callbacks submitted while the queue was full. A
     * worker must not wait for room (it is what makes room): with every worker waiting in put,
     * nothing drained the queue and every bio hung. Worker-confined, so no lock; it allocates
     * only when it grows past its largest size so far.
     */
    private final ThreadLocal<ArrayDeque<Bio>> own = new ThreadLocal<>();
    private final Thread[] threads;
    private volatile boolean stopping;

    ThreadEngine(int nThreads) {
        threads = new Thread[nThreads];
        for (int i = 0; i < nThreads; i++) {
            threads[i] = Thread.ofPlatform().name("biostack-io-" + i).daemon(true).start(this::work);
        }
    }

    @Override
    public String describe() {
        return "threads (" + threads.length + ")";
    }

    @Override
    public EngineKind kind() {
        return EngineKind.THREADS;
    }

    @Override
    public void submit(Bio bio) {
        if (stopping) {
            bio.fail(Status.CANCELLED, "file engine is shut down");
            return;
        }
        if (!queue.offer(bio)) {
            ArrayDeque<Bio> mine = own.get();
            if (mine != null) {
                mine.addLast(bio); // a worker's callback: it does this bio itself, next
                return;
            }
            // Full: the submitter waits for room rather than dropping the bio. Bounded by QD.
            try {
                queue.put(bio);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                bio.fail(Status.CANCELLED, "interrupted while queueing");
            }
        }
    }

    private void work() {
        ArrayDeque<Bio> mine = new ArrayDeque<>();
        own.set(mine);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment iov = arena.allocate(UringEngine.MAX_SEGMENTS * Iovec.SIZE, 8);
            while (true) {
                Bio bio = mine.pollFirst();
                if (bio == null) {
                    bio = queue.poll();
                }
                if (bio == null) {
                    if (stopping) {
                        return; // only once the queue is empty: every bio in flight finishes
                    }
                    try {
                        bio = queue.poll(100, TimeUnit.MILLISECONDS);
                    } catch (InterruptedException e) {
                        continue; // shutdown() wakes us: look at the queue and stopping again
                    }
                    if (bio == null) {
                        continue;
                    }
                }
                BackingFile f = (BackingFile) bio.driverData();
                long res = doBio(f, bio, iov);
                if (res < 0) {
                    FileOps.fail(bio, f, res);
                }
                try {
                    f.completed(bio);
                } catch (RuntimeException e) {
                    System.getLogger("biostack.file").log(System.Logger.Level.ERROR, "end-io callback threw for " + bio, e);
                }
            }
        }
    }

    /** Does the whole bio; returns 0 or -errno. Short transfers are continued, never dropped. */
    private static long doBio(BackingFile f, Bio bio, MemorySegment iov) {
        int fd = f.fd();
        if (bio.hasFlag(io.biostack.block.BioFlags.PREFLUSH) && bio.op() != Op.FLUSH) {
            long r = fdatasync(bio, fd);
            if (r < 0) {
                return r;
            }
        }
        switch (bio.op()) {
            case FLUSH:
                return fdatasync(bio, fd);
            case DISCARD:
            case WRITE_ZEROES:
                while (true) {
                    long r = Libc.fallocate(fd, FileOps.fallocateMode(bio), bio.offset(), bio.size());
                    if (r >= 0 || !FileOps.retryable(bio, r)) {
                        return r;
                    }
                }
            default:
                break;
        }
        boolean read = bio.op() == Op.READ;
        int rw = FileOps.rwFlags(bio);
        while (bio.size() > 0) {
            int n = fill(bio, iov);
            long r = read ? Libc.preadv2(fd, iov.address(), n, bio.offset(), rw)
                    : Libc.pwritev2(fd, iov.address(), n, bio.offset(), rw);
            if (r < 0) {
                if (FileOps.retryable(bio, r)) {
                    continue;
                }
                return r;
            }
            if (r == 0) {
                if (read) {
                    bio.zeroFill();
                    return 0;
                }
                bio.setStatus(Status.IOERR, "short write: 0 of " + bio.size() + " bytes at offset "
                        + bio.offset() + " of " + f.path());
                return 0;
            }
            bio.advance(r);
        }
        return 0;
    }

    /** fdatasync, again while it is interrupted; no lambda, so nothing is allocated per bio. */
    private static long fdatasync(Bio bio, int fd) {
        while (true) {
            long r = Libc.fdatasync(fd);
            if (r >= 0 || !FileOps.retryable(bio, r)) {
                return r;
            }
        }
    }

    private static int fill(Bio bio, MemorySegment iov) {
        int i = bio.iter().index();
        long skip = bio.iter().doneInSegment();
        long left = bio.size();
        int n = 0;
        while (left > 0 && n < UringEngine.MAX_SEGMENTS) {
            MemorySegment v = bio.segment(i++);
            long len = Math.min(v.byteSize() - skip, left);
            Iovec.set(iov, n++, v.address() + skip, len);
            left -= len;
            skip = 0;
        }
        return n;
    }

    @Override
    public void shutdown() {
        stopping = true;
        // Wake idle workers now rather than at their next 100 ms poll timeout: that wait was the
        // last 80-100 ms of every `img convert` (its source and destination each close an engine).
        for (Thread t : threads) {
            t.interrupt();
        }
        for (Thread t : threads) {
            try {
                t.join(30_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }
}
