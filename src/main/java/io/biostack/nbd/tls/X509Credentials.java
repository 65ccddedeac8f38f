package io.biostack.nbd.tls;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedKeyManager;
import javax.net.ssl.X509ExtendedTrustManager;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.util.List;

/**
 * X.509 credentials from a directory in the layout nbdkit, qemu ({@code tls-creds-x509}) and
 * libnbd ({@code tls-certificates=DIR}) share: {@code ca-cert.pem}, and {@code server-cert.pem}
 * + {@code server-key.pem} for a server or {@code client-cert.pem} + {@code client-key.pem} for a
 * client (optional unless the server verifies peers). Sessions run on the JDK's SSLEngine.
 *
 * <p>TLS 1.3 is preferred and 1.2 accepted (doc/proto.md "TLS versions": MUST 1.2, SHOULD later);
 * nothing older is enabled.
 */
public final class X509Credentials implements TlsCredentials {
    static final String[] PROTOCOLS = {"TLSv1.3", "TLSv1.2"};

    private final SSLContext context;
    private final boolean server;
    private final boolean verifyPeer;
    private final AllowList allow;

    private X509Credentials(SSLContext context, boolean server, boolean verifyPeer, AllowList allow) {
        this.context = context;
        this.server = server;
        this.verifyPeer = verifyPeer;
        this.allow = allow;
    }

    /**
     * Server credentials from {@code dir}. With {@code verifyPeer} (or a non-empty {@code allow},
     * which needs a name to check) a client must show a certificate signed by {@code ca-cert.pem};
     * {@code allow} then lists the subjects (CN or whole DN) let in.
     *
     * @param dir        server-cert.pem, server-key.pem and (to verify clients) ca-cert.pem
     * @param verifyPeer require a client certificate signed by ca-cert.pem
     * @param allow      the client subjects let in, or empty for any
     * @return the credentials
     * @throws TlsException when a file is missing or can't be read
     */
    public static X509Credentials server(Path dir, boolean verifyPeer, List<String> allow) throws TlsException {
        AllowList a = new AllowList(allow);
        boolean verify = verifyPeer || !a.isEmpty();
        KeyStore keys = keyStore(dir.resolve("server-cert.pem"), dir.resolve("server-key.pem"));
        KeyStore trust = verify ? trustStore(dir.resolve("ca-cert.pem")) : null;
        return new X509Credentials(context(keys, trust), true, verify, a);
    }

    /**
     * Client credentials from {@code dir}: trusts {@code ca-cert.pem}, and shows
     * {@code client-cert.pem} when it is there.
     *
     * @param dir ca-cert.pem, and optionally client-cert.pem with client-key.pem
     * @return the credentials
     * @throws TlsException when a file is missing or can't be read
     */
    public static X509Credentials client(Path dir) throws TlsException {
        Path cert = dir.resolve("client-cert.pem");
        KeyStore keys = Files.exists(cert) ? keyStore(cert, dir.resolve("client-key.pem")) : null;
        return new X509Credentials(context(keys, trustStore(dir.resolve("ca-cert.pem"))), false, false, AllowList.ANY);
    }

    @Override
    public TlsSession newServerSession(String peer) throws TlsException {
        if (!server) {
            throw new TlsException("these are client credentials (client-cert.pem), not a server's");
        }
        SSLEngine e = context.createSSLEngine();
        e.setUseClientMode(false);
        SSLParameters p = e.getSSLParameters();
        p.setProtocols(PROTOCOLS);
        p.setNeedClientAuth(verifyPeer);
        p.setCipherSuites(fastFirst(p.getCipherSuites()));
        p.setUseCipherSuitesOrder(true);
        e.setSSLParameters(p);
        return new JdkTlsSession(e, peer, allow);
    }

    @Override
    public TlsSession newClientSession(String serverName) throws TlsException {
        if (server) {
            throw new TlsException("these are server credentials (server-cert.pem), not a client's");
        }
        SSLEngine e = serverName == null ? context.createSSLEngine() : context.createSSLEngine(serverName, 10809);
        e.setUseClientMode(true);
        SSLParameters p = e.getSSLParameters();
        p.setProtocols(PROTOCOLS);
        if (serverName != null) {
            // The server's certificate must name the host, as GnuTLS checks for libnbd and qemu.
            p.setEndpointIdentificationAlgorithm("HTTPS");
        }
        e.setSSLParameters(p);
        return new JdkTlsSession(e, serverName, AllowList.ANY);
    }

    /**
     * The engine's suites with AES-128-GCM first: as safe for TLS (RFC 8446 section 9.1 makes
     * TLS_AES_128_GCM_SHA256 the one every TLS 1.3 peer must have) and 10 AES rounds where
     * AES-256 takes 14: about 12% less CPU per byte on the JDK's intrinsics, measured.
     */
    static String[] fastFirst(String[] suites) {
        java.util.List<String> l = new java.util.ArrayList<>(java.util.List.of(suites));
        l.sort(java.util.Comparator.comparingInt(x -> x.contains("AES_128_GCM") ? 0 : 1));
        return l.toArray(new String[0]);
    }

    @Override
    public String toString() {
        return "X.509" + (verifyPeer ? ", client certificates verified" : "")
                + (allow.isEmpty() ? "" : ", allowed " + allow.names());
    }

    // ---- loading ---------------------------------------------------------------------------

