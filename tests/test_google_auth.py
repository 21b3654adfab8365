"""Sign in with Google, end to end: real uvicorn, real Redis, ID tokens signed by our own RSA
key, certificates served from a local server. No test reaches Google.

The service here runs in production mode (GOOGLE_CLIENT_ID set, DEV_SIGNIN not set).
"""

from __future__ import annotations

import asyncio
import threading
import concurrent.futures
import time

import httpx
import pytest

from realtime import google_auth
from launcher.embedded_redis import free_port

from .google_support import CLIENT_ID, CertServer, GoogleStandIn, SigningKey, id_token_claims
from .support import LOCAL_TLS, TIMEOUT, LiveClient, ServiceProcess, unique_name, wait_until
from .test_api_errors import assert_error


def google_service(redis_url: str, certs_url: str, log_dir, **settings: str) -> ServiceProcess:
    """A service in production mode: Google sign-in configured, dev sign-in left to its default."""
    service = ServiceProcess(redis_url, google_client_id=CLIENT_ID, google_certs_url=certs_url, **settings)
    if "dev_signin" not in settings:
        del service.env["DEV_SIGNIN"]
    return service.start(log_dir)


@pytest.fixture(scope="module")
def prod_service(single_redis, google, tmp_path_factory):
    process = google_service(single_redis.url, google.server.url, tmp_path_factory.mktemp("google"))
    yield process
    process.stop()


@pytest.fixture
def http(prod_service):
    with httpx.Client(base_url=prod_service.url, timeout=TIMEOUT, verify=LOCAL_TLS) as client:
        yield client


def sign_in(http: httpx.Client, credential) -> httpx.Response:
    return http.post("/auth/google", json={"credential": credential})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the flow ---------------------------------------------------------------------------------

