package io.biostack.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.MemoryLayout.PathElement;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.net.Inet4Address;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * Socket syscalls through FFM, for servers whose sockets are driven by io_uring (the reactor needs
 * file descriptors, which java.nio does not hand out). Cold path: set-up and tear-down only; the
 * data moves with IORING_OP_RECV/SEND. Every call returns the result or {@code -errno}.
 */
public final class Sockets {
    /** bits/socket.h: AF_UNIX 1, AF_INET 2, AF_INET6 10. */
    public static final int AF_UNIX = 1;
    public static final int AF_INET = 2;
    public static final int AF_INET6 = 10;
    /** bits/socket_type.h: SOCK_STREAM 1, SOCK_NONBLOCK 04000, SOCK_CLOEXEC 02000000. */
    public static final int SOCK_STREAM = 1;
    public static final int SOCK_NONBLOCK = 04000;
    public static final int SOCK_CLOEXEC = 02000000;
    /** asm-generic/socket.h: SOL_SOCKET 1, SO_REUSEADDR 2, SO_SNDBUF 7, SO_RCVBUF 8. */
    public static final int SOL_SOCKET = 1;
    public static final int SO_REUSEADDR = 2;
    /** netinet/in.h IPPROTO_TCP 6; netinet/tcp.h TCP_NODELAY 1. */
    public static final int IPPROTO_TCP = 6;
    public static final int TCP_NODELAY = 1;
    /** sys/socket.h: SHUT_RD 0, SHUT_WR 1, SHUT_RDWR 2. */
    public static final int SHUT_RD = 0;
    public static final int SHUT_WR = 1;
    public static final int SHUT_RDWR = 2;
    /** bits/socket.h: MSG_NOSIGNAL 0x4000 (no SIGPIPE on a send to a closed peer). */
    public static final int MSG_NOSIGNAL = 0x4000;
    /** bits/socket.h: MSG_WAITALL 0x100. */
    public static final int MSG_WAITALL = 0x100;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE_LAYOUT.varHandle(PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE_ERRNO = Linker.Option.captureCallState("errno");

    private static final MethodHandle SOCKET = fixed("socket", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle BIND = fixed("bind", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle LISTEN = fixed("listen", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle SETSOCKOPT = fixed("setsockopt",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle GETSOCKNAME = fixed("getsockname", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS));
    private static final MethodHandle GETPEERNAME = fixed("getpeername", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS));
    private static final MethodHandle SHUTDOWN = fixed("shutdown", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle SOCKETPAIR = fixed("socketpair",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS));

    private Sockets() {
    }

    private static MethodHandle fixed(String name, FunctionDescriptor fd) {
        MemorySegment s = LINKER.defaultLookup().find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc symbol not found: " + name));
        return LINKER.downcallHandle(s, fd, CAPTURE_ERRNO);
    }

    private static int ret(int r, MemorySegment cs) {
        return r == -1 ? -(int) ERRNO.get(cs, 0L) : r;
    }

    private static RuntimeException fail(Throwable t) {
        if (t instanceof RuntimeException re) {
            return re;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new IllegalStateException("downcall failed", t);
    }

    /** {@code socket(2)} of SOCK_STREAM|SOCK_CLOEXEC: the fd or -errno. */
    public static int socket(int family) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cs = a.allocate(CAPTURE_LAYOUT);
            return ret((int) SOCKET.invokeExact(cs, family, SOCK_STREAM | SOCK_CLOEXEC, 0), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /**
     * {@code socketpair(2)} of two connected AF_UNIX SOCK_STREAM|SOCK_CLOEXEC sockets, written to
     * {@code fds[0]} and {@code fds[1]}: 0 or -errno. Used to probe socket features at start-up.
     */
    public static int socketpair(int[] fds) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cs = a.allocate(CAPTURE_LAYOUT);
            MemorySegment sv = a.allocate(JAVA_INT, 2);
            int r = ret((int) SOCKETPAIR.invokeExact(cs, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), cs);
            if (r == 0) {
                fds[0] = sv.getAtIndex(JAVA_INT, 0);
                fds[1] = sv.getAtIndex(JAVA_INT, 1);
            }
            return r;
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code setsockopt(2)} of an int option: 0 or -errno. */
    public static int setIntOption(int fd, int level, int name, int value) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cs = a.allocate(CAPTURE_LAYOUT);
            MemorySegment v = a.allocate(JAVA_INT);
            v.set(JAVA_INT, 0, value);
            return ret((int) SETSOCKOPT.invokeExact(cs, fd, level, name, v, 4), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** Binds {@code fd} to a unix socket path (sockaddr_un, sun_path of 108 bytes): 0 or -errno. */
    public static int bindUnix(int fd, Path path) {
        byte[] p = path.toString().getBytes(StandardCharsets.UTF_8);
        if (p.length >= 108) {
            return -Errno.ENAMETOOLONG;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cs = a.allocate(CAPTURE_LAYOUT);
            MemorySegment sa = a.allocate(110, 8);
            sa.set(JAVA_SHORT, 0, (short) AF_UNIX);
            MemorySegment.copy(p, 0, sa, JAVA_BYTE, 2, p.length);
            return ret((int) BIND.invokeExact(cs, fd, sa, 2 + p.length + 1), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** Binds {@code fd} (of the address's family) to an IPv4 or IPv6 address: 0 or -errno. */
    public static int bindInet(int fd, InetSocketAddress addr) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cs = a.allocate(CAPTURE_LAYOUT);
            MemorySegment sa = a.allocate(28, 8);
            int len = encode(sa, addr);
            return ret((int) BIND.invokeExact(cs, fd, sa, len), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** The family for {@code addr}: AF_INET or AF_INET6. */
    public static int family(InetSocketAddress addr) {
        return addr.getAddress() instanceof Inet6Address ? AF_INET6 : AF_INET;
    }

    private static int encode(MemorySegment sa, InetSocketAddress addr) {
        InetAddress ia = addr.getAddress();
        short port = Short.reverseBytes((short) addr.getPort()); // network byte order
        if (ia instanceof Inet4Address) {
            sa.set(JAVA_SHORT, 0, (short) AF_INET);
            sa.set(JAVA_SHORT, 2, port);
            MemorySegment.copy(ia.getAddress(), 0, sa, JAVA_BYTE, 4, 4);
            return 16;
        }
        sa.set(JAVA_SHORT, 0, (short) AF_INET6);
        sa.set(JAVA_SHORT, 2, port);
        MemorySegment.copy(ia.getAddress(), 0, sa, JAVA_BYTE, 8, 16);
        return 28;
    }

    /** {@code listen(2)}: 0 or -errno. */
    public static int listen(int fd, int backlog) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cs = a.allocate(CAPTURE_LAYOUT);
            return ret((int) LISTEN.invokeExact(cs, fd, backlog), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** {@code shutdown(2)}: 0 or -errno. On a listening socket it ends a pending accept. */
    public static int shutdown(int fd, int how) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cs = a.allocate(CAPTURE_LAYOUT);
            return ret((int) SHUTDOWN.invokeExact(cs, fd, how), cs);
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    /** The local address of an inet socket (the real port after binding port 0), or null. */
    public static InetSocketAddress localAddress(int fd) {
        return name(GETSOCKNAME, fd);
    }

    /** The peer of an inet socket, or null (unix sockets, errors). */
    public static InetSocketAddress peerAddress(int fd) {
        return name(GETPEERNAME, fd);
    }

    private static InetSocketAddress name(MethodHandle h, int fd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cs = a.allocate(CAPTURE_LAYOUT);
            MemorySegment sa = a.allocate(128, 8);
            MemorySegment len = a.allocate(JAVA_INT);
            len.set(JAVA_INT, 0, 128);
            int r = ret((int) h.invokeExact(cs, fd, sa, len), cs);
            if (r < 0) {
                return null;
            }
            int family = sa.get(JAVA_SHORT, 0);
            int port = Short.toUnsignedInt(Short.reverseBytes(sa.get(JAVA_SHORT, 2)));
            byte[] ip;
            if (family == AF_INET) {
                ip = sa.asSlice(4, 4).toArray(JAVA_BYTE);
            } else if (family == AF_INET6) {
                ip = sa.asSlice(8, 16).toArray(JAVA_BYTE);
            } else {
                return null;
            }
            return new InetSocketAddress(InetAddress.getByAddress(ip), port);
        } catch (UnknownHostException e) {
            return null;
        } catch (Throwable t) {
            throw fail(t);
        }
    }

    static {
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
            throw new ExceptionInInitializerError("Sockets assumes a little-endian machine");
        }
    }
}
