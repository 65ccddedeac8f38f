package io.biostack.nbd;

import java.text.MessageFormat;
import java.util.ArrayList;
import java.util.List;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/**
 * The WARNING (and worse) lines the NBD server logs while attached, formatted as a user reads
 * them; a line logged with a stack trace ends in " WITH A STACK TRACE" (refusals must be one
 * line, without one). Thread-safe: the server logs from its reactor threads.
 */
final class WarningLog extends Handler {
    private static final Logger NBD = Logger.getLogger("io.biostack.nbd");
    private final List<String> lines = new ArrayList<>();

    /** Starts collecting; {@link #close()} stops. */
    static WarningLog attach() {
        WarningLog w = new WarningLog();
        NBD.addHandler(w);
        return w;
    }

    @Override
    public void publish(LogRecord r) {
        if (r.getLevel().intValue() >= Level.WARNING.intValue()) {
            String line = MessageFormat.format(r.getMessage(), r.getParameters())
                    + (r.getThrown() != null ? " WITH A STACK TRACE" : "");
            synchronized (lines) {
                lines.add(line);
            }
        }
    }

    /** The lines so far. */
    List<String> lines() {
        return since(0);
    }

    /** The lines after the first {@code n}. */
    List<String> since(int n) {
        synchronized (lines) {
            return new ArrayList<>(lines.subList(n, lines.size()));
        }
    }

    /** How many lines so far. */
    int size() {
        synchronized (lines) {
            return lines.size();
        }
    }

    @Override
    public void flush() {
    }

    @Override
    public void close() {
        NBD.removeHandler(this);
    }
}
