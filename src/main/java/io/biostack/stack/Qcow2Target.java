package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import io.biostack.block.stats.CountedDevice;
import io.biostack.layer.qcow2.Qcow2Device;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.nio.file.Path;

/**
 * The table line of the qcow2 target: {@code qcow2 DEV [backing=NAME|none] [l2-cache-size=SIZE]
 * [read-only]}. DEV is the container. Backing files named in the header are opened here, as
 * read-only loop devices (relative names against the image file's folder), because the layer
 * itself opens no files.
 */
public final class Qcow2Target {
    /** The first four bytes of a qcow2 image (qcow2.rst, "Header": magic {@code QFI\xfb}). */
    private static final int QCOW2_MAGIC = 0x514649fb;

    private Qcow2Target() {
    }

    /**
     * Whether {@code container} starts with the qcow2 magic, as qemu-nbd probes an image whose
     * format it was not told. Not on the I/O path (one blocking read).
     *
     * @param container the device that may hold an image
     * @return true when its first four bytes are {@code QFI\xfb}
     * @throws java.io.IOException when the read fails
     */
    public static boolean probe(BlockDevice container) throws java.io.IOException {
        // One logical block: a device of 4096-byte sectors refuses a read of 512 bytes.
        int block = Math.max(512, container.limits().logicalBlockSize());
        if (container.size() < block) {
            return false;
        }
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofShared()) {
            java.lang.foreign.MemorySegment m = container.allocateIoMemory(block, a);
            container.read(0, m).join();
            return m.get(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN), 0)
                    == QCOW2_MAGIC;
        } catch (java.util.concurrent.CompletionException e) {
            throw new java.io.IOException("cannot read " + container.name() + ": " + e.getCause().getMessage(), e);
        }
    }

    /**
     * Opens the qcow2 image on {@code container} with the backing files its header names
     * (relative names against the image file's folder), as {@code serve IMAGE} does.
     *
     * @param name      the virtual disk's name
     * @param container the image's container; the returned device owns it and closes it (not
     *                  when the open fails: the caller closes it then)
     * @param readOnly  open read-only (backing files are always read-only)
     * @return the virtual disk
     * @throws java.io.IOException when the image or a backing file cannot be opened
     */
    public static Qcow2Device open(String name, BlockDevice container, boolean readOnly) throws java.io.IOException {
        return Qcow2Device.open(name, container, new Qcow2Device.Options(readOnly, -1, null, false,
                imagePath(container), Qcow2Target::openFile, container.name())).closingContainer();
    }

    static TableSpec parseTable(TableArgs a) {
        String dev = a.dev("DEV");
        String backing = null;
        boolean none = false;
        boolean ro = false;
        long cache = -1;
        StringBuilder shown = new StringBuilder(dev);
        while (a.hasNext()) {
            String o = a.next("option");
            shown.append(' ').append(o);
            if (o.equals("read-only") || o.equals("ro")) {
                ro = true;
            } else if (o.startsWith("l2-cache-size=")) {
                cache = a.size("l2-cache-size", o.substring(14));
            } else if (o.equals("backing=none")) {
                none = true;
            } else if (o.startsWith("backing=") && o.length() > 8) {
                backing = o.substring(8);
                a.dependsOn(backing);
            } else {
                throw a.bad("unknown option '" + o + "' (backing=NAME|none, l2-cache-size=SIZE, read-only)");
            }
        }
        String b = backing;
        boolean noBacking = none;
        boolean readOnly = ro;
        long cacheBytes = cache;
        String table = shown.toString();
        return a.spec((name, len, r) -> {
            BlockDevice c = r.device(dev);
            Qcow2Device q = Qcow2Device.open(name, c, new Qcow2Device.Options(readOnly, cacheBytes,
                    b == null ? null : r.device(b), noBacking, imagePath(c), Qcow2Target::openFile, table));
            if (len >= 0 && len != q.size()) {
                long have = q.size();
                q.close();
                throw new IllegalArgumentException("qcow2 covers the whole virtual disk (" + have / 512
                        + " sectors), the segment is " + len / 512 + " sectors");
            }
            return q;
        });
    }

    /** The file under a container, to resolve relative backing names; null when it is no file. */
    static Path imagePath(BlockDevice c) {
        BlockDevice d = c instanceof CountedDevice cd ? cd.inner() : c;
        return d instanceof LoopDevice l ? l.backingFile().path() : null;
    }

    /** Opens a backing or data file: "raw-ro" read-only, "raw" read-write. */
    static BlockDevice openFile(Path p, String format) throws java.io.IOException {
        if (!java.nio.file.Files.exists(p)) {
            throw new java.io.IOException("cannot open " + p + ": no such file");
        }
        return LoopDevice.open(p.getFileName().toString(), p,
                LoopConfig.defaults().withReadOnly(format.equals("raw-ro")));
    }
}
