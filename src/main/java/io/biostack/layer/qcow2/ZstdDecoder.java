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

/**
 * A minimal zstd decoder (RFC 8878, "Zstandard Compression and the application/zstd Media
 * Type"), enough for qcow2's zstd clusters: qemu's {@code qcow2_zstd_compress} writes each
 * cluster as zstd frames, and the output is at most one cluster, so the whole output is one
 * array and the window is that array. Frames (section 3.1.1): raw, RLE and compressed blocks;
 * literals raw, RLE or Huffman-coded with one or four streams (4.2); sequences with predefined,
 * RLE, FSE or repeated tables (4.1) and repeat offsets (3.1.1.5). Dictionaries are refused;
 * skippable frames are skipped; the optional content checksum is not verified (qemu does not
 * ask the decoder to either, and the cluster's size is checked instead).
 *
 * <p>Every length read from the input is checked before it is used: bad input ends in a
 * {@link Qcow2Exception}, never another exception, and nothing is allocated by what the input
 * says beyond the tables' fixed sizes. Not thread-safe: one decoder per thread.
 */
final class ZstdDecoder {
    /** RFC 8878 3.1.1: Magic_Number, little-endian. */
    static final int MAGIC = 0xFD2FB528;
    /** RFC 8878 3.1.2: skippable frames' magic numbers are 0x184D2A50..0x184D2A5F. */
    private static final int SKIPPABLE_MASK = 0xFFFFFFF0, SKIPPABLE = 0x184D2A50;
    /** RFC 8878 3.1.1.2.4: Block_Maximum_Size is at most 128 KiB. */
    private static final int MAX_BLOCK = 128 << 10;
    /** RFC 8878 4.2.1: Huffman codes are at most 11 bits. */
    private static final int MAX_HUF_BITS = 11;

    /** An FSE decoding table (RFC 8878 4.1.1): per state, its symbol, bits to read, next base. */
    private static final class Fse {
        final byte[] symbol;
        final byte[] bits;
        final int[] base;
        int log;

        Fse(int maxLog) {
            symbol = new byte[1 << maxLog];
            bits = new byte[1 << maxLog];
            base = new int[1 << maxLog];
        }
    }

    private final Fse ll = new Fse(LL_MAX_LOG), ml = new Fse(ML_MAX_LOG), of = new Fse(OF_MAX_LOG);
    private final Fse weightsFse = new Fse(6);
    private final Fse llDefault = new Fse(LL_MAX_LOG), mlDefault = new Fse(ML_MAX_LOG), ofDefault = new Fse(OF_MAX_LOG);
    private Fse llCur, mlCur, ofCur;
    private final short[] norm = new short[256];
    private final short[] next = new short[256];
    /** The Huffman table: indexed by the next maxBits bits, symbol and code length. */
    private final byte[] hufSymbol = new byte[1 << MAX_HUF_BITS];
    private final byte[] hufBits = new byte[1 << MAX_HUF_BITS];
    private int hufMax;
    private boolean hufValid;
    private final byte[] weights = new byte[256];
    private final byte[] literals = new byte[MAX_BLOCK];
    private final int[] rep = new int[3];

    private byte[] in;
    private int inEnd;

    ZstdDecoder() {
        build(llDefault, LL_DEFAULT, LL_DEFAULT.length - 1, 6);
        build(mlDefault, ML_DEFAULT, ML_DEFAULT.length - 1, 6);
        build(ofDefault, OF_DEFAULT, OF_DEFAULT.length - 1, 5);
    }

