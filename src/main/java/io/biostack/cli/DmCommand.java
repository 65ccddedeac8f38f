package io.biostack.cli;

import io.biostack.block.stats.DeviceSnapshot;
import io.biostack.block.stats.Iostat;
import io.biostack.stack.ControlServer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.io.IOException;
import java.nio.file.Path;
import java.io.PrintWriter;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code biostack dm --control PATH COMMAND ...}: dmsetup for a running stack, through the
 * control socket that {@code serve --control PATH} opens ({@link ControlServer}).
 */
@Command(name = "dm", mixinStandardHelpOptions = true, description = {
        "Work on the mapped devices of a running stack, as dmsetup does on the kernel's.",
        "",
        "Commands:",
        "  ls                      devices, sizes and states",
        "  table NAME              the live table (START LENGTH TARGET ARGS, in sectors)",
        "  status NAME [--json]    each target's status (mirror sync progress, dust mode, ...) and dirty bitmaps",
        "  suspend NAME            let bios in flight finish; new ones wait",
        "  resume NAME             make a reloaded table live; waiting bios go on",
        "  reload NAME 'TABLE'     load a table (lines as in the stack file without 'NAME:', newlines or ';' between lines;",
        "                          with newlines, a ';' is part of the text, as in a passphrase=)",
        "  clear NAME              drop a loaded table that is not live yet",
        "  message NAME [SECTOR] 'MSG'  send a message to a target (dust: addbadblock N, mirror: reinstate 1)",
        "                          or to any device: 'bitmap add|remove|clear|enable|disable|merge ...'",
        "  stats [NAME]            iostat -x columns per device (r/s w/s rkB/s wkB/s r_await w_await aqu-sz",
        "                          %%util, p50 and p99 in ms): since start, or per --interval S",
        "",
        "Example: biostack dm --control /run/bs.ctl reload lin '0 2048 linear disk1 0'"})
