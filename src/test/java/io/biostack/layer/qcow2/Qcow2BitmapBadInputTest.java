package io.biostack.layer.qcow2;

import io.biostack.block.StatusContext;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Damaged bitmaps in qcow2 images, and the autoclear bit: each damage is refused with a message
 * naming it, and no bitmap of the image is offered as clean; a program that wrote the image
 * without keeping its bitmaps leaves them stale for qemu and for biostack alike.
 */
@Timeout(60)
class Qcow2BitmapBadInputTest {
    static final long SIZE = 16L << 20;
    static final int EXT_BITMAPS = 0x23852875;

    @TempDir
    Path dir;

    Path image() throws Exception {
        Path img = dir.resolve("d.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), String.valueOf(SIZE));
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write 0 64k", img.toString());
        Tools.ok(30, "qemu-img", "bitmap", "--add", img.toString(), "b0");
        Tools.ok(30, "qemu-img", "bitmap", "--add", img.toString(), "b1");
        return img;
    }

    static ByteBuffer readAt(Path f, long off, int len) throws Exception {
        try (FileChannel c = FileChannel.open(f)) {
            ByteBuffer b = ByteBuffer.allocate(len);
            c.read(b, off);
            return b.flip();
        }
    }

    static void writeAt(Path f, long off, ByteBuffer b) throws Exception {
        try (FileChannel c = FileChannel.open(f, StandardOpenOption.WRITE)) {
            c.write(b.rewind(), off);
        }
    }

    /** The file offset of the bitmaps extension's data (qcow2.rst, "Header extensions"). */
    static long extensionData(Path img) throws Exception {
        ByteBuffer h = readAt(img, 0, 4096);
        int pos = h.getInt(100); // header_length
        for (int i = 0; i < 64 && pos + 8 <= 4096; i++) {
            int type = h.getInt(pos);
            int len = h.getInt(pos + 4);
            if (type == EXT_BITMAPS) {
                return pos + 8;
            }
            if (type == 0) {
                break;
            }
            pos += 8 + ((len + 7) & ~7);
        }
        throw new AssertionError("no bitmaps extension in " + img);
    }

    static long directory(Path img) throws Exception {
        return readAt(img, extensionData(img) + 16, 8).getLong(0);
    }

    static Stack open(Path img, String opts) throws Exception {
        return Stack.open("c: loop " + img + " direct-io=off\nq: qcow2 c" + opts + "\n", "t");
    }

    /** Read-only, the image opens and no bitmap is offered; read-write, the open is refused. */
    void refusedNamingIt(Path img, String... message) throws Exception {
        try (Stack s = open(img, " read-only")) {
            assertThat(s.device("q").statusContexts()).extracting(StatusContext::name)
                    .noneMatch(n -> n.startsWith("qemu:dirty-bitmap:"));
            assertThat(s.control(List.of("status", "q"))).doesNotContain("bitmap b");
        }
        assertThatThrownBy(() -> open(img, "")).hasMessageContainingAll(message)
                .hasMessageContaining("none of them is trusted");
    }

    @Test
    void aBitmapDirectoryPastTheEndIsRefused() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image();
        writeAt(img, extensionData(img) + 16, ByteBuffer.allocate(8).putLong(0, 1L << 30));
        // The directory's place is the header extension's: the open checks it with the same
        // reader as img info (as qemu's open checks the extension), read-only too, naming it.
        byte[] before = Files.readAllBytes(img);
        for (String mode : List.of(" read-only", "")) {
            assertThatThrownBy(() -> open(img, mode)).hasMessageContainingAll("bitmap directory at 0x40000000",
                    "past the end of the image");
        }
        assertThat(Files.readAllBytes(img)).as("nothing written").isEqualTo(before);
    }

