package io.biostack.layer.qcow2;

import static io.biostack.layer.qcow2.ZstdTables.LL_BASE;
import static io.biostack.layer.qcow2.ZstdTables.LL_BITS;
import static io.biostack.layer.qcow2.ZstdTables.LL_DEFAULT;
import static io.biostack.layer.qcow2.ZstdTables.LL_MAX;
import static io.biostack.layer.qcow2.ZstdTables.LL_MAX_LOG;
import static io.biostack.layer.qcow2.ZstdTables.ML_BASE;
import static io.biostack.layer.qcow2.ZstdTables.ML_BITS;
import static io.biostack.layer.qcow2.ZstdTables.ML_DEFAULT;
import static io.biostack.layer.qcow2.ZstdTables.ML_MAX;
import static io.biostack.layer.qcow2.ZstdTables.ML_MAX_LOG;
import static io.biostack.layer.qcow2.ZstdTables.OF_DEFAULT;
import static io.biostack.layer.qcow2.ZstdTables.OF_MAX;
import static io.biostack.layer.qcow2.ZstdTables.OF_MAX_LOG;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * A zstd compressor (RFC 8878) for qcow2's zstd clusters: one frame per cluster, as qemu's
 * {@code qcow2_zstd_compress} writes them (block/qcow2-threads.c: {@code ZSTD_compressStream2}
 * with {@code ZSTD_e_end} into a buffer of {@code cluster_size - 1} bytes; a cluster that does
 * not fit is stored uncompressed).
 *
 * <p>The frame is single-segment with its Frame_Content_Size set, no checksum, no dictionary
 * (3.1.1.1). Its blocks are at most 128 KiB (Block_Maximum_Size, 3.1.1.2.3); a block that does
 * not shrink is written raw. Matches come from a lazy LZ77 parse over hash chains of 4-byte
 * sequences (the last offset is tried first, as the repeat code is the cheapest to encode);
 * each kind of sequence symbol is coded in whichever of RLE_Mode, the predefined FSE
 * distribution (Predefined_Mode, 3.1.1.3.2.2.1-3) or a table of the block's own counts
 * (FSE_Compressed_Mode, described as 4.1.1 says) costs fewest bits; literals are Huffman-coded
 * (4.2, the weights FSE-coded or four bits each, whichever is shorter) when that pays, RLE when
 * they are one byte repeated, raw otherwise.
 *
 * <p>Every table and buffer is allocated once, when the encoder is made: compressing a cluster
 * allocates nothing. Not thread-safe: one encoder per thread.
 */
final class ZstdEncoder {
    /** RFC 8878 3.1.1: Magic_Number, little-endian. */
    static final int MAGIC = 0xFD2FB528;
    /** RFC 8878 3.1.1.2.3: Block_Maximum_Size is at most 128 KiB. */
    static final int MAX_BLOCK = 128 << 10;
    /** Shortest match the parser takes: 4 bytes, what one hash entry proves. */
    private static final int MIN_MATCH = 4;
    /** Hash heads of 4-byte sequences: 2^15 (128 KiB), enough for a 64 KiB cluster. */
    private static final int HASH_LOG = 15;
    /** Hash chain: the last 64 KiB of positions (a 2 MiB cluster's matches reach back that far). */
    private static final int CHAIN_SIZE = 1 << 16;
    private static final int CHAIN_MASK = CHAIN_SIZE - 1;
    /** A match this long ends the search for a longer one (zstd's "sufficient length"). */
    private static final int GOOD_ENOUGH = 48;
    /** A match this long is taken without looking one byte further. */
    private static final int LAZY_ENOUGH = 64;
    /**
     * Chain entries a search follows by default. Measured on 64 KiB clusters (bench/qcow2): 4
     * gives libzstd level 3's size (22.65 MB against 22.61 MB on zstd-encode.sh's 64 MiB mix)
     * at 150 MB/s of CPU; 8 is 1.5% smaller at 125 MB/s, 2 is 1.3% larger at 165 MB/s.
     */
    static final int DEFAULT_DEPTH = 4;
    /** Bytes at the end of a block the parser does not start a match in (it reads 8 at a time). */
    private static final int TAIL = 8;

    /** Code of each literal length below 64 and of each match length - 3 below 128. */
    private static final byte[] LL_CODE = new byte[64];
    private static final byte[] ML_CODE = new byte[128];

    static {
        for (int v = 0, c = 0; v < LL_CODE.length; v++) {
            while (c + 1 < LL_BASE.length && LL_BASE[c + 1] <= v) {
                c++;
            }
            LL_CODE[v] = (byte) c;
        }
        for (int v = 0, c = 0; v < ML_CODE.length; v++) {
            while (c + 1 < ML_BASE.length && ML_BASE[c + 1] - 3 <= v) {
                c++;
            }
            ML_CODE[v] = (byte) c;
        }
    }