    /**
     * Decodes the frames at the start of {@code src} into {@code dst} until it is full, as qemu's
     * {@code qcow2_zstd_decompress}: bytes after the frame that fills it (the sector's padding)
     * are ignored.
     *
     * @param src    compressed bytes
     * @param srcLen how many of them to use
     * @param dst    where the output goes; exactly its length must come out
     * @throws Qcow2Exception when the data is not zstd, uses a dictionary, is corrupt, or does not
     *                        decode to exactly {@code dst.length} bytes
     */
    void decompress(byte[] src, int srcLen, byte[] dst) {
        in = src;
        inEnd = Math.min(srcLen, src.length);
        int ip = 0;
        int op = 0;
        try {
            while (op < dst.length) {
                if (ip + 4 > inEnd) {
                    throw bad("input ends after " + op + " of " + dst.length + " bytes");
                }
                int magic = le32(ip);
                if ((magic & SKIPPABLE_MASK) == SKIPPABLE) {
                    need(ip + 8);
                    long skip = le32(ip + 4) & 0xffffffffL;
                    if (ip + 8 + skip > inEnd) {
                        throw bad("skippable frame runs past the input");
                    }
                    ip += 8 + (int) skip;
                    continue;
                }
                if (magic != MAGIC) {
                    throw bad("no zstd frame magic at byte " + ip);
                }
                long r = frame(ip + 4, dst, op);
                ip = (int) (r >>> 32);
                op = (int) r;
            }
        } finally {
            in = null;
        }
    }

    /** One frame from {@code ip} (after the magic); returns the input end and output end packed. */
    private long frame(int ip, byte[] dst, int op) {
        need(ip + 1);
        int fhd = in[ip++] & 0xff;
        int fcsFlag = fhd >>> 6;
        boolean single = (fhd & 0x20) != 0;
        boolean checksum = (fhd & 0x04) != 0;
        if ((fhd & 0x08) != 0) {
            throw bad("reserved frame header bit is set");
        }
        int dictBytes = new int[] {0, 1, 2, 4}[fhd & 3];
        if (!single) {
            need(ip + 1);
            ip++; // window descriptor: the output array (one cluster) is the window
        }
        need(ip + dictBytes);
        long dict = 0;
        for (int i = 0; i < dictBytes; i++) {
            dict |= (long) (in[ip + i] & 0xff) << (8 * i);
        }
        if (dict != 0) {
            throw bad("frame needs dictionary " + dict);
        }
        ip += dictBytes;
        int fcsBytes = fcsFlag == 0 ? (single ? 1 : 0) : 1 << fcsFlag;
        need(ip + fcsBytes);
        long fcs = -1;
        if (fcsBytes > 0) {
            fcs = 0;
            for (int i = 0; i < fcsBytes; i++) {
                fcs |= (long) (in[ip + i] & 0xff) << (8 * i);
            }
            if (fcsBytes == 2) {
                fcs += 256;
            }
        }
        ip += fcsBytes;
        if (fcs > dst.length - op || fcs < -1) {
            throw bad("frame content of " + fcs + " bytes does not fit the cluster");
        }
        int frameStart = op;
        rep[0] = 1;
        rep[1] = 4;
        rep[2] = 8;
        hufValid = false;
        llCur = null;
        mlCur = null;
        ofCur = null;
        boolean last = false;
        for (int blocks = 0; !last; blocks++) {
            if (blocks > dst.length) {
                throw bad("too many blocks");
            }
            need(ip + 3);
            int bh = (in[ip] & 0xff) | (in[ip + 1] & 0xff) << 8 | (in[ip + 2] & 0xff) << 16;
            ip += 3;
            last = (bh & 1) != 0;
            int type = (bh >>> 1) & 3;
            int size = bh >>> 3;
            switch (type) {
                case 0 -> { // Raw_Block
                    need(ip + size);
                    room(dst, op, size);
                    System.arraycopy(in, ip, dst, op, size);
                    ip += size;
                    op += size;
                }
                case 1 -> { // RLE_Block: one byte, repeated size times
                    need(ip + 1);
                    room(dst, op, size);
                    java.util.Arrays.fill(dst, op, op + size, in[ip]);
                    ip += 1;
                    op += size;
                }
                case 2 -> {
                    if (size > MAX_BLOCK) {
                        throw bad("compressed block of " + size + " bytes is larger than 128 KiB");
                    }
                    need(ip + size);
                    op = compressedBlock(ip, ip + size, dst, op);
                    ip += size;
                }
                default -> throw bad("reserved block type");
            }
        }
        if (fcs >= 0 && op - frameStart != fcs) {
            throw bad("frame decodes to " + (op - frameStart) + " bytes, its header says " + fcs);
        }
        if (checksum) {
            need(ip + 4);
            ip += 4;
        }
        return ((long) ip << 32) | op;
    }

