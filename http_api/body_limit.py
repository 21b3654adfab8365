"""Request bodies above ``max_body_bytes`` answer 413 with the contract's JSON, on every
route, whether or not it reads a body (Starlette's own ``max_body_size`` answers in plain
text, outside our error handlers)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from realtime.errors import PayloadTooLarge

from .errors import error_response

__all__ = ["BodyLimit"]


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"The request body is larger than {self.max_bytes} bytes.")
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(too_large.status, too_large.code, too_large.message)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise too_large  # inside the endpoint: our handlers turn it into JSON
            return message

        await self.app(scope, counting_receive, send)
