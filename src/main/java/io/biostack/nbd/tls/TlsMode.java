package io.biostack.nbd.tls;

/** Whether an export offers TLS (nbdkit's {@code --tls} words). */
public enum TlsMode {
    /** No TLS: NBD_OPT_STARTTLS is answered NBD_REP_ERR_POLICY. */
    OFF,
    /** TLS offered, plain clients still served. */
    ON,
    /**
     * TLS required (doc/proto.md, "TLS support", FORCEDTLS): every option before STARTTLS but
     * ABORT gets NBD_REP_ERR_TLS_REQD; NBD_OPT_EXPORT_NAME before TLS ends the connection.
     */
    REQUIRE
}
