package io.biostack.cli;

import picocli.CommandLine.Command;

/** Placeholder until the serve command lands; prints what is missing. */
@Command(name = "serve", description = "(not built yet)")
public final class ServeCommand implements java.util.concurrent.Callable<Integer> {
    @Override
    public Integer call() {
        System.err.println("biostack serve: not built yet");
        return 2;
    }
}
