"""A stand-in for Google in tests: our own RSA keys, ID tokens signed with them the way
Google signs them, and a local HTTP server publishing the matching certificates with a
``Cache-Control`` header, as https://www.googleapis.com/oauth2/v1/certs does.

No test reaches Google: the service under test is pointed at ``CertServer.url`` with
``GOOGLE_CERTS_URL``.
"""

from __future__ import annotations

import datetime
import http.server
import secrets
import threading
import time

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

__all__ = ["SigningKey", "CertServer", "GoogleStandIn", "CLIENT_ID", "id_token_claims"]

CLIENT_ID = "1234567890-chirptests.apps.googleusercontent.com"


class SigningKey:
    """An RSA key and a self-signed certificate for it, named by a key id."""

    def __init__(self, key_id: str | None = None) -> None:
        self.key_id = key_id or secrets.token_hex(20)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chirp-tests.example")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
                .sign(key, hashes.SHA256()))
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self._signer = crypt.RSASigner.from_string(self.private_pem, self.key_id)  # loading a key is slow: once

    def sign(self, claims: dict, *, key_id: str | None = None, header: dict | None = None) -> str:
        return jwt.encode(self._signer, claims, header=header, key_id=key_id).decode()


class CertServer:
    """Serves ``{key id: PEM}`` on 127.0.0.1 with ``Cache-Control: public, max-age=N``;
    counts the fetches. Stop it to play Google being unreachable."""

    def __init__(self, certs: dict[str, str], max_age: int = 3600, port: int = 0) -> None:
        self.certs = dict(certs)
        self.max_age = max_age
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = orjson.dumps(outer.certs)
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", f"public, max-age={outer.max_age}, must-revalidate, no-transform")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/oauth2/v1/certs"
        self._thread = threading.Thread(target=self._server.serve_forever, name="cert-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def id_token_claims(**overrides) -> dict:
    """The claims of a Google ID token for ``CLIENT_ID``, issued now for an hour, for a new
    account; ``overrides`` change claims (None removes one)."""
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com", "azp": CLIENT_ID, "aud": CLIENT_ID,
        "sub": str(secrets.randbelow(10**21)), "email": f"{secrets.token_hex(4)}@example.com",
        "email_verified": True, "iat": now, "exp": now + 3600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


class GoogleStandIn:
    """Issues ID tokens for ``CLIENT_ID`` signed by ``key`` (published by ``server``)."""

    def __init__(self, max_age: int = 3600) -> None:
        self.key = SigningKey()
        self.unpublished = SigningKey()  # a key Google never published
        self.server = CertServer({self.key.key_id: self.key.cert_pem}, max_age=max_age)

    def claims(self, **overrides) -> dict:
        return id_token_claims(**overrides)

    def token(self, **overrides) -> str:
        """A valid ID token; ``overrides`` change claims (None removes one)."""
        return self.key.sign(self.claims(**overrides))

    def stop(self) -> None:
        self.server.stop()
