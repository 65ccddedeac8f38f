package io.biostack.nbd;

import io.biostack.TestEnv;
import io.biostack.block.RamDisk;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * The real clients against the server: qemu-io, qemu-img, nbdinfo, nbdcopy, fio's nbd engine and
 * nbdfuse, over a unix socket, on a loop device over a sparse file (the whole stack down to
 * io_uring) and on a ramdisk. Missing tools fail under CI=true and skip elsewhere.
 */
@Timeout(60)
class NbdClientToolsTest {
    static final long SIZE = 64L << 20;

    @TempDir
    Path dir;
    Path sock;
    Path file;
    LoopDevice loop;
    RamDisk ram;
    NbdServer server;
    String fileUri;
    String ramUri;

    @BeforeEach
    void start() throws Exception {
        sock = dir.resolve("nbd.sock");
        file = dir.resolve("disk.img");
        loop = LoopDevice.open(file, LoopConfig.defaults().withCreateSize(SIZE));
        ram = new RamDisk("ram", SIZE);
        server = NbdServer.builder()
                .export(NbdExport.of("file", loop))
                .export(NbdExport.of("ram", ram))
                .unixSocket(sock)
                .start();
        fileUri = "nbd+unix:///file?socket=" + sock;
        ramUri = "nbd+unix:///ram?socket=" + sock;
    }

    @AfterEach
    void stop() {
        server.close();
        loop.close();
        ram.close();
    }

    /**
     * qemu-io reads 128 KiB of a sparse file whose 4 KiB blocks alternate hole and data: the
     * server's structured reply is 32 chunks (16 holes, 16 data). It hung: that reply was thought
     * to need more pieces than a send batch holds, so it never went out.
     */
    @Test
    void qemuIoReadsARangeOfThirtyTwoAlternatingHolesAndDataRuns() throws Exception {
        Tools.require("qemu-io");
        List<String> cmd = new java.util.ArrayList<>(List.of("qemu-io", "-f", "raw"));
        for (int i = 1; i < 32; i += 2) {
            cmd.addAll(List.of("-c", "write -P 0x5a " + i * 4 + "k 4k"));
        }
        cmd.add(fileUri);
        Tools.ok(30, cmd.toArray(String[]::new));
        Tools.Result r = Tools.ok(30, "qemu-io", "-f", "raw", "-c", "read 0 128k",
                "-c", "read -P 0 0 4k", "-c", "read -P 0x5a 4k 4k", "-c", "read -P 0x5a 124k 4k", fileUri);
        assertThat(r.out()).contains("read 131072/131072 bytes at offset 0").doesNotContain("Pattern verification failed");
    }

    @Test
    void qemuIoPatternsWithFuaZeroesDiscardAioAndTheLastBlock() throws Exception {
        Tools.require("qemu-io");
        long last = SIZE - 4096;
        for (String uri : new String[] {fileUri, ramUri}) {
            Tools.Result r = Tools.ok(30, "qemu-io", "-f", "raw",
                    "-c", "write -P 0xa5 0 1M",
                    "-c", "read -P 0xa5 0 1M",
                    "-c", "write -f -P 0x5a 1M 64k",
                    "-c", "read -P 0x5a 1M 64k",
                    "-c", "write -z 0 64k",
                    "-c", "read -P 0 0 64k",
                    "-c", "read -P 0xa5 64k 960k",
                    "-c", "write -z -u 2M 1M",
                    "-c", "read -P 0 2M 1M",
                    "-c", "write -P 0x11 4M 1M",
                    "-c", "discard 4M 1M",
                    "-c", "read -P 0 4M 1M",
                    "-c", "write -P 0x77 " + last + " 4096",
                    "-c", "read -P 0x77 " + last + " 4096",
                    "-c", "aio_write -P 0x31 8M 64k",
                    "-c", "aio_write -P 0x32 9M 1M",
                    "-c", "aio_write -f -P 0x33 10M 4k",
                    "-c", "aio_flush",
                    "-c", "aio_read -P 0x31 8M 64k",
                    "-c", "aio_read -P 0x32 9M 1M",
                    "-c", "aio_read -P 0x33 10M 4k",
                    "-c", "aio_flush",
                    "-c", "flush",
                    uri);
            assertThat(r.all()).doesNotContainIgnoringCase("fail").doesNotContainIgnoringCase("error");
            assertThat(r.out()).contains("read 4096/4096 bytes at offset " + last);
        }
        // The data went all the way down to the file.
        try (FileChannel ch = FileChannel.open(file)) {
            ByteBuffer b = ByteBuffer.allocate(4096);
            ch.read(b, last);
            assertThat(b.array()).containsOnly((byte) 0x77);
        }
    }

