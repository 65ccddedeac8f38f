package io.biostack.sys;

import java.util.Locale;

/**
 * The CPU architecture the JVM runs on, as far as the kernel ABI differs between the two that
 * biostack supports (x86_64 and aarch64). Everything else about the syscall ABI used here is the
 * same on both: the io_uring syscall numbers, the struct layouts, the asm-generic flag values.
 */
public enum Arch {
    /** x86_64 ("amd64" in {@code os.arch}). */
    X86_64,
    /** aarch64 / arm64. */
    AARCH64,
    /** Anything else: the constants here are not verified for it. */
    UNSUPPORTED;

    /** The architecture of this JVM, decided once from {@code os.arch}. */
    public static final Arch CURRENT = detect(System.getProperty("os.arch", ""));

    static Arch detect(String osArch) {
        return switch (osArch.toLowerCase(Locale.ROOT)) {
            case "amd64", "x86_64", "x64" -> X86_64;
            case "aarch64", "arm64" -> AARCH64;
            default -> UNSUPPORTED;
        };
    }

    /** True for the architectures whose constants biostack has checked against the headers. */
    public boolean isSupported() {
        return this != UNSUPPORTED;
    }
}
