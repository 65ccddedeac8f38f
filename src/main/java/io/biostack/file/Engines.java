package io.biostack.file;

import io.biostack.sys.ErrnoException;
import io.biostack.uring.IoUring;

import java.util.EnumMap;
import java.util.Map;

/**
 * Starts file engines on demand and shares them between backing files: one io_uring worker (or
 * one thread pool) serves every file of the process. The last file to close stops the engine.
 * Choosing {@link EngineKind#AUTO} probes io_uring once and says what it chose in one log line.
 */
final class Engines {
    private static final System.Logger LOG = System.getLogger("biostack.file");
    private static final Map<EngineKind, FileEngine> RUNNING = new EnumMap<>(EngineKind.class);
    private static final Map<EngineKind, Integer> USERS = new EnumMap<>(EngineKind.class);
    private static final Map<EngineKind, String> WHY = new EnumMap<>(EngineKind.class);

    private Engines() {
    }

    /** Takes a reference on an engine of {@code wanted}; release it with {@link #release}. */
    static synchronized FileEngine acquire(EngineKind wanted) {
        EngineKind kind = wanted;
        String why = "";
        if (kind == EngineKind.AUTO) {
            if (System.getProperty("biostack.engine", "auto").equals("threads")) {
                kind = EngineKind.THREADS;
                why = " (forced by -Dbiostack.engine=threads)";
            } else if (IoUring.isAvailable()) {
                kind = EngineKind.URING;
            } else {
                kind = EngineKind.THREADS;
                why = " (io_uring unavailable: " + IoUring.unavailableReason().orElse("unknown") + ")";
            }
        }
        FileEngine e = RUNNING.get(kind);
        if (e == null) {
            e = startEngine(kind);
            RUNNING.put(kind, e);
            USERS.put(kind, 0);
            WHY.put(kind, why);
            // Not INFO: the one line that says what the I/O runs on is the user's (the NBD server's
            // start line, bench's header), which takes it from running() or describe(kind).
            LOG.log(System.Logger.Level.DEBUG, "file engine: " + e.describe() + why);
        }
        USERS.merge(kind, 1, Integer::sum);
        return e;
    }

    private static FileEngine startEngine(EngineKind kind) {
        if (kind == EngineKind.URING) {
            if (!IoUring.isAvailable()) {
                throw new IllegalStateException("io_uring is not available: "
                        + IoUring.unavailableReason().orElse("unknown") + " (use --engine threads or auto)");
            }
            try {
                return UringEngine.start();
            } catch (ErrnoException e) {
                throw new IllegalStateException("io_uring setup failed: " + e.getMessage(), e);
            }
        }
        return new ThreadEngine(Integer.getInteger("biostack.io.threads", 8));
    }

    /** The running engines as "io_uring (...)" (with why it was chosen), or "" when none runs. */
    static synchronized String running() {
        StringBuilder b = new StringBuilder();
        for (Map.Entry<EngineKind, FileEngine> e : RUNNING.entrySet()) {
            b.append(b.isEmpty() ? "" : ", ").append(e.getValue().describe()).append(WHY.getOrDefault(e.getKey(), ""));
        }
        return b.toString();
    }

    /** Why {@code kind} was chosen (" (forced by ...)"), or "". */
    static synchronized String why(EngineKind kind) {
        return WHY.getOrDefault(kind, "");
    }

    /** Drops a reference; the last one shuts the engine down after its bios finish. */
    static void release(FileEngine e) {
        FileEngine stop = null;
        synchronized (Engines.class) {
            int left = USERS.merge(e.kind(), -1, Integer::sum);
            if (left == 0) {
                RUNNING.remove(e.kind());
                USERS.remove(e.kind());
                stop = e;
            }
        }
        if (stop != null) {
            stop.shutdown();
        }
    }
}
