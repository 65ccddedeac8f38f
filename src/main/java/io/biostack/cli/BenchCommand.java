package io.biostack.cli;

import picocli.CommandLine.Command;

/** Placeholder until the bench lands. */
@Command(name = "bench", description = "(not built yet)")
public final class BenchCommand implements java.util.concurrent.Callable<Integer> {
    @Override
    public Integer call() {
        System.err.println("biostack bench: not built yet");
        return 2;
    }
}
