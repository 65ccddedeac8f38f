package io.biostack.layer.qcow2;

/**
 * The constant tables of RFC 8878 that {@link ZstdDecoder} and {@link ZstdEncoder} share: the
 * length codes' baselines and extra bits, and the predefined FSE distributions. The arrays are
 * never written after class initialisation.
 */
final class ZstdTables {
    private ZstdTables() {
    }

    /** RFC 8878 4.1.1: the largest accuracy logs of the literal length, match length, offset tables. */
    static final int LL_MAX_LOG = 9, ML_MAX_LOG = 9, OF_MAX_LOG = 8;
    /** Largest symbol of each code (RFC 8878 3.1.1.3.2.1.1 and .2). */
    static final int LL_MAX = 35, ML_MAX = 52, OF_MAX = 31;

    /** RFC 8878 3.1.1.3.2.1.1: literal length codes, baseline and extra bits. */
    static final int[] LL_BASE = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 28,
            32, 40, 48, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
    static final int[] LL_BITS = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7,
            8, 9, 10, 11, 12, 13, 14, 15, 16};
    /** RFC 8878 3.1.1.3.2.1.1: match length codes, baseline (of Match_Length) and extra bits. */
    static final int[] ML_BASE = new int[ML_MAX + 1];
    static final int[] ML_BITS = new int[ML_MAX + 1];

    static {
        int[] base = {35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515, 1027, 2051, 4099, 8195, 16387, 32771,
                65539};
        int[] bits = {1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        for (int i = 0; i < 32; i++) {
            ML_BASE[i] = i + 3;
        }
        System.arraycopy(base, 0, ML_BASE, 32, base.length);
        System.arraycopy(bits, 0, ML_BITS, 32, bits.length);
    }

    /** RFC 8878 3.1.1.3.2.2.1-3: the predefined distributions (accuracy logs 6, 6 and 5). */
    static final short[] LL_DEFAULT = {4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2,
            3, 2, 1, 1, 1, 1, 1, -1, -1, -1, -1};
    static final short[] ML_DEFAULT = {1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1};
    static final short[] OF_DEFAULT = {1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            -1, -1, -1, -1, -1};
}
