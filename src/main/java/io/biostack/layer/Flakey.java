package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.LongSupplier;

/**
 * A window of a device that works for {@code up} seconds and then misbehaves for {@code down}
 * seconds, over and over (dm-flakey, Documentation/admin-guide/device-mapper/dm-flakey.rst).
 *
 * <p>Table: {@code flakey <dev> <offset> <up interval> <down interval> [<#feature args>
 * [<feature>...]]} with the features {@code error_reads}, {@code error_writes},
 * {@code drop_writes} and {@code corrupt_bio_byte <Nth byte> <r|w> <value> <flags>}. While down
 * and without features every bio fails; with features only what they name happens (reads fail;
 * writes and flushes fail, or are dropped yet reported done; or byte N of the data, counted from
 * 1, is replaced by {@code value} in bios carrying all of {@code flags}; a write is corrupted in
 * a copy, never in the caller's memory).
 *
 * <p>While up it is a {@link Linear}: bios are moved in place and passed down. While down with
 * a corrupting read, the bio goes down as a clone so that its data can be changed on completion.
 */
public final class Flakey implements Target {
    /**
     * What the down interval does; a false or 0 field is a feature not asked for.
     *
     * @param errorReads {@code error_reads}: reads fail with IOERR while down
     * @param errorWrites {@code error_writes}: writes fail with IOERR while down
     * @param dropWrites {@code drop_writes}: writes are dropped yet reported done while down
     * @param corruptByte {@code corrupt_bio_byte}'s N: the byte to replace, counted from 1; 0 for
     *         no corruption
     * @param corruptDir 'r' to corrupt reads, 'w' to corrupt writes; ' ' without corruption
     * @param corruptValue the byte value written over byte N, 0 to 255
     * @param corruptFlags only bios carrying all of these {@link io.biostack.block.BioFlags} bits
     *         are corrupted; 0 for every bio
     */
    public record Features(boolean errorReads, boolean errorWrites, boolean dropWrites,
                           long corruptByte, char corruptDir, int corruptValue, int corruptFlags) {
        /** No features: every bio fails while down. */
        public static final Features NONE = new Features(false, false, false, 0, ' ', 0, 0);

        boolean any() {
            return errorReads || errorWrites || dropWrites || corruptByte > 0;
        }

        /**
         * Parses the feature arguments after their count; throws saying what is wrong.
         *
         * @param args the words after the feature count of a table line, e.g. {@code [error_reads]}
         * @return the features they name
         * @throws IllegalArgumentException when a feature is unknown, misses its arguments or has a
         *         bad value
         */
        public static Features parse(List<String> args) {
            boolean er = false;
            boolean ew = false;
            boolean dw = false;
            long cb = 0;
            char cd = ' ';
            int cv = 0;
            int cf = 0;
            for (int i = 0; i < args.size(); i++) {
                String a = args.get(i);
                switch (a) {
                    case "error_reads" -> er = true;
                    case "error_writes" -> ew = true;
                    case "drop_writes" -> dw = true;
                    case "corrupt_bio_byte" -> {
                        if (i + 4 >= args.size()) {
                            throw new IllegalArgumentException("corrupt_bio_byte takes <Nth byte> <r|w> <value> <flags>");
                        }
                        cb = Long.parseLong(args.get(i + 1));
                        if (cb < 1) {
                            throw new IllegalArgumentException("corrupt_bio_byte: byte number counts from 1: " + cb);
                        }
                        String d = args.get(i + 2);
                        if (!d.equals("r") && !d.equals("w")) {
                            throw new IllegalArgumentException("corrupt_bio_byte: direction must be r or w: " + d);
                        }
                        cd = d.charAt(0);
                        cv = Integer.parseInt(args.get(i + 3));
                        if (cv < 0 || cv > 255) {
                            throw new IllegalArgumentException("corrupt_bio_byte: value must be 0..255: " + cv);
                        }
                        cf = Integer.parseInt(args.get(i + 4));
                        i += 4;
                    }
                    default -> throw new IllegalArgumentException("unknown flakey feature '" + a
                            + "' (error_reads, error_writes, drop_writes, corrupt_bio_byte)");
                }
            }
            if (dw && ew) {
                throw new IllegalArgumentException("drop_writes and error_writes are mutually exclusive");
            }
            return new Features(er, ew, dw, cb, cd, cv, cf);
        }

        List<String> args() {
            List<String> out = new ArrayList<>();
            if (errorReads) out.add("error_reads");
            if (errorWrites) out.add("error_writes");
            if (dropWrites) out.add("drop_writes");
            if (corruptByte > 0) {
                out.addAll(List.of("corrupt_bio_byte", Long.toString(corruptByte), String.valueOf(corruptDir),
                        Integer.toString(corruptValue), Integer.toString(corruptFlags)));
            }
            return out;
        }
    }

