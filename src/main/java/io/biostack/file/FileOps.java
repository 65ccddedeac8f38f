package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.Op;
import io.biostack.block.Status;
import io.biostack.sys.Errno;
import io.biostack.sys.Falloc;
import io.biostack.sys.Fs;

/**
 * What a file bio turns into at the kernel boundary, shared by both engines so they agree
 * (the loop driver's {@code lo_req_flush}, {@code lo_fallocate}, {@code lo_rw_aio}), and the one
 * place where an errno becomes a {@link Status}.
 */
final class FileOps {
    private FileOps() {
    }

    /** fallocate mode for DISCARD and WRITE_ZEROES (loop.c {@code lo_fallocate}, linux/falloc.h). */
    static int fallocateMode(Bio bio) {
        if (bio.op() == Op.WRITE_ZEROES && bio.hasFlag(BioFlags.NOUNMAP)) {
            return Falloc.FALLOC_FL_ZERO_RANGE | Falloc.FALLOC_FL_KEEP_SIZE;
        }
        return Falloc.FALLOC_FL_PUNCH_HOLE | Falloc.FALLOC_FL_KEEP_SIZE;
    }

    /** RWF_* flags of a read or write (linux/fs.h): FUA is RWF_DSYNC, NOWAIT is RWF_NOWAIT. */
    static int rwFlags(Bio bio) {
        int f = 0;
        if (bio.op() == Op.WRITE && bio.hasFlag(BioFlags.FUA)) {
            f |= Fs.RWF_DSYNC;
        }
        if (bio.hasFlag(BioFlags.NOWAIT)) {
            f |= Fs.RWF_NOWAIT;
        }
        return f;
    }

    /**
     * Fails {@code bio} with the status for a negative kernel result: the single errno → status
     * conversion of the stack. The message names the op, file and offset.
     */
    static void fail(Bio bio, BackingFile file, long res) {
        int errno = (int) -res;
        Status s = Status.fromErrno(errno);
        if (bio.op() == Op.DISCARD || bio.op() == Op.WRITE_ZEROES) {
            if (errno == Errno.EOPNOTSUPP || errno == Errno.ENOSYS) {
                s = Status.NOTSUPP;
            }
        }
        bio.setStatus(s, bio.op() + " at offset " + bio.offset() + " of " + file.path() + ": "
                + Errno.name(errno) + " (" + Errno.describe(errno) + ")");
    }

    /** True for results that mean "do it again" rather than an error. */
    static boolean retryable(Bio bio, long res) {
        return res == -Errno.EINTR || res == -Errno.EAGAIN && !bio.hasFlag(BioFlags.NOWAIT);
    }
}
