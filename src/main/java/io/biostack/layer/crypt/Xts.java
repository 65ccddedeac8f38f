package io.biostack.layer.crypt;

import io.biostack.block.Bio;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.security.GeneralSecurityException;
import javax.crypto.Cipher;
import javax.crypto.spec.SecretKeySpec;

/**
 * AES-XTS over sectors (IEEE Std 1619-2018; NIST SP 800-38E), built on the JDK's
 * {@code AES/ECB/NoPadding}: for data unit (sector) {@code j} with IV {@code i}, the tweak is
 * {@code T = AES-enc(K2, i)}, each 16-byte block {@code P} becomes
 * {@code C = AES-enc(K1, P xor T) xor T}, and {@code T} is multiplied by the primitive element
 * alpha of GF(2^128) between blocks (a left shift of the little-endian 128-bit value, folding
 * the carry back in as 0x87). Sectors are whole multiples of 16 bytes, so ciphertext stealing
 * never happens.
 *
 * <p>The IV is a 16-byte little-endian sector number ({@code plain64}; {@code plain} keeps the
 * low 32 bits), as dm-crypt's {@code crypt_iv_plain64_gen} writes it.
 *
 * <p>Work goes in chunks of up to {@link #MAX_CHUNK} bytes: one ECB call computes the tweaks of
 * every sector of the chunk, the alpha multiplications are done on two longs, and one ECB call
 * runs K1 over the whole chunk. Cipher instances and buffers are per thread (one
 * {@link ThreadLocal} context per key), so nothing is allocated per I/O.
 *
 * <p>Thread-safe. The key halves live only in the JDK's key objects (copied from the caller's
 * array, which the caller may wipe); they never appear in {@link #toString()}.
 */
public final class Xts implements AutoCloseable {
    /** Largest piece transformed in one go; a multiple of every supported sector size. */
    public static final int MAX_CHUNK = 64 * 1024;

