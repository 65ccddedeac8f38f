package io.biostack.cli;

import picocli.CommandLine.Command;

/** Placeholder until the dm command lands; prints what is missing. */
@Command(name = "dm", description = "(not built yet)")
public final class DmCommand implements java.util.concurrent.Callable<Integer> {
    @Override
    public Integer call() {
        System.err.println("biostack dm: not built yet");
        return 2;
    }
}
