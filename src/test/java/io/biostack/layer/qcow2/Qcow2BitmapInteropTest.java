package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.StatusContext;
import io.biostack.nbd.Tools;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Persistent bitmaps in a qcow2 image, judged by qemu's own tools: what {@code qemu-img bitmap}
 * made, biostack updates; what biostack made, {@code qemu-img info}, {@code check},
 * {@code bitmap --merge/--remove} and {@code qemu-nbd -B} read as qemu's own.
 */
@Timeout(120)
class Qcow2BitmapInteropTest {
    static final long SIZE = 16L << 20;

    @TempDir
    Path dir;

    Path image() throws Exception {
        Path img = dir.resolve("d.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), String.valueOf(SIZE));
        return img;
    }

    static Stack open(Path img) throws Exception {
        return Stack.open("c: loop " + img + " direct-io=off\nq: qcow2 c\n", "t");
    }

    static String ctl(Stack s, String... argv) throws Exception {
        return s.control(List.of(argv));
    }

    static String bitmapLine(Stack s, String bm) throws Exception {
        return ctl(s, "status", "q").lines().filter(l -> l.startsWith("bitmap " + bm + " ")).findFirst()
                .orElseThrow(() -> new AssertionError("no bitmap " + bm));
    }

    static void write(BlockDevice d, long off, int len) {
        try (Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate(len, 4096);
            m.fill((byte) 0x5a);
            d.write(off, m).join();
        }
    }

    /** Dirty ranges [start, end) of a context, merged, as biostack's NBD server would send them. */
    static List<long[]> dirty(StatusContext c, long size) {
        List<long[]> out = new ArrayList<>();
        long off = 0;
        for (int i = 0; off < size && i < 1_000_000; i++) {
            Extent e = c.extentAt(off, size - off);
            if ((e.flags() & 1) != 0) {
                add(out, off, off + e.length());
            }
            off += e.length();
        }
        return out;
    }

    static void add(List<long[]> out, long start, long end) {
        if (!out.isEmpty() && out.getLast()[1] == start) {
            out.getLast()[1] = end;
        } else {
            out.add(new long[]{start, end});
        }
    }

    static StatusContext context(Stack s, String bm) {
        return s.device("q").statusContexts().stream().filter(c -> c.name().equals("qemu:dirty-bitmap:" + bm))
                .findFirst().orElseThrow(() -> new AssertionError("no context for " + bm));
    }

    /** {@code qemu-nbd -B BM} on the image, read-only, and {@code nbdinfo --map} of that bitmap. */
    List<long[]> qemuNbdDirty(Path img, String bm) throws Exception {
        Path sock = dir.resolve("qemu-nbd.sock");
        Files.deleteIfExists(sock);
        Process p = new ProcessBuilder("qemu-nbd", "-r", "-f", "qcow2", "-B", bm, "-k", sock.toString(), img.toString())
                .redirectErrorStream(true).start();
        try {
            for (int i = 0; i < 200 && !Files.exists(sock); i++) {
                if (!p.isAlive()) {
                    throw new AssertionError("qemu-nbd exited: " + new String(p.getInputStream().readAllBytes()));
                }
                Thread.sleep(25);
            }
            Tools.Result r = Tools.ok(30, "nbdinfo", "--map=qemu:dirty-bitmap:" + bm, "nbd+unix:///?socket=" + sock);
            List<long[]> out = new ArrayList<>();
            for (String l : r.out().lines().toList()) {
                String[] f = l.trim().split("\\s+");
                if (f.length >= 3 && (Long.parseLong(f[2]) & 1) != 0) {
                    long start = Long.parseLong(f[0]);
                    add(out, start, start + Long.parseLong(f[1]));
                }
            }
            return out;
        } finally {
            p.destroy();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    static String info(Path img, boolean shared) throws Exception {
        return shared ? Tools.ok(30, "qemu-img", "info", "-U", "--output=json", img.toString()).out()
                : Tools.ok(30, "qemu-img", "info", "--output=json", img.toString()).out();
    }

    static String compact(String json) {
        return json.replaceAll("\\s+", "");
    }

    @Test
    void aBitmapQemuImgAddedIsUpdatedByBiostackAndQemuNbdExportsTheSameDirtyRanges() throws Exception {
        Tools.require("qemu-img", "qemu-nbd", "nbdinfo");
        Path img = image();
        Tools.ok(30, "qemu-img", "bitmap", "--add", "-g", "64k", img.toString(), "b0");
        List<long[]> ours;
        long directory = Qcow2BitmapBadInputTest.directory(img);
        try (Stack s = open(img)) {
            assertThat(bitmapLine(s, "b0")).isEqualTo("bitmap b0 granularity=65536 dirty=0 recording persistent consistent");
            // marking it in use rewrote the directory where it was, as qemu does: nothing allocated
            assertThat(Qcow2BitmapBadInputTest.directory(img)).isEqualTo(directory);
            // While biostack has it open, qemu sees it in use: its bits on disk are not current.
            assertThat(compact(info(img, true))).contains("\"flags\":[\"in-use\",\"auto\"],\"name\":\"b0\"");
            BlockDevice q = s.device("q");
            write(q, 0, 4096);
            write(q, (1 << 20) + 8192, 8192);
            write(q, 5L << 20, 200 << 10);
            write(q, SIZE - 4096, 4096);
            q.flush().join();
            ours = dirty(context(s, "b0"), SIZE);
            assertThat(bitmapLine(s, "b0")).contains("dirty=" + 7 * 65536);
            // qemu's model: the in_use mark covers a crash, so no write waited for a bitmap write;
            // the one directory write was the mark at open.
            assertThat(ctl(s, "status", "q")).contains("bitmap-store qcow2=q metadata_writes=1");
        }
        assertThat(ours).extracting(r -> r[0] + "-" + r[1]).containsExactly("0-65536", "1048576-1114112",
                "5242880-5505024", "16711680-16777216");
        Tools.ok(60, "qemu-img", "check", img.toString());
        assertThat(compact(info(img, false))).contains("\"flags\":[\"auto\"],\"name\":\"b0\",\"granularity\":65536");
        assertThat(qemuNbdDirty(img, "b0")).extracting(r -> r[0] + "-" + r[1])
                .containsExactlyElementsOf(ours.stream().map(r -> r[0] + "-" + r[1]).toList());
    }

    @Test
    void anIncrementalBackupAfterARestartCopiesWhatTheImageBitmapRecordedInTheRunBefore() throws Exception {
        Tools.require("qemu-img");
        Path img = image();
        Tools.ok(30, "qemu-img", "bitmap", "--add", img.toString(), "b0");
        try (Stack s = open(img)) {
            write(s.device("q"), 2L << 20, 65536);
        }
        try (Stack s = open(img)) {
            assertThat(bitmapLine(s, "b0")).isEqualTo("bitmap b0 granularity=65536 dirty=65536 recording persistent consistent");
            write(s.device("q"), 4L << 20, 4096);
            ctl(s, "message", "q", "backup-begin inc bitmap=b0 new=b1 cow-dir=" + dir);
            StatusContext frozen = s.device("inc").statusContexts().stream()
                    .filter(c -> c.name().equals("qemu:dirty-bitmap:b0")).findFirst().orElseThrow();
            write(s.device("q"), 6L << 20, 4096); // after the instant: in b1 only
            assertThat(dirty(frozen, SIZE)).extracting(r -> r[0] + "-" + r[1]).containsExactly("2097152-2162688",
                    "4194304-4259840");
            ctl(s, "message", "q", "backup-end inc");
            assertThat(bitmapLine(s, "b1")).isEqualTo("bitmap b1 granularity=65536 dirty=65536 recording persistent consistent");
        }
        Tools.ok(60, "qemu-img", "check", img.toString());
        assertThat(compact(info(img, false))).contains("{\"flags\":[],\"name\":\"b0\",\"granularity\":65536}")
                .contains("{\"flags\":[\"auto\"],\"name\":\"b1\",\"granularity\":65536}");
    }

    static Stack openReadOnly(Path img) throws Exception {
        return Stack.open("c: loop " + img + " direct-io=off read-only\nq: qcow2 c read-only\n", "t");
    }

    @Test
    void theBitsQemuRecordedAreReadAndReadOnlyNothingInTheImageChanges() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image();
        Tools.ok(30, "qemu-img", "bitmap", "--add", "-g", "4k", img.toString(), "b0");
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write 1M 8k", "-c", "write 12M 4k", img.toString());
        byte[] before = Files.readAllBytes(img);
        // qemu left its directory in the file's last, partial sector, past the read-only loop
        // device's whole sectors: read from the part sector the qcow2 device read at open, the
        // bitmap is offered with qemu's bits, as qemu-nbd -r -B offers it.
        try (Stack s = openReadOnly(img)) {
            assertThat(bitmapLine(s, "b0")).isEqualTo("bitmap b0 granularity=4096 dirty=12288 recording persistent consistent");
            assertThat(dirty(context(s, "b0"), SIZE)).extracting(r -> r[0] + "-" + r[1])
                    .containsExactly("1048576-1056768", "12582912-12587008");
        }
        assertThat(java.util.Arrays.mismatch(Files.readAllBytes(img), before)).as("first changed byte").isEqualTo(-1);
        try (Stack s = open(img)) {
            assertThat(bitmapLine(s, "b0")).isEqualTo("bitmap b0 granularity=4096 dirty=12288 recording persistent consistent");
        }
        before = Files.readAllBytes(img);
        try (Stack s = openReadOnly(img)) {
            assertThat(bitmapLine(s, "b0")).isEqualTo("bitmap b0 granularity=4096 dirty=12288 recording persistent consistent");
            assertThat(dirty(context(s, "b0"), SIZE)).extracting(r -> r[0] + "-" + r[1])
                    .containsExactly("1048576-1056768", "12582912-12587008");
            assertThatThrownBy(() -> ctl(s, "message", "q", "bitmap add x persistent"))
                    .hasMessageContaining("read-only");
        }
        assertThat(java.util.Arrays.mismatch(Files.readAllBytes(img), before)).as("first changed byte").isEqualTo(-1);
    }

    @Test
    void bitmapFileIsRefusedOnAQcow2DeviceWhoseBitmapsLiveInTheImage() throws Exception {
        Tools.require("qemu-img");
        Path img = image();
        assertThatThrownBy(() -> Stack.open("c: loop " + img + " direct-io=off\nq: qcow2 c bitmap-file=" + dir.resolve("x")
                + "\n", "t")).hasMessageContaining("q: a qcow2 device keeps its persistent bitmaps in its image")
                .hasMessageContaining("bitmap-file= is refused");
        assertThat(dir.resolve("x")).doesNotExist();
    }

    @Test
    void aBitmapBiostackAddedShowsInQemuImgInfoPassesCheckAndQemuImgMergesAndRemovesIt() throws Exception {
        Tools.require("qemu-img", "qemu-nbd", "nbdinfo");
        Path img = image();
        List<long[]> ours;
        try (Stack s = open(img)) {
            ctl(s, "message", "q", "bitmap add nb granularity=128k persistent");
            ctl(s, "message", "q", "bitmap add off persistent disabled");
            ctl(s, "message", "q", "bitmap add temp");
            BlockDevice q = s.device("q");
            write(q, 3L << 20, 4096);
            write(q, 9L << 20, 300 << 10);
            ours = dirty(context(s, "nb"), SIZE);
        }
        Tools.ok(60, "qemu-img", "check", img.toString());
        String info = compact(info(img, false));
        assertThat(info).contains("{\"flags\":[\"auto\"],\"name\":\"nb\",\"granularity\":131072}")
                .contains("{\"flags\":[],\"name\":\"off\",\"granularity\":65536}")
                .doesNotContain("temp");
        assertThat(qemuNbdDirty(img, "nb")).extracting(r -> r[0] + "-" + r[1])
                .containsExactly("3145728-3276800", "9437184-9830400");
        assertThat(ours).extracting(r -> r[0] + "-" + r[1]).containsExactly("3145728-3276800", "9437184-9830400");
        // qemu-img works on it as on its own: merge into a new one, remove the original.
        Tools.ok(30, "qemu-img", "bitmap", "--add", "-g", "128k", img.toString(), "copy");
        Tools.ok(30, "qemu-img", "bitmap", "--merge", "nb", img.toString(), "copy");
        Tools.ok(30, "qemu-img", "bitmap", "--remove", img.toString(), "nb");
        Tools.ok(60, "qemu-img", "check", img.toString());
        assertThat(compact(info(img, false))).doesNotContain("\"name\":\"nb\"").contains("\"name\":\"copy\"");
        // and biostack reads what qemu wrote
        try (Stack s = open(img)) {
            assertThat(bitmapLine(s, "copy")).isEqualTo("bitmap copy granularity=131072 dirty=524288 recording persistent consistent");
            assertThat(bitmapLine(s, "off")).isEqualTo("bitmap off granularity=65536 dirty=0 disabled persistent consistent");
            ctl(s, "message", "q", "bitmap remove off");
        }
        Tools.ok(60, "qemu-img", "check", img.toString());
        assertThat(compact(info(img, false))).doesNotContain("\"name\":\"off\"");
    }
}