    private static final VarHandle LONG_LE =
            MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);
    /** x^128 = x^7 + x^2 + x + 1 in GF(2^128): IEEE 1619 section 5.2. */
    private static final long GF_128_FDBK = 0x87;

    private final SecretKeySpec k1;
    private final SecretKeySpec k2;
    private final long ivMask;
    private final int keyBits;
    private final ThreadLocal<Context> contexts = ThreadLocal.withInitial(this::newContext);
    private volatile boolean closed;

    /**
     * XTS with a {@code plain64} IV.
     *
     * @param key 32 bytes (AES-128) or 64 bytes (AES-256); the caller may wipe it afterwards
     */
    public Xts(byte[] key) {
        this(key, CipherSpec.AES_XTS_PLAIN64);
    }

    /**
     * XTS as {@code spec} says.
     *
     * @param key  the two AES keys; the caller may wipe its array afterwards
     * @param spec the cipher, chain mode and IV mode
     * @throws IllegalArgumentException for a key length the spec does not take
     */
    public Xts(byte[] key, CipherSpec spec) {
        spec.checkKeyLength(key.length);
        int half = key.length / 2;
        this.k1 = new SecretKeySpec(key, 0, half, "AES");
        this.k2 = new SecretKeySpec(key, half, half, "AES");
        this.ivMask = spec.ivMode().equals("plain") ? 0xffffffffL : -1L;
        this.keyBits = half * 8;
        newContext(); // fail now, not on the I/O path, if the JDK refuses the key
    }

    /**
     * The AES key size of each half.
     *
     * @return 128 or 256
     */
    public int aesKeyBits() {
        return keyBits;
    }

    /**
     * Encrypts {@code len} bytes of {@code buf} from {@code off} in place: {@code len / sectorSize}
     * sectors, the first with IV {@code iv0}, each next one {@code ivStep} further.
     *
     * @param buf        the data
     * @param off        where it starts in {@code buf}
     * @param len        bytes, a whole number of sectors
     * @param iv0        the IV of the first sector
     * @param sectorSize the data unit, a multiple of 16 dividing {@link #MAX_CHUNK}
     * @param ivStep     how much the IV grows from one sector to the next
     */
    public void encrypt(byte[] buf, int off, int len, long iv0, int sectorSize, long ivStep) {
        transformArray(true, buf, off, len, iv0, sectorSize, ivStep);
    }

    /**
     * Decrypts in place; the inverse of {@link #encrypt(byte[], int, int, long, int, long)}.
     *
     * @param buf        the data
     * @param off        where it starts in {@code buf}
     * @param len        bytes, a whole number of sectors
     * @param iv0        the IV of the first sector
     * @param sectorSize the data unit
     * @param ivStep     how much the IV grows from one sector to the next
     */
    public void decrypt(byte[] buf, int off, int len, long iv0, int sectorSize, long ivStep) {
        transformArray(false, buf, off, len, iv0, sectorSize, ivStep);
    }

    private void transformArray(boolean enc, byte[] buf, int off, int len, long iv0, int sectorSize, long ivStep) {
        checkUnits(len, sectorSize);
        Context c = context();
        for (int done = 0; done < len; done += MAX_CHUNK) {
            int n = Math.min(MAX_CHUNK, len - done);
            long iv = iv0 + (long) (done / sectorSize) * ivStep;
            chunk(c, enc, buf, off + done, n, iv, sectorSize, ivStep);
        }
    }

    /**
     * Transforms the memory {@code bio}'s iterator covers, without advancing it: into
     * {@code dst} from its start when {@code dst} is not null (the bio's memory is only read),
     * else in place. The bio's size must be a multiple of {@code sectorSize}.
     */
    void transform(boolean enc, Bio bio, MemorySegment dst, long iv0, int sectorSize, long ivStep) {
        long size = bio.size();
        checkUnits(size, sectorSize);
        transformRange(enc, bio, 0, size, dst, iv0, sectorSize, ivStep);
    }

    /**
     * Transforms bytes {@code [from, from + len)} of the memory {@code bio}'s iterator covers,
     * without advancing it: into {@code dst} at {@code from} when {@code dst} is not null, else in
     * place. {@code iv0} is the IV of the bio's first sector; {@code from} and {@code len} are
     * whole sectors. Several threads may transform disjoint ranges of one bio at once: the bio is
     * only read (its segments and iterator), and each range touches only its own bytes.
     */
    void transformRange(boolean enc, Bio bio, long from, long len, MemorySegment dst, long iv0, int sectorSize,
                        long ivStep) {
        checkUnits(from, sectorSize);
        checkUnits(len, sectorSize);
        Context c = context();
        // find the segment and the offset in it where byte `from` lives
        int idx = bio.iter().index();
        long skip = bio.iter().doneInSegment() + from;
        while (skip > 0 && skip >= bio.segment(idx).byteSize()) {
            skip -= bio.segment(idx).byteSize();
            idx++;
        }
        long pos = 0;
        while (pos < len) {
            int n = (int) Math.min(MAX_CHUNK, len - pos);
            // gather
            int i = idx;
            long s = skip;
            for (int got = 0; got < n; ) {
                MemorySegment v = bio.segment(i);
                int k = (int) Math.min(v.byteSize() - s, n - got);
                MemorySegment.copy(v, s, c.dataSeg, got, k);
                got += k;
                s += k;
                if (s == v.byteSize()) {
                    i++;
                    s = 0;
                }
            }
            chunk(c, enc, c.data, 0, n, iv0 + (from + pos) / sectorSize * ivStep, sectorSize, ivStep);
            if (dst != null) {
                MemorySegment.copy(c.dataSeg, 0, dst, from + pos, n);
            } else {
                // scatter back over the same pieces
                for (int put = 0; put < n; ) {
                    MemorySegment v = bio.segment(idx);
                    int k = (int) Math.min(v.byteSize() - skip, n - put);
                    MemorySegment.copy(c.dataSeg, put, v, skip, k);
                    put += k;
                    skip += k;
                    if (skip == v.byteSize()) {
                        idx++;
                        skip = 0;
                    }
                }
            }
            idx = i;
            skip = s;
            pos += n;
        }
    }

    private static void checkUnits(long len, int sectorSize) {
        if (sectorSize < 16 || sectorSize % 16 != 0 || MAX_CHUNK % sectorSize != 0) {
            throw new IllegalArgumentException("XTS data unit of " + sectorSize + " bytes is not supported");
        }
        if (len % sectorSize != 0) {
            throw new IllegalArgumentException(len + " bytes is not a whole number of " + sectorSize + "-byte sectors");
        }
    }

    /** One chunk of at most {@link #MAX_CHUNK} bytes, a whole number of sectors. */
    private void chunk(Context c, boolean enc, byte[] data, int off, int len, long iv0, int ss, long ivStep) {
        int sectors = len / ss;
        byte[] ivs = c.ivs;
        for (int s = 0; s < sectors; s++) {
            LONG_LE.set(ivs, s << 4, (iv0 + s * ivStep) & ivMask);
            LONG_LE.set(ivs, (s << 4) + 8, 0L);
        }
        try {
            c.k2Enc.update(ivs, 0, sectors << 4, c.t0, 0);
            byte[] tw = c.tweak;
            int p = 0;
            for (int s = 0; s < sectors; s++) {
                long lo = (long) LONG_LE.get(c.t0, s << 4);
                long hi = (long) LONG_LE.get(c.t0, (s << 4) + 8);
                for (int b = 0; b < ss; b += 16, p += 16) {
                    LONG_LE.set(tw, p, lo);
                    LONG_LE.set(tw, p + 8, hi);
                    int d = off + p;
                    LONG_LE.set(data, d, (long) LONG_LE.get(data, d) ^ lo);
                    LONG_LE.set(data, d + 8, (long) LONG_LE.get(data, d + 8) ^ hi);
                    // T = T * alpha (IEEE 1619 section 5.2, little-endian 128-bit shift)
                    long carry = hi >> 63;
                    hi = (hi << 1) | (lo >>> 63);
                    lo = (lo << 1) ^ (carry & GF_128_FDBK);
                }
            }
            (enc ? c.k1Enc : c.k1Dec).update(data, off, len, c.out, 0);
            byte[] out = c.out;
            for (int q = 0; q < len; q += 8) {
                LONG_LE.set(data, off + q, (long) LONG_LE.get(out, q) ^ (long) LONG_LE.get(tw, q));
            }
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("AES failed: " + e.getClass().getSimpleName(), e);
        }
    }

    private Context context() {
        if (closed) {
            throw new IllegalStateException("XTS key was closed");
        }
        return contexts.get();
    }

    private Context newContext() {
        try {
            return new Context(k1, k2);
        } catch (GeneralSecurityException e) {
            throw new IllegalArgumentException("the JDK refuses this AES key: " + e.getClass().getSimpleName(), e);
        }
    }

    /**
     * Makes later use throw and drops this thread's ciphers. The key schedules of other threads'
     * contexts go with their {@link ThreadLocal} entries once this object is unreachable.
     */
    @Override
    public void close() {
        closed = true;
        contexts.remove();
    }

    @Override
    public String toString() {
        return "Xts[AES-" + keyBits + "-XTS]";
    }

    /** Per-thread ciphers and scratch buffers (Cipher objects are not thread-safe). */
    private static final class Context {
        final Cipher k1Enc;
        final Cipher k1Dec;
        final Cipher k2Enc;
        final byte[] data = new byte[MAX_CHUNK];
        final MemorySegment dataSeg = MemorySegment.ofArray(data);
        final byte[] out = new byte[MAX_CHUNK];
        final byte[] tweak = new byte[MAX_CHUNK];
        /** One IV block per sector; sized for 16-byte sectors (test vectors use tiny units). */
        final byte[] ivs = new byte[MAX_CHUNK];
        final byte[] t0 = new byte[MAX_CHUNK];

        Context(SecretKeySpec k1, SecretKeySpec k2) throws GeneralSecurityException {
            k1Enc = Cipher.getInstance("AES/ECB/NoPadding");
            k1Enc.init(Cipher.ENCRYPT_MODE, k1);
            k1Dec = Cipher.getInstance("AES/ECB/NoPadding");
            k1Dec.init(Cipher.DECRYPT_MODE, k1);
            k2Enc = Cipher.getInstance("AES/ECB/NoPadding");
            k2Enc.init(Cipher.ENCRYPT_MODE, k2);
        }
    }
}