    // ---- compressed blocks (RFC 8878 3.1.1.3) ---------------------------------------------------

    private int compressedBlock(int ip, int end, byte[] dst, int op) {
        // Literals section header (3.1.1.3.1.1).
        need(ip + 1);
        int b0 = in[ip] & 0xff;
        int ltype = b0 & 3;
        int sf = (b0 >>> 2) & 3;
        int regen;
        int litLen;
        int hdr;
        if (ltype < 2) {
            switch (sf) {
                case 0, 2 -> {
                    regen = b0 >>> 3;
                    hdr = 1;
                }
                case 1 -> {
                    need(ip + 2);
                    regen = (b0 >>> 4) + ((in[ip + 1] & 0xff) << 4);
                    hdr = 2;
                }
                default -> {
                    need(ip + 3);
                    regen = (b0 >>> 4) + ((in[ip + 1] & 0xff) << 4) + ((in[ip + 2] & 0xff) << 12);
                    hdr = 3;
                }
            }
            if (regen > MAX_BLOCK) {
                throw bad("literals of " + regen + " bytes");
            }
            ip += hdr;
            if (ltype == 0) {
                if (ip + regen > end) {
                    throw bad("raw literals run past the block");
                }
                System.arraycopy(in, ip, literals, 0, regen);
                ip += regen;
            } else {
                if (ip + 1 > end) {
                    throw bad("RLE literals run past the block");
                }
                java.util.Arrays.fill(literals, 0, regen, in[ip]);
                ip += 1;
            }
            litLen = regen;
        } else {
            int comp;
            boolean four = sf != 0;
            switch (sf) {
                case 0, 1 -> {
                    need(ip + 3);
                    int h = b0 | (in[ip + 1] & 0xff) << 8 | (in[ip + 2] & 0xff) << 16;
                    regen = (h >>> 4) & 0x3ff;
                    comp = (h >>> 14) & 0x3ff;
                    hdr = 3;
                }
                case 2 -> {
                    need(ip + 4);
                    int h = b0 | (in[ip + 1] & 0xff) << 8 | (in[ip + 2] & 0xff) << 16 | (in[ip + 3] & 0xff) << 24;
                    regen = (h >>> 4) & 0x3fff;
                    comp = (h >>> 18) & 0x3fff;
                    hdr = 4;
                }
                default -> {
                    need(ip + 5);
                    long h = (b0 | (in[ip + 1] & 0xff) << 8 | (in[ip + 2] & 0xff) << 16 | (long) (in[ip + 3] & 0xff) << 24)
                            | (long) (in[ip + 4] & 0xff) << 32;
                    regen = (int) ((h >>> 4) & 0x3ffff);
                    comp = (int) ((h >>> 22) & 0x3ffff);
                    hdr = 5;
                }
            }
            if (regen > MAX_BLOCK) {
                throw bad("literals of " + regen + " bytes");
            }
            ip += hdr;
            if (ip + comp > end) {
                throw bad("compressed literals run past the block");
            }
            int streams = ip;
            if (ltype == 2) {
                streams = readHuffmanTable(ip, ip + comp);
            } else if (!hufValid) {
                throw bad("treeless literals without a previous Huffman table");
            }
            huffmanLiterals(streams, ip + comp, regen, four);
            ip += comp;
            litLen = regen;
        }
        return sequences(ip, end, litLen, dst, op);
    }

