package io.biostack.nbd.client;

import org.junit.jupiter.api.Test;

import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** NBD URIs as libnbd and qemu spell them (doc/uri.md), and clear refusals of malformed ones. */
class NbdUriTest {
    @Test
    void tcpWithHostPortAndExport() {
        NbdUri u = NbdUri.parse("nbd://example.com:10810/vol%201");
        assertThat(u.tls()).isFalse();
        assertThat(u.host()).isEqualTo("example.com");
        assertThat(u.port()).isEqualTo(10810);
        assertThat(u.export()).isEqualTo("vol 1");
        assertThat(u.socket()).isNull();
        assertThat(u.endpoint()).isEqualTo("example.com:10810");
    }

    @Test
    void defaultPortDefaultExportAndIpv6() {
        NbdUri u = NbdUri.parse("nbd://10.0.0.2");
        assertThat(u.port()).isEqualTo(10809);
        assertThat(u.export()).isEmpty();
        NbdUri v6 = NbdUri.parse("nbd://[::1]:2000/x");
        assertThat(v6.host()).isEqualTo("::1");
        assertThat(v6.port()).isEqualTo(2000);
        assertThat(v6.endpoint()).isEqualTo("[::1]:2000");
    }

    @Test
    void unixSocketAndTlsVariants() {
        NbdUri u = NbdUri.parse("nbd+unix:///disk?socket=/run/nbd.sock");
        assertThat(u.socket()).isEqualTo(Path.of("/run/nbd.sock"));
        assertThat(u.host()).isNull();
        assertThat(u.export()).isEqualTo("disk");
        NbdUri t = NbdUri.parse("nbds://alice@h/e?tls-psk-file=/k/keys.psk");
        assertThat(t.tls()).isTrue();
        assertThat(t.user()).isEqualTo("alice");
        assertThat(t.tlsPskFile()).isEqualTo(Path.of("/k/keys.psk"));
        NbdUri x = NbdUri.parse("nbds+unix:///e?socket=/s&tls-certificates=/pki");
        assertThat(x.tls()).isTrue();
        assertThat(x.tlsCertificates()).isEqualTo(Path.of("/pki"));
        assertThat(NbdUri.looksLikeNbd("NBDS+UNIX:///e?socket=/s")).isTrue();
        assertThat(NbdUri.looksLikeNbd("disk.img")).isFalse();
    }

    @Test
    void malformedUrisAreRefusedWithTheReason() {
        assertThatThrownBy(() -> NbdUri.parse("disk.img")).hasMessageContaining("not an NBD URI")
                .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> NbdUri.parse("nbdx://h/e")).hasMessageContaining("unknown scheme 'nbdx'");
        assertThatThrownBy(() -> NbdUri.parse("nbd://h:99999/e")).hasMessageContaining("port '99999'");
        assertThatThrownBy(() -> NbdUri.parse("nbd://h:abc/e")).hasMessageContaining("port 'abc'");
        assertThatThrownBy(() -> NbdUri.parse("nbd:///e")).hasMessageContaining("missing host");
        assertThatThrownBy(() -> NbdUri.parse("nbd+unix:///e")).hasMessageContaining("needs ?socket=PATH");
        assertThatThrownBy(() -> NbdUri.parse("nbd+unix://h/e?socket=/s")).hasMessageContaining("has no host");
        assertThatThrownBy(() -> NbdUri.parse("nbd://h/e?tls-psk-file=/k")).hasMessageContaining("need an nbds://");
        assertThatThrownBy(() -> NbdUri.parse("nbd://h/e?sockte=/s")).hasMessageContaining("unknown query parameter 'sockte'");
        assertThatThrownBy(() -> NbdUri.parse("nbd://u:pw@h/e")).hasMessageContaining("password");
        assertThatThrownBy(() -> NbdUri.parse("nbd://[::1/e")).hasMessageContaining("unclosed '['");
        assertThatThrownBy(() -> NbdUri.parse("nbd://h/e%zz")).hasMessageContaining("percent-encoding");
    }
}
