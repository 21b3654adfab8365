"""Sign in with Google: an ID token from Google Identity Services, verified on the server.

``GoogleCerts`` holds Google's public signing certificates. They are fetched with httpx
(asynchronously, so no request blocks the event loop on the network) the first time a
sign-in needs them, and kept for as long as the answer's ``Cache-Control: max-age``
(less its ``Age``) allows: one fetch serves every sign-in until then, however many
there are, and concurrent sign-ins share one fetch. A token signed by a key id the cache
does not know triggers a refetch (Google rotates its keys), at most once a minute.

``GoogleVerifier.verify`` checks, with ``google.auth.jwt.decode`` run in a worker
thread (RSA verification is CPU work): the RS256 signature against the certificate
named by the token's key id, ``aud`` equal to our client id, ``iat`` (and ``nbf``)
not in the future and ``exp`` not in the past with ``CLOCK_SKEW`` seconds of grace
for clocks that disagree; then ``iss`` is ``accounts.google.com`` or
``https://accounts.google.com``, ``email_verified`` is true and ``sub`` is present.
Every refusal is ``Unauthorized`` with a code and a sentence a person can read;
Google's certificates being out of reach (and none cached) is ``Unavailable`` (503).

Caveats:
- the session made from a token ends at the token's ``exp``, so ``exp`` itself gets no
  grace: a token accepted after its ``exp`` would give a session that is already over;
- when a refetch fails but certificates were fetched before, those keep serving for up
  to ``STALE_GRACE`` past their expiry (Google publishes a key well before it signs
  with it and keeps it well after), with a warning in the log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
import math
import re
import time
from collections.abc import Callable, Mapping

import httpx
import orjson
from google.auth import exceptions as google_exceptions
from google.auth import jwt

from .errors import Unauthorized, Unavailable

__all__ = ["GoogleCerts", "GoogleVerifier", "GoogleIdentity", "DEFAULT_CERTS_URL", "ISSUERS", "CLOCK_SKEW"]

log = logging.getLogger("chirp.google")

DEFAULT_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
ISSUERS = ("accounts.google.com", "https://accounts.google.com")
#: Seconds of disagreement between our clock and Google's tolerated on iat and nbf.
CLOCK_SKEW = 30
#: Certificates are kept at least this long, whatever max-age says (never per request).
MIN_CACHE = 60.0
#: Used when the answer names no max-age.
DEFAULT_CACHE = 300.0
#: A key id we do not know refetches the certificates at most this often.
UNKNOWN_KEY_REFETCH = 60.0
#: After a failed fetch, sign-ins with nothing cached answer 503 for this long before trying again.
FAILED_FETCH_PAUSE = 1.0
#: Certificates past their max-age still serve this long while Google cannot be reached.
STALE_GRACE = 6 * 3600.0
#: Far longer than any Google ID token (about 1 KB).
MAX_CREDENTIAL_LENGTH = 8192

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


def cache_seconds(headers: Mapping[str, str]) -> float:
    """How long an answer may be kept: ``max-age`` less ``Age``, at least ``MIN_CACHE``."""
    match = _MAX_AGE.search(headers.get("cache-control", ""))
    if not match:
        return DEFAULT_CACHE
    age = headers.get("age", "0").strip()
    seconds = int(match.group(1)) - (int(age) if age.isdigit() else 0)
    return max(MIN_CACHE, float(seconds))


class GoogleCerts:
    """Google's certificates by key id, fetched when needed and cached for their max-age."""

    def __init__(self, url: str = DEFAULT_CERTS_URL, *, client: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.monotonic, timeout: float = 5.0) -> None:
        self.url = url
        # Explicit options: a short timeout (a sign-in waits on it), no redirects followed.
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._clock = clock
        self._certs: dict[str, str] = {}
        self._expires = 0.0  # clock time at which the certificates need fetching again
        self._fetched_at = -math.inf
        self._failed_at = -math.inf
        self._lock = asyncio.Lock()
        self.fetches = 0  # successful fetches, for tests and logs

    async def get(self, key_id: str) -> str | None:
        """The PEM certificate of ``key_id``, or None when Google does not publish it.

        Raises ``Unavailable`` when no certificates can be had at all."""
        now = self._clock()
        if now >= self._expires or (key_id not in self._certs and now - self._fetched_at >= UNKNOWN_KEY_REFETCH):
            await self._refresh(key_id)
        return self._certs.get(key_id)

    async def _refresh(self, key_id: str) -> None:
        async with self._lock:  # one fetch at a time; who waited finds it done
            now = self._clock()
            fresh = now < self._expires
            if fresh and (key_id in self._certs or now - self._fetched_at < UNKNOWN_KEY_REFETCH):
                return
            if now - self._failed_at < FAILED_FETCH_PAUSE:
                self._give_up_or_go_stale(now)
                return
            try:
                certs, lifetime = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                self._failed_at = self._clock()
                log.warning("could not fetch Google's certificates from %s (%s); %s", self.url,
                            exc or type(exc).__name__, "keeping those fetched before" if self._certs else "none cached")
                self._give_up_or_go_stale(self._failed_at)
                return
            now = self._clock()
            self._certs, self._fetched_at, self._expires = certs, now, now + lifetime
            self.fetches += 1
            log.info("fetched %d Google certificate(s); kept %.0f s", len(certs), lifetime)

    def _give_up_or_go_stale(self, now: float) -> None:
        if not self._certs or now >= self._expires + STALE_GRACE:
            raise Unavailable("Google's sign-in certificates cannot be fetched right now; try again shortly.",
                              code="google_unavailable")

    async def _fetch(self) -> tuple[dict[str, str], float]:
        answer = await self._client.get(self.url)
        answer.raise_for_status()
        certs = orjson.loads(answer.content)  # orjson.JSONDecodeError is a ValueError
        if not (isinstance(certs, dict) and certs and all(
                isinstance(k, str) and isinstance(v, str) and "BEGIN CERTIFICATE" in v for k, v in certs.items())):
            raise ValueError("the answer is not a JSON object of key ids to PEM certificates")
        return certs, cache_seconds(answer.headers)

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclasses.dataclass(frozen=True)
class GoogleIdentity:
    sub: str  # Google's stable account id: the key of the account's user, never the email
    email: str | None
    expires_at: float  # the token's exp: the session made from it ends then


