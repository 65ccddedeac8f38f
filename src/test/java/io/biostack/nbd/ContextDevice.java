package io.biostack.nbd;

import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.RamDisk;
import io.biostack.block.StatusContext;

import java.util.ArrayList;
import java.util.List;

/**
 * A ramdisk that answers named block-status contexts from real maps, for the server's meta
 * context tests: {@code qemu:allocation-depth} from a depth per granule the test sets, and one
 * {@code qemu:dirty-bitmap:NAME} per bitmap, which every WRITE, WRITE_ZEROES and DISCARD through
 * the device marks before it goes down (as a recording bitmap does).
 */
final class ContextDevice implements BlockDevice {
    static final int GRANULE = 64 * 1024;

    private final RamDisk ram;
    private final int[] depth;
    private final List<Bitmap> bitmaps = new ArrayList<>();
    private final boolean depthContext;

    ContextDevice(long size, boolean depthContext, String... bitmapNames) {
        this.ram = new RamDisk("ctx", size);
        this.depth = new int[(int) (size / GRANULE)];
        this.depthContext = depthContext;
        for (String n : bitmapNames) {
            bitmaps.add(new Bitmap("qemu:dirty-bitmap:" + n, new boolean[depth.length]));
        }
    }

    /** Sets the allocation depth of [offset, offset + length), granule-aligned. */
    void depth(long offset, long length, int d) {
        for (long p = offset; p < offset + length; p += GRANULE) {
            depth[(int) (p / GRANULE)] = d;
        }
    }

    Bitmap bitmap(String name) {
        for (Bitmap b : bitmaps) {
            if (b.name.equals("qemu:dirty-bitmap:" + name)) {
                return b;
            }
        }
        throw new IllegalArgumentException(name);
    }

    /** Runs of granules with the same flags from {@code offset}, at most {@code maxLength}. */
    private Extent run(long offset, long maxLength, java.util.function.IntUnaryOperator flagsOf) {
        int g = (int) (offset / GRANULE);
        int f = flagsOf.applyAsInt(g);
        long end = (long) (g + 1) * GRANULE;
        while (end < size() && end - offset < maxLength && flagsOf.applyAsInt((int) (end / GRANULE)) == f) {
            end += GRANULE;
        }
        return new Extent(Math.min(end - offset, maxLength), f);
    }

    final class Bitmap implements StatusContext {
        final String name;
        final boolean[] dirty;

        Bitmap(String name, boolean[] dirty) {
            this.name = name;
            this.dirty = dirty;
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public synchronized Extent extentAt(long offset, long maxLength) {
            return run(offset, maxLength, g -> dirty[g] ? 1 : 0);
        }

        synchronized void mark(long offset, long length) {
            for (long p = offset - offset % GRANULE; p < offset + length; p += GRANULE) {
                dirty[(int) (p / GRANULE)] = true;
            }
        }
    }

    private final StatusContext depthAnswer = new StatusContext() {
        @Override
        public String name() {
            return "qemu:allocation-depth";
        }

        @Override
        public Extent extentAt(long offset, long maxLength) {
            return run(offset, maxLength, g -> depth[g]);
        }
    };

    @Override
    public List<StatusContext> statusContexts() {
        List<StatusContext> l = new ArrayList<>();
        if (depthContext) {
            l.add(depthAnswer);
        }
        l.addAll(bitmaps);
        return l;
    }

    @Override
    public String name() {
        return "ctx";
    }

    @Override
    public long size() {
        return ram.size();
    }

    @Override
    public QueueLimits limits() {
        return ram.limits();
    }

    @Override
    public boolean isReadOnly() {
        return false;
    }

    @Override
    public void submit(Bio bio) {
        Op op = bio.op();
        if (op == Op.WRITE || op == Op.WRITE_ZEROES || op == Op.DISCARD) {
            for (Bitmap b : bitmaps) {
                b.mark(bio.offset(), bio.size());
            }
        }
        ram.submit(bio);
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        return ram.extentAt(offset, maxLength);
    }

    @Override
    public void close() {
        ram.close();
    }
}
