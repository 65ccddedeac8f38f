package io.biostack.replay;

import java.util.ArrayList;
import java.util.List;

/**
 * What a replay found: how far it replayed, how many crash points and crash states it checked,
 * and each failure with the entry, the last mark before it and what the checker printed. Printed
 * as text or, for scripts, as JSON ({@link #toJson()}).
 */
public final class Report {
    /** An empty report, filled by the replayer as it goes. */
    public Report() {
    }

    /**
     * A piece of one log entry: the whole write, or one block of it when writes are torn.
     *
     * @param entry  the log entry (0-based)
     * @param offset the piece's byte offset on the device
     * @param length the piece's length in bytes
     */
    public record Unit(int entry, long offset, long length) {
        @Override
        public String toString() {
            return "#" + entry + " (" + length + " bytes at " + offset + ")";
        }
    }

    /**
     * One inconsistent crash state. {@code kind} is "in-order" (every logged write up to the entry
     * reached the disk) or "reordered" (only some of the writes since the last flush did: those
     * in {@code dropped} did not, and {@code persisted} are the ones that must be there for the
     * failure, both shrunk to a small set).
     *
     * @param entry     the crash point's log entry
     * @param mark      the last mark before it, or null
     * @param kind      "in-order" or "reordered"
     * @param dropped   the pieces not on disk (reordered only; else empty)
     * @param persisted the pieces since the last flush the failure needs on disk (reordered only)
     * @param reason    why the state failed ("checker exited 1", "checker timed out")
     * @param output    the last 4 KiB the checker printed
     */
    public record Failure(int entry, String mark, String kind, List<Unit> dropped, List<Unit> persisted,
                          String reason, String output) {
    }

    String log;
    String image;
    int entries;
    int replayedTo = -1;
    int points;
    int sameStates;
    int duplicateStates;
    int reorderedStates;
    int checks;
    String scratchMode = "none";
    long scratchBytesCopied;
    long scratchBytesCompared;
    int checkerWrote;
    int recoveries;
    int recoveriesSkipped;
    long millis;
    final List<Failure> failures = new ArrayList<>();

    /**
     * Whether every state checked was consistent.
     *
     * @return true when nothing failed
     */
    public boolean passed() { return failures.isEmpty(); }
    /**
     * The inconsistent states, by entry (only the first unless keep-going).
     *
     * @return the failures, a live list owned by this report
     */
    public List<Failure> failures() { return failures; }
    /**
     * Crash points reached (checked, or skipped as unchanged).
     *
     * @return how many
     */
    public int points() { return points; }
    /**
     * Reordered states checked.
     *
     * @return how many
     */
    public int reorderedStates() { return reorderedStates; }
    /**
     * Checker runs, shrinking included.
     *
     * @return how many
     */
    public int checks() { return checks; }
    /**
     * States not checked because they held the same bytes as a state already checked (whose
     * verdict they share).
     *
     * @return how many
     */
    public int duplicateStates() { return duplicateStates; }
    /**
     * The last entry replayed onto the image.
     *
     * @return its index, or -1 when none was
     */
    public int replayedTo() { return replayedTo; }
    /**
     * Entries in the log.
     *
     * @return how many
     */
    public int entries() { return entries; }
    /**
     * How scratch copies were made equal to the image.
     *
     * @return "reflink", "delta", "naive", or "none" without a check
     */
    public String scratchMode() { return scratchMode; }
    /**
     * Bytes copied from the image into scratch copies.
     *
     * @return how many
     */
    public long scratchBytesCopied() { return scratchBytesCopied; }
    /**
     * Wall time of the replay.
     *
     * @return milliseconds
     */
    public long millis() { return millis; }
    /**
     * States on which {@code --recover} ran (their journal had something to replay).
     *
     * @return how many
     */
    public int recoveries() { return recoveries; }
    /**
     * States whose journal was clean, so {@code --recover} was skipped.
     *
     * @return how many
     */
    public int recoveriesSkipped() { return recoveriesSkipped; }
    /**
     * Checker runs that wrote to their copy (journal recovery, fsck repairs).
     *
     * @return how many
     */
    public int checkerWrote() { return checkerWrote; }

