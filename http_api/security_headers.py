"""Headers every answer carries, added in one place on the way out.

- ``X-Content-Type-Options: nosniff`` on every answer: a browser never guesses a type
  (a JSON error that looks like HTML stays JSON).
- On an HTML answer that does not set its own (the browser client's pages set theirs, which
  also allow Google's sign-in script when a client id is configured): a
  ``Content-Security-Policy`` that loads nothing from outside this origin, and refuses
  framing. Swagger UI (``/docs``) needs inline style attributes, nothing more.

No CORS header is ever added here; ``CORS_ORIGINS`` (empty by default) mounts Starlette's
CORS middleware for the origins it names, never ``*``.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "DEFAULT_HTML_POLICY"]

DEFAULT_HTML_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                       "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                       "form-action 'self'; frame-ancestors 'none'")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", DEFAULT_HTML_POLICY)
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, send_with_headers)