    @Test
    void qemuIoReadPastTheEndFails() throws Exception {
        Tools.require("qemu-io");
        Tools.Result r = Tools.run(30, "qemu-io", "-f", "raw", "-c", "read " + SIZE + " 4096", fileUri);
        assertThat(r.all()).containsIgnoringCase("Input/output error").doesNotContain("read 4096/4096");
    }

    @Test
    void qemuImgConvertBothWaysAndCompare() throws Exception {
        Tools.require("qemu-img");
        Path src = sparseImage(dir.resolve("src.img"));
        Path back = dir.resolve("back.img");
        Tools.ok(30, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src.toString(), fileUri);
        Tools.ok(30, "qemu-img", "compare", "-f", "raw", "-F", "raw", src.toString(), fileUri);
        Tools.ok(30, "qemu-img", "convert", "-f", "raw", "-O", "raw", fileUri, back.toString());
        Tools.ok(30, "qemu-img", "compare", "-f", "raw", "-F", "raw", src.toString(), back.toString());
        assertThat(Files.mismatch(src, back)).isEqualTo(-1);
        Tools.Result info = Tools.ok(30, "qemu-img", "info", "-f", "raw", fileUri);
        assertThat(info.out()).contains("virtual size: 64 MiB");
    }

    @Test
    void aReadOnlyExportOffersNoTrimNoZeroAndNoFastZeroAsQemuNbdAndNbdkit() throws Exception {
        // qemu-nbd -r and nbdkit -r both clear can_trim, can_zero and can_fast_zero (checked with
        // nbdinfo against each); a client should not be told a command exists that can only fail.
        Tools.require("nbdinfo");
        Path roSock = dir.resolve("ro.sock");
        try (NbdServer ro = NbdServer.builder().export(new NbdExport("ro", "", ram, true)).unixSocket(roSock).start()) {
            Tools.Result r = Tools.ok(30, "nbdinfo", "nbd+unix:///ro?socket=" + roSock);
            assertThat(r.out()).contains("is_read_only: true", "can_trim: false", "can_zero: false",
                    "can_fast_zero: false", "can_flush: true", "can_cache: true");
        }
    }

    @Test
    void nbdinfoShowsSizeFlagsBlockSizesAndMapShowsHoles() throws Exception {
        Tools.require("nbdinfo", "qemu-io");
        Tools.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 1 1M 1M", "-c", "flush", fileUri);
        Tools.Result r = Tools.ok(30, "nbdinfo", fileUri);
        assertThat(r.out()).contains("export-size: " + SIZE, "can_flush: true", "can_fua: true", "can_trim: true",
                "can_zero: true", "can_fast_zero: true", "can_multi_conn: true", "can_cache: true", "can_df: true",
                "is_read_only: false", "block_size_minimum: 512", "block_size_preferred: 4096",
                "block_size_maximum: 33554432", "base:allocation", "using structured packets");
        Tools.Result map = Tools.ok(30, "nbdinfo", "--map", fileUri);
        assertThat(map.out().lines().map(String::strip).toList()).containsExactly(
                "0     1048576    3  hole,zero",
                "1048576     1048576    0  data",
                "2097152    65011712    3  hole,zero");
        Tools.Result list = Tools.ok(30, "nbdinfo", "--list", "nbd+unix:///?socket=" + sock);
        assertThat(list.out()).contains("export=\"file\"", "export=\"ram\"");
    }

