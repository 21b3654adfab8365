"""The OpenAPI document, built from the YAML in each endpoint's docstring, and Swagger UI
served from the swagger-ui-bundle package so /docs works with no internet access.

The docstrings use five shorthands, expanded here, so that what every operation shares is
written once, in the components below:

- a string in ``parameters`` names a component parameter: ``parameters: [username, count]``;
- a string in ``responses`` names a component response: ``responses: {200: TweetPage}``;
- ``errors: [401, 404]`` adds the ``Error`` response for each status;
- ``json: Profile`` in a response is its ``application/json`` body, a component schema
  (or, written as a mapping, a schema of its own).
- ``body:`` is the required JSON object the operation takes: its ``required`` and
  ``properties`` (the ``requestBody`` written out).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from .responses import Json

__all__ = ["schema_generator", "openapi_json", "docs_page", "docs_init", "swagger_assets"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string", "example": "not_found"},
        "message": {"type": "string"}}}},
}
_TWEET = {
    "type": "object",
    "required": ["id", "from", "display_name", "timestamp", "content", "likes", "retweets", "mentions", "hashtags"],
    "properties": {
        "id": {"type": "string", "description": "53-bit time-ordered integer, as a string"},
        "from": {"type": "string"},
        "display_name": {"type": "string", "description": "the author's, as it is now"},
        "timestamp": {"type": "number", "description": "seconds since the Unix epoch"},
        "content": {"type": "string"},
        "likes": {"type": "integer"},
        "retweets": {"type": "integer"},
        "mentions": {"type": "array", "items": {"type": "string"}},
        "hashtags": {"type": "array", "items": {"type": "string", "example": "#python"}},
        "retweeted_by": {"type": "string", "description": "only on a retweet entry in a timeline"},
        "retweet_id": {"type": "string", "description": "the retweet entry's own id (use it as before/since)"},
        "liked": {"type": "boolean", "description": "whether the signed-in caller likes it (only for one)"},
        "retweeted": {"type": "boolean", "description": "whether the signed-in caller retweeted it (only for one)"},
    },
}

def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _response(response: Any) -> Any:
    if isinstance(response, str):
        return _ref("responses", response)
    if isinstance(response, dict) and "json" in response:
        body = response["json"]
        schema = _ref("schemas", body) if isinstance(body, str) else body
        rest = {key: value for key, value in response.items() if key != "json"}
        return {**rest, "content": {"application/json": {"schema": schema}}}
    return response


def expand_shorthand(operation: dict) -> dict:
    """An operation's docstring YAML, its shorthands (see the module's docstring) written out."""
    operation = dict(operation)
    if "body" in operation:
        schema = {"type": "object", **operation.pop("body")}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if "parameters" in operation:
        operation["parameters"] = [_ref("parameters", p) if isinstance(p, str) else p for p in operation["parameters"]]
    responses = {status: _response(response) for status, response in operation.get("responses", {}).items()}
    for status in operation.pop("errors", []):
        responses[status] = _ref("responses", "Error")
    if responses:
        operation["responses"] = dict(sorted(responses.items(), key=lambda item: str(item[0])))
    return operation


class _DocstringSchemas(SchemaGenerator):
    def parse_docstring(self, func_or_method: Any) -> dict[str, Any]:
        return expand_shorthand(super().parse_docstring(func_or_method))

    def get_schema(self, routes: list) -> dict[str, Any]:
        schema = super().get_schema(routes)
        components = schema["components"]
        responses = {name: _response(response) for name, response in components["responses"].items()}
        return _string_keys({**schema, "components": {**components, "responses": responses}})


schema_generator = _DocstringSchemas({
    "openapi": "3.0.3",
    "info": {"title": "Chirp", "version": "1.0",
             "description": "A real-time tweet service. Live timelines: WebSocket GET /ws (see docs/API.md)."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": _ERROR,
            "Tweet": _TWEET,
            "TweetPage": {"type": "object", "required": ["tweets", "next"], "properties": {
                "tweets": {"type": "array", "items": {"$ref": "#/components/schemas/Tweet"}},
                "next": {"type": "string", "nullable": True}}},
            "Profile": {"type": "object", "properties": {
                "username": {"type": "string"}, "display_name": {"type": "string"}, "bio": {"type": "string"},
                "created_at": {"type": "number"}, "followers": {"type": "integer"},
                "following": {"type": "integer"}, "tweets": {"type": "integer"},
                "you_follow": {"type": "boolean", "description": "for a signed-in caller looking at someone else"},
                "follows_you": {"type": "boolean", "description": "for a signed-in caller looking at someone else"}}},
            "Notification": {"type": "object", "required": ["id", "type", "from", "timestamp"], "properties": {
                "id": {"type": "string", "description": "53-bit integer, as a string; larger is newer"},
                "type": {"type": "string", "enum": ["mention", "like", "retweet", "follow"]},
                "from": {"type": "string", "description": "who did it"},
                "timestamp": {"type": "number", "description": "seconds since the Unix epoch"},
                "tweet": {"allOf": [{"$ref": "#/components/schemas/Tweet"}],
                          "description": "the tweet it is about (all but a follow)"}}},
            "NotificationPage": {"type": "object", "required": ["notifications", "next", "unread"], "properties": {
                "notifications": {"type": "array", "items": {"$ref": "#/components/schemas/Notification"}},
                "next": {"type": "string", "nullable": True},
                "unread": {"type": "integer", "description": "newer than the read mark"}}},
            "UserPage": {"type": "object", "required": ["users", "next"], "properties": {
                "users": {"type": "array", "items": {"type": "string"}},
                "next": {"type": "string", "nullable": True}}},
            "Session": {"type": "object", "required": ["token", "expires_at", "username"], "properties": {
                "token": {"type": "string"}, "expires_at": {"type": "number"},
                "username": {"type": "string", "nullable": True}}},
        },
        "responses": {
            "Error": {"description": "An error; see the status for its kind.", "json": "Error"},
            "TweetPage": {"description": "A page, newest first; pass next as before for the next page.",
                          "headers": {"Server-Timing": {
                              "description": "page;dur=<milliseconds spent in the handler>",
                              "schema": {"type": "string"}}},
                          "json": "TweetPage"},
            "UserPage": {"description": "A page of usernames.", "json": "UserPage"},
        },
        "parameters": {
            "username": {"in": "path", "name": "username", "required": True, "schema": {"type": "string"}},
            "tweet_id": {"in": "path", "name": "tweet_id", "required": True, "schema": {"type": "string"}},
            "count": {"in": "query", "name": "count", "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                                                  "default": 20}},
            "before": {"in": "query", "name": "before", "description": "only entries older than this id",
                       "schema": {"type": "string"}},
            "cursor": {"in": "query", "name": "cursor", "description": "next from the previous page",
                       "schema": {"type": "string"}},
        },
    },
})


async def openapi_json(request: Request) -> Json:
    """
    summary: This document
    tags: [operations]
    responses:
      200: {description: The OpenAPI 3.0 document., content: {application/json: {schema: {type: object}}}}
    """
    return Json(schema_generator.get_schema(routes=request.app.routes))


def _string_keys(value: Any) -> Any:
    """YAML reads ``200:`` as an integer key; JSON (and orjson) needs strings, as OpenAPI does."""
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value


_DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chirp API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-init.js"></script></body></html>"""

# validatorUrl: Swagger UI's default loads a badge from validator.swagger.io on any host but localhost.
_DOCS_INIT = "window.ui = SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui', validatorUrl: 'none'});"


async def docs_page(request: Request) -> HTMLResponse:
    """
    summary: Swagger UI for this API, with no internet access needed
    tags: [operations]
    responses:
      200: {description: An HTML page., content: {text/html: {schema: {type: string}}}}
    """
    return HTMLResponse(_DOCS_HTML)


async def docs_init(request: Request) -> Response:
    # A separate file, not an inline script, so a strict Content-Security-Policy can forbid inline code.
    return Response(_DOCS_INIT, media_type="text/javascript")


swagger_assets = StaticFiles(directory=swagger_ui_path)
