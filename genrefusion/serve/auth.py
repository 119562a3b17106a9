"""Optional API key for ``genrefusion serve`` (``--api-key`` / ``GENREFUSION_API_KEY``).

Without a key the server is open, as before (it listens on 127.0.0.1 by default). With one, every
request but the open ones (``/health`` for load balancers and probes, the web page and its static files,
the API docs) must carry it, in ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``; anything else gets a
401 JSON error with a ``WWW-Authenticate`` challenge. When both headers are sent, both must hold the key. The
comparison takes the same time wherever the given key differs (``hmac.compare_digest``). The guard runs before
the body is read: a refused request's body is read to its end and discarded (never stored), up to ``drain``
bytes, past which the 401 closes the connection.

The ``Host`` header is checked too (``HostGuard``): a page on another site can make a browser resolve its own
name to 127.0.0.1 (DNS rebinding) and read the answers of a server with no key, but it cannot make the browser
send a Host other than its own name. ``serve`` allows localhost, 127.0.0.1, [::1] and the bind address when
bound to a loopback address, and any host otherwise, unless ``--allowed-host`` names them (``default_hosts``).
"""
from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Iterable

from ..errors import ConfigError

HEADER = "X-API-Key"
ENV = "GENREFUSION_API_KEY"
OPEN_PATHS = frozenset({"/", "/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)
MIN_LENGTH = 16


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def check_key(key: str) -> str:
    """A usable key, or ConfigError saying why not (too short to resist guessing, or not sendable as a header)."""
    if len(key) < MIN_LENGTH:
        raise ConfigError(f"API key too short ({len(key)} characters; use at least {MIN_LENGTH}, e.g. "
                         "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`)")
    if not key.isascii() or not key.isprintable() or key != key.strip():
        raise ConfigError("API key must be printable ASCII without surrounding spaces (it is sent as a header)")
    return key


def _given(scope) -> list[bytes]:
    """Every key the request sends (X-API-Key headers and Bearer credentials), in header order."""
    keys = []
    for k, v in scope.get("headers", []):
        if k == b"x-api-key":
            keys.append(v)
        elif k == b"authorization" and v[:7].lower() == b"bearer ":
            keys.append(v[7:].strip())
    return keys


async def discard_body(receive, cap: int) -> bool | None:
    """Read the request body to its end without keeping it: True; False past ``cap`` bytes (the rest is left
    unread); None when the client left."""
    size, more = 0, True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        size += len(msg.get("body", b""))
        more = msg.get("more_body", False)
        if size > cap:
            return False
    return True


class ApiKeyGuard:
    """ASGI middleware: a 401 for a request to a protected path without the right key (every key sent must be
    it), answered before the body is read (so it goes outside ``BodyLimit``)."""

    def __init__(self, app, key: str, drain: int = 1 << 30):
        self.app, self.key, self.drain = app, check_key(key).encode("ascii"), drain

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or is_open(scope["path"]):
            return await self.app(scope, receive, send)
        given = _given(scope)
        if given and all(hmac.compare_digest(g, self.key) for g in given):
            return await self.app(scope, receive, send)
        read = await discard_body(receive, self.drain)
        if read is None:
            return
        why = "missing API key" if not given else "wrong API key"
        await send_error(send, 401, f"{why}: send it in the {HEADER} header (or Authorization: Bearer KEY)",
                         [(b"www-authenticate", b'Bearer realm="genrefusion"')]
                         + ([] if read else [(b"connection", b"close")]))


def host_name(value: str) -> str:
    """The host of a Host header value, lower-cased and without its port (an IPv6 literal keeps its brackets)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[:value.find("]") + 1] or value
    return value.rsplit(":", 1)[0]


def host_pattern(name: str) -> str:
    """An allowed host as the Host header carries it (lower case, IPv6 in brackets), or ConfigError. ``*`` allows
    any host, ``*.example.com`` its subdomains."""
    name = name.strip().lower()
    try:
        name = f"[{ipaddress.IPv6Address(name.strip('[]'))}]"  # ::1, [::1] and 0::1 are the same host
    except ValueError:
        pass
    if not name or host_name(name) != name or "/" in name:
        raise ConfigError(f"allowed host {name!r}: give a host name or address without a port or path "
                          "(any port is allowed)")
    return name


def default_hosts(bound: str, given: Iterable[str] = (), name: str | None = None) -> list[str] | None:
    """The hosts ``serve`` answers to: ``given`` (--allowed-host) if any; else, listening on the loopback address
    ``bound`` (given as --host ``name``), this machine's names for itself, the address and the name; else None:
    any host (others reach it by names we cannot know; --allowed-host narrows it)."""
    if given:
        return list(dict.fromkeys(host_pattern(h) for h in given))
    if not ipaddress.ip_address(bound).is_loopback:
        return None
    return list(dict.fromkeys(host_pattern(h) for h in ("localhost", "127.0.0.1", "::1", bound, name or bound)))


class HostGuard:
    """ASGI middleware: a request whose Host header is not an allowed host gets a one-line 400 JSON error, before
    anything else reads it (so it goes outside ``ApiKeyGuard``); its body is drained as there."""

    def __init__(self, app, hosts: Iterable[str], drain: int = 1 << 30):
        self.app, self.hosts, self.drain = app, [host_pattern(h) for h in hosts], drain
        self.any = "*" in self.hosts

    def allowed(self, host: str) -> bool:
        return any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in self.hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.any:
            return await self.app(scope, receive, send)
        given = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"]
        if len(given) == 1 and self.allowed(host_name(given[0])):
            return await self.app(scope, receive, send)
        read = await discard_body(receive, self.drain)
        if read is None:
            return
        why = (f"Host {given[0][:100]!r} is not a name this server answers to (start it with --allowed-host NAME "
               "to allow one)" if len(given) == 1 else f"{len(given) or 'no'} Host headers (one is required)")
        await send_error(send, 400, why, [] if read else [(b"connection", b"close")])


async def send_error(send, status: int, msg: str, headers: Iterable = ()) -> None:
    """Answer with the API's one-line JSON error (from an ASGI middleware)."""
    body = json.dumps({"error": msg, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def document_security(spec: dict) -> None:
    """Declare the key in the OpenAPI document: the scheme, and on each protected operation its use and 401."""
    spec.setdefault("components", {}).setdefault("securitySchemes", {}).update(
        apiKey={"type": "apiKey", "in": "header", "name": HEADER,
                "description": f"the server's API key (`genrefusion serve --api-key` / ${ENV})"},
        bearer={"type": "http", "scheme": "bearer", "description": "the same key as `Authorization: Bearer KEY`"})
    for path, ops in spec.get("paths", {}).items():
        if is_open(path):
            continue
        for op in ops.values():
            op["security"] = [{"apiKey": []}, {"bearer": []}]  # either one
            op.setdefault("responses", {})["401"] = {"description": "missing or wrong API key"}