    /**
     * An FSE encoding table (the inverse of RFC 8878 4.1.1's decoding table): the states in
     * the order the decoder numbers them, and per symbol how to find the bits to emit and the
     * next state. Built again in place for each block that describes its own table; the three
     * predefined ones are built once and shared.
     */
    private static final class FseTable {
        int log;
        /** Encoder states ({@code tableSize + decoder state}), grouped by symbol. */
        final short[] next;
        /** Per symbol: {@code (maxBitsOut << 16) - minStatePlus}, whence the bits to emit. */
        final int[] deltaBits;
        /** Per symbol: where its group of states starts in {@link #next}, less its count. */
        final int[] deltaState;
        private final short[] symbolAt;
        private final int[] cumul;

        FseTable(int maxSymbols, int maxLog) {
            next = new short[1 << maxLog];
            symbolAt = new short[1 << maxLog];
            deltaBits = new int[maxSymbols];
            deltaState = new int[maxSymbols];
            cumul = new int[maxSymbols + 1];
        }

        FseTable(short[] norm, int log) {
            this(norm.length, log);
            build(norm, norm.length, log);
        }

        /** Builds the table of {@code norm[0, n)} (counts summing to 2^log, -1 for "less than 1"). */
        void build(short[] norm, int n, int log) {
            this.log = log;
            int size = 1 << log;
            int mask = size - 1;
            int high = size - 1;
            // RFC 8878 4.1.1: "less than 1" symbols take the last states, then the others
            // are spread with step (size/2 + size/8 + 3), skipping those last states.
            cumul[0] = 0;
            for (int s = 0; s < n; s++) {
                if (norm[s] == -1) {
                    cumul[s + 1] = cumul[s] + 1;
                    symbolAt[high--] = (short) s;
                } else {
                    cumul[s + 1] = cumul[s] + norm[s];
                }
            }
            int step = (size >>> 1) + (size >>> 3) + 3;
            int pos = 0;
            for (int s = 0; s < n; s++) {
                for (int i = 0; i < norm[s]; i++) {
                    symbolAt[pos] = (short) s;
                    do {
                        pos = (pos + step) & mask;
                    } while (pos > high);
                }
            }
            for (int u = 0; u < size; u++) {
                next[cumul[symbolAt[u]]++] = (short) (size + u);
            }
            int total = 0;
            for (int s = 0; s < n; s++) {
                int c = norm[s];
                if (c == -1 || c == 1) {
                    deltaBits[s] = (log << 16) - size;
                    deltaState[s] = total - 1;
                    total++;
                } else if (c > 1) {
                    int maxBitsOut = log - (31 - Integer.numberOfLeadingZeros(c - 1));
                    deltaBits[s] = (maxBitsOut << 16) - (c << maxBitsOut);
                    deltaState[s] = total - c;
                    total += c;
                }
            }
        }

        /** The state a stream starts in so that its first decoded symbol is {@code s}. */
        int init(int s) {
            int nbBits = (deltaBits[s] + (1 << 15)) >>> 16;
            int value = (nbBits << 16) - deltaBits[s];
            return next[(value >>> nbBits) + deltaState[s]];
        }
    }

    private static final FseTable LL_TABLE = new FseTable(LL_DEFAULT, 6);
    private static final FseTable ML_TABLE = new FseTable(ML_DEFAULT, 6);
    private static final FseTable OF_TABLE = new FseTable(OF_DEFAULT, 5);
    /** Symbols of each kind: literal length codes 0..35, match length 0..52, offset 0..31. */
    private static final int LL_SYMBOLS = LL_MAX + 1, ML_SYMBOLS = ML_MAX + 1, OF_SYMBOLS = OF_MAX + 1;

    private static final VarHandle INT = MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle LONG = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    /**
     * Hash chains of 4-byte sequences: the last position of each hash, and for each position
     * the one before it with the same hash; positions are stored plus {@link #frameBase}, so
     * entries of earlier frames are below it and never taken.
     */
    private final int[] head = new int[1 << HASH_LOG];
    private final int[] chain = new int[CHAIN_SIZE];
    /** How many chain entries a search follows. */
    private final int depth;
    /** Positions below this (in the current frame) are already in the chains. */
    private int inserted;
    /** The offset of the match {@link #find} returned. */
    private int matchOff;
    private int base = 1;
    private int frameBase;
    /** The block being built: its literals, its sequences, and its encoded bytes. */
    private final byte[] literals = new byte[MAX_BLOCK];
    private final int[] seqLit = new int[MAX_BLOCK / MIN_MATCH + 1];
    private final int[] seqMatch = new int[MAX_BLOCK / MIN_MATCH + 1];
    private final int[] seqOffset = new int[MAX_BLOCK / MIN_MATCH + 1];
    private final byte[] llCodes = new byte[MAX_BLOCK / MIN_MATCH + 1];
    private final byte[] mlCodes = new byte[MAX_BLOCK / MIN_MATCH + 1];
    private final byte[] ofCodes = new byte[MAX_BLOCK / MIN_MATCH + 1];
    /** This block's own tables (FSE_Compressed_Mode or RLE_Mode), and the ones in use. */
    private final FseTable llOwn = new FseTable(LL_SYMBOLS, LL_MAX_LOG);
    private final FseTable mlOwn = new FseTable(ML_SYMBOLS, ML_MAX_LOG);
    private final FseTable ofOwn = new FseTable(OF_SYMBOLS, OF_MAX_LOG);
    private FseTable llUse;
    private FseTable mlUse;
    private FseTable ofUse;
    private final int[] symCount = new int[ML_SYMBOLS];
    private final short[] normCount = new short[ML_SYMBOLS];
    /** Worst case of a compressed block: literals and ~10 bytes of bits per 4-byte sequence. */
    private final byte[] block = new byte[MAX_BLOCK * 4 + 64];
    /** Huffman scratch (4.2): counts, the tree's nodes, and each symbol's code and length. */
    private final int[] count = new int[256];
    private final long[] sorted = new long[256];
    private final int[] nodeFreq = new int[512];
    private final int[] parent = new int[512];
    private final byte[] codeLen = new byte[256];
    private final int[] code = new int[256];
    private final byte[] weight = new byte[256];
    /** The Huffman weights' FSE table (weights 0..11, accuracy log at most 6). */
    private final FseTable weightTable = new FseTable(12, 6);
    private int nLit;
    private int nSeq;
    /** Repeat offsets (RFC 8878 3.1.1.5), as the decoder will hold them. */
    private int rep0;
    private int rep1;
    private int rep2;
    /** The bit stream under construction (written forward, read backward by the decoder). */
    private long bits;
    private int nBits;
    private int bitPos;

