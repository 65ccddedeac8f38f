package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.stream.Collectors;

/**
 * A window of a device with a list of bad blocks that fail reads, as a disk with unreadable
 * sectors does (dm-dust, Documentation/admin-guide/device-mapper/dm-dust.rst).
 *
 * <p>Table: {@code dust <dev> <offset> <block size in bytes>}. Starts in bypass mode; messages:
 * {@code addbadblock N [write fail count]}, {@code removebadblock N}, {@code queryblock N},
 * {@code enable} (fail reads of bad blocks), {@code disable} (bypass), {@code countbadblocks},
 * {@code listbadblocks}, {@code clearbadblocks}, {@code quiet}. While enabled, a read touching a
 * bad block fails with a medium error; a write to a bad block fails while its write fail count
 * lasts, then clears the block from the list (the disk remapped it) and goes down. A write is
 * judged block by block, as dm-dust's one-block bios are: its good blocks are written even when
 * a bad one fails it.
 */
public final class Dust implements Target {
    private final String name;
    private final Linear window;
    private final int blockSize;
    private final long blocks;
    /** Bad block → writes still to fail. */
    private final ConcurrentSkipListMap<Long, Integer> bad = new ConcurrentSkipListMap<>();
    private volatile boolean enabled;
    private volatile boolean quiet;
    private final Layers.Boundary blockBoundary;
    private final java.util.function.Consumer<Bio> writeBlock = this::writeBlock;

    /**
     * {@code length} bytes of {@code leg} in blocks of {@code blockSize}, with no bad blocks yet
     * and failing disabled.
     *
     * @param name the device's name
     * @param leg the device below and where on it the window starts (not owned)
     * @param length the window's length in bytes
     * @param blockSize the unit bad blocks are counted in, in bytes (dm-dust's block size)
     */
    public Dust(String name, Leg leg, long length, int blockSize) {
        if (blockSize < 512 || Integer.bitCount(blockSize) != 1) {
            throw new IllegalArgumentException(name + ": block size must be a power of two >= 512: " + blockSize);
        }
        if (length % blockSize != 0) {
            throw new IllegalArgumentException(name + ": length " + length + " is not a multiple of the block size " + blockSize);
        }
        this.name = name;
        this.window = new Linear(name, leg.device(), leg.start(), length);
        this.blockSize = blockSize;
        this.blocks = length / blockSize;
        this.blockBoundary = off -> blockSize - off % blockSize;
    }

    @Override public String name() { return name; }
    @Override public long size() { return window.size(); }
    @Override public QueueLimits limits() { return window.limits(); }
    @Override public boolean isReadOnly() { return window.isReadOnly(); }

    @Override
    public void submit(Bio bio) {
        if (!enabled || bad.isEmpty() || bio.op() == Op.FLUSH) {
            window.submit(bio);
            return;
        }
        if (!BioChecks.admit(bio, name, window.size(), window.limits(), window.isReadOnly())) {
            return;
        }
        long first = bio.offset() / blockSize;
        long last = (bio.offset() + bio.size() - 1) / blockSize;
        Map<Long, Integer> hit = bad.subMap(first, true, last, true);
        if (hit.isEmpty()) {
            window.submit(bio);
        } else if (bio.op() == Op.READ) {
            bio.fail(Status.MEDIUM, "read of bad block " + hit.keySet().iterator().next() + " on " + name);
        } else {
            // dm-dust maps one block per bio (max_io_len = its block size): the good blocks of a
            // write go down, and each bad one fails or leaves the list on its own
            Layers.splitAt(bio, blockBoundary, writeBlock);
        }
    }

    /** One block of a write that touches a bad block (dust_map_write, __dust_map_write). */
    private void writeBlock(Bio piece) {
        long blk = piece.offset() / blockSize;
        Integer left = bad.get(blk);
        if (left == null) {
            window.submit(piece);
        } else if (left > 0) {
            bad.computeIfPresent(blk, (k, v) -> v - 1);
            piece.fail(Status.IOERR, "write to bad block " + blk + " on " + name);
        } else {
            bad.remove(blk);
            window.submit(piece);
        }
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        return window.extentAt(offset, maxLength);
    }

