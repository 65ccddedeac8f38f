package io.biostack.cli;

import io.biostack.layer.qcow2.Qcow2Check;
import io.biostack.layer.qcow2.Qcow2Header;
import io.biostack.layer.qcow2.Qcow2Image;
import io.biostack.sys.Libc;
import io.biostack.sys.Stat;

import java.io.IOException;
import java.io.PrintStream;
import java.math.BigDecimal;
import java.math.MathContext;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;

/**
 * The output of {@code img info}, {@code check} and {@code map}, in qemu-img 7.2's words and JSON
 * field names (qapi/block-core.json ImageInfo, ImageInfoSpecificQCow2, ImageCheck, and
 * qemu-img.c's dump_map_entry).
 */
final class ImgInfo {
    private ImgInfo() {
    }

    // ---- info ---------------------------------------------------------------------------------

    static long actualSize(ImgChain.Layer l) {
        try {
            Stat s = Libc.statx(l.path.toString());
            return s.blocks() * 512;
        } catch (IOException e) {
            return -1;
        }
    }

    static String json(ImgChain.Layer l, int indent) {
        Json j = new Json(indent);
        j.open();
        j.num("virtual-size", l.size);
        j.str("filename", l.name);
        Qcow2Image q = l.q;
        if (q != null) {
            j.num("cluster-size", q.clusterSize());
        }
        j.str("format", l.format);
        long actual = actualSize(l);
        if (actual >= 0) {
            j.num("actual-size", actual);
        }
        if (q != null) {
            if (q.backingFile != null) {
                j.str("backing-filename", q.backingFile);
                j.str("full-backing-filename", ImgChain.fullBackingName(l.name, q.backingFile));
                if (q.backingFormat != null) {
                    j.str("backing-filename-format", q.backingFormat);
                }
            }
            if (!q.snapshots.isEmpty()) {
                j.key("snapshots");
                j.arrayOpen();
                for (Qcow2Image.Snapshot s : q.snapshots) {
                    j.open();
                    j.str("id", s.id());
                    j.str("name", s.name());
                    j.num("vm-state-size", s.vmStateSize());
                    j.num("date-sec", s.dateSec());
                    j.num("date-nsec", s.dateNsec());
                    j.num("vm-clock-sec", s.vmClockNsec() / 1_000_000_000L);
                    j.num("vm-clock-nsec", s.vmClockNsec() % 1_000_000_000L);
                    if (s.icount() != -1) {
                        j.num("icount", s.icount());
                    }
                    j.close();
                }
                j.arrayClose();
            }
            j.key("format-specific");
            j.open();
            j.str("type", "qcow2");
            j.key("data");
            j.open();
            boolean v3 = q.version >= 3;
            j.str("compat", v3 ? "1.1" : "0.10");
            if (q.dataFile != null) {
                j.str("data-file", q.dataFile);
                j.bool("data-file-raw", (q.autoclear & Qcow2Header.AUTOCLEAR_DATA_FILE_RAW) != 0);
            }
            j.str("compression-type", q.compressionType == 1 ? "zstd" : "zlib");
            if (v3) {
                j.bool("lazy-refcounts", (q.compat & Qcow2Header.COMPAT_LAZY_REFCOUNTS) != 0);
                if (!q.bitmaps.isEmpty()) {
                    j.key("bitmaps");
                    j.arrayOpen();
                    for (Qcow2Image.Bitmap b : q.bitmaps) {
                        j.open();
                        j.key("flags");
                        j.arrayOpen();
                        for (String f : bitmapFlags(b)) {
                            j.value("\"" + f + "\"");
                        }
                        j.arrayClose();
                        j.str("name", b.name());
                        j.num("granularity", 1L << b.granularityBits());
                        j.close();
                    }
                    j.arrayClose();
                }
            }
            j.num("refcount-bits", q.refcountBits());
            if (v3) {
                j.bool("corrupt", (q.incompat & Qcow2Header.INCOMPAT_CORRUPT) != 0);
                j.bool("extended-l2", q.extendedL2());
            }
            j.close();
            j.close();
            j.bool("dirty-flag", (q.incompat & Qcow2Header.INCOMPAT_DIRTY) != 0);
        } else {
            j.bool("dirty-flag", false);
        }
        j.close();
        return j.toString();
    }

