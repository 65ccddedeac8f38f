package io.biostack.layer.crypt;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioPool;
import io.biostack.block.BioSplitter;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.layer.Target;
import io.biostack.layer.crypt.BouncePool.Bounce;

import java.util.function.Consumer;

/**
 * The device-mapper {@code crypt} target (Documentation/admin-guide/device-mapper/dm-crypt.rst):
 * a device whose sectors are stored encrypted on {@code lower} from {@code startBytes} on.
 * Table semantics: {@code crypt <cipher> <key hex> <iv_offset> <device> <offset> [sector_size:N]
 * [iv_large_sectors]}, with the offset in bytes here.
 *
 * <h2>IVs</h2>
 * The IV of an encryption sector is {@code plain64}: the 512-byte sector number within this
 * device plus {@code iv_offset}. With {@code sector_size:4096} the second 4 KiB sector therefore
 * has IV 8, as in dm-crypt; with {@code iv_large_sectors} the sum is counted in
 * {@code sector_size} units instead (IV 1), and {@code iv_offset} must be a multiple of them.
 *
 * <h2>Data path</h2>
 * <ul>
 *   <li>WRITE: each piece (at most {@link #BOUNCE_BYTES}, split and chained as
 *   {@link BioSplitter} does) is encrypted into a bounce buffer from a pool, never in the
 *   caller's memory; a new bio pointing at the buffer goes to {@code lower}, and its end-io gives
 *   the buffer back and completes the piece with the lower status.</li>
 *   <li>READ: a clone goes to {@code lower}; its end-io decrypts the caller's memory in place
 *   (CPU work on the completing thread, no blocking) and completes the original.</li>
 *   <li>FLUSH passes through; DISCARD and WRITE_ZEROES are refused (NOTSUPP), as dm-crypt does
 *   without {@code allow_discards}: zeros below would not read back as zeros above.</li>
 * </ul>
 *
 * <p>The key is never kept as text and never printed: {@link #toString()} and {@link #table()}
 * show it as {@code -}. Closing this device does not close {@code lower}.
 */
public final class Crypt implements Target {
    /** Largest write sent down in one bounce buffer (dm-crypt caps its clones at BIO_MAX_VECS pages). */
    public static final int BOUNCE_BYTES = 128 * 1024;
    /** Idle bounce buffers kept per device. */
    private static final int BOUNCE_POOL = 64;

    private final String name;
    private final BlockDevice lower;
    private final CipherSpec spec;
    private final Xts xts;
    private final long ivOffset;
    private final long start;
    private final int sectorSize;
    private final boolean ivLargeSectors;
    private final int ivShift;
    private final long ivStep;
    private final long size;
    private final QueueLimits limits;
    private final QueueLimits writeLimits;
    private final BioPool bios = new BioPool(256);
    private final BouncePool bounces = new BouncePool(BOUNCE_BYTES, BOUNCE_POOL);
    private final EndIo readDone = this::readDone;
    private final EndIo writeDone = this::writeDone;
    private final Consumer<Bio> readOne = this::readOne;
    private final Consumer<Bio> writeOne = this::writeOne;

    private Crypt(String name, BlockDevice lower, CipherSpec spec, byte[] key, long ivOffset, long start,
                  int sectorSize, boolean ivLargeSectors) {
        if (sectorSize < 512 || sectorSize > 4096 || Integer.bitCount(sectorSize) != 1) {
            throw new IllegalArgumentException("crypt sector_size must be a power of two from 512 to 4096, not "
                    + sectorSize);
        }
        int lowerLbs = lower.limits().logicalBlockSize();
        if (start < 0 || start % 512 != 0 || start % lowerLbs != 0) {
            throw new IllegalArgumentException("crypt offset " + start + " is not a multiple of "
                    + Math.max(512, lowerLbs) + " bytes on " + lower.name());
        }
        if (start > lower.size()) {
            throw new IllegalArgumentException("crypt offset " + start + " is beyond the end of " + lower.name()
                    + " (" + lower.size() + " bytes)");
        }
        if (ivOffset < 0) {
            throw new IllegalArgumentException("negative crypt iv_offset " + ivOffset);
        }
        int shift = Integer.numberOfTrailingZeros(sectorSize / 512);
        if (ivLargeSectors && ivOffset % (sectorSize / 512) != 0) {
            throw new IllegalArgumentException("with iv_large_sectors the iv_offset " + ivOffset
                    + " must be a multiple of " + sectorSize / 512 + " (sector_size in 512-byte sectors)");
        }
        this.name = name;
        this.lower = lower;
        this.spec = spec;
        this.xts = new Xts(key, spec);
        this.ivOffset = ivOffset;
        this.start = start;
        this.sectorSize = sectorSize;
        this.ivLargeSectors = ivLargeSectors;
        this.ivShift = shift;
        this.ivStep = ivLargeSectors ? 1 : sectorSize / 512;
        this.size = (lower.size() - start) / sectorSize * sectorSize;
        QueueLimits top = QueueLimits.builder()
                .logicalBlockSize(sectorSize)
                .physicalBlockSize(sectorSize)
                .fua(true)
                .build();
        this.limits = QueueLimits.stack(top, lower.limits());
        long cap = limits.maxBytes() == 0 ? BOUNCE_BYTES : Math.min(limits.maxBytes(), BOUNCE_BYTES);
        this.writeLimits = limits.toBuilder().maxBytes(cap).build();
    }

