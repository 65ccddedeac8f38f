package io.biostack.nbd.tls;

import java.nio.ByteBuffer;

/** What the first bytes from a peer must look like (RFC 8446 section 5.1, TLSPlaintext). */
final class TlsRecords {
    /** ContentType handshake (22): a ClientHello or ServerHello record starts with it. */
    static final int HANDSHAKE = 22;
    /** ContentType alert (21): a peer may refuse us with one before any handshake record. */
    static final int ALERT = 21;

    private TlsRecords() {
    }

    /**
     * Checks the first record header a peer sent: content type handshake or alert and a legacy
     * version 3.x. Anything else (a plain NBD option, an HTTP request) is refused with its first
     * bytes in hex, so the log says what came instead of TLS.
     */
    static void checkFirst(ByteBuffer net) throws TlsException {
        int p = net.position();
        int n = net.remaining();
        if (n == 0) {
            return;
        }
        int type = net.get(p) & 0xff;
        boolean ok = (type == HANDSHAKE || type == ALERT) && (n < 2 || (net.get(p + 1) & 0xff) == 3);
        if (!ok) {
            StringBuilder hex = new StringBuilder("0x");
            for (int i = 0; i < Math.min(4, n); i++) {
                hex.append(String.format("%02x", net.get(p + i) & 0xff));
            }
            throw new TlsException("not TLS: got " + hex);
        }
    }
}
