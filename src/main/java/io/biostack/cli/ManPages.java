package io.biostack.cli;

import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Model.PositionalParamSpec;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Man pages (troff, section 1) written from the picocli command tree that {@link Main#run}
 * executes: one page per command, {@code biostack.1}, {@code biostack-serve.1},
 * {@code biostack-dm.1}, ... A command added to the tree gets its page with no edit here, and a
 * page says what {@code --help} says because both read the same {@link CommandSpec}.
 *
 * <p>Why not picocli-codegen's ManPageGenerator: it writes AsciiDoc, and turning that into troff
 * needs Asciidoctor (Ruby, or AsciidoctorJ and JRuby: some 30 MB) at build time. The troff below
 * uses the man(7) macros only, which {@code man}, {@code groff -man} and {@code mandoc} all read.
 *
 * <p>The release build runs {@code java -cp ... io.biostack.cli.ManPages DIR}.
 */
public final class ManPages {
    private ManPages() {
    }

    /**
     * Writes one page per command into {@code args[0]}.
     *
     * @param args the output folder (created if absent)
     * @throws IOException if a page cannot be written
     */
    public static void main(String[] args) throws IOException {
        if (args.length != 1) {
            System.err.println("usage: ManPages DIR");
            System.exit(2);
        }
        Path dir = Path.of(args[0]);
        Files.createDirectories(dir);
        for (Map.Entry<String, String> page : pages(Main.commandLine()).entrySet()) {
            Files.writeString(dir.resolve(page.getKey()), page.getValue());
        }
    }

    /**
     * Every page of biostack's command tree, as {@link #main} writes them.
     *
     * @return file names ({@code biostack-dm.1}) mapped to page texts, in tree order
     */
    public static Map<String, String> pages() {
        return pages(Main.commandLine());
    }

    /**
     * Every page of the tree under {@code root}, file name to troff text, in tree order.
     *
     * @param root the command line whose commands get a page each
     * @return file names ({@code biostack-dm.1}) mapped to page texts
     */
    static Map<String, String> pages(CommandLine root) {
        Map<String, String> out = new LinkedHashMap<>();
        collect(root, out);
        return out;
    }

    private static void collect(CommandLine cl, Map<String, String> out) {
        if (cl.getCommandSpec().usageMessage().hidden()) {
            return;
        }
        out.put(pageName(cl.getCommandSpec()) + ".1", page(cl));
        for (CommandLine sub : distinct(cl)) {
            collect(sub, out);
        }
    }

    /** The subcommands, each once (picocli maps every alias to the same CommandLine). */
    private static List<CommandLine> distinct(CommandLine cl) {
        List<CommandLine> subs = new ArrayList<>();
        for (CommandLine sub : cl.getSubcommands().values()) {
            if (!subs.contains(sub) && !sub.getCommandSpec().usageMessage().hidden()) {
                subs.add(sub);
            }
        }
        return subs;
    }

    /** "biostack dm" is page "biostack-dm", as git's and systemd's pages are named. */
    static String pageName(CommandSpec spec) {
        return spec.qualifiedName("-");
    }

    static String page(CommandLine cl) {
        CommandSpec spec = cl.getCommandSpec();
        CommandLine.Help help = cl.getHelp();
        String name = pageName(spec);
        String version = RootCommand.Version.version();
        StringBuilder t = new StringBuilder();
        t.append(".\\\" Generated from the picocli command definitions by io.biostack.cli.ManPages; do not edit.\n");
        t.append(".TH ").append(esc(name.toUpperCase())).append(" 1 \"\" \"biostack ")
                .append(esc(version)).append("\" \"biostack manual\"\n");

        String[] desc = spec.usageMessage().description();
        String summary = desc.length > 0 ? desc[0] : "";
        t.append(".SH NAME\n").append(esc(name)).append(" \\- ").append(esc(strip(summary))).append('\n');

        t.append(".SH SYNOPSIS\n.nf\n");
        // The synopsis as --help prints it (picocli wraps long ones over several lines).
        for (String line : help.synopsis(0).stripTrailing().split("\n")) {
            t.append(text(line.stripTrailing())).append('\n');
        }
        t.append(".fi\n");

        if (desc.length > 0) {
            // The descriptions are laid out in columns for --help: keep that layout (no fill).
            t.append(".SH DESCRIPTION\n.nf\n");
            for (String line : formatted(desc)) {
                t.append(text(line)).append('\n');
            }
            t.append(".fi\n");
        }

        List<PositionalParamSpec> params = new ArrayList<>();
        for (PositionalParamSpec p : spec.positionalParameters()) {
            if (!p.hidden()) {
                params.add(p);
            }
        }
        if (!params.isEmpty()) {
            t.append(".SH ARGUMENTS\n");
            for (PositionalParamSpec p : params) {
                t.append(".TP\n\\fI").append(esc(p.paramLabel())).append("\\fR\n");
                appendLines(t, p.description());
            }
        }

        List<OptionSpec> options = new ArrayList<>();
        for (OptionSpec o : spec.options()) {
            if (!o.hidden()) {
                options.add(o);
            }
        }
        if (spec.usageMessage().sortOptions()) {
            options.sort(Comparator.comparing(o -> o.shortestName().replaceFirst("^-+", "").toLowerCase()));
        }
        if (!options.isEmpty()) {
            t.append(".SH OPTIONS\n");
            for (OptionSpec o : options) {
                t.append(".TP\n");
                List<String> names = new ArrayList<>();
                for (String n : o.names()) {
                    names.add("\\fB" + esc(n) + "\\fR");
                }
                t.append(String.join(", ", names));
                if (o.typeInfo().isBoolean() == false && o.arity().max() > 0) {
                    t.append("=\\fI").append(esc(o.paramLabel())).append("\\fR");
                }
                t.append('\n');
                appendLines(t, o.description());
            }
        }

        List<CommandLine> subs = distinct(cl);
        if (!subs.isEmpty()) {
            t.append(".SH COMMANDS\n");
            for (CommandLine sub : subs) {
                String[] sd = sub.getCommandSpec().usageMessage().description();
                t.append(".TP\n\\fB").append(esc(sub.getCommandName())).append("\\fR\n");
                t.append(text(sd.length > 0 ? strip(sd[0]) : "")).append('\n');
                t.append(".br\nSee \\fB").append(esc(pageName(sub.getCommandSpec()))).append("\\fR(1).\n");
            }
        }

        String[] footer = spec.usageMessage().footer();
        if (footer.length > 0) {
            t.append(".SH NOTES\n.nf\n");
            for (String line : formatted(footer)) {
                t.append(text(line)).append('\n');
            }
            t.append(".fi\n");
        }

        List<String> seeAlso = new ArrayList<>();
        if (spec.parent() != null) {
            seeAlso.add(pageName(spec.parent()));
        }
        for (CommandLine sub : subs) {
            seeAlso.add(pageName(sub.getCommandSpec()));
        }
        if (!seeAlso.isEmpty()) {
            t.append(".SH SEE ALSO\n");
            List<String> refs = new ArrayList<>();
            for (String s : seeAlso) {
                refs.add("\\fB" + esc(s) + "\\fR(1)");
            }
            t.append(String.join(",\n", refs)).append('\n');
        }
        return t.toString();
    }

    /**
     * Description lines as --help prints them: picocli runs each through String.format (so "%n"
     * breaks a line and "%%" is a percent sign) and prints it unformatted when that fails.
     */
    private static List<String> formatted(String[] lines) {
        List<String> out = new ArrayList<>();
        for (String line : lines) {
            String f;
            try {
                f = String.format(line);
            } catch (java.util.IllegalFormatException e) {
                f = line;
            }
            for (String part : strip(f).split("\\R", -1)) {
                out.add(part.stripTrailing());
            }
        }
        return out;
    }

    /** One description line per output line ({@code .br} between), escaped. */
    private static void appendLines(StringBuilder t, String[] lines) {
        List<String> f = formatted(lines);
        for (int i = 0; i < f.size(); i++) {
            if (i > 0) {
                t.append(".br\n");
            }
            t.append(text(f.get(i))).append('\n');
        }
    }

    /** picocli markup ({@code @|bold x|@}) is for terminals; a man page has its own. */
    private static String strip(String s) {
        return s.replaceAll("@\\|\\S+ ([^|]*)\\|@", "$1");
    }

    /** Escapes troff's backslash and minus; the caller places the result mid-line. */
    static String esc(String s) {
        return s.replace("\\", "\\e").replace("-", "\\-");
    }

    /** A whole text line: escaped, and a leading '.' or '\'' kept from reading as a request. */
    static String text(String s) {
        String e = esc(s);
        if (e.startsWith(".") || e.startsWith("'")) {
            return "\\&" + e;
        }
        return e;
    }
}
