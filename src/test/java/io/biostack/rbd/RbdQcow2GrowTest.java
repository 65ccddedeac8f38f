package io.biostack.rbd;

import io.biostack.layer.qcow2.Qcow2Device;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.api.parallel.ResourceLock;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A qcow2 image whose container is an RBD image grows that image as it allocates (issue 15:
 * "a format that allocates at the end asks its container to grow"), and what it leaves is a
 * qcow2 image that qemu-img checks clean and reads back byte for byte.
 */
@Timeout(120)
@ResourceLock(CephCluster.LOCK)
class RbdQcow2GrowTest {
    static CephCluster ceph;

    @TempDir
    Path dir;

    @BeforeAll
    static void cluster() throws Exception {
        ceph = CephCluster.shared();
    }

    @Test
    void aQcow2ImageOnRbdGrowsItsImageAsItAllocatesAndQemuImgReadsItBack() throws Exception {
        Tools.require("qemu-img");
        Path made = dir.resolve("made.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", made.toString(), "64M");
        String name = ceph.newImage("qcow2grow");
        ceph.rbd("import", made.toString(), "rbd/" + name);
        RbdOptions o = new RbdOptions("rbd", name, "admin", ceph.conf(), null, -1);
        long before;
        byte[] expect = new byte[64 << 20];
        try (RbdDevice rbd = RbdDevice.open("vol", o); Arena arena = Arena.ofShared()) {
            before = rbd.size();
            Qcow2Device q = Qcow2Device.open("q", rbd, new Qcow2Device.Options(false, -1, null, true, null, null, "vol"));
            try {
                Random rnd = new Random(15);
                MemorySegment buf = rbd.allocateIoMemory(1 << 20, arena);
                for (int i = 0; i < 6; i++) {
                    byte[] b = new byte[1 << 20];
                    rnd.nextBytes(b);
                    long at = (long) i * (10 << 20) + 65536L * i;
                    buf.copyFrom(MemorySegment.ofArray(b));
                    q.write(at, buf).get(30, TimeUnit.SECONDS);
                    System.arraycopy(b, 0, expect, (int) at, b.length);
                }
                q.flush().get(30, TimeUnit.SECONDS);
            } finally {
                q.close();
            }
            assertThat(rbd.size()).as("the RBD image grew under the qcow2 image").isGreaterThan(before + (6L << 20));
        }
        Path exported = dir.resolve("exported.qcow2");
        ceph.rbd("export", o.spec(), exported.toString());
        Tools.ok(60, "qemu-img", "check", exported.toString());
        Path raw = dir.resolve("raw");
        Tools.ok(60, "qemu-img", "convert", "-O", "raw", exported.toString(), raw.toString());
        assertThat(Arrays.mismatch(Files.readAllBytes(raw), expect)).as("first differing byte").isEqualTo(-1);
    }
}