    /** An encoder that searches {@link #DEFAULT_DEPTH} chain entries a position. */
    ZstdEncoder() {
        this(DEFAULT_DEPTH);
    }

    /**
     * An encoder that searches {@code depth} chain entries a position (more: smaller, slower).
     *
     * @param depth at least 1
     */
    ZstdEncoder(int depth) {
        this.depth = Math.max(1, depth);
    }

    /**
     * Compresses {@code src[0, srcLen)} as one zstd frame into {@code dst}, unless the frame
     * would be longer than {@code dstCap} bytes.
     *
     * @param src    the input, at most 2^31 - 1 bytes (a qcow2 cluster is at most 2 MiB)
     * @param srcLen how many bytes of it to compress
     * @param dst    where the frame goes
     * @param dstCap the most bytes of {@code dst} the frame may take
     * @return the frame's length, or -1 when it does not fit in {@code dstCap}
     */
    int compress(byte[] src, int srcLen, byte[] dst, int dstCap) {
        dstCap = Math.min(dstCap, dst.length);
        if (dstCap < (srcLen < 256 ? 6 : srcLen < 65536 + 256 ? 7 : 9)) {
            return -1; // not even the frame header fits
        }
        // Frame header (3.1.1.1): Single_Segment_Flag, Frame_Content_Size in 1, 2 or 4 bytes.
        INT.set(dst, 0, MAGIC);
        int op = 4;
        if (srcLen < 256) {
            dst[op++] = 0x20;
            dst[op++] = (byte) srcLen;
        } else if (srcLen < 65536 + 256) {
            dst[op++] = 0x60;
            dst[op++] = (byte) (srcLen - 256);
            dst[op++] = (byte) ((srcLen - 256) >>> 8);
        } else {
            dst[op++] = (byte) 0xA0;
            INT.set(dst, op, srcLen);
            op += 4;
        }
        if (base > Integer.MAX_VALUE - srcLen - 1) {
            java.util.Arrays.fill(head, 0);
            base = 1;
        }
        // This frame's positions are stored plus frameBase; entries of earlier frames (and of
        // one that gave up half-way) are below it, so they are never taken for matches.
        frameBase = base;
        base += srcLen + 1;
        inserted = 0;
        rep0 = 1;
        rep1 = 4;
        rep2 = 8;
        int start = 0;
        do {
            int end = Math.min(srcLen, start + MAX_BLOCK);
            boolean last = end == srcLen;
            int raw = end - start;
            int n = compressBlock(src, start, end);
            if (n > 0 && n < raw) {
                if (op + 3 + n > dstCap) {
                    return -1;
                }
                blockHeader(dst, op, last, 2, n);
                System.arraycopy(block, 0, dst, op + 3, n);
                op += 3 + n;
            } else {
                if (op + 3 + raw > dstCap) {
                    return -1;
                }
                blockHeader(dst, op, last, 0, raw);
                System.arraycopy(src, start, dst, op + 3, raw);
                op += 3 + raw;
            }
            start = end;
        } while (start < srcLen);
        return op;
    }

    /** Block_Header (3.1.1.2): Last_Block, Block_Type, Block_Size, 3 bytes little-endian. */
    private static void blockHeader(byte[] dst, int op, boolean last, int type, int size) {
        int h = (last ? 1 : 0) | type << 1 | size << 3;
        dst[op] = (byte) h;
        dst[op + 1] = (byte) (h >>> 8);
        dst[op + 2] = (byte) (h >>> 16);
    }

    /**
     * Parses {@code src[start, end)} into literals and sequences and encodes them as a
     * compressed block's content into {@link #block}.
     *
     * @return its length (the caller stores the block raw when that is not shorter)
     */
    private int compressBlock(byte[] src, int start, int end) {
        nLit = 0;
        nSeq = 0;
        int saved0 = rep0;
        int saved1 = rep1;
        int saved2 = rep2;
        parse(src, start, end);
        int op = literalsSection(block);
        op = sequences(block, op);
        if (op >= end - start) {
            // Stored raw: the decoder's repeat offsets stay as they were before this block.
            rep0 = saved0;
            rep1 = saved1;
            rep2 = saved2;
        }
        return op;
    }

