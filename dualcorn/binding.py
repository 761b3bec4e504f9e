"""Listening sockets: TCP (IPv4 or IPv6), Unix domain sockets, inherited descriptors.

A failed bind is turned into one sentence a person can act on, not an errno.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from dualcorn.config import Config
from dualcorn.errors import StartupError

__all__ = ["bind_socket", "describe_socket"]


def bind_socket(config: Config) -> socket.socket:
    """A listening, non-blocking socket for ``config`` (host/port, uds or fd)."""
    if config.fd is not None:
        sock = socket.socket(fileno=config.fd)
    elif config.uds is not None:
        sock = _bind_unix(config.uds, config.backlog)
    else:
        sock = _bind_tcp(config)
    sock.setblocking(False)
    return sock


def _bind_tcp(config: Config) -> socket.socket:
    host, port = config.host, config.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"cannot bind to {host!r}: the host name does not resolve ({exc})"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Restarting on the same port must not wait out TIME_WAIT (every server does this).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(config.backlog)
    except OSError as exc:
        sock.close()
        raise StartupError(_explain(exc, host, port)) from None
    return sock


def _bind_unix(path: str, backlog: int) -> socket.socket:
    # A stale socket file from a previous run would make bind fail; any other file is the
    # user's and is never removed.
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)  # the socket file is created rw for owner and group only
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on unix socket {path!r}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    return sock


def _explain(exc: OSError, host: str, port: int) -> str:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot bind to {where}: the address is already in use. Another process is "
            f"listening there; find it with `ss -ltnp 'sport = :{port}'` or `lsof -i :{port}`, "
            "or choose another --port."
        )
    if exc.errno == errno.EACCES:
        hint = " Ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port >= 1024." \
            if 0 < port < 1024 else ""  # fmt: skip
        return f"cannot bind to {where}: permission denied.{hint}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind to {where}: that address does not belong to this machine."
    return f"cannot bind to {where}: {exc.strerror or exc}"


def describe_socket(sock: socket.socket, *, tls: bool = False) -> str:
    """How the log names a listening socket: ``http://127.0.0.1:8000`` or ``unix:/path``.

    With ``tls`` the scheme is ``https``: the address a person can paste into a browser."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"