public final class DmCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--control", required = true, paramLabel = "PATH", description = "the control socket of `biostack serve --control PATH`")
    Path control;

    @Parameters(index = "0", paramLabel = "COMMAND", description = "ls, table, status, suspend, resume, reload, clear, message, stats")
    String command;

    @Parameters(index = "1..*", paramLabel = "ARGS", arity = "0..*")
    List<String> args = new ArrayList<>();

    @Option(names = "--json", description = "stats: print JSON (one object per sample)")
    boolean json;

    @Option(names = "--interval", paramLabel = "S",
            description = "stats: sample every S seconds; each line covers the interval since the previous sample "
                    + "(on a terminal the table refreshes; piped, one JSON object per line)")
    Double interval;

    @Option(names = "--count", paramLabel = "N", description = "stats --interval: stop after N samples")
    Integer count;

    @Override
    public Integer call() throws InterruptedException {
        if (command.equals("stats")) {
            return stats(control, args, json, interval, count, spec.commandLine().getOut(), spec.commandLine().getErr());
        }
        if ((json && !command.equals("status")) || interval != null || count != null) {
            spec.commandLine().getErr().println("biostack dm: --interval and --count go with 'stats', --json with 'stats' and 'status'");
            return 2;
        }
        List<String> argv = new ArrayList<>();
        argv.add(command);
        argv.addAll(args);
        if (json) {
            argv.add("--json"); // status NAME --json: targets and dirty bitmaps as one JSON object
        }
        return send(control, argv, spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /**
     * Sends {@code argv} to the control socket and prints the answer: the reply on {@code out}
     * (exit 0), a refusal or an unreachable socket on {@code err} (exit 1). {@link FastPath}
     * calls this too, so both paths print the same bytes.
     *
     * @param control the control socket
     * @param argv    the request's words
     * @param out     where the answer goes
     * @param err     where the errors go
     * @return the exit code
     */
    static int send(Path control, List<String> argv, PrintWriter out, PrintWriter err) {
        ControlServer.Reply r;
        try {
            r = ControlServer.send(control, argv);
        } catch (IOException e) {
            err.println("biostack dm: can't reach the control socket " + control + ": "
                    + (e.getMessage() == null ? e.toString() : e.getMessage()) + " (is `biostack serve --control` running?)");
            return 1;
        }
        if (r.ok()) {
            out.print(r.text());
            out.flush();
            return 0;
        }
        err.print("biostack dm: " + r.text());
        err.flush();
        return 1;
    }

    /**
     * {@code stats}: one sample since start, or one per interval until --count or ^C.
     * {@link FastPath} calls this too (without an interval), so both paths print the same bytes.
     *
     * @param control  the control socket
     * @param args     the device names after {@code stats}
     * @param json     print JSON
     * @param interval seconds between samples, or null for one sample since start
     * @param count    how many samples with an interval, or null for no end
     * @param out      where the samples go
     * @param err      where the errors go
     * @return the exit code: 0, 1 when the socket fails or refuses, 2 for a bad interval or count
     * @throws InterruptedException when interrupted between samples
     */
    static int stats(Path control, List<String> args, boolean json, Double interval, Integer count,
            PrintWriter out, PrintWriter err) throws InterruptedException {
        if (interval != null && !(interval > 0)) {
            err.println("biostack dm: --interval wants a positive number of seconds");
            return 2;
        }
        if (count != null && count <= 0) {
            err.println("biostack dm: --count wants a positive number");
            return 2;
        }
        List<String> argv = new ArrayList<>();
        argv.add("stats");
        argv.addAll(args);
        List<DeviceSnapshot> prev = fetch(control, argv, err);
        if (prev == null) {
            return 1;
        }
        if (interval == null) {
            List<Iostat> rows = new ArrayList<>();
            for (DeviceSnapshot d : prev) {
                rows.add(Iostat.of(d));
            }
            print(out, json, rows, prev, null);
            return 0;
        }
        java.io.Console con = System.console();
        boolean jsonLines = json || con == null || !con.isTerminal();
        long periodNs = (long) (interval * 1e9);
        long next = System.nanoTime() + periodNs;
        for (int n = 0; count == null || n < count; n++) {
            java.util.concurrent.TimeUnit.NANOSECONDS.sleep(Math.max(0, next - System.nanoTime()));
            next += periodNs;
            List<DeviceSnapshot> cur = fetch(control, argv, err);
            if (cur == null) {
                return 1;
            }
            Map<String, DeviceSnapshot> before = new HashMap<>();
            for (DeviceSnapshot d : prev) {
                before.put(d.device(), d);
            }
            List<Iostat> rows = new ArrayList<>();
            for (DeviceSnapshot d : cur) {
                DeviceSnapshot b = before.get(d.device());
                rows.add(Iostat.of(b == null ? d : d.minus(b)));
            }
            if (!jsonLines) {
                out.print("\033[H\033[2J"); // home and clear: the table refreshes in place
            }
            print(out, jsonLines, rows, cur, interval);
            prev = cur;
        }
        return 0;
    }

    private static void print(PrintWriter out, boolean asJson, List<Iostat> rows, List<DeviceSnapshot> totals, Double interval) {
        String now = Instant.now().toString();
        if (asJson) {
            StringBuilder sb = new StringBuilder("{\"time\":\"").append(now).append('"');
            sb.append(interval == null ? ",\"since_start\":true" : ",\"interval_s\":" + interval);
            sb.append(",\"devices\":[");
            for (int i = 0; i < rows.size(); i++) {
                sb.append(i == 0 ? "" : ",").append(rows.get(i).toJson(totals.get(i)));
            }
            out.println(sb.append("]}"));
        } else {
            out.println(now + (interval == null ? "  (since start; latencies in ms)" : "  (last " + interval + " s; latencies in ms)"));
            out.println(Iostat.tableHead());
            for (Iostat r : rows) {
                out.println(r.toTableRow());
            }
            out.println();
        }
        out.flush();
    }

    /** Asks the control socket for snapshots; null (and a message said) when it can't. */
    private static List<DeviceSnapshot> fetch(Path control, List<String> argv, PrintWriter err) {
        ControlServer.Reply r;
        try {
            r = ControlServer.send(control, argv);
        } catch (IOException e) {
            err.println("biostack dm: can't reach the control socket " + control + ": "
                    + (e.getMessage() == null ? e.toString() : e.getMessage()) + " (is `biostack serve --control` running?)");
            return null;
        }
        if (!r.ok()) {
            err.print("biostack dm: " + r.text());
            err.flush();
            return null;
        }
        return DeviceSnapshot.fromWireLines(r.text());
    }
}
