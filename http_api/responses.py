"""JSON responses rendered with orjson, as the contract's media type."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

__all__ = ["Json", "no_content"]


class Json(JSONResponse):
    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def no_content() -> Response:
    return Response(status_code=204)
