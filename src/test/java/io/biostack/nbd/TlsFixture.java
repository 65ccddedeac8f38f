package io.biostack.nbd;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * Certificates and pre-shared keys for TLS tests, made with GnuTLS's certtool and psktool (the
 * tools nbdkit's and qemu's manuals use) into a folder, once per test class. certtool writes RSA
 * keys in PKCS#1 and EC keys in SEC1 form; one client key is turned into PKCS#8 with openssl, so
 * every form the server must read is in use.
 *
 * <pre>
 * x509/      ca-cert.pem, server-cert.pem + server-key.pem (RSA, PKCS#1; CN and SAN localhost,
 *            127.0.0.1), client-cert.pem + client-key.pem (alice, EC SEC1): serves and connects
 * eve/       ca-cert.pem, client cert CN=eve from the same CA (PKCS#8 key)
 * rogue/     ca-cert.pem, client cert CN=alice from another CA
 * expired/   ca-cert.pem, client cert CN=alice from our CA, valid only in January 2020
 * nocert/    ca-cert.pem only
 * keys.psk   alice and bob; wrong.psk: alice with another key
 * </pre>
 */
final class TlsFixture {
    final Path root;
    final Path x509;
    final Path eve;
    final Path rogue;
    final Path expired;
    final Path nocert;
    final Path psk;
    final Path wrongPsk;

    private TlsFixture(Path root) {
        this.root = root;
        this.x509 = root.resolve("x509");
        this.eve = root.resolve("eve");
        this.rogue = root.resolve("rogue");
        this.expired = root.resolve("expired");
        this.nocert = root.resolve("nocert");
        this.psk = root.resolve("keys.psk");
        this.wrongPsk = root.resolve("wrong.psk");
    }

    /** Makes everything under {@code root}; fails (CI) or skips unless certtool and psktool exist. */
    static TlsFixture create(Path root) throws IOException, InterruptedException {
        Tools.require("certtool", "psktool", "openssl");
        TlsFixture f = new TlsFixture(root);
        f.make();
        return f;
    }

    private void make() throws IOException, InterruptedException {
        Path work = Files.createDirectories(root.resolve("work"));
        for (Path d : List.of(x509, eve, rogue, expired, nocert)) {
            Files.createDirectories(d);
        }
        // Our CA and another one.
        Path caKey = key(work.resolve("ca-key.pem"), "ecdsa");
        Path ca = selfSigned(work, "ca", caKey, "biostack test CA");
        Path otherKey = key(work.resolve("other-ca-key.pem"), "ecdsa");
        Path other = selfSigned(work, "other-ca", otherKey, "some other CA");
        for (Path d : List.of(x509, eve, rogue, expired, nocert)) {
            Files.copy(ca, d.resolve("ca-cert.pem"));
        }
        // The server: RSA in PKCS#1, as certtool writes it.
        key(x509.resolve("server-key.pem"), "rsa");
        signed(work, "server", x509.resolve("server-key.pem"), ca, caKey, x509.resolve("server-cert.pem"),
                "cn = \"localhost\"\ndns_name = \"localhost\"\nip_address = \"127.0.0.1\"\ntls_www_server\n"
                        + "encryption_key\nsigning_key\nexpiration_days = 30\n");
        String client = "tls_www_client\nsigning_key\nencryption_key\n";
        client(work, x509, "alice", ca, caKey, client + "expiration_days = 30\n");
        client(work, eve, "eve", ca, caKey, client + "expiration_days = 30\n");
        // eve's key in PKCS#8, as openssl 3 writes keys.
        Path sec1 = eve.resolve("client-key.pem");
        Tools.ok(30, "openssl", "pkcs8", "-topk8", "-nocrypt", "-in", sec1.toString(),
                "-out", work.resolve("eve-pkcs8.pem").toString());
        Files.move(work.resolve("eve-pkcs8.pem"), sec1, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        client(work, rogue, "alice", other, otherKey, client + "expiration_days = 30\n");
        client(work, expired, "alice", ca, caKey, client
                + "activation_date = \"2020-01-01 00:00:00\"\nexpiration_date = \"2020-02-01 00:00:00\"\n");
        Tools.ok(30, "psktool", "-u", "alice", "-p", psk.toString());
        Tools.ok(30, "psktool", "-u", "bob", "-p", psk.toString());
        Tools.ok(30, "psktool", "-u", "alice", "-p", wrongPsk.toString());
    }

    private void client(Path work, Path dir, String cn, Path ca, Path caKey, String template)
            throws IOException, InterruptedException {
        Path k = key(dir.resolve("client-key.pem"), "ecdsa");
        signed(work, dir.getFileName() + "-client", k, ca, caKey, dir.resolve("client-cert.pem"),
                "cn = \"" + cn + "\"\n" + template);
    }

    private static Path key(Path out, String type) throws IOException, InterruptedException {
        if (type.equals("rsa")) {
            Tools.ok(60, "certtool", "--generate-privkey", "--bits", "2048", "--outfile", out.toString());
        } else {
            Tools.ok(30, "certtool", "--generate-privkey", "--key-type=ecdsa", "--outfile", out.toString());
        }
        return out;
    }

    private static Path selfSigned(Path work, String name, Path key, String cn) throws IOException, InterruptedException {
        Path t = Files.writeString(work.resolve(name + ".tmpl"),
                "cn = \"" + cn + "\"\nca\ncert_signing_key\nexpiration_days = 30\n");
        Path out = work.resolve(name + "-cert.pem");
        Tools.ok(30, "certtool", "--generate-self-signed", "--load-privkey", key.toString(), "--template", t.toString(),
                "--outfile", out.toString());
        return out;
    }

    private static void signed(Path work, String name, Path key, Path ca, Path caKey, Path out, String template)
            throws IOException, InterruptedException {
        Path t = Files.writeString(work.resolve(name + ".tmpl"), template);
        Tools.ok(30, "certtool", "--generate-certificate", "--load-privkey", key.toString(),
                "--load-ca-certificate", ca.toString(), "--load-ca-privkey", caKey.toString(),
                "--template", t.toString(), "--outfile", out.toString());
    }
}
