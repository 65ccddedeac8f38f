package io.biostack.nbd.tls;

import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.openssl.PEMKeyPair;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;

import java.io.IOException;
import java.io.InputStream;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.PrivateKey;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads the PEM files that certtool and openssl write: certificates (one or a chain) and private
 * keys in any of the three forms they use: PKCS#8 ({@code BEGIN PRIVATE KEY}, openssl 3's
 * default), PKCS#1 RSA ({@code BEGIN RSA PRIVATE KEY}, certtool's) and SEC1 EC
 * ({@code BEGIN EC PRIVATE KEY}). Encrypted keys are refused with a clear message: the server
 * runs unattended and has nobody to ask for a passphrase (nbdkit and qemu refuse them too).
 */
final class Pem {
    private Pem() {
    }

    static List<X509Certificate> certificates(Path file) throws TlsException {
        try (InputStream in = Files.newInputStream(file)) {
            List<X509Certificate> l = new ArrayList<>();
            for (var c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                l.add((X509Certificate) c);
            }
            if (l.isEmpty()) {
                throw new TlsException(file + ": no certificate in it");
            }
            return l;
        } catch (NoSuchFileException e) {
            throw new TlsException(file + ": no such file");
        } catch (IOException | CertificateException e) {
            throw new TlsException(file + ": not a PEM certificate: " + e.getMessage());
        }
    }

    static PrivateKey privateKey(Path file) throws TlsException {
        try (Reader r = Files.newBufferedReader(file); PEMParser p = new PEMParser(r)) {
            JcaPEMKeyConverter conv = new JcaPEMKeyConverter();
            for (Object o = p.readObject(); o != null; o = p.readObject()) {
                if (o instanceof PrivateKeyInfo pk) {
                    return conv.getPrivateKey(pk);
                }
                if (o instanceof PEMKeyPair kp) {
                    return conv.getKeyPair(kp).getPrivate();
                }
                String kind = o.getClass().getSimpleName();
                if (kind.contains("Encrypted")) {
                    throw new TlsException(file + ": the key is encrypted; give it unencrypted "
                            + "(openssl pkey -in KEY -out KEY.plain)");
                }
                // EC parameters ahead of the key (openssl ecparam -genkey writes them): skip.
            }
            throw new TlsException(file + ": no private key in it");
        } catch (NoSuchFileException e) {
            throw new TlsException(file + ": no such file");
        } catch (TlsException e) {
            throw e;
        } catch (IOException e) {
            throw new TlsException(file + ": not a PEM private key: " + e.getMessage());
        }
    }
}
