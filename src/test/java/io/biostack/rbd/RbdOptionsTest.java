package io.biostack.rbd;

import io.biostack.stack.Stack;
import io.biostack.stack.Targets;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The rbd line's syntax and the start-up probe for librbd; no Ceph needed. */
class RbdOptionsTest {
    @Test
    void poolSlashImageAloneTakesEveryDefault() {
        RbdOptions o = RbdOptions.parse(List.of("rbd/vol1"));
        assertThat(o).isEqualTo(new RbdOptions("rbd", "vol1", "admin", null, null, -1));
        assertThat(o.entity()).isEqualTo("client.admin");
        assertThat(o.spec()).isEqualTo("rbd/vol1");
    }

    @Test
    void everyOptionIsRead() {
        RbdOptions o = RbdOptions.parse(List.of("pool-a/img.1", "id=libvirt", "conf=/etc/ceph/x.conf",
                "keyring=/etc/ceph/k", "size=1G", "timeout=2m"));
        assertThat(o).isEqualTo(new RbdOptions("pool-a", "img.1", "libvirt", Path.of("/etc/ceph/x.conf"),
                Path.of("/etc/ceph/k"), 1L << 30, 120));
        assertThat(RbdOptions.parse(List.of("p/i", "timeout=30s")).timeoutSeconds()).isEqualTo(30);
        assertThat(RbdOptions.parse(List.of("p/i", "id=client.bob")).entity()).isEqualTo("client.bob");
    }

    @Test
    void badSpellingsSayWhatIsExpected() {
        assertThatThrownBy(() -> RbdOptions.parse(List.of())).hasMessageContaining("POOL/IMAGE");
        for (String bad : List.of("vol1", "/vol1", "rbd/", "a/b/c", "size=1G")) {
            assertThatThrownBy(() -> RbdOptions.parse(List.of(bad))).as(bad).hasMessageContaining("is not POOL/IMAGE");
        }
        assertThatThrownBy(() -> RbdOptions.parse(List.of("rbd/v", "sise=1G"))).hasMessageContaining("unknown option 'sise=1G'")
                .hasMessageContaining("size=");
        assertThatThrownBy(() -> RbdOptions.parse(List.of("rbd/v", "conf="))).hasMessageContaining("conf needs a value");
        assertThatThrownBy(() -> RbdOptions.parse(List.of("rbd/v", "size=12345"))).hasMessageContaining("multiple of 512");
        assertThatThrownBy(() -> RbdOptions.parse(List.of("rbd/v", "size=lots"))).hasMessageContaining("size");
        assertThatThrownBy(() -> RbdOptions.parse(List.of("rbd/v", "timeout=soon"))).hasMessageContaining("whole seconds");
    }

    @Test
    void aStackFileWithABadRbdLineFailsBeforeAnythingOpensAndNamesTheLine() {
        assertThat(Targets.kind("rbd")).isNotNull().extracting(Targets.Kind::leaf).isEqualTo(true);
        assertThatThrownBy(() -> Stack.open("disk0: ram 1M\nvol: rbd vol1 size=1G\n", "t.stack"))
                .hasMessageContaining("t.stack")
                .hasMessageContaining("rbd: 'vol1' is not POOL/IMAGE");
        assertThatThrownBy(() -> Stack.open("vol: rbd rbd/v1 bogus\n", "t.stack"))
                .hasMessageContaining("rbd: unknown option 'bogus'");
    }

    @Test
    void aMachineWithoutLibrbdIsToldWhichDebianPackageToInstall() {
        assertThatThrownBy(() -> Librbd.load("librbd-not-here.so.1", Librbd.LIBRADOS))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("librbd-not-here.so.1")
                .hasMessageContaining("librbd1")
                .hasMessageContaining("ceph-common");
    }
}