    /**
     * Lazy LZ77 parse (as zstd's "lazy" strategy): at each position the longest match among the
     * last offset and up to {@code depth} earlier positions of the same 4-byte hash; a match is
     * put off by one byte when the next position has a better one (longer, for the cost of its
     * offset). Where nothing matches the parse skips ahead faster and faster, so that
     * incompressible clusters cost little.
     */
    private void parse(byte[] src, int start, int end) {
        int anchor = start;
        int ip = start;
        int limit = end - TAIL;
        int b = frameBase;
        int ins = Math.max(start, inserted);
        while (ip < limit) {
            ins = insert(src, ins, ip, b);
            int len = find(src, ip, end, b);
            if (len == 0) {
                int step = 1 + ((ip - anchor) >>> 7);
                ins = insert(src, ins, ip + 1, b);
                ip += step;
                ins = Math.max(ins, ip);
                continue;
            }
            int off = matchOff;
            while (len < LAZY_ENOUGH && ip + 1 < limit) {
                ins = insert(src, ins, ip + 1, b);
                int len2 = find(src, ip + 1, end, b);
                if (len2 * 4 - bitLength(matchOff) <= len * 4 - bitLength(off) + 4) {
                    break;
                }
                ip++;
                len = len2;
                off = matchOff;
            }
            // Back over literals that match too.
            int ref = ip - off;
            while (ip > anchor && ref > 0 && src[ip - 1] == src[ref - 1]) {
                ip--;
                ref--;
                len++;
            }
            sequence(src, anchor, ip - anchor, len, off);
            ip += len;
            anchor = ip;
        }
        inserted = Math.min(ins, limit);
        int tail = end - anchor;
        System.arraycopy(src, anchor, literals, nLit, tail);
        nLit += tail;
    }

    private static int bitLength(int v) {
        return 32 - Integer.numberOfLeadingZeros(v);
    }

    /** Enters positions {@code [from, to)} into the hash chains; returns {@code to}. */
    private int insert(byte[] src, int from, int to, int b) {
        for (int p = from; p < to; p++) {
            int h = ((int) INT.get(src, p) * 0x9E3779B1) >>> (32 - HASH_LOG);
            chain[p & CHAIN_MASK] = head[h];
            head[h] = p + b;
        }
        return Math.max(from, to);
    }

    /**
     * The longest match at {@code ip} (at least {@link #MIN_MATCH}, up to {@code end}), its
     * offset left in {@link #matchOff}; 0 when there is none.
     */
    private int find(byte[] src, int ip, int end, int b) {
        int cur = (int) INT.get(src, ip);
        int best = 0;
        if (ip - rep0 >= 0 && (int) INT.get(src, ip - rep0) == cur) {
            best = MIN_MATCH + matchLength(src, ip + MIN_MATCH, ip - rep0 + MIN_MATCH, end);
            matchOff = rep0;
        }
        int cand = head[(cur * 0x9E3779B1) >>> (32 - HASH_LOG)];
        for (int d = depth; d > 0 && cand >= b && ip + best < end; d--) {
            int c = cand - b;
            if (ip - c >= CHAIN_SIZE) {
                break; // its chain entry may belong to a later position by now
            }
            if (src[c + best] == src[ip + best] && (int) INT.get(src, c) == cur) {
                int len = MIN_MATCH + matchLength(src, ip + MIN_MATCH, c + MIN_MATCH, end);
                if (len > best) {
                    best = len;
                    matchOff = ip - c;
                    if (len >= GOOD_ENOUGH) {
                        break; // longer candidates would save little against the search's cost
                    }
                }
            }
            cand = chain[c & CHAIN_MASK];
        }
        return best;
    }

    /** How many bytes from {@code a} equal those from {@code b} (b < a), not reading past {@code end}. */
    private static int matchLength(byte[] src, int a, int b, int end) {
        if (a + 8 <= end) {
            long x = (long) LONG.get(src, a) ^ (long) LONG.get(src, b);
            if (x != 0) {
                return Long.numberOfTrailingZeros(x) >>> 3;
            }
            // A long match: the JDK's vectorized compare takes the rest.
            int m = java.util.Arrays.mismatch(src, a + 8, end, src, b + 8, b + 8 + (end - a - 8));
            return m < 0 ? end - a : 8 + m;
        }
        int n = 0;
        while (a + n < end && src[a + n] == src[b + n]) {
            n++;
        }
        return n;
    }