    private static List<String> bitmapFlags(Qcow2Image.Bitmap b) {
        List<String> r = new ArrayList<>();
        if ((b.flags() & Qcow2Image.Bitmap.IN_USE) != 0) {
            r.add("in-use");
        }
        if ((b.flags() & Qcow2Image.Bitmap.AUTO) != 0) {
            r.add("auto");
        }
        return r;
    }

    static String human(ImgChain.Layer l) {
        StringBuilder b = new StringBuilder();
        b.append("image: ").append(l.name).append('\n');
        b.append("file format: ").append(l.format).append('\n');
        b.append("virtual size: ").append(sizeToStr(l.size)).append(" (").append(l.size).append(" bytes)\n");
        long actual = actualSize(l);
        b.append("disk size: ").append(actual < 0 ? "unavailable" : sizeToStr(actual)).append('\n');
        Qcow2Image q = l.q;
        if (q == null) {
            return b.toString();
        }
        b.append("cluster_size: ").append(q.clusterSize()).append('\n');
        if ((q.incompat & Qcow2Header.INCOMPAT_DIRTY) != 0) {
            b.append("cleanly shut down: no\n");
        }
        if (q.backingFile != null) {
            String full = ImgChain.fullBackingName(l.name, q.backingFile);
            b.append("backing file: ").append(q.backingFile);
            if (!full.equals(q.backingFile)) {
                b.append(" (actual path: ").append(full).append(')');
            }
            b.append('\n');
            if (q.backingFormat != null) {
                b.append("backing file format: ").append(q.backingFormat).append('\n');
            }
        }
        if (!q.snapshots.isEmpty()) {
            b.append("Snapshot list:\n");
            b.append(String.format("%-10s%-17s%8s%20s%13s%11s%n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT"));
            DateTimeFormatter f = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss").withZone(ZoneId.systemDefault());
            for (Qcow2Image.Snapshot s : q.snapshots) {
                long secs = s.vmClockNsec() / 1_000_000_000L;
                String clock = String.format("%02d:%02d:%02d.%03d", secs / 3600, (secs / 60) % 60, secs % 60,
                        (s.vmClockNsec() / 1_000_000) % 1000);
                b.append(String.format("%-9s %-16s %8s%20s%13s%11s%n", s.id(), s.name(), sizeToStr(s.vmStateSize()),
                        f.format(Instant.ofEpochSecond(s.dateSec())), clock, s.icount() == -1 ? "" : Long.toString(s.icount())));
            }
        }
        b.append("Format specific information:\n");
        boolean v3 = q.version >= 3;
        b.append("    compat: ").append(v3 ? "1.1" : "0.10").append('\n');
        if (q.dataFile != null) {
            b.append("    data file: ").append(q.dataFile).append('\n');
        }
        b.append("    compression type: ").append(q.compressionType == 1 ? "zstd" : "zlib").append('\n');
        if (v3) {
            b.append("    lazy refcounts: ").append((q.compat & Qcow2Header.COMPAT_LAZY_REFCOUNTS) != 0).append('\n');
            if (!q.bitmaps.isEmpty()) {
                b.append("    bitmaps:\n");
                int i = 0;
                for (Qcow2Image.Bitmap bm : q.bitmaps) {
                    b.append("        [").append(i++).append("]:\n");
                    b.append("            flags:\n");
                    int k = 0;
                    for (String fl : bitmapFlags(bm)) {
                        b.append("                [").append(k++).append("]: ").append(fl).append('\n');
                    }
                    b.append("            name: ").append(bm.name()).append('\n');
                    b.append("            granularity: ").append(1L << bm.granularityBits()).append('\n');
                }
            }
        }
        b.append("    refcount bits: ").append(q.refcountBits()).append('\n');
        if (v3) {
            b.append("    corrupt: ").append((q.incompat & Qcow2Header.INCOMPAT_CORRUPT) != 0).append('\n');
            b.append("    extended l2: ").append(q.extendedL2()).append('\n');
        }
        return b.toString();
    }

