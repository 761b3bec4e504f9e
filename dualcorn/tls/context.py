"""The server's TLS settings, built from the ``--ssl-*`` options when a server process starts.

Why here and not in :class:`~dualcorn.config.Config`: a Config is plain data that supervisors
pickle to their children, while certificates are files that change on disk.  Each server
process reads them afresh (a worker started by ``HUP`` or a ``--reload`` serves the renewed
certificate), and the supervisors read them once before starting anyone, so a broken file stops
the command with exit status 3 and one line that names the option and the file.

The defaults are what a security review expects today:

* TLS 1.2 and 1.3 only (``--ssl-version 5`` pins TLS 1.2); TLS 1.0 and 1.1 are refused, as
  RFC 8996 deprecates them;
* the ssl module's secure cipher list (forward secrecy and AEAD first, no RC4/3DES/NULL, no
  SHA-1 MACs, OpenSSL security level 2) unless ``--ssl-ciphers`` replaces it (that list only
  governs TLS 1.2: TLS 1.3 suites are all AEAD);
* no TLS compression (CRIME), no renegotiation (a client-triggered CPU cost, CVE-2011-1473),
  the server's cipher preference order, fresh (EC)DHE keys per handshake;
* ALPN offers ``h2`` (unless ``--no-http2``) and ``http/1.1`` only, so a client cannot be
  talked into another protocol on the same certificate (the ALPACA attack);
* client certificates only with ``--ssl-cert-reqs 1|2``, checked against ``--ssl-ca-certs``
  and nothing else (not the system store, which trusts every public CA).
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field

from dualcorn.config import Config
from dualcorn.errors import StartupError

__all__ = ["ServerTLS", "load_tls"]

_PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
_PROTOCOL_TLSv1_2 = 5  # ssl.PROTOCOL_TLSv1_2's number: uvicorn's --ssl-version 5 pins TLS 1.2
_CERT_REQS = {0: ssl.CERT_NONE, 1: ssl.CERT_OPTIONAL, 2: ssl.CERT_REQUIRED}
# RFC 8446 4.2.1 and RFC 5246 6.2.1: the wire numbers the ASGI TLS extension reports.
_WIRE_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@dataclass(frozen=True)
class ServerTLS:
    """A ready :class:`ssl.SSLContext` and what the ASGI ``tls`` extension needs from it."""

    context: ssl.SSLContext
    server_cert: str  # the PEM of the server's own certificate (the first in the chain file)
    # OpenSSL's cipher name -> its IANA two-byte number (ASGI TLS extension "cipher_suite").
    cipher_ids: dict[str, int] = field(default_factory=dict)

    def wire_version(self, name: str | None) -> int | None:
        """``"TLSv1.3"`` -> ``0x0304``, as the ASGI TLS extension's ``tls_version``."""
        return _WIRE_VERSIONS.get(name) if name else None


