package io.biostack.cli;

import io.biostack.stack.ControlServer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code biostack dm --control PATH COMMAND ...}: dmsetup for a running stack, through the
 * control socket that {@code serve --control PATH} opens ({@link ControlServer}).
 */
@Command(name = "dm", description = {
        "Work on the mapped devices of a running stack, as dmsetup does on the kernel's.",
        "",
        "Commands:",
        "  ls                      devices, sizes and states",
        "  table NAME              the live table (START LENGTH TARGET ARGS, in sectors)",
        "  status NAME             each target's status (mirror sync progress, dust mode, ...)",
        "  suspend NAME            let bios in flight finish; new ones wait",
        "  resume NAME             make a reloaded table live; waiting bios go on",
        "  reload NAME 'TABLE'     load a table (lines as in the stack file without 'NAME:', ';' between lines)",
        "  clear NAME              drop a loaded table that is not live yet",
        "  message NAME [SECTOR] 'MSG'  send a message to a target (dust: addbadblock N, mirror: reinstate 1)",
        "",
        "Example: biostack dm --control /run/bs.ctl reload lin '0 2048 linear disk1 0'"})
public final class DmCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--control", required = true, paramLabel = "PATH", description = "the control socket of `biostack serve --control PATH`")
    Path control;

    @Parameters(index = "0", paramLabel = "COMMAND", description = "ls, table, status, suspend, resume, reload, clear, message")
    String command;

    @Parameters(index = "1..*", paramLabel = "ARGS", arity = "0..*")
    List<String> args = new ArrayList<>();

    @Override
    public Integer call() {
        List<String> argv = new ArrayList<>();
        argv.add(command);
        argv.addAll(args);
        ControlServer.Reply r;
        try {
            r = ControlServer.send(control, argv);
        } catch (IOException e) {
            spec.commandLine().getErr().println("biostack dm: can't reach the control socket " + control + ": "
                    + (e.getMessage() == null ? e.toString() : e.getMessage()) + " (is `biostack serve --control` running?)");
            return 1;
        }
        if (r.ok()) {
            spec.commandLine().getOut().print(r.text());
            spec.commandLine().getOut().flush();
            return 0;
        }
        spec.commandLine().getErr().print("biostack dm: " + r.text());
        spec.commandLine().getErr().flush();
        return 1;
    }
}