    /**
     * A crypt device over {@code lower} from {@code startBytes} to its end, as the dm table
     * {@code crypt <cipherSpec> <key> <ivOffsetSectors> <lower> <startBytes/512>
     * sector_size:<sectorSize>}. {@code key} is copied; the caller may wipe it.
     *
     * @throws IllegalArgumentException for an unsupported cipher, a bad key length, sector size
     *                                  or offset
     */
    public static BlockDevice create(String name, BlockDevice lower, String cipherSpec, byte[] key,
                                     long ivOffsetSectors, long startBytes, int sectorSize) {
        return create(name, lower, cipherSpec, key, ivOffsetSectors, startBytes, sectorSize, false);
    }

    /** As {@link #create(String, BlockDevice, String, byte[], long, long, int)}, with dm-crypt's {@code iv_large_sectors}. */
    public static Crypt create(String name, BlockDevice lower, String cipherSpec, byte[] key, long ivOffsetSectors,
                               long startBytes, int sectorSize, boolean ivLargeSectors) {
        CipherSpec spec = CipherSpec.parse(cipherSpec);
        spec.checkKeyLength(key.length);
        return new Crypt(name, lower, spec, key, ivOffsetSectors, startBytes, sectorSize, ivLargeSectors);
    }

    @Override public String name() { return name; }
    @Override public long size() { return size; }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return lower.isReadOnly(); }

    /** The device below. */
    public BlockDevice lower() {
        return lower;
    }

    /** The encryption sector size in bytes. */
    public int sectorSize() {
        return sectorSize;
    }

    @Override
    public String targetType() {
        return "crypt";
    }

    /**
     * The dm table arguments of this device with the key shown as {@code -} (as {@code dmsetup
     * table} without {@code --showkeys}): {@code aes-xts-plain64 - 0 disk0 4096 1 sector_size:4096}.
     */
    @Override
    public String table() {
        StringBuilder sb = new StringBuilder().append(spec).append(" - ").append(ivOffset).append(' ')
                .append(lower.name()).append(' ').append(start / 512);
        int opts = (sectorSize != 512 ? 1 : 0) + (ivLargeSectors ? 1 : 0);
        if (opts > 0) {
            sb.append(' ').append(opts);
            if (sectorSize != 512) {
                sb.append(" sector_size:").append(sectorSize);
            }
            if (ivLargeSectors) {
                sb.append(" iv_large_sectors");
            }
        }
        return sb.toString();
    }

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, size, limits, lower.isReadOnly())) {
            return;
        }
        switch (bio.op()) {
            case READ -> BioSplitter.submitSplit(bio, limits, bios, readOne);
            case WRITE -> BioSplitter.submitSplit(bio, writeLimits, bios, writeOne);
            case FLUSH -> lower.submit(bio); // no range to remap: the bio goes down as it is
            case DISCARD, WRITE_ZEROES -> bio.fail(Status.NOTSUPP, bio.op() + " is not supported by crypt device " + name);
        }
    }

    /** The IV of the encryption sector at byte {@code offset} of this device. */
    private long ivAt(long offset) {
        long s = (offset >>> 9) + ivOffset;
        return ivLargeSectors ? s >>> ivShift : s;
    }

    // ---- READ: clone down, decrypt in place on completion --------------------------------------

    private void readOne(Bio piece) {
        Bio clone = piece.cloneShallow(bios);
        clone.setOffset(start + piece.offset());
        clone.setPrivateData(piece);
        clone.setEndIo(readDone);
        lower.submit(clone);
    }

    private void readDone(Bio clone) {
        Bio piece = (Bio) clone.privateData();
        Status s = clone.status();
        String why = clone.detail();
        clone.put();
        if (s.isOk()) {
            try {
                xts.transform(false, piece, null, ivAt(piece.offset()), sectorSize, ivStep);
            } catch (RuntimeException e) {
                piece.setStatus(Status.IOERR, "decryption failed on " + name + ": " + e.getMessage());
            }
        } else {
            piece.setStatus(s, why);
        }
        piece.endIo();
    }

    // ---- WRITE: encrypt into a bounce buffer, write that ---------------------------------------

    private void writeOne(Bio piece) {
        Bounce b = bounces.get();
        try {
            xts.transform(true, piece, b.mem, ivAt(piece.offset()), sectorSize, ivStep);
        } catch (RuntimeException e) {
            bounces.put(b);
            piece.fail(Status.IOERR, "encryption failed on " + name + ": " + e.getMessage());
            return;
        }
        b.owner = piece;
        Bio w = bios.get().init(Op.WRITE, piece.flags(), start + piece.offset(), writeDone);
        w.addSegment(b.slice(piece.size()));
        w.setPrivateData(b);
        lower.submit(w);
    }

    private void writeDone(Bio w) {
        Bounce b = (Bounce) w.privateData();
        Bio piece = b.owner;
        Status s = w.status();
        String why = w.detail();
        w.put();
        bounces.put(b);
        piece.setStatus(s, why);
        piece.endIo();
    }

    /** Bounce buffers made so far (a warm device stops making them). */
    long bounceBuffersCreated() {
        return bounces.created();
    }

    /** Forgets the key on this thread and refuses further I/O; {@code lower} stays open. */
    @Override
    public void close() {
        xts.close();
    }

    @Override
    public String toString() {
        return "Crypt[" + name + " " + spec + " AES-" + xts.aesKeyBits() + " key=- over " + lower.name()
                + " start=" + start + " sector_size=" + sectorSize + (ivLargeSectors ? " iv_large_sectors" : "")
                + " size=" + size + "]";
    }
}
