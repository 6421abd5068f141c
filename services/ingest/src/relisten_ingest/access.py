"""API keys: with ``RELISTEN_INGEST_API_KEYS`` set, every ``/v1`` route needs ``Authorization: Bearer <key>``.

``/``, ``/healthz``, ``/readyz``, ``/metrics``, ``/asyncapi.json`` and the OpenAPI pages stay open.
A browser's ``EventSource`` cannot send headers, so the job event stream
(``GET /v1/jobs/{id}/events``) also takes the key as ``?access_token=<key>``; the parameter is
removed from the request before anything else sees it, so it does not reach the access log.

A pure ASGI middleware rather than a dependency: it guards routes added by other routers too,
and it does not buffer streamed responses.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import parse_qsl, urlencode

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from relisten_ingest import openai_compat
from relisten_ingest.limits import API_KEY_SCOPE

PROTECTED_PREFIX: Final = "/v1"
OPENAI_PATHS: Final = frozenset({"/v1/audio/transcriptions", "/v1/audio/translations"})
QUERY_TOKEN_PATH: Final = re.compile(r"^/v1/jobs/[^/]+/events$")
QUERY_TOKEN: Final = "access_token"


def _protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


def bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_matches(token: str, keys: Sequence[bytes]) -> bool:
    """Constant-time comparison against every key (no early exit that timing could reveal)."""
    candidate = token.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return matched


def _take_query_token(scope: Scope) -> str | None:
    """The ``access_token`` query parameter, removed from the scope's query string."""
    raw: bytes = scope.get("query_string", b"")
    if QUERY_TOKEN.encode() not in raw:
        return None
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    tokens = [value for name, value in pairs if name == QUERY_TOKEN]
    scope["query_string"] = urlencode([(n, v) for n, v in pairs if n != QUERY_TOKEN]).encode("latin-1")
    return tokens[-1] if tokens else None


def unauthorized(path: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="relisten"'}
    if path in OPENAI_PATHS:
        body = openai_compat.error_body(message, status=401, code="invalid_api_key")
    else:
        body = {"error": {"code": "unauthorized", "message": message}}
    return JSONResponse(body, status_code=401, headers=headers)


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys if key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or not _protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        token: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                token = bearer_token(value.decode("latin-1"))
                break
        if QUERY_TOKEN_PATH.match(path):
            query_token = _take_query_token(scope)
            token = token or query_token
        if token is None:
            message = "this server needs an API key: send it as 'Authorization: Bearer <key>'"
            await unauthorized(path, message)(scope, receive, send)
            return
        if not key_matches(token, self.keys):
            await unauthorized(path, "the API key is not valid")(scope, receive, send)
            return
        # Whose request this is, for the rate limit and Idempotency-Key scopes further in.
        scope[API_KEY_SCOPE] = token
        await self.app(scope, receive, send)