def test_a_new_account_gets_a_session_whose_only_allowed_call_is_choosing_a_username(http, google):
    claims = google.claims()
    answer = sign_in(http, google.key.sign(claims))
    assert answer.status_code == 200, answer.text
    session = answer.json()
    assert set(session) == {"token", "expires_at", "username"}
    assert session["username"] is None
    assert session["expires_at"] == claims["exp"]  # the session ends when the Google token would
    headers = bearer(session["token"])

    for method, path, body in [("GET", "/timelines/home", None), ("POST", "/tweets", {"content": "hi"}),
                               ("PATCH", "/users/me", {"bio": "x"}), ("GET", "/users/me", None),
                               ("PUT", "/users/someone/follow", None)]:
        assert_error(http.request(method, path, json=body, headers=headers), 403, "username_required")

    name = unique_name("g")
    created = http.post("/users", json={"username": name, "display_name": "From Google"}, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["username"] == name

    # The same token now works for everything.
    assert http.get("/users/me", headers=headers).json()["username"] == name
    posted = http.post("/tweets", json={"content": "signed in with Google"}, headers=headers)
    assert posted.status_code == 201, posted.text
    assert http.get("/timelines/home", headers=headers).json()["tweets"][0]["content"] == "signed in with Google"
    assert_error(http.post("/users", json={"username": unique_name("g")}, headers=headers), 409,
                 "username_already_chosen")


def test_the_account_signs_in_again_as_the_same_user_with_a_new_token(http, google):
    sub = str(time.time_ns())
    first = sign_in(http, google.token(sub=sub)).json()
    name = unique_name("g")
    assert http.post("/users", json={"username": name}, headers=bearer(first["token"])).status_code == 201
    again = sign_in(http, google.token(sub=sub, email="changed@example.com"))
    assert again.status_code == 200, again.text
    assert again.json()["username"] == name
    assert again.json()["token"] != first["token"]
    for token in (first["token"], again.json()["token"]):  # several sessions per user
        assert http.get("/users/me", headers=bearer(token)).json()["username"] == name


def test_the_account_is_keyed_by_its_sub_not_its_email(http, google):
    email = f"shared{time.time_ns()}@example.com"
    first = sign_in(http, google.token(email=email)).json()
    assert http.post("/users", json={"username": unique_name("g")}, headers=bearer(first["token"])).status_code == 201
    other_account = sign_in(http, google.token(email=email))  # another sub with the same address
    assert other_account.status_code == 200
    assert other_account.json()["username"] is None


def test_two_tabs_choosing_a_username_at_once_give_the_account_one_user(http, google):
    sub = str(time.time_ns())
    tab1, tab2 = (sign_in(http, google.token(sub=sub)).json()["token"] for _ in range(2))
    chosen = unique_name("g")
    assert http.post("/users", json={"username": chosen}, headers=bearer(tab1)).status_code == 201
    second = http.post("/users", json={"username": unique_name("g")}, headers=bearer(tab2))
    assert_error(second, 409, "username_already_chosen")
    assert chosen in second.json()["error"]["message"]
    assert http.get("/users/me", headers=bearer(tab2)).json()["username"] == chosen  # tab 2 is that user now


def test_issuer_without_https_and_email_verified_as_a_string_are_accepted(http, google):
    assert sign_in(http, google.token(iss="accounts.google.com")).status_code == 200
    assert sign_in(http, google.token(email_verified="true")).status_code == 200


def test_signing_out_ends_a_google_session(http, google):
    token = sign_in(http, google.token()).json()["token"]
    assert http.post("/auth/signout", headers=bearer(token)).status_code == 204
    assert_error(http.post("/users", json={"username": unique_name("g")}, headers=bearer(token)), 401)


async def test_the_session_and_its_live_socket_end_when_the_google_token_expires(prod_service, google):
    async with httpx.AsyncClient(base_url=prod_service.url, timeout=TIMEOUT, verify=LOCAL_TLS) as http:
        exp = int(time.time()) + 3
        token = (await http.post("/auth/google", json={"credential": google.token(exp=exp)})).json()["token"]
        assert (await http.post("/users", json={"username": unique_name("g")}, headers=bearer(token))).status_code == 201
        async with LiveClient(prod_service.url, token) as live:
            assert await live.close_code(timeout=TIMEOUT + 3) == 4401
        answer = await http.get("/timelines/home", headers=bearer(token))
        assert_error(answer, 401, {"expired_token", "invalid_token"})
        assert time.time() >= exp


# -- every refusal ----------------------------------------------------------------------------

def _bad_tokens(google: GoogleStandIn) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    valid = google.token()
    header, payload, signature = valid.split(".")
    forged_claims = google.key.sign(google.claims(sub="someone-else")).split(".")[1]
    return {
        "wrong audience": (google.token(aud="another-app.apps.googleusercontent.com"), "wrong_audience"),
        "wrong issuer": (google.token(iss="https://evil.example.com"), "wrong_issuer"),
        "issuer missing": (google.token(iss=None), "wrong_issuer"),
        "expired": (google.token(iat=now - 7200, exp=now - 3600), "credential_expired"),
        "expired within the clock skew": (google.token(iat=now - 3600, exp=now - 5), "credential_expired"),
        "not yet valid": (google.token(iat=now + 600, exp=now + 4200), "credential_not_yet_valid"),
        "nbf in the future": (google.token(nbf=now + 600), "credential_not_yet_valid"),
        "signed by another key under our key id":
            (google.unpublished.sign(google.claims(), key_id=google.key.key_id), "bad_signature"),
        "claims swapped under a valid signature": (f"{header}.{forged_claims}.{signature}", "bad_signature"),
        "signature cut short": (f"{header}.{payload}.{signature[:20]}", "bad_signature"),
        "unknown key id": (google.unpublished.sign(google.claims()), "unknown_key"),
        "email not verified": (google.token(email_verified=False), "email_not_verified"),
        "email_verified 'false'": (google.token(email_verified="false"), "email_not_verified"),
        "email_verified missing": (google.token(email_verified=None), "email_not_verified"),
        "sub missing": (google.token(sub=None), "malformed_credential"),
        "exp not a number": (google.token(exp="tomorrow"), "malformed_credential"),
        "alg none": (_b64({"alg": "none", "typ": "JWT"}) + f".{payload}.", "malformed_credential"),
        "alg HS256": (_b64({"alg": "HS256", "typ": "JWT", "kid": google.key.key_id}) + f".{payload}.{signature}",
                      "malformed_credential"),
        "no key id": (_b64({"alg": "RS256", "typ": "JWT"}) + f".{payload}.{signature}", "unknown_key"),
    }


def _b64(value: dict) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


REFUSALS = ["wrong audience", "wrong issuer", "issuer missing", "expired", "expired within the clock skew",
            "not yet valid", "nbf in the future", "signed by another key under our key id",
            "claims swapped under a valid signature", "signature cut short", "unknown key id", "email not verified",
            "email_verified 'false'", "email_verified missing", "sub missing", "exp not a number", "alg none",
            "alg HS256", "no key id"]


@pytest.mark.parametrize("case", REFUSALS)
def test_a_token_that_fails_verification_is_401_with_a_reason_a_person_can_read(http, google, case):
    credential, code = _bad_tokens(google)[case]
    error = assert_error(sign_in(http, credential), 401, code)
    assert len(error["message"]) > 15 and error["message"][0].isupper(), error


GARBAGE = ["", "x", "a.b", "a.b.c", "....", "...", "é.é.é", "eyJ.eyJ.eyJ", "e30.e30.e30", "W10.W10.",
           "bnVsbA.bnVsbA.", "x" * 9000, "a." * 5000, "\x00.\x00.\x00", "Bearer abc.def.ghi",
           "%7B%7D.%7B%7D.%7B%7D", "eyJhbGciOiJSUzI1NiJ9.!!!.abc"]


@pytest.mark.parametrize("credential", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_401_malformed_credential(http, credential):
    assert_error(sign_in(http, credential), 401, "malformed_credential")


@pytest.mark.parametrize("body, code", [({}, "missing_field"), ({"credential": None}, "missing_field"),
                                        ({"credential": 5}, "wrong_type"), ({"credential": ["x"]}, "wrong_type")])
def test_a_missing_or_mistyped_credential_is_400(http, body, code):
    assert_error(http.post("/auth/google", json=body), 400, code)


# -- production mode ----------------------------------------------------------------------------

def test_production_mode_refuses_dev_sign_in_and_says_so_in_the_client_config(http):
    assert_error(http.post("/auth/dev", json={"username": unique_name()}), 404, "dev_signin_disabled")
    assert http.get("/config").json() == {"dev_signin": False, "google_client_id": CLIENT_ID}


def test_dev_sign_in_explicitly_on_works_beside_google(single_redis, google, tmp_path):
    service = google_service(single_redis.url, google.server.url, tmp_path, dev_signin="on")
    try:
        with httpx.Client(base_url=service.url, timeout=TIMEOUT, verify=LOCAL_TLS) as http:
            assert http.post("/auth/dev", json={"username": unique_name()}).status_code == 200
            assert sign_in(http, google.token()).status_code == 200
            assert http.get("/config").json() == {"dev_signin": True, "google_client_id": CLIENT_ID}
    finally:
        service.stop()


def test_without_a_google_client_id_google_sign_in_answers_404(api):
    assert_error(api.http.post("/auth/google", json={"credential": "a.b.c"}), 404, "google_signin_disabled")


# -- Google's certificates ----------------------------------------------------------------------

def test_certificates_are_fetched_once_for_many_sign_ins_even_at_once(single_redis, tmp_path):
    google = GoogleStandIn(max_age=3600)
    service = google_service(single_redis.url, google.server.url, tmp_path)
    try:
        tokens = [google.token() for _ in range(24)] + [google.unpublished.sign(google.claims()) for _ in range(4)]

        def call(token: str) -> int:
            return httpx.post(service.url + "/auth/google", json={"credential": token}, timeout=TIMEOUT, verify=LOCAL_TLS).status_code

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(call, tokens))
        assert statuses == [200] * 24 + [401] * 4
        assert [call(google.token()) for _ in range(5)] == [200] * 5
        assert google.server.fetches == 1
    finally:
        service.stop()
        google.stop()


def test_google_unreachable_is_503_until_its_certificates_can_be_fetched(single_redis, tmp_path):
    key = SigningKey()
    port = free_port()
    service = google_service(single_redis.url, f"http://127.0.0.1:{port}/oauth2/v1/certs", tmp_path)
    server = None
    try:
        with httpx.Client(base_url=service.url, timeout=TIMEOUT, verify=LOCAL_TLS) as http:
            credential = key.sign(id_token_claims())
            answer = sign_in(http, credential)
            assert_error(answer, 503, "google_unavailable")
            assert_error(sign_in(http, "garbage"), 401, "malformed_credential")  # no fetch needed to refuse that

            server = CertServer({key.key_id: key.cert_pem}, port=port)
            wait_until(lambda: sign_in(http, key.sign(id_token_claims())).status_code == 200,
                       what="sign-in to work once the certificates can be fetched")
            server.stop()
            server = None
            # Cached: Google going away again changes nothing until max-age runs out.
            assert sign_in(http, key.sign(id_token_claims())).status_code == 200
    finally:
        service.stop()
        if server is not None:
            server.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_certificates_are_kept_for_max_age_less_age_then_fetched_again():
    key = SigningKey()
    server = CertServer({key.key_id: key.cert_pem}, max_age=600)
    clock = FakeClock()
    certs = google_auth.GoogleCerts(server.url, clock=clock)
    try:
        assert await certs.get(key.key_id) == key.cert_pem
        clock.now += 599
        await certs.get(key.key_id)
        assert server.fetches == 1
        clock.now += 2
        await certs.get(key.key_id)
        assert server.fetches == 2
    finally:
        await certs.aclose()
        server.stop()
    assert google_auth.cache_seconds({"cache-control": "public, max-age=19204, must-revalidate", "age": "204"}) == 19000
    assert google_auth.cache_seconds({"cache-control": "max-age=0"}) == google_auth.MIN_CACHE
    assert google_auth.cache_seconds({}) == google_auth.DEFAULT_CACHE


async def test_an_unknown_key_id_refetches_at_most_once_a_minute_and_finds_a_rotated_key():
    old, new = SigningKey(), SigningKey()
    server = CertServer({old.key_id: old.cert_pem})
    clock = FakeClock()
    certs = google_auth.GoogleCerts(server.url, clock=clock)
    try:
        await certs.get(old.key_id)
        assert await certs.get(new.key_id) is None  # just fetched: no refetch for a stranger
        assert server.fetches == 1
        server.certs[new.key_id] = new.cert_pem  # Google rotates
        clock.now += google_auth.UNKNOWN_KEY_REFETCH
        assert await asyncio.gather(*(certs.get(new.key_id) for _ in range(10))) == [new.cert_pem] * 10
        assert server.fetches == 2
    finally:
        await certs.aclose()
        server.stop()


async def test_cached_certificates_serve_past_max_age_while_google_is_unreachable_within_a_grace():
    key = SigningKey()
    server = CertServer({key.key_id: key.cert_pem}, max_age=600)
    clock = FakeClock()
    certs = google_auth.GoogleCerts(server.url, clock=clock)
    try:
        await certs.get(key.key_id)
        server.stop()
        clock.now += 700
        assert await certs.get(key.key_id) == key.cert_pem
        clock.now += google_auth.STALE_GRACE
        with pytest.raises(google_auth.Unavailable):
            await certs.get(key.key_id)
    finally:
        await certs.aclose()


async def test_verification_runs_off_the_event_loop(monkeypatch):
    """The RSA verifications run in threads, never on the event loop's own thread (counting
    the loop's ticks meanwhile said the same, but flaked on a busy machine)."""
    google = GoogleStandIn()
    verifier = google_auth.GoogleVerifier(CLIENT_ID, google_auth.GoogleCerts(google.server.url))
    threads: list[int] = []
    check = verifier._check_signature_and_claims

    def recording_check(*args):
        threads.append(threading.get_ident())
        return check(*args)

    monkeypatch.setattr(verifier, "_check_signature_and_claims", recording_check)
    try:
        await verifier.verify(google.token())  # warm the certificate cache
        tokens = [google.token() for _ in range(200)]
        identities = await asyncio.gather(*(verifier.verify(token) for token in tokens))
        assert len({identity.sub for identity in identities}) == 200
        assert len(threads) == 201 and threading.get_ident() not in threads
    finally:
        await verifier.aclose()
        google.stop()