def load_tls(config: Config) -> ServerTLS | None:
    """The TLS settings ``config`` asks for, or None for plain TCP.

    Raises :class:`StartupError` with one sentence naming the option and the file when a file
    is missing or unreadable, holds no certificate or key, the key does not belong to the
    certificate, the password is wrong, or the CA file holds no certificate.
    """
    certfile = config.ssl_certfile
    if certfile is None:
        return None
    cert_text = _read("--ssl-certfile", certfile)
    leaf = _PEM_CERTIFICATE.search(cert_text)
    if leaf is None:
        raise StartupError(f"--ssl-certfile {certfile!r} holds no PEM certificate")
    keyfile = config.ssl_keyfile
    if keyfile is None:
        key_option, key_path, key_text = "--ssl-certfile", certfile, cert_text
    else:
        key_option, key_path, key_text = "--ssl-keyfile", keyfile, _read("--ssl-keyfile", keyfile)
    if "PRIVATE KEY-----" not in key_text:
        hint = "" if keyfile else " (give the key file with --ssl-keyfile)"
        raise StartupError(f"{key_option} {key_path!r} holds no PEM private key{hint}")
    password = config.ssl_keyfile_password
    encrypted = "ENCRYPTED" in key_text
    if encrypted and password is None:
        # Without a password OpenSSL would prompt on the terminal: a server must not.
        raise StartupError(
            f"{key_option} {key_path!r} is encrypted: give its password with "
            "--ssl-keyfile-password (or DUALCORN_SSL_KEYFILE_PASSWORD)"
        )
    context = _secure_context(config)
    try:
        # A callable even for a plain key: OpenSSL must never prompt on the terminal.
        context.load_cert_chain(certfile, keyfile, password if encrypted else _no_password)
    except ssl.SSLError as exc:
        message = _explain_key_error(exc, certfile, key_option, key_path, encrypted)
        raise StartupError(message) from None
    if config.ssl_ca_certs is not None:
        _read("--ssl-ca-certs", config.ssl_ca_certs)
        try:
            context.load_verify_locations(cafile=config.ssl_ca_certs)
        except ssl.SSLError as exc:
            raise StartupError(
                f"--ssl-ca-certs {config.ssl_ca_certs!r} holds no usable PEM certificate "
                f"({exc.reason or exc})"
            ) from None
    context.verify_mode = _CERT_REQS[config.ssl_cert_reqs]
    if config.ssl_ciphers is not None:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise StartupError(
                f"--ssl-ciphers {config.ssl_ciphers!r} selects no cipher OpenSSL knows "
                "(see `openssl ciphers -v 'LIST'`)"
            ) from None
    cipher_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}
    return ServerTLS(context, leaf.group(0).replace("\r\n", "\n") + "\n", cipher_ids)


def _secure_context(config: Config) -> ssl.SSLContext:
    # PROTOCOL_TLS_SERVER is what ssl.create_default_context(Purpose.CLIENT_AUTH) builds,
    # without its load_default_certs(): a server trusts only the CA it is given.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.ssl_version == _PROTOCOL_TLSv1_2:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    # Python sets most of these already; saying them keeps the promise whatever the defaults.
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_DH_USE
        | ssl.OP_SINGLE_ECDH_USE
        | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    )
    # RFC 7301: the client's list is matched in the server's order of preference; "h2"
    # first (RFC 9113 3.2) when HTTP/2 is on, and nothing a client could misuse besides.
    context.set_alpn_protocols(["h2", "http/1.1"] if _http2(config) else ["http/1.1"])
    return context


def _http2(config: Config) -> bool:
    from dualcorn.protocols.http2 import available

    return config.http2 and available()


def _no_password() -> str:
    return ""


def _read(option: str, path: str) -> str:
    """The text of ``path``, or a StartupError that names ``option`` and says what is wrong."""
    try:
        with open(path, encoding="latin-1") as file:
            return file.read()
    except FileNotFoundError:
        raise StartupError(f"{option} {path!r}: no such file") from None
    except IsADirectoryError:
        raise StartupError(f"{option} {path!r} is a directory, not a PEM file") from None
    except PermissionError:
        raise StartupError(
            f"{option} {path!r} cannot be read by this user (uid {os.getuid()}): "
            "check its permissions"
        ) from None
    except OSError as exc:
        raise StartupError(f"{option} {path!r} cannot be read: {exc.strerror or exc}") from None


def _explain_key_error(
    exc: ssl.SSLError, certfile: str, key_option: str, key_path: str, encrypted: bool
) -> str:
    if exc.reason == "KEY_VALUES_MISMATCH":
        return f"{key_option} {key_path!r} is not the private key of --ssl-certfile {certfile!r}"
    if encrypted:
        return f"--ssl-keyfile-password is wrong: it does not decrypt {key_option} {key_path!r}"
    # OpenSSL says only "PEM lib": either file is damaged.
    return (
        f"--ssl-certfile {certfile!r} or {key_option} {key_path!r} could not be loaded "
        f"(a damaged PEM block?): {exc.reason or exc}"
    )
