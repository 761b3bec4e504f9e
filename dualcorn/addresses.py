"""Where to listen, as gunicorn's ``--bind`` spells it: one parser, used by Config and binding.

Accepted forms (gunicorn's, so command lines carry over):

* ``HOST:PORT``, ``HOST`` (port 8000), ``:PORT`` (every IPv4 interface), ``[::1]:PORT``
  (IPv6 in brackets, RFC 3986 3.2.2), optionally prefixed ``tcp://``;
* ``unix:PATH`` or ``unix://PATH``: a Unix domain socket;
* ``fd://N``: an already-bound socket inherited as descriptor N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dualcorn.errors import ConfigError

if TYPE_CHECKING:
    from dualcorn.config import Config

__all__ = ["Address", "listen_addresses", "parse_bind"]

DEFAULT_PORT = 8000  # gunicorn and uvicorn


@dataclass(frozen=True)
class Address:
    kind: Literal["tcp", "unix", "fd"]
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_bind(text: str) -> Address:
    """One ``--bind`` value as an :class:`Address`; ConfigError naming the value otherwise."""
    value = text.strip()
    if value.startswith("unix:"):
        path = value[len("unix://") :] if value.startswith("unix://") else value[len("unix:") :]
        if not path:
            raise ConfigError(f"bind {text!r}: unix: needs a path, as in unix:/run/app.sock")
        return Address("unix", path=path)
    if value.startswith("fd://"):
        number = value[len("fd://") :]
        if not number.isdigit():
            raise ConfigError(f"bind {text!r}: fd:// needs a descriptor number, as in fd://3")
        return Address("fd", fd=int(number))
    value = value.removeprefix("tcp://")
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(f"bind {text!r}: an IPv6 address is written [::1]:8000")
        port_text = rest[1:] if rest else ""
    elif value.count(":") > 1:
        raise ConfigError(f"bind {text!r}: put an IPv6 address in brackets, as in [::1]:8000")
    else:
        host, _, port_text = value.partition(":")
    if not host:
        host = "0.0.0.0"  # gunicorn: ":8000" listens on every IPv4 interface
    if not port_text:
        return Address("tcp", host=host, port=DEFAULT_PORT)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"bind {text!r}: the port must be a number from 0 to 65535")
    return Address("tcp", host=host, port=int(port_text))


def listen_addresses(config: Config) -> list[Address]:
    """Every address ``config`` asks for: its ``bind`` list, else --fd, --uds or host:port."""
    if config.bind:
        # The same address given twice (``-b :8000 -b 0.0.0.0:8000``) is listened on once,
        # rather than failing with "address in use" against ourselves; each port 0 is its own.
        unique: list[Address] = []
        for address in map(parse_bind, config.bind):
            if address not in unique or (address.kind == "tcp" and address.port == 0):
                unique.append(address)
        return unique
    if config.fd is not None:
        return [Address("fd", fd=config.fd)]
    if config.uds is not None:
        return [Address("unix", path=config.uds)]
    return [Address("tcp", host=config.host, port=config.port)]
