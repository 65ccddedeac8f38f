package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import io.biostack.layer.Delay;
import io.biostack.layer.Dust;
import io.biostack.layer.ErrorTarget;
import io.biostack.layer.Flakey;
import io.biostack.layer.Layers;
import io.biostack.layer.Leg;
import io.biostack.layer.Linear;
import io.biostack.layer.Mirror;
import io.biostack.layer.Striped;
import io.biostack.layer.Zero;
import io.biostack.layer.crypt.Crypt;
import io.biostack.layer.crypt.Luks;
import io.biostack.layer.logwrites.LogWrites;
import io.biostack.layer.part.Partitions;
import io.biostack.layer.snapshot.Snapshot;
import io.biostack.layer.snapshot.SnapshotOrigin;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.client.NbdClient;
import io.biostack.rbd.RbdDevice;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Every target a stack file may name, in one table: the registry. Each target reads its own
 * line in a static {@code parseTable(TableArgs)} method beside its code (dm keeps each
 * constructor in its own {@code dm-*.c}), with the argument reader {@link TableArgs}; adding a
 * target is that method and one {@link #register} line here.
 *
 * <p>A target is parsed in two steps so that a stack file's mistakes are found before anything
 * opens: {@link Kind#parse} checks the arguments and names the devices they refer to (a
 * {@link TableSpec}); {@link TableSpec#open} builds the device once those devices are open.
 *
 * <table>
 * <caption>Targets</caption>
 * <tr><td>{@code loop FILE [direct-io=on|off|auto] [offset=N] [sizelimit=N] [sector-size=N] [read-only] [size=N]}</td><td>leaf ({@link LoopDevice#parseTable})</td></tr>
 * <tr><td>{@code ram SIZE [sector-size=N] [read-only]}</td><td>leaf ({@link RamDisk#parseTable})</td></tr>
 * <tr><td>{@code partition DEV N}</td><td>leaf, a window as the kernel's partitions ({@link Partitions#parseTable})</td></tr>
 * <tr><td>{@code nbd URI [connections=N] [timeout=DURATION]}</td><td>leaf: a remote NBD export ({@link NbdClient#parseTable})</td></tr>
 * <tr><td>{@code rbd POOL/IMAGE [id=NAME] [conf=PATH] [keyring=PATH] [size=SIZE] [timeout=SECONDS]}</td><td>leaf, a Ceph RBD image ({@link RbdDevice#parseTable})</td></tr>
 * <tr><td>{@code linear DEV OFFSET}</td><td>dm-linear ({@link Linear#parseTable})</td></tr>
 * <tr><td>{@code striped N CHUNK (DEV OFFSET)×N}</td><td>dm-stripe ({@link Striped#parseTable})</td></tr>
 * <tr><td>{@code mirror [core <#args> REGION [sync|nosync] | disk <#args> LOGDEV REGION [sync|nosync]] [N] (DEV OFFSET)+ [<#features> handle_errors]}</td><td>dm-raid1</td></tr>
 * <tr><td>{@code error}, {@code zero}</td><td>need START LENGTH ({@link ErrorTarget#parseTable}, {@link Zero#parseTable})</td></tr>
 * <tr><td>{@code flakey DEV OFFSET UP DOWN [<#args> FEATURES...]}</td><td>dm-flakey ({@link Flakey#parseTable})</td></tr>
 * <tr><td>{@code delay DEV OFFSET MS [DEV OFFSET MS [DEV OFFSET MS]]}</td><td>dm-delay ({@link Delay#parseTable})</td></tr>
 * <tr><td>{@code dust DEV OFFSET BLKSZ}</td><td>dm-dust ({@link Dust#parseTable})</td></tr>
 * <tr><td>{@code crypt CIPHER KEYHEX IV_OFFSET DEV OFFSET [[<#opts>] sector_size:N iv_large_sectors]}</td><td>dm-crypt</td></tr>
 * <tr><td>{@code luks DEV keyfile=PATH|passphrase=TEXT [header=FILE] [keyslot=N] [read-only]}</td><td>cryptsetup open, LUKS1 and LUKS2 ({@link Luks#parseTable})</td></tr>
 * <tr><td>{@code snapshot ORIGIN COW P|N CHUNK}, {@code snapshot-origin DEV}</td><td>dm-snapshot ({@link Snapshot#parseTable}, {@link SnapshotOrigin#parseTable})</td></tr>
 * <tr><td>{@code log-writes DEV LOGDEV}</td><td>dm-log-writes ({@link LogWrites#parseTable})</td></tr>
 * <tr><td>{@code qcow2 DEV [backing=NAME|none] [l2-cache-size=SIZE] [read-only]}</td><td>a qcow2 image on DEV (in {@code stack}: it opens the backing files the header names)</td></tr>
 * </table>
 * Offsets, lengths and chunk sizes are 512-byte sectors, or sizes with a suffix (4k, 1M, 2G).
 */
public final class Targets {
    /**
     * A kind of target: its name, whether it is a leaf, and its argument parser.
     *
     * @param name   the name a table line uses
     * @param leaf   true for a device of its own (a file, a remote export), which can't be a
     *               segment of a mapped device
     * @param parser reads the line's arguments
     */
    public record Kind(String name, boolean leaf, Parser parser) {
        TableSpec parse(List<String> args) {
            return parser.parse(new TableArgs(name, args));
        }
    }

    /** Parses a target's arguments; throws {@link IllegalArgumentException} saying what is wrong. */
    @FunctionalInterface
    public interface Parser {
        /**
         * The spec of one line from its arguments.
         *
         * @param a the line's arguments
         * @return the spec, checked, not open
         */
        TableSpec parse(TableArgs a);
    }

    private static final Map<String, Kind> KINDS = new TreeMap<>();

    // One line per target, each on its own line (merges stay simple).
    static {
        register("loop", true, LoopDevice::parseTable);
        register("ram", true, RamDisk::parseTable);
        register("partition", true, Partitions::parseTable);
        register("nbd", true, NbdClient::parseTable);
        register("rbd", true, RbdDevice::parseTable);
        register("linear", false, Linear::parseTable);
        register("striped", false, Striped::parseTable);
        register("mirror", false, Mirror::parseTable);
        register("error", false, ErrorTarget::parseTable);
        register("zero", false, Zero::parseTable);
        register("flakey", false, Flakey::parseTable);
        register("delay", false, Delay::parseTable);
        register("dust", false, Dust::parseTable);
        register("crypt", false, Crypt::parseTable);
        register("luks", false, Luks::parseTable);
        register("snapshot", false, Snapshot::parseTable);
        register("snapshot-origin", false, SnapshotOrigin::parseTable);
        register("log-writes", false, LogWrites::parseTable);
        register("qcow2", false, Qcow2Target::parseTable);
    }

    private Targets() {
    }

    /**
     * Adds a target kind; the stack file and reload tables can name it from then on.
     *
     * @param name   the name table lines use; a kind of that name already there is replaced
     * @param leaf   true for a device of its own, that only whole-device lines may name
     * @param parser reads the line's arguments
     */
    public static synchronized void register(String name, boolean leaf, Parser parser) {
        KINDS.put(name, new Kind(name, leaf, parser));
    }

    /**
     * The kind called {@code name}.
     *
     * @param name a target's name
     * @return the kind, or null when none is registered under that name
     */
    public static synchronized Kind kind(String name) {
        return KINDS.get(name);
    }

    /**
     * The names of every registered target.
     *
     * @return the names, sorted
     */
    public static synchronized List<String> names() {
        return List.copyOf(KINDS.keySet());
    }

}