    /** The Huffman tree description (4.2.1); returns where the streams start. */
    private int readHuffmanTable(int ip, int end) {
        if (ip >= end) {
            throw bad("Huffman tree description is missing");
        }
        int header = in[ip++] & 0xff;
        int n;
        if (header >= 128) {
            n = header - 127;
            int bytes = (n + 1) / 2;
            if (ip + bytes > end) {
                throw bad("Huffman weights run past the literals");
            }
            for (int i = 0; i < n; i++) {
                int b = in[ip + i / 2] & 0xff;
                weights[i] = (byte) ((i & 1) == 0 ? b >>> 4 : b & 15);
            }
            ip += bytes;
        } else {
            if (ip + header > end) {
                throw bad("FSE-coded Huffman weights run past the literals");
            }
            n = fseWeights(ip, ip + header);
            ip += header;
        }
        // The last weight is implied: the weights' 2^(w-1) must add up to a power of two (4.2.1.3).
        long total = 0;
        for (int i = 0; i < n; i++) {
            int w = weights[i] & 0xff;
            if (w > MAX_HUF_BITS) {
                throw bad("Huffman weight " + w);
            }
            if (w > 0) {
                total += 1L << (w - 1);
            }
        }
        if (total == 0) {
            throw bad("Huffman weights are all zero");
        }
        int maxBits = 64 - Long.numberOfLeadingZeros(total);
        long left = (1L << maxBits) - total;
        if (Long.bitCount(left) != 1 || maxBits > MAX_HUF_BITS || n >= 256) {
            throw bad("Huffman weights do not make a complete code");
        }
        weights[n++] = (byte) (Long.numberOfTrailingZeros(left) + 1);
        // Fill the table by increasing weight, then symbol (4.2.1.4).
        int pos = 0;
        for (int w = 1; w <= maxBits; w++) {
            int len = 1 << (w - 1);
            for (int s = 0; s < n; s++) {
                if (weights[s] == w) {
                    java.util.Arrays.fill(hufSymbol, pos, pos + len, (byte) s);
                    java.util.Arrays.fill(hufBits, pos, pos + len, (byte) (maxBits + 1 - w));
                    pos += len;
                }
            }
        }
        if (pos != 1 << maxBits) {
            throw bad("Huffman table is incomplete");
        }
        hufMax = maxBits;
        hufValid = true;
        return ip;
    }

    /** FSE-coded Huffman weights (4.2.1.2): two interleaved states; returns how many. */
    private int fseWeights(int ip, int end) {
        int p = readFseTable(weightsFse, ip, end, 255, 6);
        BackBits br = new BackBits(p, end);
        int s1 = br.read(weightsFse.log);
        int s2 = br.read(weightsFse.log);
        int n = 0;
        while (true) {
            if (n > 254) {
                throw bad("too many Huffman weights");
            }
            weights[n++] = weightsFse.symbol[s1];
            s1 = weightsFse.base[s1] + br.read(weightsFse.bits[s1]);
            if (br.overflow()) {
                weights[n++] = weightsFse.symbol[s2];
                break;
            }
            if (n > 254) {
                throw bad("too many Huffman weights");
            }
            weights[n++] = weightsFse.symbol[s2];
            s2 = weightsFse.base[s2] + br.read(weightsFse.bits[s2]);
            if (br.overflow()) {
                weights[n++] = weightsFse.symbol[s1];
                break;
            }
        }
        return n;
    }

    private void huffmanLiterals(int ip, int end, int regen, boolean four) {
        if (!four) {
            huffmanStream(ip, end, 0, regen);
            return;
        }
        if (ip + 6 > end) {
            throw bad("Huffman jump table runs past the literals");
        }
        int s1 = le16(ip), s2 = le16(ip + 2), s3 = le16(ip + 4);
        int start = ip + 6;
        int seg = (regen + 3) / 4;
        if (start + (long) s1 + s2 + s3 > end || seg * 3 > regen) {
            throw bad("Huffman streams run past the literals");
        }
        huffmanStream(start, start + s1, 0, seg);
        huffmanStream(start + s1, start + s1 + s2, seg, seg);
        huffmanStream(start + s1 + s2, start + s1 + s2 + s3, 2 * seg, seg);
        huffmanStream(start + s1 + s2 + s3, end, 3 * seg, regen - 3 * seg);
    }

    private void huffmanStream(int ip, int end, int at, int count) {
        BackBits br = new BackBits(ip, end);
        int max = hufMax;
        for (int i = 0; i < count; i++) {
            int v = br.peek(max);
            literals[at + i] = hufSymbol[v];
            br.skip(hufBits[v]);
        }
        if (!br.finished()) {
            throw bad("Huffman stream does not end where its literals do");
        }
    }

