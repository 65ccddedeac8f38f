package io.biostack.cli;

import io.biostack.sys.Libc;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.nio.charset.Charset;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

/**
 * The short commands that scripts call in loops, run without picocli: {@code --version},
 * {@code dm --control PATH COMMAND ...} (one stats sample, not {@code --interval}) and
 * {@code img info FILE}.
 *
 * <p>Why: on this project's 2-vCPU reference machine a JVM that prints one line takes about
 * 90 ms of CPU, and the same {@code --version} through picocli took 220 to 260 ms even with an
 * AOT cache trained for it: picocli builds the command's model by reflection over the annotations
 * (dynamic proxies, method handles), and the cache that holds those classes costs its own mapping
 * at every start. These commands have a handful of argument shapes; this class recognises exactly
 * those and runs the very code the picocli command runs ({@link DmCommand#send},
 * {@link DmCommand#stats}, {@link ImgCommand.Info#info}), so the output cannot differ.
 *
 * <p>Anything else goes to picocli: an option it does not list, an option given twice, an
 * argument that starts with {@code -} or {@code @} (picocli's option and argument-file syntax),
 * {@code --help}. So does an {@code img info} that fails: it reads and writes nothing before it
 * prints, so picocli runs it again and says what is wrong in its own words. Nothing here loads a
 * picocli class (FastPathTest checks it). The launcher's cache for these commands holds no
 * picocli either, so that fallback (help, a usage error) starts slower than before: an error
 * path, never a different answer.
 */
final class FastPath {
    /** What {@link #run} returns for a command line it leaves to picocli. */
    static final int NOT_HANDLED = -1;

    private FastPath() {
    }

    /**
     * Runs {@code args} when it is one of the shapes this class knows.
     *
     * @param args the command line, as {@code bin/biostack} passes it
     * @return the exit code, or {@link #NOT_HANDLED} when picocli must run it
     */
    static int run(String[] args) {
        if (args.length == 1 && (args[0].equals("--version") || args[0].equals("-V"))) {
            PrintWriter out = picocliWriter(System.out, "sun.stdout.encoding");
            out.println("biostack " + version());
            out.flush();
            return 0;
        }
        if (args.length >= 3 && args[0].equals("dm")) {
            return dm(args);
        }
        if (args.length >= 3 && args[0].equals("img") && args[1].equals("info")) {
            return imgInfo(args);
        }
        return NOT_HANDLED;
    }

