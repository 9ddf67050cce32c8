"""The service's socket, bound before the model loads: a port in use is one clean error at once, and ``--port 0``
(a free port) has a URL to print. It listens only once the service is ready (a client that comes early is refused,
not kept waiting through the load). Plain sockets: no extra needed."""

from __future__ import annotations

import errno
import socket

from ..errors import B2nerError

#: connections waiting to be accepted (uvicorn's default).
BACKLOG = 2048


class ListenError(B2nerError):
    """The address cannot be listened on (in use, not this machine's, not allowed)."""


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]  # fmt: skip
    except socket.gaierror as exc:
        raise ListenError(
            f"Cannot listen on --host {host}: {exc.strerror}.",
            "Give an address of this machine, e.g. 127.0.0.1 (the default) or 0.0.0.0.",
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"Port {port} on {host} is in use.", "Pick another with --port, or stop what listens there."
            ) from None
        raise ListenError(
            f"Cannot listen on {host}:{port}: {exc.strerror}.",
            "Pick another --port (below 1024 needs privileges) or --host.",
        ) from None
    return sock


def listen(sock: socket.socket) -> None:
    """Start taking connections on a socket from :func:`bind` (they wait until the server accepts them)."""
    try:
        sock.listen(BACKLOG)
    except OSError as exc:  # another process bound the same port (SO_REUSEADDR) and listened first
        host, port = sock.getsockname()[:2]
        sock.close()
        problem = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror})"
        raise ListenError(f"Port {port} on {host} {problem}.",
                          "Pick another with --port, or stop what listens there.") from None  # fmt: skip


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"
