package io.biostack.layer.snapshot;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioPool;
import io.biostack.block.BlockDevice;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import io.biostack.layer.Target;

import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The origin of snapshots, as device-mapper's {@code snapshot-origin} target: reads pass through;
 * a write first has every valid snapshot of the origin copy out the chunks it is about to change
 * ({@link Snapshot#beforeOriginWrite}), then goes to the origin. Writes are split at the smallest
 * chunk size of the snapshots, so each piece touches one chunk of each.
 *
 * <p>Snapshots find their origin handler through a registry keyed by the origin device's
 * identity (dm's {@code _origins} table): {@link Snapshot#create} registers, closing or merging
 * a snapshot unregisters. Bios written to the origin device around this handler are not copied
 * out. WRITE_ZEROES is a write like the others (copy-outs first): dm's origin takes none, and
 * the kernel then writes zeroed pages in its place, but a device of this stack has advertised it
 * (to an NBD client, say) before a backup's snapshot comes and goes, and the kernel's NBD client
 * gives a failed one to the guest as EIO. A DISCARD while the origin has snapshots completes
 * without going down: copying out what it drops would copy a whole device for an fstrim, and a
 * failed one is an EIO for that guest too, while a trim may leave the data as it is (NBD's
 * TRIM: "a client MUST NOT make any assumptions about the contents of the export affected by
 * this command"; the block layer's discard promises no zeroes either).
 */
public final class SnapshotOrigin implements Target {
    private static final Snapshot[] NONE = new Snapshot[0];
    private static final Map<BlockDevice, Snapshot[]> REGISTRY = Collections.synchronizedMap(new IdentityHashMap<>());

    private final String name;
    private final BlockDevice origin;
    private final BioPool pool = new BioPool(256);

    private SnapshotOrigin(String name, BlockDevice origin) {
        this.name = name;
        this.origin = origin;
    }

    /**
     * The handler through which {@code origin} must be written while it has snapshots.
     *
     * @param name the name (of the device, snapshot or event subject)
     * @param origin the origin device
     * @return the handler through which {@code origin} must be written while it has snapshots
     */
    public static SnapshotOrigin of(String name, BlockDevice origin) {
        return new SnapshotOrigin(name, origin);
    }

    static void register(BlockDevice origin, Snapshot s) {
        REGISTRY.compute(origin, (k, v) -> {
            Snapshot[] a = v == null ? NONE : v;
            Snapshot[] b = java.util.Arrays.copyOf(a, a.length + 1);
            b[a.length] = s;
            return b;
        });
    }

    static void unregister(BlockDevice origin, Snapshot s) {
        REGISTRY.computeIfPresent(origin, (k, v) -> {
            Snapshot[] b = java.util.Arrays.stream(v).filter(x -> x != s).toArray(Snapshot[]::new);
            return b.length == 0 ? null : b;
        });
    }

    /** The snapshots registered on {@code origin} now. */
    static Snapshot[] snapshotsOf(BlockDevice origin) {
        Snapshot[] a = REGISTRY.get(origin);
        return a == null ? NONE : a;
    }

    @Override public String name() { return name; }
    @Override public long size() { return origin.size(); }
    @Override public QueueLimits limits() { return origin.limits(); }
    @Override public boolean isReadOnly() { return origin.isReadOnly(); }
    @Override public String targetType() { return "snapshot-origin"; }
    @Override public String table() { return origin.name(); }

    @Override
    public String status() {
        return snapshotsOf(origin).length + " snapshots";
    }

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, origin.size(), origin.limits(), origin.isReadOnly())) {
            return;
        }
        Snapshot[] snaps = snapshotsOf(origin);
        if ((bio.op() != Op.WRITE && bio.op() != Op.WRITE_ZEROES) || snaps.length == 0) {
            if (bio.op() == Op.DISCARD && snaps.length > 0) {
                bio.endIo(); // kept, not dropped: see the class comment
                return;
            }
            origin.submit(bio);
            return;
        }
        long min = Long.MAX_VALUE;
        for (Snapshot s : snaps) {
            min = Math.min(min, s.chunkBytes());
        }
        while (true) {
            long toBoundary = min - (bio.offset() & (min - 1));
            if (toBoundary >= bio.size()) {
                write(bio, snaps);
                return;
            }
            Bio front = bio.split(toBoundary, pool);
            front.chain(bio);
            write(front, snaps);
        }
    }

    /** One piece within one chunk of every snapshot: copy-outs first, then the write. */
    private void write(Bio piece, Snapshot[] snaps) {
        AtomicInteger left = new AtomicInteger(snaps.length);
        Runnable go = () -> {
            if (left.decrementAndGet() == 0) {
                origin.submit(piece);
            }
        };
        for (Snapshot s : snaps) {
            s.beforeOriginWrite(piece.offset() / s.chunkBytes(), go);
        }
    }

    /** The origin device stays open: it belongs to whoever opened it. */
    @Override
    public void close() {
    }

    @Override
    public String toString() {
        return "SnapshotOrigin[" + name + " over " + origin.name() + "]";
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The table line {@code snapshot-origin DEV} (dm-snapshot's {@code origin_ctr}).
     *
     * @param a the line's arguments
     * @return the spec, to open once DEV is
     */
    public static TableSpec parseTable(TableArgs a) {
        String dev = a.dev("DEV");
        a.end();
        return a.spec((name, len, r) -> of(name, r.device(dev)));
    }
}
