package io.biostack.layer.qcow2;

import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * Compressed clusters (qcow2.rst "Compressed Clusters Descriptor", qemu's
 * {@code qcow2-threads.c}): deflate is raw deflate (zlib's window bits -12, no header); zstd is
 * one zstd frame, followed by padding up to the sector end that the decoder must ignore.
 */
final class Qcow2Compression {
    private Qcow2Compression() {
    }

    /**
     * Inflates {@code in} into exactly one cluster.
     *
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
        throw new Qcow2Exception("zstd-compressed clusters are not supported yet");
    }
}