    /**
     * {@code dm --control PATH COMMAND ARGS...} (or {@code --control=PATH}): every command, with
     * {@code --json} after status or stats; stats without {@code --interval} and {@code --count}
     * (one sample since start).
     */
    private static int dm(String[] args) {
        String control;
        int i;
        if (args[1].equals("--control")) {
            control = args[2];
            i = 3;
        } else if (args[1].startsWith("--control=")) {
            control = args[1].substring("--control=".length());
            i = 2;
        } else {
            return NOT_HANDLED;
        }
        if (control.isEmpty() || control.startsWith("-") || control.startsWith("@") || i >= args.length) {
            return NOT_HANDLED;
        }
        String command = args[i++];
        if (command.isEmpty() || command.startsWith("-") || command.startsWith("@")) {
            return NOT_HANDLED;
        }
        List<String> words = new ArrayList<>();
        boolean json = false;
        for (; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--json") && !json && (command.equals("status") || command.equals("stats"))) {
                json = true;
            } else if (a.isEmpty() || a.startsWith("-") || a.startsWith("@")) {
                return NOT_HANDLED;
            } else {
                words.add(a);
            }
        }
        Path socket;
        try {
            socket = Path.of(control);
        } catch (InvalidPathException e) {
            return NOT_HANDLED;
        }
        // The writers picocli's CommandLine.getOut() and getErr() make, which DmCommand prints to.
        PrintWriter out = picocliWriter(System.out, "sun.stdout.encoding");
        PrintWriter err = picocliWriter(System.err, "sun.stderr.encoding");
        if (command.equals("stats")) {
            try {
                return DmCommand.stats(socket, words, json, null, null, out, err);
            } catch (InterruptedException e) {
                // Without --interval stats never sleeps; were it interrupted, exit as picocli's
                // handler would for an exception.
                err.println("biostack: " + e);
                return 1;
            }
        }
        List<String> argv = new ArrayList<>();
        argv.add(command);
        argv.addAll(words);
        if (json) {
            argv.add("--json"); // as DmCommand.call: status NAME --json
        }
        return DmCommand.send(socket, argv, out, err);
    }

    /** {@code img info [--output human|json] [-f FMT] [--backing-chain] FILE}. */
    private static int imgInfo(String[] args) {
        String output = null;
        String format = null;
        String file = null;
        boolean chain = false;
        for (int i = 2; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--output") || a.equals("-f")) {
                if (i + 1 >= args.length) {
                    return NOT_HANDLED;
                }
                String v = args[++i];
                if (v.startsWith("-") || v.startsWith("@")) {
                    return NOT_HANDLED;
                }
                if (a.equals("-f")) {
                    if (format != null) {
                        return NOT_HANDLED;
                    }
                    format = v;
                } else {
                    if (output != null) {
                        return NOT_HANDLED;
                    }
                    output = v;
                }
            } else if (a.startsWith("--output=")) {
                if (output != null) {
                    return NOT_HANDLED;
                }
                output = a.substring("--output=".length());
            } else if (a.equals("--backing-chain") && !chain) {
                chain = true;
            } else if (a.isEmpty() || a.startsWith("-") || a.startsWith("@") || file != null) {
                return NOT_HANDLED;
            } else {
                file = a;
            }
        }
        if (file == null || !(output == null || output.equals("human") || output.equals("json"))) {
            return NOT_HANDLED;
        }
        prelinkStatx(file);
        try {
            return ImgCommand.Info.info(file, format, chain, output == null ? "human" : output);
        } catch (IOException | RuntimeException e) {
            // Nothing was printed (info prints once it has read every layer): picocli runs it
            // again and reports the error as it always does.
            return NOT_HANDLED;
        }
    }

    /*
     * img info's "disk size" is st_blocks, which only statx gives (no JDK attribute holds it). Its
     * first call links an FFM downcall: ~60 ms of CPU in generated classes that the AOT cache
     * cannot hold, more than the rest of the command after the JVM is up. A second thread pays it
     * while this one reads the image, so on two cores the wall time loses most of it. The thread's
     * own result is dropped; the main thread's statx finds the handle linked (or waits for the
     * class initialisation already under way, never links twice).
     */
    private static void prelinkStatx(String file) {
        Thread.ofPlatform().daemon().name("prelink-statx").start(() -> {
            try {
                Libc.statx(file);
            } catch (IOException | RuntimeException ignored) {
                // the main thread makes the same call and reports what matters
            }
        });
    }

    /**
     * The writer picocli's {@code CommandLine.getOut()} (or {@code getErr()}) wraps around
     * {@code stream}: the charset of {@code property} if set (cp65001 read as UTF-8), else the
     * default charset; buffered, flushed at each println (picocli 4.7's newPrintWriter and
     * charsetForName).
     */
    static PrintWriter picocliWriter(java.io.OutputStream stream, String property) {
        String name = System.getProperty(property);
        Charset cs;
        if (name == null) {
            cs = Charset.defaultCharset();
        } else {
            try {
                cs = Charset.forName(name.equalsIgnoreCase("cp65001") ? "UTF-8" : name);
            } catch (RuntimeException e) {
                cs = Charset.defaultCharset();
            }
        }
        return new PrintWriter(new java.io.BufferedWriter(new java.io.OutputStreamWriter(stream, cs)), true);
    }

    /**
     * The Maven project version, filtered into {@code version.properties} at build time, or
     * "unknown" when the classes were built without resources.
     */
    static String version() {
        try (InputStream in = FastPath.class.getResourceAsStream("version.properties")) {
            if (in == null) {
                return "unknown";
            }
            Properties p = new Properties();
            p.load(in);
            return p.getProperty("version", "unknown");
        } catch (IOException e) {
            return "unknown";
        }
    }
}