    @Test
    void nbdcopyBothWaysWithOneAndFourConnections() throws Exception {
        Tools.require("nbdcopy");
        Path src = sparseImage(dir.resolve("src.img"));
        for (String conns : new String[] {"1", "4"}) {
            Path back = dir.resolve("back" + conns + ".img");
            Files.write(back, new byte[0]);
            Tools.ok(30, "nbdcopy", "--connections=" + conns, "--flush", src.toString(), fileUri);
            Tools.ok(30, "nbdcopy", "--connections=" + conns, fileUri, back.toString());
            assertThat(Files.mismatch(src, back)).as("%s connections", conns).isEqualTo(-1);
            Tools.ok(30, "nbdcopy", "--connections=" + conns, "--flush", src.toString(), ramUri);
            Tools.ok(30, "nbdcopy", "--connections=" + conns, ramUri, back.toString());
            assertThat(Files.mismatch(src, back)).isEqualTo(-1);
        }
    }

    /**
     * A file on tmpfs has no fallocate ZERO_RANGE (EOPNOTSUPP), which a WRITE_ZEROES with NO_HOLE
     * asks for. The server answered it ENOTSUP, which the spec keeps for FAST_ZERO, and
     * {@code nbdcopy --allocated} (zeroes with NO_HOLE) failed with "write at offset 262144
     * failed: Operation not supported" where qemu-nbd, on the same file, writes the zeros.
     */
    @Test
    void writeZeroesWithNoHoleOnAFileSystemThatCantZeroARangeWritesTheZeros() throws Exception {
        Tools.require("nbdcopy");
        Path shmRoot = Path.of("/dev/shm");
        TestEnv.require(Files.isDirectory(shmRoot) && Files.isWritable(shmRoot), "a writable tmpfs at /dev/shm");
        Path shm = Files.createTempDirectory(shmRoot, "biostack-nbd-");
        Path img = shm.resolve("disk.img");
        long size = 8 << 20;
        try (LoopDevice tmpfs = LoopDevice.open(img, LoopConfig.defaults().withCreateSize(size))) {
            server.addExport(NbdExport.of("tmpfs", tmpfs));
            try (RawNbdClient c = RawNbdClient.open(sock, "tmpfs", true, false)) {
                byte[] data = new byte[64 * 1024];
                Arrays.fill(data, (byte) 0x5a);
                assertThat(c.writeAndWait(1 << 20, data)).isZero();
                assertThat(c.command(CMD_FLAG_NO_HOLE | CMD_FLAG_FUA, CMD_WRITE_ZEROES, 1 << 20, data.length)).isZero();
                assertThat(c.read(1 << 20, data.length)).isEqualTo(new byte[data.length]);
                // FAST_ZERO still fails fast where the zeros would have to be written.
                assertThat(c.command(CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO, CMD_WRITE_ZEROES, 0, 4096)).isEqualTo(ENOTSUP);
            }
            Path src = dir.resolve("src.img");
            try (FileChannel ch = FileChannel.open(src, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
                byte[] d = new byte[1 << 20];
                new Random(42).nextBytes(d);
                ch.write(ByteBuffer.wrap(d), 3L << 20);
                ch.write(ByteBuffer.allocate(1), size - 1); // the rest reads as zeros
            }
            Tools.ok(30, "nbdcopy", "--allocated", "--flush", src.toString(), "nbd+unix:///tmpfs?socket=" + sock);
            assertThat(Files.mismatch(src, img)).isEqualTo(-1);
            assertThat(server.exportStats().stream().filter(s -> s.name().equals("tmpfs")).findFirst().orElseThrow()
                    .snapshot().errors()).containsOnlyKeys("ENOTSUP").containsEntry("ENOTSUP", 1L);
        } finally {
            server.removeExport("tmpfs");
            Files.deleteIfExists(img);
            Files.deleteIfExists(shm);
        }
    }

    @Test
    void fastZeroOnAQcow2RangeThatWouldBeWrittenFailsFastAndAllocatesNothing() throws Exception {
        // FAST_ZERO asks for zeros faster than writes or ENOTSUP (doc/proto.md): a version 2
        // image has no zero flag and a part of a cluster has none either, so qcow2 would write the
        // zeros (32 MiB took 392 ms, answered 0 and allocated the range); qemu-nbd says ENOTSUP.
        // qemu-img convert onto an NBD target pre-zeroes it that way before it copies.
        Tools.require("qemu-img");
        for (String compat : List.of("0.10", "1.1")) {
            Path img = dir.resolve("z" + compat + ".qcow2");
            Tools.ok(30, "qemu-img", "create", "-f", "qcow2", "-o", "compat=" + compat, img.toString(), "64M");
            try (LoopDevice c = LoopDevice.open("c" + compat, img, LoopConfig.defaults());
                 io.biostack.layer.qcow2.Qcow2Device q = io.biostack.layer.qcow2.Qcow2Device.open("q" + compat, c,
                         new io.biostack.layer.qcow2.Qcow2Device.Options(false, -1, null, false, img, null, img.toString()))) {
                server.addExport(NbdExport.of("q", q));
                try (RawNbdClient n = RawNbdClient.open(sock, "q", true, false)) {
                    long start = System.nanoTime();
                    // v2: any range; v3: a range that starts inside a cluster (its head would be written)
                    long off = compat.equals("0.10") ? 0 : 4096;
                    assertThat(n.command(CMD_FLAG_FAST_ZERO, CMD_WRITE_ZEROES, off, 32 << 20)).as(compat).isEqualTo(ENOTSUP);
                    assertThat(System.nanoTime() - start).as("fast").isLessThan(200_000_000L);
                    assertThat(n.command(0, CMD_FLUSH, 0, 0)).isZero();
                    // without FAST_ZERO the zeros are made as before
                    assertThat(n.command(0, CMD_WRITE_ZEROES, 0, 65536)).isZero();
                    assertThat(n.read(0, 65536)).isEqualTo(new byte[65536]);
                } finally {
                    server.removeExport("q");
                }
            }
            String map = Tools.ok(30, "qemu-img", "map", "--output=json", img.toString()).out();
            long data = 0;
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"length\": (\\d+)[^}]*\"data\": true").matcher(map);
            while (m.find()) {
                data += Long.parseLong(m.group(1));
            }
            assertThat(data).as("%s: at most the plain WRITE_ZEROES' cluster holds data: %s", compat, map).isLessThanOrEqualTo(65536);
        }
    }