    /**
     * Records one sequence: {@code lit} literals from {@code src[from]}, then a match of
     * {@code len} bytes {@code off} back, its offset coded against the repeat offsets
     * (3.1.1.5) as the decoder will update them.
     */
    private void sequence(byte[] src, int from, int lit, int len, int off) {
        System.arraycopy(src, from, literals, nLit, lit);
        nLit += lit;
        int value;
        if (lit > 0 && off == rep0) {
            value = 1;
        } else if (lit == 0 && off == rep1) {
            value = 1; // with no literals, Offset_Value 1 names Repeated_Offset2: swapped to the front
            rep1 = rep0;
            rep0 = off;
        } else {
            value = off + 3;
            rep2 = rep1;
            rep1 = rep0;
            rep0 = off;
        }
        seqLit[nSeq] = lit;
        seqMatch[nSeq] = len;
        seqOffset[nSeq] = value;
        nSeq++;
    }

    /**
     * Literals_Section (3.1.1.3.1) at the start of {@code out}: RLE when the literals are one
     * byte repeated, Huffman-coded when that is shorter, raw otherwise.
     *
     * @return where the section ends
     */
    private int literalsSection(byte[] out) {
        int n = nLit;
        java.util.Arrays.fill(count, 0);
        for (int i = 0; i < n; i++) {
            count[literals[i] & 0xff]++;
        }
        int symbols = 0;
        int last = -1;
        for (int s = 0; s < 256; s++) {
            if (count[s] != 0) {
                symbols++;
                last = s;
            }
        }
        if (symbols == 1 && n > 1) {
            int op = literalsHeader(out, 1, n);
            out[op] = (byte) last;
            return op + 1;
        }
        if (symbols < 2 || n < 64) {
            return rawLiterals(out);
        }
        int maxBits = huffmanLengths(symbols);
        long bitsTotal = 0;
        for (int s = 0; s <= last; s++) {
            bitsTotal += (long) count[s] * codeLen[s];
        }
        int streams = n <= 1023 ? 1 : 4;
        int tree = 1 + (Math.min(last, 128) + 1) / 2;
        long estimate = 5 + tree + (streams == 4 ? 6 : 0) + bitsTotal / 8 + 4 * streams;
        if (estimate >= n) {
            return rawLiterals(out);
        }
        int hdr = streams == 1 ? 3 : n < 1024 ? 3 : n < 16384 ? 4 : 5;
        // Canonical codes as the decoder lays out its table (4.2.1.4): by increasing weight,
        // then by symbol; a weight-w symbol takes 2^(w-1) entries of the 2^maxBits.
        int pos = 0;
        for (int w = 1; w <= maxBits; w++) {
            int len = maxBits + 1 - w;
            for (int s = 0; s <= last; s++) {
                if (count[s] != 0 && codeLen[s] == len) {
                    code[s] = pos >>> (w - 1);
                    pos += 1 << (w - 1);
                }
            }
        }
        // Huffman_Tree_Description (4.2.1): the weights of symbols 0..last-1 (the last
        // symbol's is implied), FSE-coded when that is shorter, else four bits each (the
        // direct header holds at most 128 weights: a wider alphabet without FSE stays raw).
        for (int s = 0; s < last; s++) {
            weight[s] = (byte) (count[s] == 0 ? 0 : maxBits + 1 - codeLen[s]);
        }
        int op = hdr;
        int fse = fseWeights(out, op, last, maxBits);
        if (fse > 0 && (last > 128 || fse - op < 1 + (last + 1) / 2)) {
            op = fse;
        } else if (last <= 128) {
            out[op++] = (byte) (127 + last);
            for (int s = 0; s < last; s += 2) {
                out[op++] = (byte) (weight[s] << 4 | (s + 1 < last ? weight[s + 1] : 0));
            }
        } else {
            return rawLiterals(out);
        }
        if (streams == 1) {
            op = huffmanStream(out, op, 0, n);
        } else {
            int jump = op;
            op += 6;
            int seg = (n + 3) / 4;
            for (int k = 0; k < 4; k++) {
                int from = k * seg;
                int to = Math.min(n, from + seg);
                int before = op;
                op = huffmanStream(out, op, from, to);
                if (k < 3) {
                    out[jump + 2 * k] = (byte) (op - before);
                    out[jump + 2 * k + 1] = (byte) ((op - before) >>> 8);
                }
            }
        }
        int comp = op - hdr;
        if (op >= n + 3) {
            return rawLiterals(out);
        }
        // Literals_Section_Header of a Compressed_Literals_Block: type 2, Size_Format, sizes.
        int sf = streams == 1 ? 0 : hdr - 2;
        long h = 2 | sf << 2 | (long) n << 4 | (long) comp << (hdr == 3 ? 14 : hdr == 4 ? 18 : 22);
        for (int i = 0; i < hdr; i++) {
            out[i] = (byte) (h >>> (8 * i));
        }
        return op;
    }

