package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.block.BioException;
import io.biostack.block.EndIo;
import io.biostack.block.IoIter;
import io.biostack.block.Op;
import io.biostack.block.Status;

import java.util.concurrent.CompletableFuture;

/**
 * Direct I/O for library users, phase one: caller memory (any kind, through an {@link IoIter})
 * becomes a file bio. Native memory aligned for the file goes to the kernel as it is (zero
 * copy); heap or misaligned memory is bounced by {@link BackingFile#submitFileBio}; the bio is
 * split to the file's limits there.
 *
 * <p>The caller keeps the memory alive and untouched until the future completes. The future
 * completes on the file engine's I/O thread; stages chained without {@code ...Async} run there
 * and must not block. Any thread may call these methods.
 */
public final class DirectIo {
    private static final EndIo COMPLETE = bio -> {
        @SuppressWarnings("unchecked")
        CompletableFuture<Long> f = (CompletableFuture<Long>) bio.privateData();
        long bytes = bio.privateLong();
        Status s = bio.status();
        if (s.isOk()) {
            f.complete(bytes);
        } else {
            f.completeExceptionally(new BioException(s, bio.detail()));
        }
    };

    private DirectIo() {
    }

    /**
     * Reads {@code dst.count()} bytes at {@code position}.
     *
     * @param file     the file
     * @param position the file offset
     * @param dst      where the bytes go; bounced when the kernel can't take it as it is
     * @return completes with the byte count, or with a {@link BioException}
     */
    public static CompletableFuture<Long> read(BackingFile file, long position, IoIter dst) {
        return submit(file, Op.READ, 0, position, dst);
    }

    /**
     * Writes {@code src.count()} bytes at {@code position}.
     *
     * @param file     the file
     * @param position the file offset
     * @param src      the bytes; bounced when the kernel can't take them as they are
     * @param flags    bio flags; may hold FUA
     * @return completes with the byte count, or with a {@link BioException}
     */
    public static CompletableFuture<Long> write(BackingFile file, long position, IoIter src, int flags) {
        return submit(file, Op.WRITE, flags, position, src);
    }

    /**
     * Whether {@code mem} would go to the kernel without a bounce.
     *
     * @param file the file the I/O is for
     * @param mem  the memory
     * @return true when it is native and aligned for the file
     */
    public static boolean zeroCopy(BackingFile file, IoIter mem) {
        return mem.kernelSafe() && (!file.isDirect() || mem.isAligned(file.memoryAlignment()));
    }

    private static CompletableFuture<Long> submit(BackingFile file, Op op, int flags, long pos, IoIter mem) {
        CompletableFuture<Long> f = new CompletableFuture<>();
        long n = mem.count();
        Bio bio = new Bio().init(op, flags, pos, COMPLETE);
        bio.setPrivateData(f);
        bio.setPrivateLong(n);
        mem.copy().addTo(bio, n);
        if (n == 0) {
            f.complete(0L);
            return f;
        }
        file.submitFileBio(bio);
        return f;
    }
}
