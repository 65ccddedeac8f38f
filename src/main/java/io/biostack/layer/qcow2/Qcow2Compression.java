package io.biostack.layer.qcow2;

import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * Compressed clusters (qcow2.rst "Compressed Clusters Descriptor", qemu's
 * {@code qcow2-threads.c}): deflate is raw deflate (zlib's window bits -12, no header); zstd is
 * one zstd frame, followed by padding up to the sector end that the decoder must ignore.
 */
final class Qcow2Compression {
    /** One decoder per thread: its tables and literal buffer (about 140 KiB) are reused. */
    private static final ThreadLocal<ZstdDecoder> ZSTD = ThreadLocal.withInitial(ZstdDecoder::new);

    private Qcow2Compression() {
    }

    /**
     * Decompresses {@code in} into exactly one cluster: raw deflate, or zstd frames (bytes after
     * the frame that fills the cluster are the sector's padding and are ignored, as qemu's
     * {@code qcow2_zstd_decompress} ignores them).
     *
     * @param type        {@link Qcow2Header#COMPRESSION_DEFLATE} or {@link Qcow2Header#COMPRESSION_ZSTD}
     * @param in          the compressed run, as read from the image
     * @param clusterSize the cluster size
     * @return the cluster
     * @throws Qcow2Exception when the data does not inflate to a whole cluster
     */
    static byte[] decompress(int type, byte[] in, int clusterSize) {
        byte[] out = new byte[clusterSize];
        if (type == Qcow2Header.COMPRESSION_DEFLATE) {
            Inflater inf = new Inflater(true);
            try {
                inf.setInput(in);
                int n = 0;
                while (n < clusterSize) {
                    int r = inf.inflate(out, n, clusterSize - n);
                    if (r == 0 && (inf.finished() || inf.needsInput() || inf.needsDictionary())) {
                        break;
                    }
                    n += r;
                }
                if (n != clusterSize) {
                    throw new Qcow2Exception("compressed cluster inflates to " + n + " bytes, not " + clusterSize);
                }
                return out;
            } catch (DataFormatException e) {
                throw new Qcow2Exception("compressed cluster is not valid deflate data: " + e.getMessage());
            } finally {
                inf.end();
            }
        }
        if (type == Qcow2Header.COMPRESSION_ZSTD) {
            ZSTD.get().decompress(in, in.length, out);
            return out;
        }
        throw new Qcow2Exception("unknown compression type " + type);
    }
}