    @Test
    void fioNbdEngineWritesAndVerifiesWithCrc32c() throws Exception {
        Tools.require("fio");
        Tools.Result r = Tools.ok(60, "fio", "--name=verify", "--ioengine=nbd", "--uri=" + fileUri,
                "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=16M", "--verify=crc32c",
                "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--output-format=terse");
        assertThat(r.all()).doesNotContain("verify: bad").doesNotContainIgnoringCase("error=");
        Tools.ok(60, "fio", "--name=mixed", "--ioengine=nbd", "--uri=" + ramUri, "--rw=randrw", "--bs=4k-256k",
                "--iodepth=16", "--size=32M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0",
                "--output-format=terse");
    }

    @Test
    void writesAnsweredOnOneConnectionAreSeenAndFlushedFromAnother() throws Exception {
        byte[] data = new byte[65536];
        new Random(1).nextBytes(data);
        try (RawNbdClient a = RawNbdClient.open(sock, "file", true, false);
             RawNbdClient b = RawNbdClient.open(sock, "file", true, false)) {
            assertThat(a.transmissionFlags & FLAG_CAN_MULTI_CONN).isNotZero();
            assertThat(a.writeAndWait(1 << 20, data)).isZero();
            assertThat(b.command(0, CMD_FLUSH, 0, 0)).isZero();
            assertThat(b.read(1 << 20, data.length)).isEqualTo(data);
        }
        try (FileChannel ch = FileChannel.open(file)) {
            ByteBuffer bb = ByteBuffer.allocate(data.length);
            ch.read(bb, 1 << 20);
            assertThat(bb.array()).isEqualTo(data);
        }
    }

