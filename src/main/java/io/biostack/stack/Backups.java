package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.block.bitmap.DeviceBitmaps;
import io.biostack.block.bitmap.DirtyBitmap;
import io.biostack.block.stats.CountedDevice;
import io.biostack.layer.snapshot.BackupView;
import io.biostack.layer.snapshot.Snapshot;
import io.biostack.layer.snapshot.SnapshotOrigin;
import io.biostack.loop.DirectIoMode;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Point-in-time pull backups of a stack's devices: {@code backup-begin EXPORT bitmap=BM [new=BM2]
 * [chunk=SIZE] [cow-dir=DIR]} and {@code backup-end EXPORT}, sent to the device backed up.
 *
 * <h2>The instant</h2>
 * Writes to the device are held at its counting wrapper ({@link DeviceBitmaps#holdWrites}: marked,
 * not sent down; reads go on) until the writes in flight have completed. Then, with nothing in
 * flight: BM2 starts recording, a transient {@link Snapshot} of the device is taken on a COW file,
 * a {@link SnapshotOrigin} goes below the wrapper so that later writes copy out what they
 * overwrite, and BM stops recording and is frozen. The held writes then go on through the origin
 * handler. The view ({@link BackupView}) joins the stack as device EXPORT, read-only, with BM as its
 * {@code qemu:dirty-bitmap:BM} context; a server serving the stack exports it (see
 * {@link Stack#setExportListener}).
 *
 * <p>The COW file is a sparse file of the device's size, deleted at once (the open descriptor
 * keeps it) so a crash leaves nothing behind. While a backup runs, a discard to the device is
 * completed without being done (the snapshot origin handler's rule); write-zeroes copies out as
 * a write does.
 */
final class Backups {
    /** How long the instant may wait for writes in flight. */
    static final long QUIESCE_MS = 30_000;

    private record Backup(String export, String device, String bitmap, BackupView view) {
    }

    private final Stack stack;
    private final Map<String, Backup> running = new HashMap<>();
    /**
     * Device to backup, read without this object's lock by the stack's reload and resume (which
     * hold the stack's, taken inside this one's by begin and end).
     */
    private final Map<String, String> byDevice = new java.util.concurrent.ConcurrentHashMap<>();

    Backups(Stack stack) {
        this.stack = stack;
    }

    /** {@code backup-begin EXPORT bitmap=BM [new=BM2] [chunk=SIZE] [cow-dir=DIR]} on device {@code name}. */
    synchronized String begin(String name, CountedDevice c, List<String> a) throws IOException, InterruptedException {
        if (a.isEmpty()) {
            throw new IllegalArgumentException("backup-begin EXPORT bitmap=BM [new=BM2] [chunk=SIZE] [cow-dir=DIR]");
        }
        String export = a.getFirst();
        if (!export.matches("[A-Za-z0-9_.-]+")) {
            // It becomes a device of the stack (StackFile's rule for names) and names the COW file.
            throw new IllegalArgumentException("backup name '" + export + "' may hold only letters, digits, '_', '-' and '.'"
                    + " (it is a device of the stack and an NBD export while the backup runs)");
        }
        String bm = null;
        String next = null;
        long chunk = 64 * 1024;
        Path dir = Path.of(System.getProperty("java.io.tmpdir"));
        for (String o : a.subList(1, a.size())) {
            if (o.startsWith("bitmap=")) {
                bm = o.substring(7);
            } else if (o.startsWith("new=")) {
                next = o.substring(4);
            } else if (o.startsWith("chunk=")) {
                chunk = io.biostack.block.Sizes.parse(o.substring(6));
            } else if (o.startsWith("cow-dir=")) {
                dir = Path.of(o.substring(8));
            } else {
                throw new IllegalArgumentException("unknown backup-begin option '" + o + "' (bitmap=BM, new=BM2, chunk=SIZE, cow-dir=DIR)");
            }
        }
        if (bm == null) {
            throw new IllegalArgumentException("backup-begin needs bitmap=BM: the bitmap of the changes since the last "
                    + "backup (for a first, full backup: 'bitmap add BM' before it, and copy everything)");
        }
        if (stack.names().contains(export) || running.containsKey(export)) {
            throw new IllegalArgumentException("there is a device or backup named '" + export + "' already");
        }
        for (Backup b : running.values()) {
            if (b.device.equals(name)) {
                throw new IllegalArgumentException(name + " has a backup running already (" + b.export + "); backup-end it first");
            }
        }
        DeviceBitmaps bitmaps = StackBitmaps.of(c);
        DirtyBitmap frozen = bitmaps.get(bm);
        if (!frozen.isConsistent()) {
            throw new IllegalArgumentException("bitmap " + bm + " of " + name + " is inconsistent (biostack stopped without "
                    + "closing it): an incremental backup from it is refused; the next backup must be a full one");
        }
        BlockDevice cow = openCow(export, dir, c.size() + 2 * chunk);
        Snapshot[] snap = new Snapshot[1];
        boolean held = false;
        byDevice.put(name, export);
        try {
            bitmaps.holdWrites();
            held = true;
            quiesce(c, bitmaps);
            long ch = chunk;
            bitmaps.freezeForBackup(bm, next, export, () -> {
                snap[0] = Snapshot.create(export + "-snapshot", c.inner(), cow, false, ch);
                c.setBelow(SnapshotOrigin.of(name, c.inner()));
            });
        } catch (RuntimeException | IOException | InterruptedException e) {
            if (snap[0] != null) {
                c.setBelow(c.inner());
                snap[0].close();
            }
            cow.close();
            byDevice.remove(name);
            throw e;
        } finally {
            if (held) {
                bitmaps.releaseWrites();
            }
        }
        BackupView view = new BackupView(export, snap[0], cow, frozen);
        running.put(export, new Backup(export, name, bm, view));
        stack.addDevice(export, view);
        return "backup " + export + " of " + name + ": " + frozen.dirtyBytes() + " bytes changed since bitmap " + bm
                + " began\n";
    }

    /**
     * {@code message DEVICE backup-end EXPORT}: as {@link #end(String)}, for a backup of
     * {@code device} only. A message goes to the device it names (dm's rule): a backup-end sent to
     * another device (a slip of the name, or a script's loop over devices) is refused and changes
     * nothing, rather than ending a backup someone else is copying from.
     */
    synchronized String end(String device, String export) throws InterruptedException {
        Backup b = running.get(export);
        if (b != null && !b.device.equals(device)) {
            throw new IllegalArgumentException("backup " + export + " is of " + b.device + ", not of " + device
                    + ": send backup-end " + export + " to " + b.device + " (nothing was ended)");
        }
        return end(export);
    }

    /** {@code backup-end EXPORT}: drops the view and its copy-on-write; thaws the bitmap. */
    synchronized String end(String export) throws InterruptedException {
        Backup b = running.get(export);
        if (b == null) {
            throw new IllegalArgumentException("no backup named '" + export + "'" + (running.isEmpty() ? "" : " (backups: "
                    + String.join(", ", running.keySet()) + ")"));
        }
        stack.removeDevice(export);
        b.view.end(); // a client still connected reads no live byte as the backup's
        // Nor does a read of the view in flight now: the origin copies out until it is done.
        long deadline = System.nanoTime() + QUIESCE_MS * 1_000_000L;
        while (b.view.inFlight() > 0) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("backup-end " + export + ": reads of the view did not complete within "
                        + QUIESCE_MS + " ms; try again");
            }
            Thread.sleep(0, 200_000);
        }
        CountedDevice c = (CountedDevice) stack.device(b.device);
        DeviceBitmaps bitmaps = c.bitmaps();
        bitmaps.holdWrites();
        try {
            quiesce(c, bitmaps);
            c.setBelow(c.inner());
        } finally {
            bitmaps.releaseWrites();
        }
        b.view.close();
        bitmaps.endBackup(b.bitmap, export);
        running.remove(export);
        byDevice.remove(b.device);
        return "";
    }

    /**
     * The backup running on {@code device}, or null: a table loaded into it while one runs would
     * change what the view reads (its snapshot is of the device's table, not of what lies below).
     */
    String runningOn(String device) {
        return byDevice.get(device);
    }

    /** Ends every backup (the stack is closing). */
    synchronized void endAll() {
        for (String e : List.copyOf(running.keySet())) {
            try {
                end(e);
            } catch (RuntimeException | InterruptedException ex) {
                System.err.println("biostack: backup " + e + ": " + ex.getMessage());
            }
        }
    }

    /** Waits until every write in flight on {@code c} is one the bitmaps hold. */
    private static void quiesce(CountedDevice c, DeviceBitmaps bitmaps) throws InterruptedException {
        long deadline = System.nanoTime() + QUIESCE_MS * 1_000_000L;
        while (c.stats().inFlightChanges() > bitmaps.heldWrites()) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException(c.name() + ": writes in flight did not complete within " + QUIESCE_MS + " ms");
            }
            Thread.sleep(0, 200_000);
        }
    }

    private static BlockDevice openCow(String export, Path dir, long bytes) throws IOException {
        // The control socket shows an exception's message alone, and a NoSuchFileException's or
        // AccessDeniedException's is a bare path: say what it is and what was wrong.
        if (!Files.isDirectory(dir)) {
            throw new IllegalArgumentException("cow-dir " + dir + " is not a directory (backup " + export
                    + " keeps its copy-on-write file there)");
        }
        Path f;
        try {
            f = Files.createTempFile(dir, "biostack-" + export + "-", ".cow");
        } catch (IOException e) {
            throw new IOException("can't make the copy-on-write file of backup " + export + " in cow-dir " + dir + ": " + e, e);
        }
        try {
            try (RandomAccessFile r = new RandomAccessFile(f.toFile(), "rw")) {
                r.setLength(bytes);
            }
            return LoopDevice.open(export + "-cow", f, LoopConfig.defaults().withDirectIo(DirectIoMode.AUTO));
        } finally {
            Files.deleteIfExists(f);
        }
    }
}
