package io.biostack.nbd.tls;

/**
 * The TLS rules of option haggling (doc/proto.md, "TLS support"), as one pure function so that any
 * connection loop (today's blocking handshake, a reactor's state machine) applies the same rules:
 * what to do with an option, given the server's {@link TlsMode} and whether TLS is already up.
 */
public final class TlsPolicy {
    /** NBD_OPT_EXPORT_NAME, NBD_OPT_ABORT, NBD_OPT_STARTTLS (doc/proto.md, "Option types"). */
    static final int OPT_EXPORT_NAME = 1;
    static final int OPT_ABORT = 2;
    static final int OPT_STARTTLS = 5;

    private TlsPolicy() {
    }

    /** What the server does with an option. */
    public enum Verdict {
        /** Handle the option as usual. */
        GO_ON,
        /** Reply NBD_REP_ACK, then run the TLS handshake; everything after goes through TLS. */
        START_TLS,
        /** Reply NBD_REP_ERR_TLS_REQD ("FORCEDTLS mode": any option but STARTTLS and ABORT). */
        TLS_REQUIRED,
        /** Reply NBD_REP_ERR_POLICY ("NOTLS mode": STARTTLS when TLS is off). */
        POLICY,
        /** Reply NBD_REP_ERR_INVALID (STARTTLS with data, or when TLS is already up). */
        INVALID,
        /**
         * End the session: NBD_OPT_EXPORT_NAME before TLS under REQUIRE ("as this request cannot
         * error, it MUST terminate the session").
         */
        DISCONNECT
    }

    /**
     * The verdict for {@code option} carrying {@code length} bytes of data.
     *
     * @param mode      the server's TLS mode
     * @param tlsActive whether STARTTLS already succeeded on this connection
     * @param option    the NBD_OPT_* the client sent
     * @param length    the option's data length
     * @return what the option gets
     */
    public static Verdict check(TlsMode mode, boolean tlsActive, int option, long length) {
        if (option == OPT_STARTTLS) {
            if (mode == TlsMode.OFF) {
                return Verdict.POLICY;
            }
            // "If the server receives NBD_OPT_STARTTLS when TLS has already been negotiated, it
            // MUST reply with NBD_REP_ERR_INVALID."
            return tlsActive || length != 0 ? Verdict.INVALID : Verdict.START_TLS;
        }
        if (mode == TlsMode.REQUIRE && !tlsActive) {
            return switch (option) {
                case OPT_ABORT -> Verdict.GO_ON;
                case OPT_EXPORT_NAME -> Verdict.DISCONNECT;
                default -> Verdict.TLS_REQUIRED;
            };
        }
        return Verdict.GO_ON;
    }

    /**
     * The message sent with a verdict's error reply, for the client's user.
     *
     * @param v the verdict
     * @return the text, empty for verdicts that send none
     */
    public static String message(Verdict v) {
        return switch (v) {
            case TLS_REQUIRED -> "TLS is required: send NBD_OPT_STARTTLS first (nbds://, --tls)";
            case POLICY -> "TLS is not enabled on this server";
            case INVALID -> "NBD_OPT_STARTTLS takes no data and is allowed once";
            case DISCONNECT -> "NBD_OPT_EXPORT_NAME before TLS on a server that requires TLS";
            default -> "";
        };
    }
}