    /**
     * Huffman code lengths of the counted literals, at most 11 bits (4.2.1): a Huffman tree
     * over the counts, and if it is too deep, again over halved counts, until it fits. The
     * code is complete, as the implied last weight needs.
     *
     * @return the longest code's length
     */
    private int huffmanLengths(int symbols) {
        int shift = 0;
        while (true) {
            int n = 0;
            for (int s = 0; s < 256; s++) {
                if (count[s] != 0) {
                    long f = Math.max(1, count[s] >>> shift);
                    sorted[n++] = f << 8 | s;
                }
            }
            // Insertion sort (at most 256 keys): Arrays.sort may allocate a merge buffer.
            for (int i = 1; i < n; i++) {
                long k = sorted[i];
                int j = i - 1;
                while (j >= 0 && sorted[j] > k) {
                    sorted[j + 1] = sorted[j];
                    j--;
                }
                sorted[j + 1] = k;
            }
            for (int i = 0; i < n; i++) {
                nodeFreq[i] = (int) (sorted[i] >>> 8);
            }
            // Two queues: the sorted leaves, and the inner nodes, made in increasing order.
            int leaf = 0;
            int inner = n;
            int made = n;
            while (made < 2 * n - 1) {
                int a = leaf < n && (inner >= made || nodeFreq[leaf] <= nodeFreq[inner]) ? leaf++ : inner++;
                int b = leaf < n && (inner >= made || nodeFreq[leaf] <= nodeFreq[inner]) ? leaf++ : inner++;
                nodeFreq[made] = nodeFreq[a] + nodeFreq[b];
                parent[a] = made;
                parent[b] = made;
                made++;
            }
            // Depths from the root down (a parent is always made after its children).
            int root = 2 * n - 2;
            nodeFreq[root] = 0;
            int max = 0;
            for (int i = root - 1; i >= 0; i--) {
                nodeFreq[i] = nodeFreq[parent[i]] + 1;
                if (i < n) {
                    codeLen[(int) (sorted[i] & 0xff)] = (byte) nodeFreq[i];
                    max = Math.max(max, nodeFreq[i]);
                }
            }
            if (max <= 11) {
                return max;
            }
            shift++;
        }
    }

    /**
     * The weights of symbols {@code 0..n-1} FSE-coded (4.2.1.2): a header byte with the size,
     * an FSE table description (accuracy log at most 6), then one bit stream with two states
     * taking the weights in turn, written from the last weight back (as libzstd's
     * FSE_compress_usingCTable), so the decoder meets them in order.
     *
     * @return where the description ends, or -1 when FSE cannot code these weights here (one
     *         weight value only, fewer than two, or 128 bytes or more). The decoder finds the
     *         stream's end by reading past it when it leaves the two first states; {@link
     *         FseTable#init} gives each a state that reads at least one bit, so it always does.
     */
    private int fseWeights(byte[] out, int op, int n, int maxBits) {
        if (n < 2) {
            return -1;
        }
        java.util.Arrays.fill(symCount, 0, maxBits + 1, 0);
        int maxSym = 0;
        for (int i = 0; i < n; i++) {
            symCount[weight[i]]++;
            maxSym = Math.max(maxSym, weight[i]);
        }
        int log = Math.max(5, Math.min(6, bitLength(n - 1) - 2));
        if (symCount[maxSym] == n || !normalize(n, maxSym, log)) {
            return -1;
        }
        int end = writeCounts(out, op + 1, maxSym, log);
        weightTable.build(normCount, maxSym + 1, log);
        bits = 0;
        nBits = 0;
        bitPos = end;
        int s1 = -1;
        int s2 = -1;
        for (int i = n - 1; i >= 0; i--) {
            int w = weight[i];
            if ((i & 1) == 0) {
                s1 = s1 < 0 ? weightTable.init(w) : encode(out, weightTable, s1, w);
            } else {
                s2 = s2 < 0 ? weightTable.init(w) : encode(out, weightTable, s2, w);
            }
        }
        addBits(out, s2, log);
        addBits(out, s1, log);
        end = closeBits(out);
        if (end - op - 1 >= 128) {
            return -1;
        }
        out[op] = (byte) (end - op - 1);
        return end;
    }

    /** One Huffman stream of literals {@code [from, to)}, coded last to first (4.2.2). */
    private int huffmanStream(byte[] out, int op, int from, int to) {
        bits = 0;
        nBits = 0;
        bitPos = op;
        for (int i = to - 1; i >= from; i--) {
            int s = literals[i] & 0xff;
            addBits(out, code[s], codeLen[s]);
        }
        return closeBits(out);
    }

    /** Literals_Section_Header of a raw (type 0) or RLE (type 1) block: 1, 2 or 3 bytes. */
    private static int literalsHeader(byte[] out, int type, int n) {
        int op = 0;
        if (n < 32) {
            out[op++] = (byte) (type | n << 3);
        } else if (n < 4096) {
            out[op++] = (byte) (type | 1 << 2 | n << 4);
            out[op++] = (byte) (n >>> 4);
        } else {
            out[op++] = (byte) (type | 3 << 2 | n << 4);
            out[op++] = (byte) (n >>> 4);
            out[op++] = (byte) (n >>> 12);
        }
        return op;
    }

    /** Raw_Literals_Block (3.1.1.3.1.1): the header, then the literals as they are. */
    private int rawLiterals(byte[] out) {
        int op = literalsHeader(out, 0, nLit);
        System.arraycopy(literals, 0, out, op, nLit);
        return op + nLit;
    }