    @Override
    public String message(List<String> argv) {
        if (argv.isEmpty()) {
            throw new IllegalArgumentException("dust: empty message");
        }
        String cmd = argv.getFirst();
        switch (cmd) {
            case "enable" -> { enabled = true; return ""; }
            case "disable" -> { enabled = false; return ""; }
            case "quiet" -> { quiet = !quiet; return ""; }
            case "countbadblocks" -> { return "countbadblocks: " + bad.size() + " badblock(s) found"; }
            case "listbadblocks" -> {
                return bad.isEmpty() ? "No blocks in badblocklist"
                        : bad.keySet().stream().map(String::valueOf).collect(Collectors.joining("\n"));
            }
            case "clearbadblocks" -> {
                if (bad.isEmpty()) {
                    return "dust_clear_badblocks: no badblocks found";
                }
                bad.clear();
                return "dust_clear_badblocks: badblocks cleared";
            }
            case "addbadblock", "removebadblock", "queryblock" -> {
                int max = cmd.equals("addbadblock") ? 3 : 2;
                if (argv.size() < 2 || argv.size() > max) {
                    throw new IllegalArgumentException(cmd + " takes a block number"
                            + (max == 3 ? " and an optional write fail count" : ""));
                }
                long blk = number(argv.get(1), "block");
                if (blk >= blocks) {
                    throw new IllegalArgumentException(cmd + ": block " + blk + " is beyond the device's " + blocks + " blocks");
                }
                return block(cmd, blk, argv.size() == 3 ? (int) number(argv.get(2), "write fail count") : 0);
            }
            default -> throw new IllegalArgumentException("dust: unknown message '" + cmd
                    + "' (addbadblock, removebadblock, queryblock, enable, disable, countbadblocks,"
                    + " listbadblocks, clearbadblocks, quiet)");
        }
    }

    private String block(String cmd, long blk, int writeFails) {
        switch (cmd) {
            case "addbadblock":
                if (bad.putIfAbsent(blk, writeFails) != null) {
                    throw new IllegalArgumentException("addbadblock: block " + blk + " already in badblocklist");
                }
                return "";
            case "removebadblock":
                if (bad.remove(blk) == null) {
                    throw new IllegalArgumentException("removebadblock: block " + blk + " not found in badblocklist");
                }
                return "";
            default:
                return "dust_query_block: block " + blk + (bad.containsKey(blk) ? " found" : " not found") + " in badblocklist";
        }
    }

    private static long number(String s, String what) {
        try {
            long v = Long.parseLong(s);
            if (v < 0) {
                throw new NumberFormatException();
            }
            return v;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("not a " + what + ": '" + s + "'");
        }
    }

    /**
     * True when reads of bad blocks fail (after {@code enable}).
     *
     * @return true when bad blocks fail reads, false while they pass through (the state after
     *         {@code disable} and at the start)
     */
    public boolean isEnabled() {
        return enabled;
    }

    @Override
    public String targetType() {
        return "dust";
    }

    @Override
    public String table() {
        return window.table() + " " + blockSize;
    }

    @Override
    public String status() {
        return window.lower().name() + " " + (enabled ? "fail_read_on_bad_block" : "bypass") + " " + (quiet ? "quiet" : "verbose");
    }

    @Override
    public void close() {
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The table line {@code dust DEV OFFSET BLKSZ} (dm-dust's {@code dust_ctr}; the block size
     * in bytes).
     *
     * @param a the line's arguments
     * @return the spec, to open once DEV is
     */
    public static TableSpec parseTable(TableArgs a) {
        String dev = a.dev("DEV");
        long off = a.bytes("OFFSET");
        long blk = a.number("block size (bytes)");
        a.end();
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(dev);
            return new Dust(name, new Leg(d, off), Layers.lengthOr(len, d.size() - off), (int) blk);
        });
    }
}
