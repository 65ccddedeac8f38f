package io.biostack.nbd.tls;

import org.bouncycastle.tls.BasicTlsPSKExternal;
import org.bouncycastle.tls.BasicTlsPSKIdentity;
import org.bouncycastle.tls.CipherSuite;
import org.bouncycastle.tls.PRFAlgorithm;
import org.bouncycastle.tls.ProtocolVersion;
import org.bouncycastle.tls.TlsPSKExternal;
import org.bouncycastle.tls.TlsUtils;
import org.bouncycastle.tls.crypto.TlsCrypto;
import org.bouncycastle.tls.crypto.impl.jcajce.JcaTlsCryptoProvider;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Pre-shared keys from a file in the format {@code psktool} writes and nbdkit and qemu
 * ({@code tls-creds-psk}) read: one {@code username:hexkey} per line. Sessions run on
 * BouncyCastle's TLS API (the JDK's TLS has no PSK), with BouncyCastle's JCA crypto so that
 * AES-GCM is still the JDK's intrinsified cipher.
 *
 * <p>TLS 1.3 with an external PSK and ECDHE (RFC 8446 section 4.2.9, psk_dhe_ke) is preferred;
 * TLS 1.2 with ECDHE_PSK or DHE_PSK and AES-GCM (RFC 5489, RFC 5487) is accepted.
 */
public final class PskCredentials implements TlsCredentials {
    static final ProtocolVersion[] VERSIONS = ProtocolVersion.TLSv13.downTo(ProtocolVersion.TLSv12);
    /**
     * TLS 1.3 suites first, then the TLS 1.2 PSK suites with forward secrecy and an AEAD. In TLS 1.3
     * only the SHA-256 suites: a PSK is bound to its hash (RFC 8446 section 4.2.11), psktool's keys
     * go with SHA-256, and GnuTLS offers TLS_AES_256_GCM_SHA384 first.
     */
    private static final int[] SUITES = {
        CipherSuite.TLS_AES_128_GCM_SHA256,
        CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
        CipherSuite.TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256,
        CipherSuite.TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384,
        CipherSuite.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
        CipherSuite.TLS_DHE_PSK_WITH_AES_128_GCM_SHA256,
        CipherSuite.TLS_DHE_PSK_WITH_AES_256_GCM_SHA384,
        CipherSuite.TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
    };

    final TlsCrypto crypto = new JcaTlsCryptoProvider().create(new SecureRandom());
    final int[] suites = TlsUtils.getSupportedCipherSuites(crypto, SUITES);
    private final Map<String, byte[]> keys;
    final AllowList allow;
    private final String user;

    private PskCredentials(Map<String, byte[]> keys, AllowList allow, String user) {
        this.keys = keys;
        this.allow = allow;
        this.user = user;
    }

    /**
     * Server credentials: every user of {@code file}, or only those in {@code allow} if given.
     *
     * @param file  username:hexkey lines, as psktool writes them
     * @param allow the users let in, or empty for every user of the file
     * @return the credentials
     * @throws TlsException when the file can't be read or holds a bad line
     */
    public static PskCredentials server(Path file, List<String> allow) throws TlsException {
        return new PskCredentials(read(file), new AllowList(allow), null);
    }

    /**
     * Client credentials: {@code user}'s key from {@code file}.
     *
     * @param file username:hexkey lines, as psktool writes them
     * @param user the identity to show
     * @return the credentials
     * @throws TlsException when the file can't be read or has no key for {@code user}
     */
    public static PskCredentials client(Path file, String user) throws TlsException {
        Map<String, byte[]> k = read(file);
        if (!k.containsKey(user)) {
            throw new TlsException(file + " has no key for '" + user + "'");
        }
        return new PskCredentials(k, AllowList.ANY, user);
    }

    @Override
    public TlsSession newServerSession(String peer) throws TlsException {
        return BcTlsSession.server(this, peer);
    }

    @Override
    public TlsSession newClientSession(String serverName) throws TlsException {
        if (user == null) {
            throw new TlsException("PSK server credentials have no username to connect as");
        }
        return BcTlsSession.client(this, user);
    }

    /** The key for {@code identity}, or null when unknown. */
    byte[] key(String identity) {
        return keys.get(identity);
    }

    /** A TLS 1.3 external PSK for {@code identity} (psktool keys go with SHA-256, as GnuTLS does). */
    TlsPSKExternal external(String identity) {
        byte[] id = identity.getBytes(StandardCharsets.UTF_8);
        return new BasicTlsPSKExternal(id, crypto.createSecret(keys.get(identity)), PRFAlgorithm.tls13_hkdf_sha256);
    }

    BasicTlsPSKIdentity identity() {
        return new BasicTlsPSKIdentity(user, keys.get(user));
    }

    @Override
    public String toString() {
        return "PSK (" + keys.size() + " users" + (allow.isEmpty() ? "" : ", allowed " + allow.names()) + ")";
    }

    /** Parses {@code username:hexkey} lines; blank lines and {@code #} comments are skipped. */
    static Map<String, byte[]> read(Path file) throws TlsException {
        List<String> lines;
        try {
            lines = Files.readAllLines(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new TlsException(file + ": no such file");
        } catch (IOException e) {
            throw new TlsException(file + ": " + e.getMessage());
        }
        Map<String, byte[]> m = new LinkedHashMap<>();
        int n = 0;
        for (String line : lines) {
            n++;
            String l = line.strip();
            if (l.isEmpty() || l.startsWith("#")) {
                continue;
            }
            int colon = l.lastIndexOf(':');
            if (colon <= 0) {
                throw new TlsException(file + " line " + n + ": want username:hexkey (as psktool writes)");
            }
            byte[] key;
            try {
                key = HexFormat.of().parseHex(l.substring(colon + 1));
            } catch (IllegalArgumentException e) {
                throw new TlsException(file + " line " + n + ": the key is not hex");
            }
            if (key.length == 0) {
                throw new TlsException(file + " line " + n + ": empty key");
            }
            m.put(l.substring(0, colon), key);
        }
        if (m.isEmpty()) {
            throw new TlsException(file + ": no username:hexkey line in it");
        }
        return m;
    }
}