    /**
     * qemu's size_to_str (util/cutils.c): three significant digits and a binary unit, the unit
     * chosen so that the number stays below 1000.
     */
    static String sizeToStr(long val) {
        String[] suffixes = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
        int e = val == 0 ? 0 : Math.getExponent(val / (1000.0 / 1024.0)) + 1; // frexp's exponent
        int i = Math.max(0, (e - 1) / 10);
        double v = (double) val / Math.pow(2, i * 10);
        String num = new BigDecimal(v).round(new MathContext(3)).stripTrailingZeros().toPlainString();
        return num + " " + suffixes[i] + "B";
    }

    // ---- check --------------------------------------------------------------------------------

    static String checkJson(String file, Qcow2Check.Result r) {
        Json j = new Json(0);
        j.open();
        j.str("filename", file);
        j.str("format", "qcow2");
        j.num("check-errors", r.checkErrors());
        if (r.imageEndOffset() != 0) {
            j.num("image-end-offset", r.imageEndOffset());
        }
        if (r.corruptions() != 0) {
            j.num("corruptions", r.corruptions());
        }
        if (r.leaks() != 0) {
            j.num("leaks", r.leaks());
        }
        if (r.corruptionsFixed() != 0) {
            j.num("corruptions-fixed", r.corruptionsFixed());
        }
        if (r.leaksFixed() != 0) {
            j.num("leaks-fixed", r.leaksFixed());
        }
        if (r.totalClusters() != 0) {
            j.num("total-clusters", r.totalClusters());
        }
        if (r.allocatedClusters() != 0) {
            j.num("allocated-clusters", r.allocatedClusters());
        }
        if (r.fragmentedClusters() != 0) {
            j.num("fragmented-clusters", r.fragmentedClusters());
        }
        if (r.compressedClusters() != 0) {
            j.num("compressed-clusters", r.compressedClusters());
        }
        j.close();
        return j.toString();
    }

    static void checkHuman(PrintStream out, Qcow2Check.Result r) {
        if (r.corruptionsFixed() != 0 || r.leaksFixed() != 0) {
            out.printf("The following inconsistencies were found and repaired:%n%n    %d leaked clusters%n"
                    + "    %d corruptions%n%nDouble checking the fixed image now...%n", r.leaksFixed(), r.corruptionsFixed());
        }
        if (r.corruptions() == 0 && r.leaks() == 0 && r.checkErrors() == 0) {
            out.println("No errors were found on the image.");
        } else {
            if (r.corruptions() != 0) {
                out.printf("%n%d errors were found on the image.%nData may be corrupted, or further writes to the image "
                        + "may corrupt it.%n", r.corruptions());
            }
            if (r.leaks() != 0) {
                out.printf("%n%d leaked clusters were found on the image.%nThis means waste of disk space, but no harm "
                        + "to data.%n", r.leaks());
            }
            if (r.checkErrors() != 0) {
                out.printf("%n%d internal errors have occurred during the check.%n", r.checkErrors());
            }
        }
        if (r.totalClusters() != 0 && r.allocatedClusters() != 0) {
            out.printf("%d/%d = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters%n",
                    r.allocatedClusters(), r.totalClusters(), r.allocatedClusters() * 100.0 / r.totalClusters(),
                    r.fragmentedClusters() * 100.0 / r.allocatedClusters(),
                    r.compressedClusters() * 100.0 / r.allocatedClusters());
        }
        if (r.imageEndOffset() != 0) {
            out.printf("Image end offset: %d%n", r.imageEndOffset());
        }
    }

    // ---- map ----------------------------------------------------------------------------------

    /** qemu-img map: runs merged when every field agrees and offsets continue. */
    static int map(ImgChain c, boolean json, PrintStream out) throws IOException {
        StringBuilder b = new StringBuilder();
        if (json) {
            b.append('[');
        } else {
            b.append(String.format("%-16s%-16s%-16s%s%n", "Offset", "Length", "Mapped to", "File"));
        }
        long size = c.size();
        ImgChain.Status cur = null;
        boolean first = true;
        for (long off = 0; off < size; ) {
            ImgChain.Status s = c.status(off, Math.min(1L << 30, size - off));
            if (s.length() <= 0) {
                throw new IOException("no progress at offset " + off);
            }
            if (cur != null && mergeable(cur, s)) {
                cur = new ImgChain.Status(cur.start(), cur.length() + s.length(), cur.depth(), cur.present(), cur.zero(),
                        cur.data(), cur.offset(), cur.layer(), 0);
            } else {
                if (cur != null) {
                    if (!dump(b, cur, json, first)) {
                        out.print(b);
                        return 1;
                    }
                    first = false;
                }
                cur = s;
            }
            off += s.length();
        }
        if (cur != null && !dump(b, cur, json, first)) {
            out.print(b);
            return 1;
        }
        if (json) {
            b.append("]\n");
        }
        out.print(b);
        return 0;
    }