    private final String name;
    private final Linear window;
    private final long upNanos;
    private final long downNanos;
    private final Features features;
    private final LongSupplier clock;
    private final long startNanos;
    private final EndIo corruptReadDone = this::corruptReadDone;

    /**
     * As dm-flakey: intervals in seconds, measured from now on {@link System#nanoTime()}.
     *
     * @param name the device's name
     * @param leg the device below and where on it the window starts (not owned)
     * @param length the window's length in bytes
     * @param upSeconds seconds of normal service at the start of each period
     * @param downSeconds seconds of misbehaviour that follow, 0 for none
     * @param features what happens while down; {@link Features#NONE} fails every bio
     */
    public Flakey(String name, Leg leg, long length, long upSeconds, long downSeconds, Features features) {
        this(name, leg, length, upSeconds * 1_000_000_000L, downSeconds * 1_000_000_000L, features, System::nanoTime);
    }

    /**
     * With intervals in nanoseconds and a clock of one's own (tests).
     *
     * @param name the device's name
     * @param leg the device below and where on it the window starts (not owned)
     * @param length the window's length in bytes
     * @param upNanos nanoseconds of normal service at the start of each period
     * @param downNanos nanoseconds of misbehaviour that follow, 0 for none
     * @param features what happens while down
     * @param clock the time in nanoseconds, read at construction and at each bio
     * @throws IllegalArgumentException when an interval is negative, or both are 0
     */
    public Flakey(String name, Leg leg, long length, long upNanos, long downNanos, Features features, LongSupplier clock) {
        if (upNanos < 0 || downNanos < 0) {
            throw new IllegalArgumentException(name + ": intervals must not be negative");
        }
        if (upNanos + downNanos == 0) {
            throw new IllegalArgumentException(name + ": the up + down interval is zero (flakey_ctr refuses it too)");
        }
        this.name = name;
        this.window = new Linear(name, leg.device(), leg.start(), length);
        this.upNanos = upNanos;
        this.downNanos = downNanos;
        this.features = features;
        this.clock = clock;
        this.startNanos = clock.getAsLong();
    }

    @Override public String name() { return name; }
    @Override public long size() { return window.size(); }
    @Override public QueueLimits limits() { return window.limits(); }
    @Override public boolean isReadOnly() { return window.isReadOnly(); }

    /**
     * True while in the down interval.
     *
     * @return true when the clock now falls in the down part of the period
     */
    public boolean isDown() {
        long period = upNanos + downNanos;
        if (period == 0) {
            return false;
        }
        return Math.floorMod(clock.getAsLong() - startNanos, period) >= upNanos;
    }

    @Override
    public void submit(Bio bio) {
        if (!isDown()) {
            window.submit(bio);
            return;
        }
        if (!BioChecks.admit(bio, name, window.size(), window.limits(), window.isReadOnly())) {
            return;
        }
        Features f = features;
        if (!f.any()) {
            bio.fail(Status.IOERR, bio.op() + " on " + name + " while it is down");
            return;
        }
        Op op = bio.op();
        if (op == Op.READ) {
            if (f.errorReads) {
                bio.fail(Status.IOERR, "read on " + name + " while it is down (error_reads)");
            } else if (corrupts(bio, 'r')) {
                window.submit(Layers.cloneWith(bio, corruptReadDone));
            } else {
                window.submit(bio);
            }
            return;
        }
        // dm hands a target an empty flush as a WRITE with PREFLUSH (__send_empty_flush), so
        // error_writes fails it and drop_writes drops it, as they do writes
        if (op.changesData() || op == Op.FLUSH) {
            if (f.dropWrites) {
                bio.endIo();
            } else if (f.errorWrites) {
                bio.fail(Status.IOERR, op + " on " + name + " while it is down (error_writes)");
            } else if (op == Op.WRITE && corrupts(bio, 'w')) {
                writeCorrupted(bio);
            } else {
                window.submit(bio);
            }
            return;
        }
        window.submit(bio);
    }

