"""/openapi.json documents every route of the app; /docs works with no internet access."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import orjson
import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from http_api.app import create_app
from realtime.config import Settings

from .support import LOCAL_TLS, Api, unique_name
from .test_api_errors import NOT_CONFIGURED_HERE, PENDING_SESSION_OPERATIONS, pending_session

APP = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))  # never started: only its routes are read

#: What /openapi.json leaves out on purpose, by name: the Swagger UI page's own files.
UNDOCUMENTED_ROUTES = {"/docs/swagger-init.js"}
UNDOCUMENTED_MOUNTS = {"/docs/assets"}

METHODS = ("get", "post", "put", "patch", "delete")


def app_operations() -> set[tuple[str, str]]:
    """(method, path) of every route of the app but the named exceptions; HEAD comes with GET."""
    operations = set()
    for route in APP.routes:
        if isinstance(route, Mount):
            assert route.path in UNDOCUMENTED_MOUNTS, f"the mount {route.path} is neither documented nor excluded"
        elif isinstance(route, Route):
            if route.path not in UNDOCUMENTED_ROUTES:
                operations |= {(method.lower(), route.path) for method in route.methods if method != "HEAD"}
        elif not isinstance(route, WebSocketRoute):  # OpenAPI 3.0 cannot describe a WebSocket; see below
            pytest.fail(f"a route of a kind this test does not know: {route!r}")
    return operations


@pytest.fixture(scope="module")
def schema(service) -> dict:
    response = httpx.get(service.url + "/openapi.json", verify=LOCAL_TLS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def documented_operations(schema: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in schema["paths"].items() for method in item if method in METHODS}


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), node
        target = schema
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def test_openapi_json_lists_every_route_of_the_app_with_each_of_its_methods(schema):
    expected, documented = app_operations(), documented_operations(schema)
    assert expected - documented == set(), "routes without a docstring schema (or left out of the schema)"
    assert documented - expected == set(), "documented operations the app does not serve"


def test_the_description_points_at_every_websocket_route(schema):
    sockets = [route.path for route in APP.routes if isinstance(route, WebSocketRoute)]
    for path in sockets:
        assert path in schema["info"]["description"], f"the WebSocket {path} is not mentioned"


def test_the_named_exclusions_still_exist_so_the_list_does_not_rot():
    paths = {route.path for route in APP.routes}
    assert UNDOCUMENTED_ROUTES | UNDOCUMENTED_MOUNTS <= paths


def test_the_document_is_openapi_3_0_which_the_bundled_swagger_ui_reads(schema):
    assert re.fullmatch(r"3\.0\.\d+", schema["openapi"])
    assert schema["info"]["title"] and schema["info"]["version"]


def test_every_operation_has_a_summary_and_documented_responses_with_string_status_codes(schema):
    for method, path in documented_operations(schema):
        operation = schema["paths"][path][method]
        assert operation.get("summary"), (method, path)
        responses = operation.get("responses")
        assert responses, (method, path)
        for status, response in responses.items():
            assert re.fullmatch(r"[1-5]\d\d", status), (method, path, status)
            assert resolve(schema, response).get("description"), (method, path, status)
        assert any(status.startswith("2") for status in responses), (method, path)


def test_every_operation_that_takes_a_token_documents_bearer_security_and_401(schema):
    for method, path in documented_operations(schema):
        operation = schema["paths"][path][method]
        if operation.get("security"):
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert "401" in operation["responses"], (method, path)


def test_every_path_parameter_is_documented(schema):
    for method, path in documented_operations(schema):
        names = set(re.findall(r"{(\w+)}", path))
        parameters = [resolve(schema, p) for p in schema["paths"][path][method].get("parameters", [])]
        documented = {p["name"] for p in parameters if p["in"] == "path"}
        assert documented == names, (method, path)
        assert all(p["required"] for p in parameters if p["in"] == "path"), (method, path)


def test_every_reference_points_at_something_in_the_document(schema):
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(schema, node)  # raises KeyError when dangling
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)


def test_post_put_and_patch_operations_document_a_json_body_exactly_when_they_read_one(schema, service,
                                                                                       redis_server):
    """Probed, not trusted: an operation that answers malformed JSON with 400 malformed_json reads JSON,
    so it must document a requestBody, and one that documents a body must read it."""
    api = Api(service.url)
    other = api.sign_in()
    samples = {"username": other.username, "tweet_id": other.post_tweet("probe"), "tag": "probe", "input": "probe"}
    try:
        for method, path in sorted(documented_operations(schema)):
            if method not in ("post", "put", "patch"):
                continue
            if (method.upper(), path) in PENDING_SESSION_OPERATIONS:
                token = pending_session(redis_server)
            else:
                token = api.sign_in().token
            url = re.sub(r"{(\w+)}", lambda m: samples[m.group(1)], path)
            answer = api.http.request(method, url, content=b"{not json", headers={"Authorization": f"Bearer {token}"})
            reads_json = answer.status_code == 400 and answer.json()["error"]["code"] == "malformed_json"
            body = schema["paths"][path][method].get("requestBody")
            assert bool(body) == reads_json, (method, path, answer.status_code, answer.text)
            if body:
                assert body.get("required") is True, (method, path)
                json_schema = resolve(schema, body["content"]["application/json"]["schema"])
                assert json_schema["type"] == "object" and json_schema.get("properties"), (method, path)
                responses = schema["paths"][path][method]["responses"]
                assert {"400", "413"} <= set(responses), f"{method} {path} reads JSON: document 400 and 413"
    finally:
        api.http.close()


def test_operations_that_answer_401_without_a_token_declare_bearer_security(schema, service):
    """Probed both ways, with the sample values of a real user and tweet."""
    api = Api(service.url)
    other = api.sign_in()
    samples = {"username": other.username, "tweet_id": other.post_tweet("probe"), "tag": "probe", "input": "probe"}
    try:
        for method, path in sorted(documented_operations(schema)):
            url = re.sub(r"{(\w+)}", lambda m: samples[m.group(1)], path)
            answer = api.http.request(method, url, json={"username": unique_name("o"), "content": "x"})
            declared = bool(schema["paths"][path][method].get("security"))
            assert (answer.status_code == 401) == declared, (method, path, answer.status_code, answer.text)
    finally:
        api.http.close()


class _AssetLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.links.append(value)


def test_docs_is_html_that_loads_only_same_origin_assets_and_each_answers_200(service):
    page = httpx.get(service.url + "/docs", verify=LOCAL_TLS)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]", page.text, re.IGNORECASE), page.text
    parser = _AssetLinks()
    parser.feed(page.text)
    assert parser.links, "the page loads no assets; Swagger UI needs its script and stylesheet"
    kinds = {".js": "javascript", ".css": "text/css"}
    for link in parser.links:
        url = urljoin(service.url + "/docs", link)
        assert urlsplit(url).netloc == urlsplit(service.url).netloc, link
        asset = httpx.get(url, verify=LOCAL_TLS)
        assert asset.status_code == 200, link
        for suffix, kind in kinds.items():
            if urlsplit(url).path.endswith(suffix):
                assert kind in asset.headers["content-type"], (link, asset.headers["content-type"])


def test_the_swagger_ui_set_up_reads_our_openapi_json_and_turns_off_the_online_validator(service):
    """Swagger UI's default validatorUrl loads a badge from validator.swagger.io on any host but localhost."""
    page = httpx.get(service.url + "/docs", verify=LOCAL_TLS)
    parser = _AssetLinks()
    parser.feed(page.text)
    scripts = [httpx.get(urljoin(service.url + "/docs", link), verify=LOCAL_TLS).text for link in parser.links
               if link.endswith(".js") and "swagger-ui-bundle" not in link]
    assert scripts, "no set-up script found next to the Swagger UI bundle"
    set_up = "\n".join(scripts)
    assert not re.search(r"https?://", set_up), set_up
    assert re.search(r"""url\s*:\s*['"]/openapi\.json['"]""", set_up), set_up
    assert re.search(r"""validatorUrl\s*:\s*(null|['"]none['"])""", set_up), set_up
    assert httpx.get(service.url + "/openapi.json", verify=LOCAL_TLS).status_code == 200



