package io.biostack.nbd;

import io.biostack.layer.qcow2.Qcow2Device;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * TRIM and WRITE_ZEROES with NBD_CMD_FLAG_FUA: "the server MUST NOT send its reply until the
 * change is persisted" (doc/proto.md, "NBD_CMD_FLAG_FUA"). A qcow2 export keeps its L2 changes in
 * its metadata cache until a flush, so the reply must wait for one; the oracle is qemu-io reading
 * the image file while the server still runs.
 */
@Timeout(60)
class NbdFuaZeroTest {
    @TempDir
    Path dir;

    @Test
    void trimAndWriteZeroesWithFuaAreOnTheImageWhenAnswered() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        Path img = dir.resolve("fua.qcow2");
        Path sock = dir.resolve("nbd.sock");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), "4M");
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x55 0 128k", img.toString());
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
             Qcow2Device q = Qcow2Device.open("q", c, new Qcow2Device.Options(false, -1, null, true, img, null,
                     img.toString()));
             NbdServer s = NbdServer.builder().export(NbdExport.of("q", q)).unixSocket(sock).start();
             RawNbdClient client = RawNbdClient.open(sock, "q", false, false)) {
            assertThat(client.command(CMD_FLAG_FUA, CMD_WRITE_ZEROES, 0, 65536)).isZero();
            assertThat(client.command(CMD_FLAG_FUA, CMD_TRIM, 65536, 65536)).isZero();
            Tools.Result r = Tools.ok(30, "qemu-io", "-r", "-U", "-f", "qcow2",
                    "-c", "read -P 0 0 64k", "-c", "read -P 0 64k 64k", img.toString());
            assertThat(r.out()).as("the image file, read by qemu-io").doesNotContain("Pattern verification failed");
        }
    }
}
