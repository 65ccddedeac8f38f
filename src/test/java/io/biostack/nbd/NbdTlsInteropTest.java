package io.biostack.nbd;

import io.biostack.nbd.tls.PskCredentials;
import io.biostack.nbd.tls.TlsChannel;
import io.biostack.nbd.tls.TlsCredentials;
import io.biostack.nbd.tls.X509Credentials;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The TLS engine against the other TLS stacks, outside NBD: a loopback server that runs a server
 * session and greets the client with what was negotiated, and {@code openssl s_client} and
 * {@code gnutls-cli} as clients, for TLS 1.3 and for TLS 1.2 (which the NBD clients here never
 * choose on their own) with certificates and with pre-shared keys.
 */
@Timeout(60)
class NbdTlsInteropTest {
    @TempDir
    static java.nio.file.Path keys;
    static TlsFixture tls;
    ServerSocketChannel listener;
    final List<Process> started = new ArrayList<>();

    @BeforeAll
    static void credentials() throws Exception {
        tls = TlsFixture.create(keys);
    }

    @AfterEach
    void stop() throws Exception {
        for (Process p : started) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
        if (listener != null) {
            listener.close();
        }
    }

    /** Serves one client: TLS handshake, then "hello <protocol> <suite> <peer>\n"; the result is the greeting or the refusal. */
    CompletableFuture<String> serveOne(TlsCredentials creds) throws Exception {
        listener = ServerSocketChannel.open(StandardProtocolFamily.INET);
        listener.bind(new InetSocketAddress("127.0.0.1", 0));
        return CompletableFuture.supplyAsync(() -> {
            try (SocketChannel ch = listener.accept()) {
                TlsChannel t = TlsChannel.handshake(ch, creds.newServerSession("test"));
                String hello = "hello " + t.session().describe() + " " + t.session().peerIdentity() + "\n";
                t.write(ByteBuffer.wrap(hello.getBytes(StandardCharsets.UTF_8)));
                ByteBuffer b = ByteBuffer.allocate(256);
                t.read(b); // until the client says something or leaves
                return hello.strip();
            } catch (Exception e) {
                return "refused: " + e.getMessage();
            }
        });
    }

    int port() throws Exception {
        return ((InetSocketAddress) listener.getLocalAddress()).getPort();
    }

    /** Runs a client with stdin held open until it printed {@code until} (or 20 s); returns its output. */
    String client(String until, String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        started.add(p);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        InputStream in = p.getInputStream();
        long deadline = System.nanoTime() + 20_000_000_000L;
        byte[] b = new byte[4096];
        while (System.nanoTime() < deadline && !out.toString(StandardCharsets.UTF_8).contains(until)) {
            if (in.available() > 0) {
                int n = in.read(b);
                if (n < 0) {
                    break;
                }
                out.write(b, 0, n);
            } else if (!p.isAlive()) {
                out.write(in.readAllBytes());
                break;
            } else {
                Thread.sleep(10);
            }
        }
        try {
            p.getOutputStream().write("bye\n".getBytes(StandardCharsets.UTF_8));
            p.getOutputStream().close();
        } catch (java.io.IOException e) {
            // the client has already gone
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    void opensslX509(String version, String expect) throws Exception {
        Tools.require("openssl");
        CompletableFuture<String> server = serveOne(X509Credentials.server(tls.x509, true, List.of("alice")));
        String out = client("hello ", "openssl", "s_client", "-connect", "127.0.0.1:" + port(), version,
                "-CAfile", tls.x509.resolve("ca-cert.pem").toString(), "-verify_return_error", "-verify_hostname",
                "localhost", "-cert", tls.x509.resolve("client-cert.pem").toString(),
                "-key", tls.x509.resolve("client-key.pem").toString(), "-quiet");
        assertThat(out).contains("hello " + expect).contains("CN=alice");
        assertThat(server.get(20, TimeUnit.SECONDS)).startsWith("hello " + expect);
    }

    @Test
    void opensslClientWithCertificateOverTls13() throws Exception {
        opensslX509("-tls1_3", "TLSv1.3 TLS_AES_128_GCM_SHA256");
    }

    @Test
    void opensslClientWithCertificateOverTls12() throws Exception {
        opensslX509("-tls1_2", "TLSv1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    }

    @Test
    void opensslTls11IsRefused() throws Exception {
        Tools.require("openssl");
        CompletableFuture<String> server = serveOne(X509Credentials.server(tls.x509, false, List.of()));
        client("hello ", "openssl", "s_client", "-connect", "127.0.0.1:" + port(), "-tls1_1", "-quiet");
        assertThat(server.get(20, TimeUnit.SECONDS)).startsWith("refused: ");
    }

    void gnutlsPsk(String priority, String expect) throws Exception {
        Tools.require("gnutls-cli");
        CompletableFuture<String> server = serveOne(PskCredentials.server(tls.psk, List.of()));
        String line = Files.readAllLines(tls.psk).stream().filter(l -> l.startsWith("bob:")).findFirst().orElseThrow();
        String out = client("hello ", "gnutls-cli", "--priority", priority, "--pskusername", "bob",
                "--pskkey", line.substring(4), "-p", String.valueOf(port()), "127.0.0.1");
        String seen = server.get(20, TimeUnit.SECONDS);
        assertThat(seen).startsWith("hello " + expect);
        assertThat(out).contains("hello " + expect).contains(" bob");
    }

    @Test
    void gnutlsClientWithPskOverTls13() throws Exception {
        gnutlsPsk("NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", "TLSv1.3 PSK");
    }

    /** openssl here: gnutls-cli 3.7.9 crashes printing the session after any TLS 1.2 PSK handshake. */
    @Test
    void opensslClientWithPskOverTls12() throws Exception {
        Tools.require("openssl");
        CompletableFuture<String> server = serveOne(PskCredentials.server(tls.psk, List.of()));
        String line = Files.readAllLines(tls.psk).stream().filter(l -> l.startsWith("bob:")).findFirst().orElseThrow();
        String out = client("hello ", "openssl", "s_client", "-connect", "127.0.0.1:" + port(), "-tls1_2",
                "-psk_identity", "bob", "-psk", line.substring(4), "-quiet");
        String seen = server.get(20, TimeUnit.SECONDS);
        assertThat(seen).startsWith("hello TLSv1.2 PSK");
        assertThat(out).contains("hello TLSv1.2 PSK").contains(" bob");
    }
}
