package io.biostack;

import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

/**
 * What a test needs from the machine. Where it is missing, the test is skipped on a developer's
 * machine and fails under {@code CI=true}: CI runs on the machine kind the project targets, so a
 * missing piece there is a broken set-up, never a reason to pass quietly.
 */
public final class TestEnv {
    private TestEnv() {
    }

    public static boolean ci() {
        return "true".equals(System.getenv("CI"));
    }

    /** Skips (or, under CI, fails) the calling test unless {@code condition} holds. */
    public static void require(boolean condition, String what) {
        if (condition) {
            return;
        }
        if (ci()) {
            Assertions.fail(what + " is missing, and CI=true: this test must run");
        }
        Assumptions.abort(what + " is missing");
    }
}
