package io.biostack.layer.snapshot;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioPool;
import io.biostack.block.BlockDevice;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.StatusContext;
import io.biostack.block.bitmap.DirtyBitmap;

import java.util.List;

/**
 * A point-in-time, read-only view of a device for a pull backup (libvirt's pull mode): a
 * {@link Snapshot} of the device, with the copy-on-write of that snapshot (no second mechanism),
 * and the bitmap frozen at the same instant attached as its {@code qemu:dirty-bitmap:NAME}
 * context, so that a client copies exactly the chunks changed since the previous backup.
 *
 * <p>Writes to the live device must go through a {@link SnapshotOrigin} while the view exists
 * (the stack puts one below the device's counting wrapper); writes to the view are refused.
 * Ownership: the view owns its snapshot and the COW device and closes both; the origin is not
 * its own.
 */
public final class BackupView implements BlockDevice {
    private final String name;
    private final Snapshot snapshot;
    private final BlockDevice cow;
    private final DirtyBitmap bitmap;
    private final QueueLimits limits;
    /**
     * Set at backup-end, before the origin stops copying out: from then on the snapshot's
     * unremapped chunks read the live device, so a client still connected (the NBD server keeps
     * a connection's device after its export is removed) must get an error, not those bytes.
     */
    private volatile boolean ended;
    /** Reads sent to the snapshot and not yet completed: backup-end waits for none (see {@link #inFlight}). */
    private final java.util.concurrent.atomic.AtomicLong inFlight = new java.util.concurrent.atomic.AtomicLong();
    private final BioPool pool = new BioPool(256);
    private final io.biostack.block.EndIo done = this::done;

    /**
     * A view over {@code snapshot}.
     *
     * @param name     the view's (and its export's) name
     * @param snapshot the snapshot taken at the backup's instant
     * @param cow      the snapshot's COW device, closed with the view
     * @param bitmap   the frozen bitmap the view answers as a context, or null for none
     */
    public BackupView(String name, Snapshot snapshot, BlockDevice cow, DirtyBitmap bitmap) {
        this.name = name;
        this.snapshot = snapshot;
        this.cow = cow;
        this.bitmap = bitmap;
        this.limits = snapshot.limits().toBuilder().maxDiscardBytes(0).maxWriteZeroesBytes(0).build();
    }

    @Override public String name() { return name; }
    @Override public long size() { return snapshot.size(); }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return true; }

    /**
     * Returns the snapshot under the view.
     *
     * @return the snapshot under the view
     */
    public Snapshot snapshot() {
        return snapshot;
    }

    /**
     * Returns the frozen bitmap, or null.
     *
     * @return the frozen bitmap, or null
     */
    public DirtyBitmap bitmap() {
        return bitmap;
    }

    /** Reads come from the snapshot; changes are refused as on any read-only device. */
    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, size(), limits, true)) {
            return;
        }
        // Counted before ended is read, and end() sets ended before reading the count: either
        // this read sees ended, or backup-end sees it in flight and waits for it.
        inFlight.incrementAndGet();
        if (ended) {
            inFlight.decrementAndGet();
            bio.fail(Status.IOERR, "backup " + name + " has ended (backup-end): its point-in-time view is gone");
            return;
        }
        Bio clone = bio.cloneShallow(pool);
        clone.setPrivateData(bio);
        clone.setEndIo(done);
        snapshot.submit(clone);
    }

    private void done(Bio clone) {
        Bio bio = (Bio) clone.privateData();
        bio.setStatus(clone.status(), clone.detail());
        clone.put();
        inFlight.decrementAndGet();
        bio.endIo();
    }

    /**
     * Returns the reads of the view not completed yet: once {@link #end} has been called and
     * this is zero, no read of the view can see what the origin is written with from then on.
     *
     * @return the reads of the view not completed yet
     */
    public long inFlight() {
        return inFlight.get();
    }

    /** Refuses every I/O from now on (the backup is ending); call before the origin stops copying out. */
    public void end() {
        ended = true;
    }

    /**
     * The frozen bitmap, when it is consistent.
     *
     * @return the contexts of the view
     */
    @Override
    public List<StatusContext> statusContexts() {
        return bitmap == null || !bitmap.isConsistent() ? List.of() : List.of(bitmap);
    }

    /** Drops the snapshot from its origin and closes the COW device. */
    @Override
    public void close() {
        ended = true;
        snapshot.close();
        cow.close();
    }

    @Override
    public String toString() {
        return "BackupView[" + name + " of " + snapshot.origin().name() + (bitmap == null ? "" : " with " + bitmap.name()) + "]";
    }
}
