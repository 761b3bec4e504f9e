"""Listening sockets: TCP (IPv4 or IPv6), Unix domain sockets, inherited descriptors.

A failed bind is turned into one sentence a person can act on, not an errno.  A Unix socket
file is created with ``--uds-mode`` (0666 by default, as uvicorn's: the reverse proxy usually
runs as another user, and the directory's permissions are the access control) and removed by
whoever bound it when it closes it (:func:`close_listeners`), so a restart never finds a stale
file and a stopped server leaves none behind.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import weakref

from dualcorn.addresses import Address, listen_addresses
from dualcorn.config import Config
from dualcorn.errors import StartupError

__all__ = ["bind_socket", "bind_sockets", "close_listeners", "describe_socket"]

# Unix socket files this process created: socket -> (path, device, inode).  Only these are
# removed on close, and only while the path is still the same file (a newer server may have
# replaced it).
_OWNED_FILES: weakref.WeakKeyDictionary[socket.socket, tuple[str, int, int]] = (
    weakref.WeakKeyDictionary()
)


def bind_sockets(config: Config) -> list[socket.socket]:
    """A listening, non-blocking socket for every address ``config`` names (``--bind``...).

    Sockets passed by systemd (socket activation, see :mod:`dualcorn.systemd`) win over
    host/port/uds/--bind addresses, as in gunicorn; an explicit fd (--fd, fd://N) is honoured.
    """
    addresses = listen_addresses(config)
    if all(address.kind != "fd" for address in addresses):
        from dualcorn.systemd import listen_sockets

        passed = listen_sockets()
        if passed:
            return passed
    sockets: list[socket.socket] = []
    try:
        for address in addresses:
            sockets.append(_bind_one(address, config))
    except BaseException:
        close_listeners(sockets)
        raise
    return sockets


def bind_socket(config: Config) -> socket.socket:
    """A socket for the first address ``config`` names (for callers that serve one)."""
    return _bind_one(listen_addresses(config)[0], config)


def _bind_one(address: Address, config: Config) -> socket.socket:
    if address.kind == "fd":
        sock = _inherit_fd(address.fd)
    elif address.kind == "unix":
        sock = _bind_unix(address.path, config.backlog, config.uds_mode)
    else:
        sock = _bind_tcp(address.host, address.port, config)
    sock.setblocking(False)
    return sock


def _inherit_fd(fd: int) -> socket.socket:
    # A descriptor that is not open, or is not a stream socket (a mistyped --fd 0 is the
    # terminal), is one sentence, not an OSError traceback.
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise StartupError(f"cannot serve on descriptor {fd}: {exc.strerror or exc}") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()  # not ours to close
        raise StartupError(f"cannot serve on descriptor {fd}: it is not a stream socket")
    return sock


def close_listeners(sockets: list[socket.socket]) -> None:
    """Close ``sockets`` and remove the socket files this process created for them."""
    for sock in sockets:
        sock.close()
        owned = _OWNED_FILES.pop(sock, None)
        if owned is None:
            continue
        path, device, inode = owned
        try:
            found = os.stat(path)
            if (found.st_dev, found.st_ino) == (device, inode):
                os.unlink(path)
        except OSError:
            pass  # already gone, or no longer ours to remove


def _bind_tcp(host: str, port: int, config: Config) -> socket.socket:
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


def _bind_unix(path: str, backlog: int, mode: int) -> socket.socket:
    # A stale socket file from a previous run would make bind fail; any other file is the
    # user's and is never removed.
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Created with no more permissions than asked for, then set exactly (the umask can only
    # take bits away); there is no moment when the file is more open than ``mode``.
    old_umask = os.umask(~mode & 0o777)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on unix socket {path!r}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    found = os.stat(path)
    _OWNED_FILES[sock] = (path, found.st_dev, found.st_ino)
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