    @Test
    void aBadGranularityIsRefused() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image();
        writeAt(img, directory(img) + 17, ByteBuffer.allocate(1).put(0, (byte) 40));
        refusedNamingIt(img, "bitmap 'b0' has a granularity of 2^40 bytes");
    }

    @Test
    void aBitmapTableEntryPastTheEndIsRefused() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image();
        long table = readAt(img, directory(img), 8).getLong(0);
        writeAt(img, table, ByteBuffer.allocate(8).putLong(0, 1L << 30));
        refusedNamingIt(img, "bitmap 'b0' table entry 0 points past the end of the image");
    }

    @Test
    void aBitmapTableEntryWithReservedBitsIsRefused() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image();
        long table = readAt(img, directory(img), 8).getLong(0);
        writeAt(img, table, ByteBuffer.allocate(8).putLong(0, 0x2L));
        refusedNamingIt(img, "bitmap 'b0' table entry 0 has reserved bits set");
    }

    @Test
    void bitmapsBiostackCantRepresentStayInTheImageMarkedInUseWhileItWrites() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image();
        Tools.ok(30, "qemu-img", "bitmap", "--add", "-g", "512", img.toString(), "fine");
        Tools.ok(30, "qemu-img", "bitmap", "--add", img.toString(), "has space");
        try (Stack s = open(img, "")) {
            String st = s.control(List.of("status", "q"));
            assertThat(st).contains("bitmap b0 ").contains("bitmap b1 ").doesNotContain("bitmap fine")
                    .doesNotContain("bitmap has space");
            try (Arena a = Arena.ofShared()) {
                s.device("q").write(1 << 20, a.allocate(65536, 4096)).join();
            }
        }
        // Not kept up to date, they are left in use, so qemu does not trust them; nothing else changed.
        String info = Tools.ok(30, "qemu-img", "info", "--output=json", img.toString()).out().replaceAll("\\s+", "");
        assertThat(info).contains("{\"flags\":[\"in-use\",\"auto\"],\"name\":\"fine\",\"granularity\":512}")
                .contains("{\"flags\":[\"in-use\",\"auto\"],\"name\":\"hasspace\",\"granularity\":65536}")
                .contains("{\"flags\":[\"auto\"],\"name\":\"b0\",\"granularity\":65536}");
        Tools.ok(60, "qemu-img", "check", img.toString());
    }

    @Test
    void bitmapsBiostackCantRepresentGoBackAsTheyWereWhenNothingWasWritten() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image();
        Tools.ok(30, "qemu-img", "bitmap", "--add", "-g", "512", img.toString(), "fine");
        try (Stack s = open(img, "")) {
            try (Arena a = Arena.ofShared()) {
                s.device("q").read(1 << 20, a.allocate(65536, 4096)).join();
            }
        }
        // Read only: its bits are still right, so it is not left in use (qemu would drop it).
        String info = Tools.ok(30, "qemu-img", "info", "--output=json", img.toString()).out().replaceAll("\\s+", "");
        assertThat(info).contains("{\"flags\":[\"auto\"],\"name\":\"fine\",\"granularity\":512}")
                .contains("{\"flags\":[\"auto\"],\"name\":\"b0\",\"granularity\":65536}");
        Tools.ok(60, "qemu-img", "check", img.toString());
    }

    @Test
    void aDisabledBitmapBiostackCantRepresentKeepsItsBitsAndIsNotInUseAfterACleanClose() throws Exception {
        Tools.require("qemu-img", "qemu-io", "qemu-nbd", "nbdinfo");
        Path img = image();
        // Bits qemu recorded at 512 B granularity, then frozen (as a checkpoint's older bitmap is).
        Tools.ok(30, "qemu-img", "bitmap", "--add", "-g", "512", img.toString(), "small");
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write 1M 1k", img.toString());
        Tools.ok(30, "qemu-img", "bitmap", "--disable", img.toString(), "small");
        try (Stack s = open(img, "")) {
            assertThat(s.control(List.of("status", "q"))).doesNotContain("bitmap small");
            try (Arena a = Arena.ofShared()) {
                s.device("q").write(4 << 20, a.allocate(65536, 4096)).join();
            }
        }
        // A disabled bitmap records no write: what biostack wrote leaves it as it was, trusted.
        String info = Tools.ok(30, "qemu-img", "info", "--output=json", img.toString()).out().replaceAll("\\s+", "");
        assertThat(info).contains("{\"flags\":[],\"name\":\"small\",\"granularity\":512}");
        Tools.ok(60, "qemu-img", "check", img.toString());
        Path sock = dir.resolve("q.sock");
        Process p = new ProcessBuilder("qemu-nbd", "-r", "-f", "qcow2", "-B", "small", "-k", sock.toString(),
                img.toString()).redirectErrorStream(true).start();
        try {
            for (int i = 0; i < 200 && !Files.exists(sock); i++) {
                assertThat(p.isAlive()).as("qemu-nbd -B small runs").isTrue();
                Thread.sleep(25);
            }
            String map = Tools.ok(30, "nbdinfo", "--map=qemu:dirty-bitmap:small", "nbd+unix:///?socket=" + sock).out();
            assertThat(map.lines().map(String::trim).filter(l -> l.endsWith("dirty")).toList())
                    .containsExactly("1048576        1024    1  dirty");
        } finally {
            p.destroy();
            p.waitFor(10, java.util.concurrent.TimeUnit.SECONDS);
        }
    }

    @Test
    void unknownAutoclearBitsAreClearedAndTheBitmapsBitIsKeptWhileBiostackKeepsTheBitmaps() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image();
        writeAt(img, 88, ByteBuffer.allocate(8).putLong(0, 1L | (1L << 7)));
        try (Stack s = open(img, "")) {
            assertThat(s.control(List.of("status", "q"))).contains("bitmap b0 granularity=65536 dirty=0 recording"
                    + " persistent consistent");
            // kept up to date, the bitmaps are marked in use and the bit is set again at once
            assertThat(readAt(img, 88, 8).getLong(0)).isEqualTo(1L);
        }
        assertThat(readAt(img, 88, 8).getLong(0)).isEqualTo(1L);
        Tools.ok(60, "qemu-img", "check", img.toString());
        assertThat(Tools.ok(30, "qemu-img", "info", img.toString()).out()).contains("name: b0").contains("name: b1");
    }

    @Test
    void bitmapsWrittenPastWithoutAStoreAreStaleForQemuAndForBiostack() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = image();
        // The qcow2 layer alone (no bitmap store): it clears the bit, so qemu stops trusting b0.
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults())) {
            Qcow2Device q = Qcow2Device.open("q", c, new Qcow2Device.Options(false, -1, null, false, img, null, "t"));
            try (Arena a = Arena.ofShared()) {
                MemorySegment m = a.allocate(65536, 4096);
                q.write(1 << 20, m).join();
            }
            q.close();
        }
        assertThat(readAt(img, 88, 8).getLong(0) & 1).isZero();
        assertThat(Tools.ok(30, "qemu-img", "info", img.toString()).out()).doesNotContain("name: b0");
        try (Stack s = open(img, "")) {
            assertThat(s.control(List.of("status", "q"))).doesNotContain("bitmap b0");
            assertThat(s.device("q").statusContexts()).extracting(StatusContext::name)
                    .noneMatch(n -> n.startsWith("qemu:dirty-bitmap:"));
            // a new bitmap replaces the stale directory
            s.control(List.of("message", "q", "bitmap add fresh persistent"));
        }
        String info = Tools.ok(30, "qemu-img", "info", img.toString()).out();
        assertThat(info).contains("name: fresh").doesNotContain("name: b0");
        // The stale bitmaps' clusters leak, as qemu leaves them: check finds leaks, no corruption.
        Tools.Result check = Tools.run(60, "qemu-img", "check", img.toString());
        assertThat(check.exit()).as(check.all()).isIn(0, 3);
        assertThat(check.all()).doesNotContain("ERROR");
        assertThat(Files.size(img)).isPositive();
    }
}