def _refuse(code: str, message: str) -> Unauthorized:
    return Unauthorized(message, code=code)


MALFORMED = ("malformed_credential", "That is not a Google ID token.")


def _segment(data: str) -> dict:
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _unverified(credential: object) -> tuple[dict, dict]:
    """Header and claims, read without trusting them, or 401 malformed."""
    if not isinstance(credential, str) or not credential or len(credential) > MAX_CREDENTIAL_LENGTH \
            or not credential.isascii() or credential.count(".") != 2:
        raise _refuse(*MALFORMED)
    header, payload, _ = credential.split(".")
    try:
        return _segment(header), _segment(payload)
    except (ValueError, binascii.Error):
        raise _refuse(*MALFORMED) from None


def _number(value: object) -> bool:
    """A time claim we can compare: a JSON number, finite, within what a float holds exactly."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 2**53 if isinstance(value, int) else (math.isfinite(value) and abs(value) < 2**53)


class GoogleVerifier:
    """Turns a Google ID token into a ``GoogleIdentity``, or refuses it with a reason."""

    def __init__(self, client_id: str, certs: GoogleCerts, *, clock: Callable[[], float] = time.time) -> None:
        self.client_id = client_id
        self.certs = certs
        self._clock = clock

    async def verify(self, credential: object) -> GoogleIdentity:
        header, claims = _unverified(credential)
        if header.get("alg") != "RS256":
            raise _refuse("malformed_credential", "That token is not signed the way Google signs ID tokens (RS256).")
        key_id = header.get("kid")
        if not isinstance(key_id, str) or not key_id:
            raise _refuse("unknown_key", "The token names no signing key.")
        for claim in ("iat", "exp"):
            if not _number(claims.get(claim)):
                raise _refuse(*MALFORMED)
        pem = await self.certs.get(key_id)
        if pem is None:
            raise _refuse("unknown_key", "The token was signed by a key Google does not publish (or no longer does).")
        verified = await asyncio.to_thread(self._check_signature_and_claims, credential, key_id, pem, claims)
        return self._identity(verified)

    def _check_signature_and_claims(self, credential: str, key_id: str, pem: str, claims: dict) -> dict:
        """In a worker thread: google-auth checks the signature, iat/exp and aud; a refusal
        is explained from the claims (it checks the signature first, so a forged token is
        refused whatever its claims say)."""
        try:
            return jwt.decode(credential, certs={key_id: pem}, audience=self.client_id,
                              clock_skew_in_seconds=CLOCK_SKEW)
        except (google_exceptions.GoogleAuthError, ValueError, TypeError):
            # GoogleAuthError covers a wrong issuer (not a ValueError) as much as the rest.
            now = self._clock()
            if claims["exp"] + CLOCK_SKEW < now:
                raise _refuse("credential_expired", "That Google sign-in has expired; sign in again.") from None
            if claims["iat"] - CLOCK_SKEW > now:
                raise _refuse("credential_not_yet_valid", "That Google sign-in is not valid yet; "
                              "check that your device's clock is right.") from None
            if claims.get("aud") != self.client_id:
                raise _refuse("wrong_audience", "That Google sign-in was made for another application.") from None
            raise _refuse("bad_signature", "That Google sign-in's signature does not verify.") from None

    def _identity(self, claims: Mapping) -> GoogleIdentity:
        """The checks google-auth leaves to us, on the claims it verified."""
        now = self._clock()
        if not _number(claims.get("exp")):
            raise _refuse(*MALFORMED)
        if claims.get("iss") not in ISSUERS:
            raise _refuse("wrong_issuer", "That token was not issued by Google.")
        if claims["exp"] <= now:  # no grace: the session would end at exp, before it began
            raise _refuse("credential_expired", "That Google sign-in has expired; sign in again.")
        nbf = claims.get("nbf")
        if nbf is not None and (not _number(nbf) or nbf - CLOCK_SKEW > now):
            raise _refuse("credential_not_yet_valid", "That Google sign-in is not valid yet; "
                          "check that your device's clock is right.")
        verified = claims.get("email_verified")
        if verified is not True and verified != "true":  # older tokens send the string
            raise _refuse("email_not_verified", "Your Google account's email address is not verified; "
                          "verify it with Google, then sign in again.")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise _refuse(*MALFORMED)
        email = claims.get("email")
        return GoogleIdentity(sub, email if isinstance(email, str) else None, float(claims["exp"]))

    async def aclose(self) -> None:
        await self.certs.aclose()
