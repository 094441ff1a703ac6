"""The dashboard and the browser client under ``/ui/`` (contract v1.1,
"Dashboard and browser client"), and the CORS policy of browsers on other
origins.

``/ui/`` is the operator view, ``/ui/accounts/{account_id}`` one account's page
(its credential travels in the URL fragment, never to the server), and
``/ui/<file>`` the static files of ``service/ui/`` (``tokenledger.js``, its
``tokenledger.d.ts``, the pages' scripts and styles). They are read once per
process, served with a content ``ETag`` (``If-None-Match`` → 304) and
``Cache-Control: no-cache``, and the pages with a Content-Security-Policy that
lets them load and call nothing but their own origin.

CORS (the contract is silent; see :class:`CorsMiddleware`): the browser
client's routes (the static files, and an account's ``GET`` balance, entries
and their streams) answer any origin, as they only ever act on a bearer
credential the calling page holds (the API sets no cookie, so a foreign page
gains nothing it did not already have); every other route answers only the
origins listed in ``LEDGER_CORS_ORIGINS`` (none by default).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.domain.values import is_valid_account_id

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
"""The static files (shipped in the wheel as package data of ``service``)."""

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ts": "text/plain; charset=utf-8",
}
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
"""The pages' Content-Security-Policy: nothing from another origin, no inline code."""
COMMON_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, media type and strong ``ETag`` (quoted)."""

    body: bytes
    media_type: str
    etag: str


@cache
def assets() -> dict[str, Asset]:
    """The files of ``service/ui/`` by name (read once per process)."""
    found: dict[str, Asset] = {}
    for path in sorted(UI_DIR.iterdir()):
        media_type = MEDIA_TYPES.get(path.suffix)
        if media_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        found[path.name] = Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return found


def _serve(request: Request, name: str) -> Response:
    """``name`` from :func:`assets`; 404 ``not-found`` when there is none."""
    asset = assets().get(name)
    if asset is None:
        raise HTTPException(404)
    headers = {**COMMON_HEADERS, "ETag": asset.etag}
    if asset.media_type.startswith("text/html"):
        headers["Content-Security-Policy"] = PAGE_POLICY
        headers["X-Frame-Options"] = "DENY"
    candidates = {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}
    if asset.etag in candidates or f"W/{asset.etag}" in candidates:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    return Response(body, media_type=asset.media_type, headers=headers)


@router.api_route("/ui", methods=["GET", "HEAD"])
async def ui_root() -> Response:
    """``/ui`` → ``/ui/`` (relative, so it also works behind a path prefix)."""
    return RedirectResponse("ui/", status_code=308)


@router.api_route("/ui/", methods=["GET", "HEAD"])
async def operator_page(request: Request) -> Response:
    """The operator view (asks for an API key with scope ``audit``)."""
    return _serve(request, "index.html")


@router.api_route("/ui/accounts/{account_id}", methods=["GET", "HEAD"])
async def account_page(request: Request, account_id: str) -> Response:
    """One account's live page; 404 for a string that is no account id."""
    if not is_valid_account_id(account_id):
        raise HTTPException(404)
    return _serve(request, "account.html")


@router.api_route("/ui/{name}", methods=["GET", "HEAD"])
async def ui_file(request: Request, name: str) -> Response:
    """A static file of the dashboard (``tokenledger.js``, ``tokenledger.d.ts``, …)."""
    return _serve(request, name)


CLIENT_ROUTES = re.compile(
    r"^/ui(/.*)?$|^/v1/accounts/[^/]+/(balance|entries)(/stream)?$",
)
"""Paths any origin may ``GET``: the dashboard's files and what the browser
client reads with the bearer credential it is given."""
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, If-None-Match, Last-Event-ID"
EXPOSE_HEADERS = "ETag, Retry-After, WWW-Authenticate, Idempotent-Replayed"
CLIENT_METHODS = frozenset({"GET", "HEAD"})
API_METHODS = "GET, HEAD, POST, PATCH, DELETE"
MAX_AGE = "600"


def parse_origins(text: str) -> frozenset[str]:
    """``LEDGER_CORS_ORIGINS`` as a set: comma-separated origins
    (``https://app.example.com``, trailing ``/`` ignored) or ``*``."""
    return frozenset(part.strip().rstrip("/") for part in text.split(",") if part.strip())


class CorsMiddleware:
    """Cross-origin resource sharing (Fetch standard), without credentials
    mode: ``Access-Control-Allow-Origin`` is ``*`` on the browser client's
    ``GET`` routes (:data:`CLIENT_ROUTES`), else the request's origin when
    ``LEDGER_CORS_ORIGINS`` lists it (or is ``*``). Preflights it allows are
    answered 204 here; anything else passes through untouched (a browser then
    refuses the answer). The setting is read from the app's runtime at each
    request (the runtime exists only once the lifespan has started)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._parsed: tuple[str, frozenset[str]] = ("", frozenset())

    def _origins(self, scope: Scope) -> frozenset[str]:
        app = scope.get("app")
        runtime = getattr(getattr(app, "state", None), "runtime", None)
        text = getattr(getattr(runtime, "settings", None), "cors_origins", "") or ""
        if text != self._parsed[0]:
            self._parsed = (text, parse_origins(text))
        return self._parsed[1]

    def _allow(self, scope: Scope, origin: str, method: str) -> tuple[str, str] | None:
        """``(Access-Control-Allow-Origin, allowed methods)`` or ``None``."""
        if method in CLIENT_METHODS and CLIENT_ROUTES.match(scope.get("path", "")):
            return "*", "GET, HEAD"
        origins = self._origins(scope)
        if "*" in origins:
            return "*", API_METHODS
        if origin.rstrip("/") in origins:
            return origin, API_METHODS
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            # The browser client's GET routes send ``*`` with or without an
            # Origin, so a shared cache never serves a variant without it.
            client = scope["method"] in CLIENT_METHODS and CLIENT_ROUTES.match(scope["path"])
            if not client:
                await self.app(scope, receive, send)
                return
            origin = ""
        requested = headers.get("access-control-request-method")
        preflight = scope["method"] == "OPTIONS" and requested is not None
        allowed = self._allow(
            scope, origin, (requested or "").upper() if preflight else scope["method"]
        )
        if allowed is None:
            await self.app(scope, receive, send)
            return
        allow_origin, methods = allowed
        vary = [] if allow_origin == "*" else [(b"vary", b"Origin")]
        if preflight:
            response_headers = [
                (b"access-control-allow-origin", allow_origin.encode("latin-1")),
                (b"access-control-allow-methods", methods.encode()),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                (b"access-control-max-age", MAX_AGE.encode()),
                (b"content-length", b"0"),
                *vary,
            ]
            await send({"type": "http.response.start", "status": 204, "headers": response_headers})
            await send({"type": "http.response.body", "body": b""})
            return
        extra = [
            (b"access-control-allow-origin", allow_origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
            *vary,
        ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