    @Test
    void nbdfuseMountReadsAndWritesTheDevice() throws Exception {
        Tools.require("nbdfuse", "fusermount3");
        Path mnt = Files.createDirectory(dir.resolve("mnt"));
        Process fuse = new ProcessBuilder("nbdfuse", mnt.toString(), fileUri).redirectErrorStream(true).start();
        Path dev = mnt.resolve("nbd");
        try {
            long end = System.currentTimeMillis() + 10_000;
            while (!Files.exists(dev) && System.currentTimeMillis() < end && fuse.isAlive()) {
                Thread.sleep(50);
            }
            assertThat(Files.exists(dev)).as("nbdfuse mounted " + dev).isTrue();
            assertThat(Files.size(dev)).isEqualTo(SIZE);
            byte[] data = new byte[128 * 1024];
            new Random(2).nextBytes(data);
            try (FileChannel ch = FileChannel.open(dev, StandardOpenOption.WRITE)) {
                ch.write(ByteBuffer.wrap(data), 3L << 20);
                ch.force(true);
            }
            try (RawNbdClient c = RawNbdClient.open(sock, "file", true, false)) {
                assertThat(c.read(3L << 20, data.length)).isEqualTo(data);
                byte[] other = new byte[4096];
                new Random(3).nextBytes(other);
                assertThat(c.writeAndWait(SIZE - 4096, other)).isZero();
                try (RandomAccessFile f = new RandomAccessFile(dev.toFile(), "r")) {
                    byte[] got = new byte[4096];
                    f.seek(SIZE - 4096);
                    f.readFully(got);
                    assertThat(got).isEqualTo(other);
                }
            }
        } finally {
            Tools.run(10, "fusermount3", "-u", mnt.toString());
            if (!fuse.waitFor(10, java.util.concurrent.TimeUnit.SECONDS)) {
                fuse.destroyForcibly();
            }
        }
    }

    @Test
    void ext4MadeAndMountedThroughTheKernelLoopDriverOverNbdfuseLandsInTheBackingFile() throws Exception {
        // The kernel's loop driver and a real file system, over nbdfuse, over NBD, over our loop
        // device, over a file: what the file system writes must be in the file, intact.
        Tools.require("nbdfuse", "fusermount3", "mkfs.ext4", "mount", "umount", "e2fsck");
        Path mnt = Files.createDirectory(dir.resolve("fuse"));
        Path fs = Files.createDirectory(dir.resolve("fs"));
        Process fuse = new ProcessBuilder("nbdfuse", mnt.toString(), fileUri).redirectErrorStream(true).start();
        Path dev = mnt.resolve("nbd");
        byte[] data = new byte[3 << 20];
        new Random(7).nextBytes(data);
        try {
            long end = System.currentTimeMillis() + 10_000;
            while (!Files.exists(dev) && System.currentTimeMillis() < end && fuse.isAlive()) {
                Thread.sleep(50);
            }
            assertThat(Files.exists(dev)).as("nbdfuse mounted " + dev).isTrue();
            Tools.ok(60, "mkfs.ext4", "-q", "-F", "-b", "4096", dev.toString());
            Tools.ok(30, "mount", "-o", "loop", dev.toString(), fs.toString());
            try {
                Files.write(fs.resolve("hello.bin"), data);
                Tools.ok(30, "sync");
            } finally {
                Tools.ok(30, "umount", fs.toString());
            }
            Tools.ok(60, "e2fsck", "-f", "-n", dev.toString());
            Tools.ok(30, "mount", "-o", "loop,ro", dev.toString(), fs.toString());
            try {
                assertThat(Files.readAllBytes(fs.resolve("hello.bin"))).isEqualTo(data);
            } finally {
                Tools.ok(30, "umount", fs.toString());
            }
        } finally {
            Tools.run(10, "fusermount3", "-u", mnt.toString());
            if (!fuse.waitFor(10, java.util.concurrent.TimeUnit.SECONDS)) {
                fuse.destroyForcibly();
            }
        }
        // ext4's superblock magic 0xEF53 (fs/ext4/ext4.h, s_magic at 1024 + 0x38) is in the file.
        try (FileChannel ch = FileChannel.open(file)) {
            ByteBuffer magic = ByteBuffer.allocate(2).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            ch.read(magic, 1024 + 0x38);
            assertThat(magic.getShort(0) & 0xffff).isEqualTo(0xEF53);
        }
    }

    /** A 64 MiB file with random data in some places and holes elsewhere. */
    static Path sparseImage(Path p) throws IOException {
        Random rnd = new Random(42);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            for (long off : new long[] {0, 5L << 20, 17L << 20, SIZE - (1 << 20)}) {
                byte[] d = new byte[1 << 20];
                rnd.nextBytes(d);
                ch.write(ByteBuffer.wrap(d), off);
            }
            ch.truncate(SIZE);
            if (ch.size() < SIZE) {
                ch.write(ByteBuffer.allocate(1), SIZE - 1);
            }
        }
        return p;
    }
}
