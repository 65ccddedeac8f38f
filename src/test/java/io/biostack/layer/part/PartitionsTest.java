package io.biostack.layer.part;

import static io.biostack.layer.crypt.ImageFiles.requireTool;
import static io.biostack.layer.crypt.ImageFiles.run;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;
import io.biostack.block.RamDisk;
import io.biostack.layer.Linear;
import io.biostack.layer.crypt.ImageFiles;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import java.util.zip.CRC32;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PartitionsTest {
    private static final long MiB = 1 << 20;
    private static final String LINUX_FS = "0fc63daf-8483-4772-8e79-3d69d8477de4";
    private static final String EFI_SYSTEM = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

    @TempDir
    Path dir;

    private Path image(String name, long size) throws IOException {
        Path p = dir.resolve(name);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ch.truncate(0);
            ch.write(ByteBuffer.wrap(new byte[1]), size - 1);
        }
        return p;
    }

    private static Path sfdisk(Path img, String script) throws Exception {
        Path s = img.resolveSibling(img.getFileName() + ".sfdisk");
        java.nio.file.Files.writeString(s, script);
        run("sh", "-c", "sfdisk -q '" + img + "' < '" + s + "'");
        return img;
    }

    private static byte[] read(BlockDevice d, long off, int len) {
        byte[] b = new byte[len];
        d.read(off, IoIter.of(b)).join();
        return b;
    }

    // ---- tables written by sfdisk and sgdisk ----------------------------------------------------

    @Test
    void mbrWithExtendedAndLogicalPartitionsFromSfdisk() throws Exception {
        requireTool("sfdisk");
        Path img = sfdisk(image("mbr.img", 64 * MiB), """
                label: dos
                start=2048, size=20480, type=83
                start=22528, size=10240, type=82
                start=32768, type=5
                start=34816, size=4096, type=83
                start=40960, size=4096, type=7
                start=47104, size=2048, type=c
                """);
        RamDisk disk = ImageFiles.load(img, "disk0");
        PartitionTable t = Partitions.read(disk);
        assertThat(t.scheme()).isEqualTo("mbr");
        assertThat(t.warnings()).isEmpty();
        assertThat(t.partitions()).containsExactly(
                new Partition(1, 2048 * 512L, 20480 * 512L, "0x83"),
                new Partition(2, 22528 * 512L, 10240 * 512L, "0x82"),
                new Partition(3, 32768 * 512L, 1024, "0x05"),
                new Partition(5, 34816 * 512L, 4096 * 512L, "0x83"),
                new Partition(6, 40960 * 512L, 4096 * 512L, "0x07"),
                new Partition(7, 47104 * 512L, 2048 * 512L, "0x0c"));
        assertThat(t.partitions().get(2).isExtended()).isTrue();
    }

    /**
     * An entry of type 0 with sectors is a partition to the kernel (msdos.c skips only an entry
     * without sectors), primary or logical, and to partx, the oracle here; it was skipped, so
     * {@code partition DEV 2} failed where losetup -P shows p2.
     */
    @Test
    void entriesOfType0WithSectorsArePartitionsAsPartxShowsThem() throws Exception {
        requireTool("sfdisk");
        requireTool("partx");
        Path img = sfdisk(image("t0.img", 64 * MiB), """
                label: dos
                start=2048, size=4096, type=83
                start=6144, size=4096, type=0
                start=32768, type=5
                start=34816, size=4096, type=0
                start=40960, size=4096, type=83
                """);
        RamDisk disk = ImageFiles.load(img, "disk0");
        assertThat(Partitions.scan(disk)).containsExactly(
                new Partition(1, 2048 * 512L, 4096 * 512L, "0x83"),
                new Partition(2, 6144 * 512L, 4096 * 512L, "0x00"),
                new Partition(3, 32768 * 512L, 1024, "0x05"),
                new Partition(5, 34816 * 512L, 4096 * 512L, "0x00"),
                new Partition(6, 40960 * 512L, 4096 * 512L, "0x83"));
        String partx = run("partx", "--show", "-g", "-o", "NR,START", img.toString());
        assertThat(partx.lines().map(String::trim).toList())
                .containsExactly("1  2048", "2  6144", "3 32768", "5 34816", "6 40960");
    }

    @Test
    void gptFromSgdisk() throws Exception {
        requireTool("sgdisk");
        Path img = image("gpt.img", 64 * MiB);
        run("sgdisk", "-n", "1:2048:+10M", "-t", "1:8300", "-c", "1:root", "-n", "2:0:+5M", "-t", "2:ef00",
                "-n", "4:0:0", img.toString());
        RamDisk disk = ImageFiles.load(img, "disk0");
        PartitionTable t = Partitions.read(disk);
        assertThat(t.scheme()).isEqualTo("gpt");
        assertThat(t.warnings()).isEmpty();
        long lastUsable = 64 * MiB / 512 - 34; // 32 sectors of entries and the backup header after it
        assertThat(t.partitions()).containsExactly(
                new Partition(1, 2048 * 512L, 10 * MiB, LINUX_FS),
                new Partition(2, 22528 * 512L, 5 * MiB, EFI_SYSTEM),
                new Partition(4, 32768 * 512L, (lastUsable - 32768 + 1) * 512, LINUX_FS));
    }

    @Test
    void gptFromSfdisk() throws Exception {
        requireTool("sfdisk");
        Path img = sfdisk(image("gpt2.img", 32 * MiB), """
                label: gpt
                start=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
                start=8192, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
                """);
        List<Partition> ps = Partitions.scan(ImageFiles.load(img, "disk1"));
        assertThat(ps).containsExactly(
                new Partition(1, 2048 * 512L, 4096 * 512L, EFI_SYSTEM),
                new Partition(2, 8192 * 512L, 8192 * 512L, LINUX_FS));
    }

    @Test
    void partitionDevicesAreNamedLikeLosetupAndMapTheirWindow() throws Exception {
        requireTool("sgdisk");
        Path img = image("gpt.img", 16 * MiB);
        run("sgdisk", "-n", "1:2048:+4M", "-n", "2:0:+4M", img.toString());
        RamDisk disk = ImageFiles.load(img, "loop0");
        List<Linear> devs = Partitions.devices(disk);
        assertThat(devs).extracting(BlockDevice::name).containsExactly("loop0p1", "loop0p2");
        assertThat(devs).extracting(BlockDevice::size).containsExactly(4 * MiB, 4 * MiB);

        byte[] data = new byte[4096];
        Arrays.fill(data, (byte) 0x77);
        devs.get(1).write(4096, MemorySegment.ofArray(data)).join();
        assertThat(read(disk, 2048 * 512L + 4 * MiB + 4096, 4096)).isEqualTo(data);
        assertThatThrownBy(() -> devs.get(0).write(4 * MiB, MemorySegment.ofArray(data)).join())
                .hasMessageContaining("beyond the end of loop0p1");
        assertThat(Partitions.device(disk, 2).name()).isEqualTo("loop0p2");
        assertThatThrownBy(() -> Partitions.device(disk, 3)).isInstanceOf(PartitionException.class)
                .hasMessage("loop0 has no partition 3");
    }

    // ---- hand-made tables: 4k sectors and error paths -------------------------------------------

    private static void mbrEntry(byte[] sector, int i, int type, long start, long size) {
        ByteBuffer b = ByteBuffer.wrap(sector).order(ByteOrder.LITTLE_ENDIAN);
        int o = 446 + 16 * i;
        sector[o + 4] = (byte) type;
        b.putInt(o + 8, (int) start);
        b.putInt(o + 12, (int) size);
        sector[510] = 0x55;
        sector[511] = (byte) 0xaa;
    }

    private static void put(RamDisk d, long off, byte[] b) {
        d.write(off, MemorySegment.ofArray(b)).join();
    }

    @Test
    void blankDiskHasNoTable() {
        PartitionTable t = Partitions.read(new RamDisk("blank", MiB));
        assertThat(t.scheme()).isEqualTo("none");
        assertThat(t.partitions()).isEmpty();
    }

    @Test
    void mbrOn4kSectorDisksCountsLbasIn4kBlocks() {
        RamDisk d = new RamDisk("d4k", 16 * MiB, 4096, false);
        byte[] s = new byte[4096];
        mbrEntry(s, 0, 0x83, 256, 1024);
        put(d, 0, s);
        assertThat(Partitions.scan(d)).containsExactly(new Partition(1, MiB, 4 * MiB, "0x83"));
    }

    @Test
    void partitionPastTheEndIsDroppedAndOneRunningPastItIsTruncated() {
        RamDisk d = new RamDisk("disk0", 8 * MiB);
        byte[] s = new byte[512];
        mbrEntry(s, 0, 0x83, 2048, 4096);
        mbrEntry(s, 1, 0x83, 20000, 100);          // starts past the 16384-sector disk
        mbrEntry(s, 2, 0x83, 16000, 1000);         // runs 616 sectors past it
        put(d, 0, s);
        PartitionTable t = Partitions.read(d);
        assertThat(t.partitions()).containsExactly(
                new Partition(1, 2048 * 512L, 4096 * 512L, "0x83"),
                new Partition(3, 16000 * 512L, 384 * 512L, "0x83"));
        assertThat(t.warnings()).anySatisfy(w -> assertThat(w).contains("p2").contains("beyond the end"))
                .anySatisfy(w -> assertThat(w).contains("p3").contains("truncated to " + 384 * 512));
        assertThat(Partitions.devices(d)).extracting(BlockDevice::size).containsExactly(4096 * 512L, 384 * 512L);
    }

    @Test
    void ebrChainThatLoopsStops() {
        RamDisk d = new RamDisk("disk0", 8 * MiB);
        byte[] mbr = new byte[512];
        mbrEntry(mbr, 0, 0x05, 2048, 8192);
        put(d, 0, mbr);
        byte[] ebr = new byte[512];
        mbrEntry(ebr, 0, 0x83, 64, 128);
        mbrEntry(ebr, 1, 0x05, 0, 8192);            // links back to itself
        put(d, 2048 * 512L, ebr);
        PartitionTable t = Partitions.read(d);
        assertThat(t.partitions()).extracting(Partition::number).containsExactly(1, 5);
        assertThat(t.warnings()).singleElement().asString().contains("loops back");
    }

    /**
     * A 3rd or 4th EBR entry (where garbage lives, msdos.c says) that starts inside the extended
     * partition but runs past its end is skipped, as the kernel's parse_extended does
     * ({@code next + size > first_sector + first_size}); its start alone inside was let through.
     */
    @Test
    void ebrGarbageEntryRunningPastTheExtendedPartitionIsSkipped() {
        RamDisk d = new RamDisk("disk0", 8 * MiB);
        byte[] mbr = new byte[512];
        mbrEntry(mbr, 0, 0x05, 2048, 8192);         // the extended partition: sectors [2048, 10240)
        put(d, 0, mbr);
        byte[] ebr = new byte[512];
        mbrEntry(ebr, 0, 0x83, 64, 128);
        mbrEntry(ebr, 1, 0x05, 4096, 8192);         // next EBR at 6144, its link running to 14336
        put(d, 2048 * 512L, ebr);
        byte[] ebr2 = new byte[512];
        mbrEntry(ebr2, 2, 0x83, 2048, 4096);        // [8192, 12288): inside the link, past the extended
        put(d, 6144 * 512L, ebr2);
        assertThat(Partitions.scan(d)).extracting(Partition::number).containsExactly(1, 5);
    }

    @Test
    void ebrWithoutSignatureEndsTheChain() {
        RamDisk d = new RamDisk("disk0", 8 * MiB);
        byte[] mbr = new byte[512];
        mbrEntry(mbr, 0, 0x0f, 2048, 8192);
        put(d, 0, mbr);
        PartitionTable t = Partitions.read(d);
        assertThat(t.partitions()).extracting(Partition::number).containsExactly(1);
        assertThat(t.warnings()).singleElement().asString().contains("no 0x55aa signature");
    }

    @Test
    void bootSectorWithoutPartitionTableIsNotAnMbr() {
        RamDisk d = new RamDisk("disk0", MiB);
        byte[] s = new byte[512];
        mbrEntry(s, 0, 0x83, 1, 10);
        s[446] = 0x12; // not a valid boot flag: a FAT boot sector, say
        put(d, 0, s);
        assertThat(Partitions.read(d).scheme()).isEqualTo("none");
    }

    private static byte[] gptImage;

    /** A fresh copy of a GPT made once by sgdisk, for the corruption tests. */
    private RamDisk gptDisk() throws Exception {
        requireTool("sgdisk");
        synchronized (PartitionsTest.class) {
            if (gptImage == null) {
                Path img = image("c.img", 8 * MiB);
                run("sgdisk", "-n", "1:2048:+2M", "-n", "2:0:+2M", img.toString());
                gptImage = read(ImageFiles.load(img, "tmp"), 0, (int) (8 * MiB));
            }
        }
        RamDisk d = new RamDisk("disk0", 8 * MiB);
        put(d, 0, gptImage);
        return d;
    }

    @Test
    void badPrimaryGptHeaderFallsBackToTheBackup() throws Exception {
        RamDisk d = gptDisk();
        byte[] h = read(d, 512, 512);
        h[24] ^= 1; // my LBA, covered by the CRC
        put(d, 512, h);
        PartitionTable t = Partitions.read(d);
        assertThat(t.partitions()).hasSize(2);
        assertThat(t.warnings()).singleElement().asString()
                .contains("primary GPT header fails its CRC32 check").contains("using the backup");
    }

    @Test
    void gptWithBothHeadersBadIsRefused() throws Exception {
        RamDisk d = gptDisk();
        byte[] h = read(d, 512, 512);
        h[30] ^= 1;
        put(d, 512, h);
        long last = d.size() - 512;
        byte[] b = read(d, last, 512);
        b[0] = 'X';
        put(d, last, b);
        assertThatThrownBy(() -> Partitions.scan(d)).isInstanceOf(PartitionException.class)
                .hasMessageContaining("no valid GPT")
                .hasMessageContaining("primary header fails its CRC32 check")
                .hasMessageContaining("has no 'EFI PART' signature");
    }

    @Test
    void gptEntriesWithABadCrcAreRefused() throws Exception {
        RamDisk d = gptDisk();
        byte[] e = read(d, 1024, 512);
        e[32] ^= 1; // first LBA of entry 1, in the primary entries array
        put(d, 1024, e);
        // the primary's entries fail their CRC, so the backup (with its own entries copy) is used
        PartitionTable t = Partitions.read(d);
        assertThat(t.partitions()).extracting(Partition::startBytes).containsExactly(2048 * 512L, 6144 * 512L);
        assertThat(t.warnings()).singleElement().asString().contains("entries that fail their CRC32 check");
    }

    @Test
    void gptHeaderWhoseUsableRangeRunsPastTheDiskIsRefused() throws Exception {
        RamDisk big = gptDisk();
        // the same table on a disk cut to 4 MiB: both headers now describe a larger disk
        RamDisk d = new RamDisk("short", 4 * MiB);
        put(d, 0, read(big, 0, (int) (4 * MiB)));
        assertThatThrownBy(() -> Partitions.scan(d)).isInstanceOf(PartitionException.class)
                .hasMessageContaining("usable LBAs").hasMessageContaining("outside the disk");
    }

    @Test
    void gptEntryPastTheEndIsSkipped() throws Exception {
        RamDisk d = gptDisk();
        // rewrite entry 2 to end past the disk and fix both CRCs, as a buggy tool might
        byte[] h = read(d, 512, 512);
        byte[] entries = read(d, 1024, 128 * 128);
        ByteBuffer eb = ByteBuffer.wrap(entries).order(ByteOrder.LITTLE_ENDIAN);
        eb.putLong(128 + 40, 1L << 40);
        CRC32 c = new CRC32();
        c.update(entries, 0, 128 * 128);
        ByteBuffer hb = ByteBuffer.wrap(h).order(ByteOrder.LITTLE_ENDIAN);
        hb.putInt(88, (int) c.getValue());
        hb.putInt(16, 0);
        CRC32 hc = new CRC32();
        hc.update(h, 0, hb.getInt(12));
        hb.putInt(16, (int) hc.getValue());
        put(d, 1024, entries);
        put(d, 512, h);
        PartitionTable t = Partitions.read(d);
        assertThat(t.partitions()).extracting(Partition::number).containsExactly(1);
        assertThat(t.warnings()).anySatisfy(w -> assertThat(w).contains("GPT entry 2").contains("skipped"));
    }
}