    /**
     * Sequences_Section (3.1.1.3.2): the count, the modes byte (all Predefined_Mode), then the
     * bit stream, built from the last sequence back to the first so that the decoder, reading
     * it backward, meets them in order.
     */
    private int sequences(byte[] out, int op) {
        int n = nSeq;
        if (n == 0) {
            out[op] = 0; // literals only: no modes byte, no bit stream (3.1.1.3.2.1)
            return op + 1;
        }
        if (n < 128) {
            out[op++] = (byte) n;
        } else if (n < 0x7F00) {
            out[op++] = (byte) ((n >>> 8) + 0x80);
            out[op++] = (byte) n;
        } else {
            out[op++] = (byte) 0xFF;
            out[op++] = (byte) (n - 0x7F00);
            out[op++] = (byte) ((n - 0x7F00) >>> 8);
        }
        for (int i = 0; i < n; i++) {
            llCodes[i] = (byte) llCode(seqLit[i]);
            mlCodes[i] = (byte) mlCode(seqMatch[i] - 3);
            ofCodes[i] = (byte) (31 - Integer.numberOfLeadingZeros(seqOffset[i]));
        }
        // Symbol_Compression_Modes, then the tables described, in the order LL, OF, ML.
        int modes = op++;
        long r = chooseTable(llCodes, n, LL_SYMBOLS, LL_DEFAULT, 6, LL_TABLE, llOwn, LL_MAX_LOG, out, op);
        int llMode = (int) (r >>> 32);
        op = (int) r;
        llUse = llMode == 0 ? LL_TABLE : llOwn;
        r = chooseTable(ofCodes, n, OF_SYMBOLS, OF_DEFAULT, 5, OF_TABLE, ofOwn, OF_MAX_LOG, out, op);
        int ofMode = (int) (r >>> 32);
        op = (int) r;
        ofUse = ofMode == 0 ? OF_TABLE : ofOwn;
        r = chooseTable(mlCodes, n, ML_SYMBOLS, ML_DEFAULT, 6, ML_TABLE, mlOwn, ML_MAX_LOG, out, op);
        int mlMode = (int) (r >>> 32);
        op = (int) r;
        mlUse = mlMode == 0 ? ML_TABLE : mlOwn;
        out[modes] = (byte) (llMode << 6 | ofMode << 4 | mlMode << 2);
        bits = 0;
        nBits = 0;
        bitPos = op;
        int i = n - 1;
        int llc = llCodes[i];
        int mlc = mlCodes[i];
        int ofc = ofCodes[i];
        int llState = llUse.init(llc);
        int mlState = mlUse.init(mlc);
        int ofState = ofUse.init(ofc);
        extraBits(out, i, llc, mlc, ofc);
        for (i = n - 2; i >= 0; i--) {
            llc = llCodes[i];
            mlc = mlCodes[i];
            ofc = ofCodes[i];
            // The decoder updates LL, ML, OF in that order: the encoder writes them reversed.
            ofState = encode(out, ofUse, ofState, ofc);
            mlState = encode(out, mlUse, mlState, mlc);
            llState = encode(out, llUse, llState, llc);
            extraBits(out, i, llc, mlc, ofc);
        }
        // The decoder reads the initial states LL, OF, ML: written ML, OF, LL.
        addBits(out, mlState, mlUse.log);
        addBits(out, ofState, ofUse.log);
        addBits(out, llState, llUse.log);
        return closeBits(out);
    }

    /**
     * Picks the cheapest way to code one kind of symbol in this block (3.1.1.3.2.2): RLE_Mode
     * when every sequence has the same one, else Predefined_Mode or FSE_Compressed_Mode with a
     * table of the block's own counts, whichever costs fewer bits, its description included.
     *
     * @return the mode in the high 32 bits, where the output goes on in the low ones
     */
    private long chooseTable(byte[] codes, int n, int symbols, short[] predefined, int preLog, FseTable pre,
                             FseTable own, int maxLog, byte[] out, int op) {
        java.util.Arrays.fill(symCount, 0, symbols, 0);
        int maxSym = 0;
        for (int i = 0; i < n; i++) {
            int c = codes[i];
            symCount[c]++;
            maxSym = Math.max(maxSym, c);
        }
        if (symCount[maxSym] == n) {
            // RLE_Mode: one byte, the symbol; its table has one state and costs no bits.
            java.util.Arrays.fill(normCount, 0, maxSym + 1, (short) 0);
            normCount[maxSym] = 1;
            own.build(normCount, maxSym + 1, 0);
            out[op] = (byte) maxSym;
            return 1L << 32 | (op + 1);
        }
        double preCost = maxSym < predefined.length ? 0 : Double.MAX_VALUE;
        for (int s = 0; s <= maxSym && preCost < Double.MAX_VALUE; s++) {
            if (symCount[s] != 0) {
                int p = predefined[s];
                if (p == 0) {
                    preCost = Double.MAX_VALUE;
                } else {
                    preCost += symCount[s] * (preLog - log2(p < 0 ? 1 : p));
                }
            }
        }
        if (n < 16 && preCost < Double.MAX_VALUE) {
            return op; // too few to pay for a description
        }
        int log = Math.max(5, Math.min(maxLog, bitLength(n - 1) - 2));
        log = Math.max(log, Math.min(maxLog, bitLength(maxSym) + 2));
        while (!normalize(n, maxSym, log)) {
            if (++log > maxLog) {
                return op; // the predefined table codes everything it can
            }
        }
        double ownCost = 0;
        for (int s = 0; s <= maxSym; s++) {
            if (symCount[s] != 0) {
                ownCost += symCount[s] * (log - log2(normCount[s]));
            }
        }
        int end = writeCounts(out, op, maxSym, log);
        ownCost += 8.0 * (end - op);
        if (ownCost >= preCost) {
            return op;
        }
        own.build(normCount, maxSym + 1, log);
        return 2L << 32 | end;
    }