    private static KeyStore keyStore(Path certFile, Path keyFile) throws TlsException {
        List<X509Certificate> chain = Pem.certificates(certFile);
        PrivateKey key = Pem.privateKey(keyFile);
        try {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            ks.setKeyEntry("key", key, new char[0], chain.toArray(new X509Certificate[0]));
            return ks;
        } catch (GeneralSecurityException | java.io.IOException e) {
            throw new TlsException(keyFile + " does not go with " + certFile + ": " + e.getMessage());
        }
    }

    private static KeyStore trustStore(Path caFile) throws TlsException {
        try {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            int i = 0;
            for (X509Certificate c : Pem.certificates(caFile)) {
                ks.setCertificateEntry("ca" + i++, c);
            }
            return ks;
        } catch (GeneralSecurityException | java.io.IOException e) {
            throw new TlsException(caFile + ": " + e.getMessage());
        }
    }

    private static SSLContext context(KeyStore keys, KeyStore trust) throws TlsException {
        try {
            SSLContext c = SSLContext.getInstance("TLS");
            KeyManagerFactory kmf = null;
            if (keys != null) {
                kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
                kmf.init(keys, new char[0]);
            }
            javax.net.ssl.TrustManager[] tm = null;
            if (trust != null) {
                TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
                tmf.init(trust);
                tm = new javax.net.ssl.TrustManager[] {new NoIssuerHints((X509ExtendedTrustManager) tmf.getTrustManagers()[0])};
            }
            javax.net.ssl.KeyManager[] km = null;
            if (kmf != null) {
                km = new javax.net.ssl.KeyManager[] {new AnyIssuer((X509ExtendedKeyManager) kmf.getKeyManagers()[0])};
            }
            c.init(km, tm,
                    new SecureRandom());
            return c;
        } catch (GeneralSecurityException e) {
            throw new TlsException("can't set up TLS: " + e.getMessage());
        }
    }

    /**
     * Shows our one certificate whatever CAs the server names in its CertificateRequest, as
     * GnuTLS does: the JDK would otherwise send none when the issuer is not named, and the
     * server's log would say "no certificate" where "not signed by the CA" is the truth.
     */
    private static final class AnyIssuer extends X509ExtendedKeyManager {
        private final X509ExtendedKeyManager km;

        AnyIssuer(X509ExtendedKeyManager km) {
            this.km = km;
        }

        @Override
        public String chooseEngineClientAlias(String[] keyType, java.security.Principal[] issuers, SSLEngine e) {
            return km.chooseEngineClientAlias(keyType, null, e);
        }

        @Override
        public String chooseEngineServerAlias(String keyType, java.security.Principal[] issuers, SSLEngine e) {
            return km.chooseEngineServerAlias(keyType, issuers, e);
        }

        @Override
        public String[] getClientAliases(String keyType, java.security.Principal[] issuers) {
            return km.getClientAliases(keyType, null);
        }

        @Override
        public String chooseClientAlias(String[] keyType, java.security.Principal[] issuers, java.net.Socket s) {
            return km.chooseClientAlias(keyType, null, s);
        }

        @Override
        public String[] getServerAliases(String keyType, java.security.Principal[] issuers) {
            return km.getServerAliases(keyType, issuers);
        }

        @Override
        public String chooseServerAlias(String keyType, java.security.Principal[] issuers, java.net.Socket s) {
            return km.chooseServerAlias(keyType, issuers, s);
        }

        @Override
        public X509Certificate[] getCertificateChain(String alias) {
            return km.getCertificateChain(alias);
        }

        @Override
        public PrivateKey getPrivateKey(String alias) {
            return km.getPrivateKey(alias);
        }
    }

    /**
     * Checks chains as PKIX does but names no CA in the CertificateRequest: GnuTLS clients (libnbd,
     * qemu) send no certificate when its issuer is not named, so the server's log would say "no
     * client certificate" for a certificate from another CA; with no names they send it, and the
     * log says what is wrong with it.
     */
    private static final class NoIssuerHints extends X509ExtendedTrustManager {
        private final X509ExtendedTrustManager tm;

        NoIssuerHints(X509ExtendedTrustManager tm) {
            this.tm = tm;
        }

        @Override
        public void checkClientTrusted(X509Certificate[] chain, String authType, java.net.Socket s)
                throws java.security.cert.CertificateException {
            tm.checkClientTrusted(chain, authType, s);
        }

        @Override
        public void checkServerTrusted(X509Certificate[] chain, String authType, java.net.Socket s)
                throws java.security.cert.CertificateException {
            tm.checkServerTrusted(chain, authType, s);
        }

        @Override
        public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine e)
                throws java.security.cert.CertificateException {
            tm.checkClientTrusted(chain, authType, e);
        }

        @Override
        public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine e)
                throws java.security.cert.CertificateException {
            tm.checkServerTrusted(chain, authType, e);
        }

        @Override
        public void checkClientTrusted(X509Certificate[] chain, String authType)
                throws java.security.cert.CertificateException {
            tm.checkClientTrusted(chain, authType);
        }

        @Override
        public void checkServerTrusted(X509Certificate[] chain, String authType)
                throws java.security.cert.CertificateException {
            tm.checkServerTrusted(chain, authType);
        }

        @Override
        public X509Certificate[] getAcceptedIssuers() {
            return new X509Certificate[0];
        }
    }
}
