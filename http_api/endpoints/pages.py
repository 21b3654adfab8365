"""The browser client: its two pages, its files, and the public settings it starts from.

Everything the browser runs lives in ``static/`` (plain ES modules, no build step) and is
served from this origin; nothing is loaded from the internet. Each file of ``static/`` gets
its own ``GET /static/<name>`` route (listed at start-up), so every route of the app stays
documented in /openapi.json, as tests/test_openapi.py asks.

Caveat: the files are read from the source tree (``static/`` beside ``http_api/``), so the
app serves them from a checkout or an editable install, not from a built wheel.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from ..responses import Json

__all__ = ["STATIC_DIR", "app_page", "monitor_page", "client_config", "static_file", "static_routes"]

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"

#: Google Identity Services, allowed only when a client id is configured (its documented CSP).
_GOOGLE = "https://accounts.google.com/gsi/"

_files = StaticFiles(directory=STATIC_DIR, check_dir=False)


def _security_headers(settings) -> dict[str, str]:
    google = bool(settings.google_client_id)
    script = "'self'" + (f" {_GOOGLE}client" if google else "")
    style = "'self'" + (f" {_GOOGLE}style" if google else "")
    connect = "'self'" + (f" {_GOOGLE}" if google else "")
    frame = f"{_GOOGLE}" if google else "'none'"
    policy = (f"default-src 'self'; script-src {script}; style-src {style}; connect-src {connect}; "
              f"img-src 'self' data:; frame-src {frame}; object-src 'none'; base-uri 'none'; "
              f"form-action 'self'; frame-ancestors 'none'")
    return {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _page(request: Request, name: str) -> Response:
    return FileResponse(STATIC_DIR / name, media_type="text/html; charset=utf-8",
                        headers=_security_headers(request.app.state.settings))


async def app_page(request: Request) -> Response:
    """
    summary: The browser client (sign in, home timeline live, profiles, search)
    tags: [pages]
    responses:
      200: {description: An HTML page; its scripts and styles are same-origin files under /static/., content: {text/html: {schema: {type: string}}}}
    """
    return _page(request, "index.html")


async def monitor_page(request: Request) -> Response:
    """
    summary: The operator's page, live connections and users online per server process, charted
    tags: [pages]
    responses:
      200: {description: An HTML page that polls GET /stats every second., content: {text/html: {schema: {type: string}}}}
    """
    return _page(request, "monitor.html")


async def client_config(request: Request) -> Json:
    """
    summary: What the browser client needs to know before sign-in
    description: Which sign-in methods this server offers; no secret is in it.
    tags: [pages]
    responses:
      200:
        description: The public client settings.
        content:
          application/json:
            schema:
              type: object
              required: [dev_signin, google_client_id]
              properties:
                dev_signin: {type: boolean, description: POST /auth/dev is enabled}
                google_client_id: {type: string, nullable: true, description: "the OAuth client id for Sign in with Google, or null"}
    """
    settings = request.app.state.settings
    return Json({"dev_signin": bool(settings.dev_signin), "google_client_id": settings.google_client_id or None})


async def static_file(request: Request) -> Response:
    """
    summary: A file of the browser client (an ES module, the stylesheet or an icon)
    tags: [pages]
    responses:
      200: {description: "The file, with an ETag (304 when unchanged).", content: {'*/*': {schema: {type: string}}}}
      304: {description: Not modified since the ETag or date sent.}
    """
    name = request.url.path.removeprefix("/static/")
    response = await _files.get_response(name, request.scope)
    response.headers["Cache-Control"] = "no-cache"  # revalidate: an edit shows on the next load
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def static_routes() -> list[Route]:
    """One route per file of ``static/`` but the pages, which have their own paths."""
    pages = {"index.html", "monitor.html"}
    names = sorted(p.name for p in STATIC_DIR.iterdir() if p.is_file() and p.name not in pages
                   and not p.name.startswith(".")) if STATIC_DIR.is_dir() else []
    return [Route(f"/static/{name}", static_file, methods=["GET"]) for name in names]
