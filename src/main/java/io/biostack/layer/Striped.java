package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Data laid round-robin over N devices in chunks (dm-stripe,
 * Documentation/admin-guide/device-mapper/striped.rst).
 *
 * <p>Table: {@code striped <#stripes> <chunk size> [<dev> <offset>]+}; the chunk size is in
 * 512-byte sectors as dm's (or with a suffix, {@code 64k}). The length must divide by the number
 * of stripes, and each stripe's share by the chunk size. Publishes io_min = chunk and
 * io_opt = chunk × stripes ({@code stripe_io_hints}).
 *
 * <p>A bio is split at chunk boundaries ({@link Layers#splitAt}); each piece is moved in place to
 * its stripe and handed on. FLUSH goes to every stripe; a write with PREFLUSH flushes every
 * stripe first and goes down once they all completed, as dm core sends it. Ownership of every piece passes to the
 * stripe's device.
 */
public final class Striped implements Target {
    private final String name;
    private final Leg[] legs;
    private final List<BlockDevice> devices;
    private final long chunk;
    private final long length;
    private final QueueLimits limits;
    private final boolean readOnly;
    private final Layers.Boundary boundary;
    private final Consumer<Bio> mapPiece = this::mapPiece;
    private final EndIo preflushed = this::preflushed;

    /**
     * {@code lengthBytes} striped over {@code legs} in chunks of {@code chunkBytes}; each leg
     * holds {@code lengthBytes / legs.size()} bytes from its start.
     *
     * @param name the device's name
     * @param legs the devices below with each one's start, in stripe order; not owned
     * @param chunkBytes the stripe chunk in bytes, a multiple of every leg's logical block size
     * @param lengthBytes the device's length in bytes; each leg's share must be whole chunks
     * @throws IllegalArgumentException when there is no leg, the chunk is not a multiple of the
     *         block size, the length does not divide into whole chunks per leg, or a leg is too
     *         short
     */
    public Striped(String name, List<Leg> legs, long chunkBytes, long lengthBytes) {
        int n = legs.size();
        if (n < 1) {
            throw new IllegalArgumentException(name + ": striped needs at least one device");
        }
        List<BlockDevice> devs = new ArrayList<>();
        for (Leg l : legs) {
            devs.add(l.device());
        }
        QueueLimits lim = Layers.stackLegs(devs);
        int lbs = lim.logicalBlockSize();
        if (chunkBytes < lbs || chunkBytes % lbs != 0) {
            throw new IllegalArgumentException(name + ": chunk size " + chunkBytes
                    + " must be a positive multiple of the " + lbs + "-byte logical block");
        }
        if (lengthBytes % ((long) n * lbs) != 0) {
            throw new IllegalArgumentException(name + ": length " + lengthBytes / Layers.SECTOR
                    + " sectors does not divide by " + n + " stripes of whole " + lbs + "-byte blocks");
        }
        long width = lengthBytes / n;
        if (width % chunkBytes != 0) {
            throw new IllegalArgumentException(name + ": each stripe's " + width / Layers.SECTOR
                    + " sectors do not divide by the chunk size of " + chunkBytes / Layers.SECTOR + " sectors");
        }
        boolean ro = false;
        for (Leg l : legs) {
            Layers.checkWindow(name, l.device(), l.start(), width);
            ro |= l.device().isReadOnly();
        }
        this.name = name;
        this.legs = legs.toArray(new Leg[0]);
        this.devices = List.copyOf(devs);
        this.chunk = chunkBytes;
        this.length = lengthBytes;
        this.readOnly = ro;
        this.limits = lim.toBuilder()
                .chunkBytes(0)
                .ioMin((int) Math.min(Integer.MAX_VALUE, chunkBytes))
                .ioOpt(chunkBytes * n)
                .build();
        this.boundary = off -> chunk - off % chunk;
    }

    @Override public String name() { return name; }
    @Override public long size() { return length; }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return readOnly; }

    /**
     * The stripe chunk: a bio is split where it would cross a multiple of it.
     *
     * @return the chunk in bytes
     */
    public long chunkBytes() {
        return chunk;
    }

    /**
     * I/O memory of the first stripe, registered with its ring when it sits on a loop device (the
     * stripes of one process share one file engine, so it serves them all).
     */
    @Override
    public MemorySegment allocateIoMemory(long bytes, Arena owner) {
        return legs[0].device().allocateIoMemory(bytes, owner);
    }

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, length, limits, readOnly)) {
            return;
        }
        if (bio.op() == Op.FLUSH) {
            Layers.fanOut(bio, devices);
            return;
        }
        if (Layers.preflushFirst(bio, devices, preflushed)) {
            return;
        }
        Layers.splitAt(bio, boundary, mapPiece);
    }

    /** Every stripe's flush ahead of a write with PREFLUSH completed: now its data. */
    private void preflushed(Bio flush) {
        Bio bio = Layers.afterPreflush(flush);
        if (bio != null) {
            Layers.splitAt(bio, boundary, mapPiece);
        }
    }

    /** A piece inside one chunk: move it to its stripe and send it there. */
    private void mapPiece(Bio piece) {
        long off = piece.offset();
        long c = off / chunk;
        Leg l = legs[(int) (c % legs.length)];
        piece.setOffset(l.start() + c / legs.length * chunk + off % chunk);
        l.device().submit(piece);
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        long n = Math.min(Math.min(maxLength, length - offset), chunk - offset % chunk);
        if (n <= 0) {
            return Extent.data(0);
        }
        long c = offset / chunk;
        Leg l = legs[(int) (c % legs.length)];
        return l.device().extentAt(l.start() + c / legs.length * chunk + offset % chunk, n);
    }

    @Override
    public String targetType() {
        return "striped";
    }

    @Override
    public String table() {
        StringBuilder sb = new StringBuilder().append(legs.length).append(' ').append(Layers.sectors(chunk));
        for (Leg l : legs) {
            sb.append(' ').append(l.table());
        }
        return sb.toString();
    }

    @Override
    public String status() {
        StringBuilder sb = new StringBuilder().append(legs.length);
        for (Leg l : legs) {
            sb.append(' ').append(l.device().name());
        }
        return sb.toString();
    }

    @Override
    public void close() {
        // The stripes' devices belong to whoever opened them.
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The table line {@code striped N CHUNK (DEV OFFSET)×N} (dm-stripe's {@code stripe_ctr}). On a
     * whole-device line the length is the most whole chunks every leg holds, times N.
     *
     * @param a the line's arguments
     * @return the spec, to open once the legs' devices are
     */
    public static TableSpec parseTable(TableArgs a) {
        long n = a.number("number of stripes");
        if (n < 1 || n > 1024) {
            throw a.bad("number of stripes must be 1..1024, not " + n);
        }
        long chunk = a.bytes("CHUNK");
        List<Leg.Named> legs = Layers.legs(a, (int) n);
        a.end();
        return a.spec((name, len, r) -> {
            List<Leg> ls = Layers.openLegs(legs, r);
            // a zero chunk is refused by the constructor, with its message
            long nat = chunk == 0 ? 0 : Layers.minLeft(ls) / chunk * chunk * n;
            return new Striped(name, ls, chunk, Layers.lengthOr(len, nat));
        });
    }
}
