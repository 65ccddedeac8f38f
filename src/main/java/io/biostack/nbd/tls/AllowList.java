package io.biostack.nbd.tls;

import javax.naming.InvalidNameException;
import javax.naming.ldap.LdapName;
import javax.naming.ldap.Rdn;
import javax.security.auth.x500.X500Principal;
import java.util.List;

/**
 * The {@code --tls-allow} names: client certificate subjects, as a CN ({@code alice}) or a whole
 * DN ({@code CN=alice,O=lab}), and PSK usernames. Empty means everyone the credentials accept.
 */
record AllowList(List<String> names) {
    static final AllowList ANY = new AllowList(List.of());

    AllowList {
        names = List.copyOf(names);
    }

    boolean isEmpty() {
        return names.isEmpty();
    }

    boolean allowsUser(String user) {
        return names.isEmpty() || names.contains(user);
    }

    /** True when the subject's CN or its whole DN is on the list (DNs compared as DNs, not text). */
    boolean allowsSubject(X500Principal subject) {
        if (names.isEmpty()) {
            return true;
        }
        String cn = commonName(subject);
        for (String n : names) {
            if (n.equals(cn)) {
                return true;
            }
            if (n.contains("=")) {
                try {
                    if (new X500Principal(n).equals(subject)) {
                        return true;
                    }
                } catch (IllegalArgumentException e) {
                    // not a DN: it only matches as a CN
                }
            }
        }
        return false;
    }

    static String commonName(X500Principal subject) {
        try {
            for (Rdn r : new LdapName(subject.getName(X500Principal.RFC2253)).getRdns()) {
                if (r.getType().equalsIgnoreCase("CN")) {
                    return String.valueOf(r.getValue());
                }
            }
        } catch (InvalidNameException e) {
            // fall through: no CN
        }
        return null;
    }
}