    // ---- sequences (3.1.1.3.2) --------------------------------------------------------------------

    private int sequences(int ip, int end, int litLen, byte[] dst, int op) {
        if (ip >= end) {
            throw bad("sequences section is missing");
        }
        int b0 = in[ip++] & 0xff;
        int nbSeq;
        if (b0 < 128) {
            nbSeq = b0;
        } else if (b0 < 255) {
            need(ip + 1);
            nbSeq = ((b0 - 128) << 8) + (in[ip++] & 0xff);
        } else {
            need(ip + 2);
            nbSeq = (in[ip] & 0xff) + ((in[ip + 1] & 0xff) << 8) + 0x7f00;
            ip += 2;
        }
        int lit = 0;
        if (nbSeq > 0) {
            if (ip >= end) {
                throw bad("symbol compression modes are missing");
            }
            int modes = in[ip++] & 0xff;
            if ((modes & 3) != 0) {
                throw bad("reserved bits of the symbol compression modes are set");
            }
            ip = table(modes >>> 6, ip, end, 0);
            ip = table((modes >>> 4) & 3, ip, end, 1);
            ip = table((modes >>> 2) & 3, ip, end, 2);
            BackBits br = new BackBits(ip, end);
            Fse l = llCur, o = ofCur, m = mlCur;
            int sl = br.read(l.log), so = br.read(o.log), sm = br.read(m.log);
            for (int i = 0; i < nbSeq; i++) {
                int ofCode = o.symbol[so];
                int llCode = l.symbol[sl];
                int mlCode = m.symbol[sm];
                if (ofCode > OF_MAX || llCode > LL_MAX || mlCode > ML_MAX) {
                    throw bad("sequence code out of range");
                }
                long ofValue = (1L << ofCode) + br.read(ofCode);
                int matchLen = ML_BASE[mlCode] + br.read(ML_BITS[mlCode]);
                int litRun = LL_BASE[llCode] + br.read(LL_BITS[llCode]);
                long offset = offset(ofValue, litRun);
                if (i + 1 < nbSeq) {
                    sl = l.base[sl] + br.read(l.bits[sl]);
                    sm = m.base[sm] + br.read(m.bits[sm]);
                    so = o.base[so] + br.read(o.bits[so]);
                }
                if (br.overflow()) {
                    throw bad("sequence bitstream is too short");
                }
                // Execute (3.1.2): literals, then the match.
                if (litRun > litLen - lit) {
                    throw bad("a sequence asks for more literals than the block has");
                }
                room(dst, op, (long) litRun + matchLen);
                System.arraycopy(literals, lit, dst, op, litRun);
                lit += litRun;
                op += litRun;
                if (offset > op) {
                    throw bad("match offset " + offset + " reaches before the start of the output");
                }
                int from = op - (int) offset;
                if (offset >= matchLen) {
                    System.arraycopy(dst, from, dst, op, matchLen);
                } else {
                    for (int k = 0; k < matchLen; k++) {
                        dst[op + k] = dst[from + k];
                    }
                }
                op += matchLen;
            }
            if (!br.finished()) {
                throw bad("sequence bitstream does not end with the last sequence");
            }
        } else if (ip != end) {
            throw bad("block has bytes after its literals and no sequences");
        }
        room(dst, op, litLen - lit);
        System.arraycopy(literals, lit, dst, op, litLen - lit);
        return op + litLen - lit;
    }

    /** Repeat offsets (3.1.1.5): the offset a sequence uses, the history updated. */
    private long offset(long ofValue, int litRun) {
        if (ofValue > 3) {
            long o = ofValue - 3;
            if (o > Integer.MAX_VALUE) {
                throw bad("offset " + o + " is too large");
            }
            rep[2] = rep[1];
            rep[1] = rep[0];
            rep[0] = (int) o;
            return o;
        }
        int idx = (int) ofValue - 1 + (litRun == 0 ? 1 : 0);
        if (idx == 0) {
            return rep[0];
        }
        int o = idx == 3 ? rep[0] - 1 : rep[idx];
        if (o <= 0) {
            throw bad("repeat offset " + o);
        }
        if (idx != 1) {
            rep[2] = rep[1];
        }
        rep[1] = rep[0];
        rep[0] = o;
        return o;
    }

