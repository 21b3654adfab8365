"""The one error hierarchy of the service.

    ChirpError                 status  code (default)
    ├── BadRequest             400     bad_request         malformed JSON, wrong types
    ├── Unauthorized           401     unauthorized        no, unknown or expired token
    ├── Forbidden              403     forbidden           signed in, but not allowed
    ├── NotFound               404     not_found
    ├── Conflict               409     conflict            username taken
    ├── PayloadTooLarge        413     payload_too_large
    ├── UnsupportedMediaType   415     unsupported_media_type  a body that is not JSON
    ├── Unprocessable          422     invalid             well-formed but invalid
    ├── RateLimited            429     rate_limited
    └── Unavailable            503     unavailable         Redis does not answer

The engine raises these; ``http_api.errors`` turns them into the contract's JSON in
one place, and the WebSocket endpoint into close codes.
"""

from __future__ import annotations

__all__ = [
    "ChirpError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "Unprocessable",
    "RateLimited",
    "Unavailable",
]


class ChirpError(Exception):
    status = 500
    code = "internal_error"
    message = "Something went wrong on our side."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.message = message or self.message
        self.code = code or self.code
        super().__init__(self.message)

    def as_json(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(ChirpError):
    status = 400
    code = "bad_request"
    message = "The request could not be read."


class Unauthorized(ChirpError):
    status = 401
    code = "unauthorized"
    message = "Sign in first."


class Forbidden(ChirpError):
    status = 403
    code = "forbidden"
    message = "You are not allowed to do that."


class NotFound(ChirpError):
    status = 404
    code = "not_found"
    message = "There is nothing here."


class Conflict(ChirpError):
    status = 409
    code = "conflict"
    message = "That conflicts with something that already exists."


class PayloadTooLarge(ChirpError):
    status = 413
    code = "payload_too_large"
    message = "The request body is too large."


class UnsupportedMediaType(ChirpError):
    status = 415
    code = "unsupported_media_type"
    message = "The body must be application/json."


class Unprocessable(ChirpError):
    status = 422
    code = "invalid"
    message = "The request is well-formed but not valid."


class RateLimited(ChirpError):
    status = 429
    code = "rate_limited"
    message = "Too many requests; try again later."

    def __init__(self, message: str | None = None, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Unavailable(ChirpError):
    status = 503
    code = "unavailable"
    message = "The service is temporarily unavailable; try again shortly."
