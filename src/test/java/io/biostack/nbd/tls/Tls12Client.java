package io.biostack.nbd.tls;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManagerFactory;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;

/**
 * A client session on the JDK's engine held to TLS 1.2, which {@link X509Credentials} clients
 * never choose on their own (they offer 1.3 first): for the server's TLS 1.2 paths from a raw
 * client. Trusts {@code ca-cert.pem} of {@code dir}; shows no certificate.
 */
public final class Tls12Client {
    private Tls12Client() {
    }

    public static TlsSession session(Path dir) throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (InputStream in = Files.newInputStream(dir.resolve("ca-cert.pem"))) {
            trust.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        SSLEngine e = ctx.createSSLEngine("localhost", 10809);
        e.setUseClientMode(true);
        SSLParameters p = e.getSSLParameters();
        p.setProtocols(new String[] {"TLSv1.2"});
        e.setSSLParameters(p);
        return new JdkTlsSession(e, "localhost", AllowList.ANY);
    }
}
