package io.biostack.file;

/** Which engine does a backing file's I/O ({@code --engine uring|threads|auto}). */
public enum EngineKind {
    /** io_uring through FFM; fails to start where io_uring is missing or forbidden. */
    URING,
    /** A pool of platform threads doing preadv2/pwritev2; works everywhere. */
    THREADS,
    /** io_uring when the kernel allows it, else threads (said in one log line). */
    AUTO;

    /**
     * The kind {@code s} names.
     *
     * @param s uring (or io_uring), threads (or thread), auto; any case
     * @return the kind
     * @throws IllegalArgumentException for any other name
     */
    public static EngineKind parse(String s) {
        return switch (s.toLowerCase(java.util.Locale.ROOT)) {
            case "uring", "io_uring" -> URING;
            case "threads", "thread" -> THREADS;
            case "auto" -> AUTO;
            default -> throw new IllegalArgumentException("engine must be uring, threads or auto: " + s);
        };
    }
}
