"""Optional API key for ``genrefusion serve`` (``--api-key`` / ``GENREFUSION_API_KEY``).

Without a key the server is open, as before (it listens on 127.0.0.1 by default). With one, every
request but the open ones (``/health`` for load balancers and probes, the web page and its static files,
the API docs) must carry it, in ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``; anything else gets a
401 JSON error with a ``WWW-Authenticate`` challenge. When both headers are sent, both must hold the key. The
comparison takes the same time wherever the given key differs (``hmac.compare_digest``). The guard runs before
the body is read: a refused request's body is read to its end and discarded (never stored), up to ``drain``
bytes, past which the 401 closes the connection.
"""
from __future__ import annotations

import hmac
import json

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
        body = json.dumps({"error": f"{why}: send it in the {HEADER} header (or Authorization: Bearer KEY)",
                           "status": 401}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="genrefusion"')]
                               + ([] if read else [(b"connection", b"close")])})
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
