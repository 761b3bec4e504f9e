"""Request ids: kept from a trusted proxy, otherwise made here; seen by the app, logged, echoed.

Theory of operation
-------------------
A request id ties one request's lines together across a proxy, the server and the app.  When a
peer that ``--forwarded-allow-ips`` trusts sends ``X-Request-ID`` (nginx ``$request_id``, the
Heroku router, AWS ALB's ``X-Amzn-Trace-Id`` passed on as ``X-Request-ID``), that id is kept;
otherwise the server makes one: 128 random bits as 32 hex digits, the shape of nginx's
``$request_id``.  An id from an untrusted client is replaced, exactly like the forwarding
headers, so a client cannot plant ids in someone else's logs.  An id longer than 200 characters
or with anything but visible ASCII is replaced as well.

Where the id goes:

* the request's headers, so ``X-Request-ID`` (or the ``--request-id-header`` name) is what the
  app reads, and a WSGI app sees ``HTTP_X_REQUEST_ID``;
* the ASGI scope: ``scope["extensions"]["dualcorn.request_id"]["id"]`` (the ASGI spec's place
  for what a server adds; the TLS extension keeps per-connection data there too), and the WSGI
  environ: ``environ["dualcorn.request_id"]`` (PEP 3333: server keys carry the server's name);
* the access record (``request_id`` in JSON, ``%({dualcorn.request_id}e)s`` in a format);
* the response, as the ``--request-id-header`` header, when that option is set.

The work is done only when something reads the id: ``--request-id-header``, ``--log-format
json`` with the access log on, or an access-log format naming the id.  Otherwise
:func:`request_ids` returns None and requests pay nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from dualcorn.access_format import REQUEST_ID_KEY, compile_format
from dualcorn.proxies import TrustedProxies

if TYPE_CHECKING:
    from dualcorn.config import Config

__all__ = ["DEFAULT_HEADER", "RequestIds", "new_request_id", "request_ids"]

DEFAULT_HEADER = "X-Request-ID"
_MAX_LENGTH = 200  # Heroku accepts 20-200 characters; longer ids are replaced


def new_request_id() -> str:
    """128 random bits as 32 hex digits (nginx ``$request_id``); no uuid module on the path."""
    return os.urandom(16).hex()


def _acceptable(value: bytes) -> bool:
    # Visible ASCII only (RFC 9110 5.5 field-vchar without obs-text): safe in logs and headers.
    return 0 < len(value) <= _MAX_LENGTH and all(0x21 <= byte <= 0x7E for byte in value)


class RequestIds:
    """Assigns each request its id; one per server, built from the Config."""

    __slots__ = ("echo", "name", "trusted")

    def __init__(self, config: Config) -> None:
        header = config.request_id_header
        # The response header to echo the id in, pre-encoded; None: not echoed.
        self.echo = header.encode("latin-1") if header else None
        self.name = (header or DEFAULT_HEADER).lower().encode("latin-1")
        self.trusted = TrustedProxies(config.forwarded_allow_ips)

    def assign(self, scope: dict[str, Any], peer: tuple[str, int] | None) -> str:
        """Give the scope its id; ``peer`` is the socket's (or PROXY protocol's) client."""
        name = self.name
        headers = scope["headers"]
        given: bytes | None = None
        found = False
        for key, value in headers:
            if key == name:  # ASGI: header names are lower-cased
                found = True
                given = value
        if (
            given is not None
            and _acceptable(given)
            and self.trusted.trusts(peer[0] if peer else None)
        ):
            request_id = given.decode("ascii")
        else:
            request_id = new_request_id()
            kept = [item for item in headers if item[0] != name] if found else list(headers)
            kept.append((name, request_id.encode("ascii")))
            scope["headers"] = kept
        scope["extensions"] = {**scope["extensions"], REQUEST_ID_KEY: {"id": request_id}}
        return request_id

    def echo_field(self, scope: dict[str, Any], app_headers: Any) -> tuple[bytes, bytes] | None:
        """The response field echoing the id, unless the app set that header itself."""
        echo = self.echo
        if echo is None:
            return None
        lowered = self.name
        for key, _ in app_headers:
            if bytes(key).lower() == lowered:
                return None
        extension = scope.get("extensions", {}).get(REQUEST_ID_KEY)
        if extension is None:
            return None
        return (echo, extension["id"].encode("ascii"))


def request_ids(config: Config) -> RequestIds | None:
    """The server's RequestIds, or None when nothing would read an id."""
    wanted = config.request_id_header is not None or (
        config.access_log
        and (
            config.log_format == "json" or compile_format(config.access_log_format).uses_request_id
        )
    )
    return RequestIds(config) if wanted else None