    /** One of the three sequence tables (3.1.1.3.2.1): which 0 LL, 1 OF, 2 ML. */
    private int table(int mode, int ip, int end, int which) {
        Fse t = which == 0 ? ll : which == 1 ? of : ml;
        Fse def = which == 0 ? llDefault : which == 1 ? ofDefault : mlDefault;
        int max = which == 0 ? LL_MAX : which == 1 ? OF_MAX : ML_MAX;
        int maxLog = which == 0 ? LL_MAX_LOG : which == 1 ? OF_MAX_LOG : ML_MAX_LOG;
        Fse chosen;
        switch (mode) {
            case 0 -> chosen = def;
            case 1 -> {
                if (ip >= end) {
                    throw bad("RLE table symbol is missing");
                }
                int s = in[ip++] & 0xff;
                if (s > max) {
                    throw bad("RLE table symbol " + s + " is out of range");
                }
                t.log = 0;
                t.symbol[0] = (byte) s;
                t.bits[0] = 0;
                t.base[0] = 0;
                chosen = t;
            }
            case 2 -> {
                ip = readFseTable(t, ip, end, max, maxLog);
                chosen = t;
            }
            default -> {
                chosen = which == 0 ? llCur : which == 1 ? ofCur : mlCur;
                if (chosen == null) {
                    throw bad("repeated table without a previous one");
                }
            }
        }
        if (which == 0) {
            llCur = chosen;
        } else if (which == 1) {
            ofCur = chosen;
        } else {
            mlCur = chosen;
        }
        return ip;
    }

    /** An FSE table description (4.1.1), then the decoding table; returns where it ends. */
    private int readFseTable(Fse t, int ip, int end, int maxSymbol, int maxLog) {
        ForwardBits br = new ForwardBits(ip, end);
        int log = br.read(4) + 5;
        if (log > maxLog) {
            throw bad("FSE accuracy log " + log + " is above " + maxLog);
        }
        int remaining = (1 << log) + 1;
        int threshold = 1 << log;
        int nbBits = log + 1;
        int s = 0;
        boolean prev0 = false;
        java.util.Arrays.fill(norm, (short) 0);
        while (remaining > 1 && s <= maxSymbol) {
            if (prev0) {
                int rpt;
                do {
                    rpt = br.read(2);
                    s += rpt;
                } while (rpt == 3 && s <= maxSymbol);
                if (s > maxSymbol) {
                    throw bad("FSE table runs past its last symbol");
                }
            }
            int max = (2 * threshold - 1) - remaining;
            int v = br.peek(nbBits);
            int count;
            if ((v & (threshold - 1)) < max) {
                count = v & (threshold - 1);
                br.skip(nbBits - 1);
            } else {
                count = v & (2 * threshold - 1);
                if (count >= threshold) {
                    count -= max;
                }
                br.skip(nbBits);
            }
            count--;
            remaining -= count < 0 ? -count : count;
            norm[s++] = (short) count;
            prev0 = count == 0;
            while (remaining < threshold && threshold > 1) {
                nbBits--;
                threshold >>= 1;
            }
        }
        if (remaining != 1 || br.overflow()) {
            throw bad("FSE table description is corrupt");
        }
        build(t, norm, s - 1, log);
        return br.end();
    }

