"""The web page at ``/``: plain HTML, CSS and JavaScript modules from the ``web/`` directory beside
this module, served as they are (no build step, nothing from a CDN).

The page is a client of the public API only (``/v1/jobs`` and the job event stream), so it needs
nothing from the app but this router: ``app.include_router(web.router)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

WEB_DIR: Final = Path(__file__).with_name("web")
STATIC_DIR: Final = WEB_DIR / "static"

_MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

# Everything the page may load comes from here; the browser connects to nothing else.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

_COMMON_HEADERS: Final = {
    # Revalidate every time (the ETag makes that cheap), so a new version shows up on reload.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _assets(root: Path) -> dict[str, Path]:
    """The files under ``root`` that may be served, by URL path. Listed once at import, so a
    request can only ever name one of them (no path is joined from user input)."""
    if not root.is_dir():
        return {}
    return {
        path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in _MEDIA_TYPES and not path.name.startswith(".")
    }


_ASSETS: Final = _assets(STATIC_DIR)

router = APIRouter(include_in_schema=False)


def _file(path: Path, headers: dict[str, str]) -> FileResponse:
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> FileResponse:
    """The page itself."""
    page = WEB_DIR / "index.html"
    return _file(
        page,
        {**_COMMON_HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY"},
    )


@router.api_route("/static/{name:path}", methods=["GET", "HEAD"])
async def static(name: str) -> FileResponse:
    """The page's scripts, styles and icons."""
    path = _ASSETS.get(name)
    if path is None:
        raise HTTPException(404, f"there is no static file {name[:80]!r}")
    return _file(path, dict(_COMMON_HEADERS))