    private static double log2(int v) {
        return Math.log(v) * 1.4426950408889634;
    }

    /**
     * Scales {@link #symCount} to counts summing to 2^log in {@link #normCount}: each present
     * symbol keeps at least 1, the most frequent takes up the rounding.
     *
     * @return false when that one would drop below 1 (then a larger log is tried)
     */
    private boolean normalize(int n, int maxSym, int log) {
        int scale = 1 << log;
        int sum = 0;
        int largest = 0;
        for (int s = 0; s <= maxSym; s++) {
            int c = symCount[s];
            if (c == 0) {
                normCount[s] = 0;
                continue;
            }
            int v = (int) (((long) c * scale + n / 2) / n);
            v = Math.max(1, v);
            normCount[s] = (short) v;
            sum += v;
            if (c > symCount[largest]) {
                largest = s;
            }
        }
        int fixed = normCount[largest] + scale - sum;
        if (fixed < 1) {
            return false;
        }
        normCount[largest] = (short) fixed;
        return true;
    }

    /**
     * FSE_Table_Description (4.1.1): Accuracy_Log - 5 in 4 bits, then each symbol's count + 1 in
     * as many bits as the probability still to give out needs (one fewer for small values), a
     * zero count followed by 2-bit repeat flags for the zeros after it.
     *
     * @return where the description ends
     */
    private int writeCounts(byte[] out, int op, int maxSym, int log) {
        long acc = log - 5;
        int nb = 4;
        int remaining = (1 << log) + 1;
        int threshold = 1 << log;
        int nbBits = log + 1;
        int s = 0;
        boolean prev0 = false;
        while (s <= maxSym && remaining > 1) {
            if (prev0) {
                int start = s;
                while (normCount[s] == 0) {
                    s++;
                }
                while (s >= start + 3) {
                    start += 3;
                    acc |= 3L << nb;
                    nb += 2;
                    if (nb >= 32) {
                        INT.set(out, op, (int) acc);
                        op += 4;
                        acc >>>= 32;
                        nb -= 32;
                    }
                }
                acc |= (long) (s - start) << nb;
                nb += 2;
            }
            int count = normCount[s++];
            int max = (2 * threshold - 1) - remaining;
            remaining -= count < 0 ? -count : count;
            count++;
            if (count >= threshold) {
                count += max;
            }
            acc |= (long) count << nb;
            nb += nbBits - (count < max ? 1 : 0);
            prev0 = count == 1;
            while (remaining < threshold) {
                nbBits--;
                threshold >>= 1;
            }
            if (nb >= 32) {
                INT.set(out, op, (int) acc);
                op += 4;
                acc >>>= 32;
                nb -= 32;
            }
        }
        while (nb > 0) {
            out[op++] = (byte) acc;
            acc >>>= 8;
            nb -= 8;
        }
        return op;
    }

    /** A sequence's extra bits: the decoder reads offset, match length, literal length. */
    private void extraBits(byte[] out, int i, int llc, int mlc, int ofc) {
        addBits(out, seqLit[i] - LL_BASE[llc], LL_BITS[llc]);
        addBits(out, seqMatch[i] - ML_BASE[mlc], ML_BITS[mlc]);
        addBits(out, seqOffset[i], ofc);
    }

    private int encode(byte[] out, FseTable t, int state, int s) {
        int nb = (state + t.deltaBits[s]) >>> 16;
        addBits(out, state, nb);
        return t.next[(state >>> nb) + t.deltaState[s]];
    }

    private static int llCode(int ll) {
        return ll < 64 ? LL_CODE[ll] : 31 - Integer.numberOfLeadingZeros(ll) + 19;
    }

    private static int mlCode(int mlBase) {
        return mlBase < 128 ? ML_CODE[mlBase] : 31 - Integer.numberOfLeadingZeros(mlBase) + 36;
    }

    /** Appends the low {@code n} (at most 31) bits of {@code v} to the stream. */
    private void addBits(byte[] out, long v, int n) {
        bits |= (v & ((1L << n) - 1)) << nBits;
        nBits += n;
        if (nBits >= 32) {
            INT.set(out, bitPos, (int) bits);
            bitPos += 4;
            bits >>>= 32;
            nBits -= 32;
        }
    }

    /** Ends the stream with its 1-bit end mark and flushes it; returns where it ends. */
    private int closeBits(byte[] out) {
        addBits(out, 1, 1);
        while (nBits > 0) {
            out[bitPos++] = (byte) bits;
            bits >>>= 8;
            nBits -= 8;
        }
        nBits = 0;
        return bitPos;
    }
}