    /** FSE_buildDTable: spread the symbols over the states, then each state's bits and base. */
    private void build(Fse t, short[] counts, int maxSymbol, int log) {
        int size = 1 << log;
        int high = size - 1;
        for (int s = 0; s <= maxSymbol; s++) {
            if (counts[s] == -1) {
                t.symbol[high--] = (byte) s;
                next[s] = 1;
            } else {
                next[s] = counts[s];
            }
        }
        int step = (size >>> 1) + (size >>> 3) + 3;
        int mask = size - 1;
        int pos = 0;
        for (int s = 0; s <= maxSymbol; s++) {
            for (int i = 0; i < counts[s]; i++) {
                t.symbol[pos] = (byte) s;
                do {
                    pos = (pos + step) & mask;
                } while (pos > high);
            }
        }
        if (pos != 0) {
            throw bad("FSE table does not spread evenly");
        }
        for (int u = 0; u < size; u++) {
            int s = t.symbol[u] & 0xff;
            int n = next[s]++;
            int bits = log - (31 - Integer.numberOfLeadingZeros(n));
            t.bits[u] = (byte) bits;
            t.base[u] = (n << bits) - size;
        }
        t.log = log;
    }

    // ---- bit readers ------------------------------------------------------------------------------

    /** A bitstream read forwards, least significant bit first (FSE table descriptions). */
    private final class ForwardBits {
        private final int start, end;
        private long pos;

        ForwardBits(int start, int end) {
            this.start = start;
            this.end = end;
        }

        int peek(int n) {
            int v = 0;
            for (int i = 0; i < n; i++) {
                long b = pos + i;
                int at = start + (int) (b >>> 3);
                if (at < end) {
                    v |= ((in[at] >>> (b & 7)) & 1) << i;
                }
            }
            return v;
        }

        void skip(int n) {
            pos += n;
        }

        int read(int n) {
            int v = peek(n);
            pos += n;
            return v;
        }

        boolean overflow() {
            return start + ((pos + 7) >>> 3) > end;
        }

        int end() {
            return start + (int) ((pos + 7) >>> 3);
        }
    }

    /**
     * A bitstream read backwards from its end (Huffman streams, FSE states and sequences): the
     * highest set bit of the last byte marks where it starts; bits below the first byte read as
     * zeros and count as an overflow.
     */
    private final class BackBits {
        private final int start;
        /** Bits left, counted from the stream's first bit; negative after an overflow. */
        private long left;

        BackBits(int start, int end) {
            if (end <= start) {
                throw bad("empty bitstream");
            }
            int last = in[end - 1] & 0xff;
            if (last == 0) {
                throw bad("bitstream has no end mark");
            }
            this.start = start;
            this.left = (long) (end - start) * 8 - (8 - (31 - Integer.numberOfLeadingZeros(last)));
        }

        /** The next {@code n} bits (n up to 31), the first of them most significant, not consumed. */
        int peek(int n) {
            if (n == 0) {
                return 0;
            }
            // Bits [left - n, left) of the stream as a little-endian number; below its start, zeros.
            long lo = left - n;
            long byteIdx = Math.floorDiv(lo, 8);
            int shift = (int) Math.floorMod(lo, 8);
            long word = 0;
            for (int i = 0; i < 5; i++) {
                long at = start + byteIdx + i;
                if (at >= start && at < inEnd) {
                    word |= (long) (in[(int) at] & 0xff) << (8 * i);
                }
            }
            return (int) ((word >>> shift) & ((1L << n) - 1));
        }

        void skip(int n) {
            left -= n;
        }

        int read(int n) {
            int v = peek(n);
            left -= n;
            return v;
        }

        boolean overflow() {
            return left < 0;
        }

        boolean finished() {
            return left == 0;
        }
    }

    // ---- helpers ------------------------------------------------------------------------------------

    private int le32(int p) {
        return (in[p] & 0xff) | (in[p + 1] & 0xff) << 8 | (in[p + 2] & 0xff) << 16 | (in[p + 3] & 0xff) << 24;
    }

    private int le16(int p) {
        return (in[p] & 0xff) | (in[p + 1] & 0xff) << 8;
    }

    private void need(long end) {
        if (end > inEnd) {
            throw bad("input ends inside a frame");
        }
    }

    private static void room(byte[] dst, int op, long n) {
        if (n < 0 || op + n > dst.length) {
            throw bad("frame decodes to more than the cluster's " + dst.length + " bytes");
        }
    }

    private static Qcow2Exception bad(String why) {
        return new Qcow2Exception("zstd: " + why);
    }
}