    /**
     * A few lines for a person.
     *
     * @return the text, ending in a newline
     */
    public String toText() {
        StringBuilder sb = new StringBuilder();
        sb.append("replayed entries 0..").append(replayedTo).append(" of ").append(entries).append(" from ").append(log)
                .append(" onto ").append(image).append('\n');
        sb.append("checked ").append(points).append(" crash points (").append(sameStates).append(" unchanged, not re-run) and ")
                .append(reorderedStates).append(" reordered states (").append(duplicateStates)
                .append(" states byte-identical to one already checked, not re-run) with ").append(checks).append(" checker runs in ")
                .append(millis).append(" ms; scratch: ").append(scratchMode).append(", ").append(scratchBytesCopied)
                .append(" bytes copied; the checker wrote to its copy in ").append(checkerWrote).append(" runs")
                .append(recoveries + recoveriesSkipped == 0 ? "" : "; journal recovery ran on " + recoveries + " states, skipped on "
                        + recoveriesSkipped + " with a clean journal").append('\n');
        for (Failure f : failures) {
            sb.append("FAIL at entry ").append(f.entry()).append(f.mark() == null ? "" : " (after mark '" + f.mark() + "')")
                    .append(", ").append(f.kind()).append(": ").append(f.reason()).append('\n');
            if (!f.dropped().isEmpty() || !f.persisted().isEmpty()) {
                sb.append("  on disk:     ").append(f.persisted().isEmpty() ? "(none of the writes since the last flush)" : f.persisted()).append('\n');
                sb.append("  not on disk: ").append(f.dropped()).append('\n');
            }
            for (String line : f.output().split("\n")) {
                sb.append("  | ").append(line).append('\n');
            }
        }
        if (checks == 0 && failures.isEmpty()) {
            // No --check: nothing was judged, so nothing may be called consistent (issue 18).
            sb.append("replayed ").append(replayedTo < 0 ? 0 : replayedTo + 1).append(" entries and checked nothing (no --check)\n");
        } else {
            sb.append(failures.isEmpty() ? "all crash states consistent\n" : failures.size() + " inconsistent crash state(s)\n");
        }
        return sb.toString();
    }

    /**
     * The report for scripts, one JSON object.
     *
     * @return the JSON text
     */
    public String toJson() {
        StringBuilder sb = new StringBuilder("{");
        kv(sb, "result", passed() ? "pass" : "fail").append(',');
        kv(sb, "log", log).append(',');
        kv(sb, "image", image).append(',');
        sb.append("\"entries\":").append(entries).append(",\"replayed_to\":").append(replayedTo)
                .append(",\"points\":").append(points).append(",\"unchanged_points\":").append(sameStates)
                .append(",\"reordered_states\":").append(reorderedStates).append(",\"duplicate_states\":").append(duplicateStates)
                .append(",\"checks\":").append(checks)
                .append(",\"millis\":").append(millis).append(',');
        kv(sb, "scratch", scratchMode).append(",\"scratch_bytes_copied\":").append(scratchBytesCopied)
                .append(",\"scratch_bytes_compared\":").append(scratchBytesCompared).append(",\"checker_wrote\":").append(checkerWrote)
                .append(",\"recoveries\":").append(recoveries).append(",\"recoveries_skipped\":").append(recoveriesSkipped)
                .append(",\"failures\":[");
        for (int i = 0; i < failures.size(); i++) {
            Failure f = failures.get(i);
            sb.append(i == 0 ? "{" : ",{").append("\"entry\":").append(f.entry()).append(',');
            kv(sb, "mark", f.mark()).append(',');
            kv(sb, "kind", f.kind()).append(',');
            kv(sb, "reason", f.reason()).append(",\"dropped\":");
            units(sb, f.dropped()).append(",\"persisted\":");
            units(sb, f.persisted()).append(',');
            kv(sb, "output", f.output()).append('}');
        }
        return sb.append("]}").toString();
    }

    private static StringBuilder units(StringBuilder sb, List<Unit> us) {
        sb.append('[');
        for (int i = 0; i < us.size(); i++) {
            Unit u = us.get(i);
            sb.append(i == 0 ? "" : ",").append("{\"entry\":").append(u.entry()).append(",\"offset\":").append(u.offset())
                    .append(",\"length\":").append(u.length()).append('}');
        }
        return sb.append(']');
    }

    static StringBuilder kv(StringBuilder sb, String k, String v) {
        sb.append('"').append(k).append("\":");
        if (v == null) {
            return sb.append("null");
        }
        return sb.append(quote(v));
    }

    /**
     * A JSON string literal (RFC 8259 section 7).
     *
     * @param s the text
     * @return it quoted and escaped
     */
    public static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        return sb.append('"').toString();
    }
}