    private boolean corrupts(Bio bio, char dir) {
        Features f = features;
        return f.corruptByte > 0 && f.corruptDir == dir && bio.size() >= f.corruptByte
                && (bio.flags() & f.corruptFlags) == f.corruptFlags;
    }

    private void corruptReadDone(Bio clone) {
        Bio parent = (Bio) clone.privateData();
        if (clone.status() == Status.OK) {
            // The clone's iterator was moved by the layers below; the parent's still covers the data.
            poke(parent, features.corruptByte - 1, (byte) features.corruptValue);
        }
        Layers.finishClone(clone);
    }

    /** Writes a corrupted copy of the data; the caller's memory stays as it was. */
    private void writeCorrupted(Bio bio) {
        MemorySegment copy = Arena.ofAuto().allocate(bio.size(), 4096);
        bio.copyTo(copy);
        copy.set(ValueLayout.JAVA_BYTE, features.corruptByte - 1, (byte) features.corruptValue);
        Bio w = Layers.POOL.get().init(Op.WRITE, bio.flags(), bio.offset(), Layers::finishClone);
        w.addSegment(copy);
        w.setPrivateData(bio);
        window.submit(w);
    }

    /** Sets byte {@code index} of the memory the bio's iterator covers. */
    private static void poke(Bio bio, long index, byte value) {
        long[] left = {index};
        bio.forEachSegment((seg, off, len) -> {
            if (left[0] >= 0 && left[0] < len) {
                seg.set(ValueLayout.JAVA_BYTE, off + left[0], value);
            }
            left[0] -= len;
        });
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        return window.extentAt(offset, maxLength);
    }

    @Override
    public String targetType() {
        return "flakey";
    }

    @Override
    public String table() {
        StringBuilder sb = new StringBuilder(window.table()).append(' ')
                .append(seconds(upNanos)).append(' ').append(seconds(downNanos));
        // dm-flakey's flakey_status prints the feature count always, 0 included
        List<String> fa = features.args();
        sb.append(' ').append(fa.size());
        for (String a : fa) {
            sb.append(' ').append(a);
        }
        return sb.toString();
    }

    private static String seconds(long nanos) {
        return nanos % 1_000_000_000L == 0 ? Long.toString(nanos / 1_000_000_000L)
                : String.format(Locale.ROOT, "%.3f", nanos / 1e9);
    }

    @Override
    public String status() {
        return isDown() ? "down" : "up";
    }

    @Override
    public void close() {
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The table line {@code flakey DEV OFFSET UP DOWN [<#args> FEATURES...]} (dm-flakey's
     * {@code flakey_ctr}; intervals in seconds, features as {@link Features#parse}).
     *
     * @param a the line's arguments
     * @return the spec, to open once DEV is
     */
    public static TableSpec parseTable(TableArgs a) {
        String dev = a.dev("DEV");
        long off = a.bytes("OFFSET");
        long up = a.number("up interval (seconds)");
        long down = a.number("down interval (seconds)");
        Features f = Features.NONE;
        if (a.hasNext()) {
            long nf = a.number("number of feature arguments");
            List<String> fa = new ArrayList<>();
            for (int i = 0; i < nf; i++) {
                fa.add(a.next("feature argument " + (i + 1) + " of " + nf));
            }
            try {
                f = Features.parse(fa);
            } catch (NumberFormatException e) {
                throw a.bad("corrupt_bio_byte: not a number: " + e.getMessage());
            } catch (IllegalArgumentException e) {
                throw a.bad(e.getMessage());
            }
        }
        a.end();
        Features feats = f;
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(dev);
            return new Flakey(name, new Leg(d, off), Layers.lengthOr(len, d.size() - off), up, down, feats);
        });
    }
}