    private static boolean mergeable(ImgChain.Status a, ImgChain.Status n) {
        boolean ao = a.offset() >= 0;
        boolean no = n.offset() >= 0;
        return a.present() == n.present() && a.zero() == n.zero() && a.data() == n.data() && a.depth() == n.depth()
                && ao == no && (!ao || a.offset() + a.length() == n.offset())
                && (!ao || a.layer() == n.layer());
    }

    private static boolean dump(StringBuilder b, ImgChain.Status e, boolean json, boolean first) {
        if (json) {
            if (!first) {
                b.append(",\n");
            }
            b.append("{ \"start\": ").append(e.start()).append(", \"length\": ").append(e.length())
                    .append(", \"depth\": ").append(e.depth()).append(", \"present\": ").append(e.present())
                    .append(", \"zero\": ").append(e.zero()).append(", \"data\": ").append(e.data());
            if (e.offset() >= 0) {
                b.append(", \"offset\": ").append(e.offset());
            }
            b.append('}');
            return true;
        }
        if (e.data() && e.offset() < 0) {
            System.err.println("biostack: File contains external, encrypted or compressed clusters.");
            return false;
        }
        if (e.data() && !e.zero()) {
            b.append(String.format("%-16s%-16s%-16s%s%n", hex(e.start()), hex(e.length()), hex(e.offset()), e.layer().name));
        }
        return true;
    }

    /** C's {@code %#x}: 0 without a prefix. */
    private static String hex(long v) {
        return v == 0 ? "0" : "0x" + Long.toHexString(v);
    }

    /** A small JSON writer with qemu's layout (4-space indent, one field a line). */
    static final class Json {
        private final StringBuilder b = new StringBuilder();
        private int depth;
        private boolean needComma;

        Json(int depth) {
            this.depth = depth;
        }

        void open() {
            sep();
            b.append('{');
            depth++;
            needComma = false;
        }

        void close() {
            depth--;
            b.append('\n').append("    ".repeat(depth)).append('}');
            needComma = true;
        }

        void arrayOpen() {
            b.append('[');
            depth++;
            needComma = false;
        }

        void arrayClose() {
            depth--;
            b.append('\n').append("    ".repeat(depth)).append(']');
            needComma = true;
        }

        void key(String k) {
            sep();
            b.append('"').append(k).append("\": ");
            needComma = false;
            pendingValue = true;
        }

        private boolean pendingValue;

        private void sep() {
            if (pendingValue) {
                pendingValue = false;
                return;
            }
            if (needComma) {
                b.append(',');
            }
            if (depth > 0 || b.length() > 0) {
                b.append('\n').append("    ".repeat(depth));
            }
        }

        void value(String raw) {
            sep();
            b.append(raw);
            needComma = true;
        }

        void str(String k, String v) {
            key(k);
            value(quote(v));
        }

        void num(String k, long v) {
            key(k);
            value(Long.toString(v));
        }

        void bool(String k, boolean v) {
            key(k);
            value(Boolean.toString(v));
        }

        static String quote(String s) {
            StringBuilder q = new StringBuilder("\"");
            for (char ch : s.toCharArray()) {
                switch (ch) {
                    case '"' -> q.append("\\\"");
                    case '\\' -> q.append("\\\\");
                    case '\n' -> q.append("\\n");
                    case '\t' -> q.append("\\t");
                    case '\r' -> q.append("\\r");
                    default -> {
                        if (ch < 0x20) {
                            q.append(String.format("\\u%04x", (int) ch));
                        } else {
                            q.append(ch);
                        }
                    }
                }
            }
            return q.append('"').toString();
        }

        @Override
        public String toString() {
            return b.toString();
        }
    }
}
