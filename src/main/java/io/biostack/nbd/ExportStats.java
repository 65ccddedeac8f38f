package io.biostack.nbd;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;

/**
 * What one NBD export has seen: connections, requests by command, error replies by NBD error
 * value, and TLS handshakes refused (as nbdkit's stats filter and qemu's
 * {@code query-blockstats} report per export). The I/O of the export's device is counted by the
 * device itself ({@code DeviceStats}); this is what only the server knows.
 *
 * <p>Thread-safe and lock-free: striped adders ({@link LongAdder}), which allocate only when a
 * stripe is first contended, never per request. Call sites are the server's connection loop:
 * {@link #connectionOpened()} when a client reaches transmission on this export,
 * {@link #connectionClosed()} when that connection ends, {@link #request} per request read,
 * {@link #error} per error reply sent, {@link #tlsRefused()} when a TLS handshake for the export
 * fails or a client asks for it without TLS where TLS is required.
 */
public final class ExportStats {
    /** NBD_CMD_* names (NBD spec doc/proto.md, "Request types"), by command value. */
    private static final String[] COMMANDS = {"read", "write", "disc", "flush", "trim", "cache", "write_zeroes",
            "block_status", "resize"};
    private static final int OTHER_COMMAND = COMMANDS.length;

    /** NBD error values (doc/proto.md, "Error values"): the errno names they are equal to. */
    private static final Map<Integer, String> ERRORS = Map.of(1, "EPERM", 5, "EIO", 12, "ENOMEM", 22, "EINVAL",
            28, "ENOSPC", 75, "EOVERFLOW", 95, "ENOTSUP", 108, "ESHUTDOWN");
    private static final int MAX_ERRNO = 128;

    private final String name;
    private final LongAdder opened = new LongAdder();
    private final LongAdder closed = new LongAdder();
    private final LongAdder tlsRefused = new LongAdder();
    private final LongAdder readModifyWrite = new LongAdder();
    private final LongAdder oversized = new LongAdder();
    private final LongAdder[] requests = adders(COMMANDS.length + 1);
    private final LongAdder[] errors = adders(MAX_ERRNO + 1);

    /**
     * Counters for one export.
     *
     * @param name the export's name ("" for the default export)
     */
    public ExportStats(String name) {
        this.name = name;
    }

    private static LongAdder[] adders(int n) {
        LongAdder[] a = new LongAdder[n];
        for (int i = 0; i < n; i++) {
            a[i] = new LongAdder();
        }
        return a;
    }

    /**
     * The export these counters are for.
     *
     * @return its name
     */
    public String name() {
        return name;
    }

    /** A client entered transmission on this export. */
    public void connectionOpened() {
        opened.increment();
    }

    /** A connection on this export ended (for any reason). */
    public void connectionClosed() {
        closed.increment();
    }

    /**
     * A request arrived.
     *
     * @param nbdCommand its NBD_CMD_* (0 = READ)
     */
    public void request(int nbdCommand) {
        requests[nbdCommand >= 0 && nbdCommand < COMMANDS.length ? nbdCommand : OTHER_COMMAND].increment();
    }

    /**
     * An error reply was sent.
     *
     * @param nbdErrno its NBD error value (EIO = 5, ...)
     */
    public void error(int nbdErrno) {
        errors[nbdErrno > 0 && nbdErrno < MAX_ERRNO ? nbdErrno : MAX_ERRNO].increment();
    }

    /** A TLS handshake was refused or failed (or TLS was required and not asked for). */
    public void tlsRefused() {
        tlsRefused.increment();
    }

    /**
     * An unaligned request of a client that did not negotiate block sizes was served by
     * read-modify-write under the export's alignment (doc/proto.md, "Block size constraints").
     */
    public void readModifyWrite() {
        readModifyWrite.increment();
    }

    /**
     * A request over the maximum payload, from a client that did not negotiate block sizes, was
     * served (split to the device's limits).
     */
    public void oversized() {
        oversized.increment();
    }

    /**
     * The counts now.
     *
     * @param export          the export's name
     * @param opened     connections that reached transmission
     * @param closed     connections that ended
     * @param requests   requests by command name ("read", "write", ..., "other"), only those seen
     * @param errors     error replies by errno name ("EIO", ..., "E&lt;n&gt;" for others), only those seen
     * @param tlsRefused TLS handshakes refused
     * @param readModifyWrite unaligned requests served by read-modify-write
     * @param oversized  requests over the maximum payload served
     */
    public record Snapshot(String export, long opened, long closed, Map<String, Long> requests, Map<String, Long> errors,
                           long tlsRefused, long readModifyWrite, long oversized) {
        /**
         * Connections open now.
         *
         * @return opened less closed, never negative
         */
        public long connections() {
            return Math.max(0, opened - closed);
        }
    }

    /**
     * The counts now. Allocates; never blocks the server.
     *
     * @return a snapshot of every counter
     */
    public Snapshot snapshot() {
        long c = closed.sum(); // before opened: a connection is opened before it closes
        long o = opened.sum();
        Map<String, Long> req = new LinkedHashMap<>();
        for (int i = 0; i <= COMMANDS.length; i++) {
            long n = requests[i].sum();
            if (n != 0) {
                req.put(i < COMMANDS.length ? COMMANDS[i] : "other", n);
            }
        }
        Map<String, Long> err = new LinkedHashMap<>();
        for (int i = 1; i <= MAX_ERRNO; i++) {
            long n = errors[i].sum();
            if (n != 0) {
                err.put(i == MAX_ERRNO ? "other" : ERRORS.getOrDefault(i, "E" + i), n);
            }
        }
        return new Snapshot(name, o, c, req, err, tlsRefused.sum(), readModifyWrite.sum(), oversized.sum());
    }
}