# -- real answers against the document -------------------------------------------------------

def _dereferenced(schema: dict, node):
    """``node`` with every ``$ref`` written out, and every object that lists its properties closed to
    others: an answer may not carry a field the document does not name."""
    if isinstance(node, list):
        return [_dereferenced(schema, item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _dereferenced(schema, value) for key, value in resolve(schema, node).items()}
    if node.get("type") == "object" and "properties" in node:
        node.setdefault("additionalProperties", False)
    return node


def _operation_of(schema: dict, method: str, path: str) -> tuple[str, dict] | None:
    for template, item in schema["paths"].items():
        if re.fullmatch(re.sub(r"{\w+}", "[^/]+", template), path) and method in item:
            return template, item[method]
    return None


def _answers_recorded(client: httpx.Client) -> list[httpx.Response]:
    answers: list[httpx.Response] = []

    def record(response: httpx.Response) -> None:
        response.read()
        answers.append(response)

    client.event_hooks["response"] = [record]
    return answers


def _tour(api: Api, backend) -> None:
    """Every documented operation at least once as a client would call it, and some of its errors."""
    author, reader = api.sign_in(), api.sign_in()
    reader.follow(author)
    tag = unique_name("t")
    tweet = author.post_tweet(f"hello @{reader.username} #{tag}")
    for method, path in [("GET", f"/tweets/{tweet}"), ("PUT", f"/tweets/{tweet}/like"),
                         ("PUT", f"/tweets/{tweet}/retweet"), ("GET", "/timelines/home"),
                         ("GET", f"/users/{author.username}/tweets"), ("GET", f"/users/{reader.username}/mentions"),
                         ("GET", f"/hashtags/{tag}/tweets"), ("GET", f"/tweet/search/{author.username[:4]}"),
                         ("GET", f"/tweet/search/%23{tag}"), ("GET", "/users/me"),
                         ("GET", f"/users/{author.username}/followers"),
                         ("GET", f"/users/{reader.username}/following"), ("GET", "/users/me/suggestions"),
                         ("PATCH", "/users/me"), ("DELETE", f"/tweets/{tweet}/like"),
                         ("DELETE", f"/tweets/{tweet}/retweet"), ("DELETE", f"/tweets/{tweet}"),
                         ("DELETE", f"/users/{author.username}/follow"), ("GET", "/timelines/home?count=0"),
                         ("GET", "/users/nosuchuser_x/tweets"), ("POST", "/users")]:
        body = {"bio": "edited"} if method == "PATCH" else {"username": unique_name()} if method == "POST" else None
        reader.request(method, path, json=body)
    newest = author.get("/notifications").json()["notifications"][0]  # reader's like and follow at least
    author.request("POST", "/notifications/read", json={"up_to": newest["id"]})
    author.request("POST", "/notifications/read", json={"up_to": "not an id"})
    reader.get("/notifications?count=1")
    author.request("DELETE", f"/tweets/{tweet}")
    reader.get(f"/tweets/{tweet}")
    pending = pending_session(backend)
    api.http.post("/users", json={"username": unique_name()}, headers={"Authorization": f"Bearer {pending}"})
    api.http.post("/auth/google", json={"credential": "not a token"})
    api.http.get("/timelines/home")
    author.request("POST", "/auth/signout")


def test_every_answer_of_a_tour_of_the_api_matches_the_document(schema, service, redis_server):
    """Each answer's status is documented for its operation, and its JSON body validates against
    the documented schema, with no field the document leaves out; every operation answers 2xx once."""
    from openapi_schema_validator import OAS30Validator

    api = Api(service.url)
    answers = _answers_recorded(api.http)
    try:
        _tour(api, redis_server)
        for path, item in schema["paths"].items():
            if "get" in item and "{" not in path and not item["get"].get("security"):
                api.http.get(path)
    finally:
        api.http.close()
    succeeded = set()
    for answer in answers:
        method, path = answer.request.method.lower(), answer.request.url.path
        found = _operation_of(schema, method, path)
        assert found, f"{method} {path} is not documented"
        template, operation = found
        documented = operation["responses"].get(str(answer.status_code))
        assert documented, f"{method} {template} answered {answer.status_code}, which it does not document"
        content = resolve(schema, documented).get("content", {})
        if answer.headers.get("content-type", "").startswith("application/json"):
            assert "application/json" in content, f"{method} {template} {answer.status_code}: JSON not documented"
            body_schema = _dereferenced(schema, content["application/json"]["schema"])
            errors = [e.message for e in OAS30Validator(body_schema).iter_errors(answer.json())]
            assert not errors, f"{method} {template} {answer.status_code}: {errors[:3]} in {answer.text[:300]}"
        if answer.is_success:
            succeeded.add((method, template))
    not_reached = documented_operations(schema) - succeeded
    assert not_reached == {(method.lower(), path) for method, path in NOT_CONFIGURED_HERE}, "never succeeded"


def test_the_document_itself_is_valid_openapi_3_0(schema):
    from openapi_spec_validator import validate

    validate(schema)


def test_the_document_has_no_restructuredtext_markup_that_swagger_ui_would_show_as_is(schema):
    """Docstrings elsewhere are reStructuredText; the OpenAPI ones are read by people in /docs."""
    text = orjson.dumps(schema).decode()
    assert "``" not in text, sorted(set(re.findall(r"``[^`]*``", text)))
