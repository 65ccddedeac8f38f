package io.biostack.nbd;

import io.biostack.nbd.tls.TlsSession;
import io.biostack.nbd.tls.X509Credentials;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.security.Security;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * Run in a child JVM by {@link TlsSessionTest}: the JDK's engine reads its key limits
 * ({@code jdk.tls.keyLimits}, 2^37 bytes per AES-GCM key by default) once per JVM, so a limit
 * small enough to reach in a test must be set before any TLS class loads. Sends 256 KiB each
 * way over X.509 sessions whose keys must be updated every 64 KiB, and prints "ok" when both
 * sides got every byte. Argument: the folder of {@link TlsFixture}.
 */
final class KeyLimitProbe {
    private KeyLimitProbe() {
    }

    public static void main(String[] args) throws Exception {
        Security.setProperty("jdk.tls.keyLimits", "AES/GCM/NoPadding KeyUpdate 2^16, ChaCha20-Poly1305 KeyUpdate 2^16");
        Path root = Path.of(args[0]);
        TlsSession server = X509Credentials.server(root.resolve("x509"), false, List.of()).newServerSession("probe");
        TlsSession client = X509Credentials.client(root.resolve("nocert")).newClientSession("localhost");
        TlsSessionTest.pump(client, server);
        byte[] up = new byte[256 << 10];
        byte[] down = new byte[256 << 10];
        new Random(3).nextBytes(up);
        new Random(4).nextBytes(down);
        ByteBuffer gotUp = ByteBuffer.allocate(up.length);
        ByteBuffer gotDown = ByteBuffer.allocate(down.length);
        for (int off = 0; off < up.length; off += 16384) {
            client.writeApplication(ByteBuffer.wrap(up, off, 16384));
            server.writeApplication(ByteBuffer.wrap(down, off, 16384));
            TlsSessionTest.pump(client, server);
            server.readApplication(gotUp);
            client.readApplication(gotDown);
        }
        if (!Arrays.equals(gotUp.array(), up) || !Arrays.equals(gotDown.array(), down)) {
            System.out.println("bytes differ: " + gotUp.position() + " up, " + gotDown.position() + " down");
            System.exit(1);
        }
        System.out.println("ok " + server.describe());
    }
}
