"""A small OAuth 2.1 authorization server for the end-to-end tests.

Standard library plus PyJWT (and `cryptography` under it). It implements what
an MCP client needs (MCP authorization, 2025-06-18 / 2025-11-25):

* RFC 8414 metadata at `/.well-known/oauth-authorization-server`;
* RFC 7591 dynamic client registration at `/register`;
* the authorization-code grant with PKCE (RFC 7636, `S256` only, required)
  at `/authorize` and `/token`; `/authorize` approves the fixed user `alice`
  at once and redirects, so a test's "browser" only has to GET it;
* RFC 8707 resource indicators: `/authorize` requires a `resource` from the
  allow-list (`--resource`), and the access token's `aud` is that resource;
* RFC 9207 `iss` in the authorization response;
* RFC 9068 JWT access tokens signed RS256 with `--key` under `--kid`, the
  public key published as a JWKS at `/jwks.json` (Envoy's `jwt_authn` fetches it);
* `GET /_test/events`: what it saw (requests, registrations, authorization
  requests, token requests), for the test's assertions.

Usage: oauth_as.py --key rsa.pem --kid test-rsa --resource URL [--resource URL ...]

Prints one JSON line `{"issuer": "http://127.0.0.1:PORT"}` on stdout once it
listens, logs requests on stderr, and exits when stdin closes (so it never
outlives the test that started it).
"""

import argparse
import base64
import binascii
import hashlib
import json
import os
import secrets
import string
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from jwt.algorithms import RSAAlgorithm

SCOPES = ["mcp"]
GRANT_TYPES = ["authorization_code"]
AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]
USER = "alice"
CODE_TTL = 60
TOKEN_TTL = 300
UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
B64URL = frozenset(string.ascii_letters + string.digits + "-_")


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}


class AuthServer:
    def __init__(self, issuer: str, key_pem: bytes, kid: str, resources: list[str]):
        self.issuer = issuer
        self.key = load_pem_private_key(key_pem, password=None)
        self.kid = kid
        self.resources = resources
        self.lock = threading.Lock()
        self.clients: dict[str, dict[str, Any]] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[Any]] = {
            "requests": [],
            "registrations": [],
            "authorizations": [],
            "tokens": [],
            "errors": [],
        }

    def record(self, kind: str, event: Any) -> None:
        with self.lock:
            self.events[kind].append(event)

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "registration_endpoint": f"{self.issuer}/register",
            "jwks_uri": f"{self.issuer}/jwks.json",
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": GRANT_TYPES,
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
        }

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    # ----- RFC 7591 ---------------------------------------------------------

    def register(self, body: bytes) -> dict[str, Any]:
        try:
            req = json.loads(body)
        except ValueError:
            raise OAuthError(400, "invalid_client_metadata", "the body is not JSON")
        if not isinstance(req, dict):
            raise OAuthError(400, "invalid_client_metadata", "the body is not a JSON object")
        uris = req.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(is_redirect_uri(u) for u in uris):
            raise OAuthError(400, "invalid_redirect_uri", "redirect_uris must be absolute URIs without fragment")
        # RFC 7591 section 2: client_secret_basic when omitted.
        method = req.get("token_endpoint_auth_method") or "client_secret_basic"
        if method not in AUTH_METHODS:
            raise OAuthError(400, "invalid_client_metadata", f"token_endpoint_auth_method {method!r} not supported")
        requested_grants = req.get("grant_types") or ["authorization_code"]
        if "authorization_code" not in requested_grants:
            raise OAuthError(400, "invalid_client_metadata", "grant_types must include authorization_code")
        if "code" not in (req.get("response_types") or ["code"]):
            raise OAuthError(400, "invalid_client_metadata", "response_types must include code")
        requested_scope = (req.get("scope") or " ".join(SCOPES)).split()
        # The server may replace requested values with what it supports (section 3.2.1).
        client = dict(req)
        client.update(
            {
                "client_id": f"client-{secrets.token_urlsafe(12)}",
                "client_id_issued_at": int(time.time()),
                "redirect_uris": uris,
                "token_endpoint_auth_method": method,
                "grant_types": [g for g in requested_grants if g in GRANT_TYPES],
                "response_types": ["code"],
                "scope": " ".join(s for s in requested_scope if s in SCOPES),
            }
        )
        if method != "none":
            client["client_secret"] = secrets.token_urlsafe(32)
            client["client_secret_expires_at"] = 0
        with self.lock:
            self.clients[client["client_id"]] = client
        self.record(
            "registrations",
            {"request": req, "client_id": client["client_id"], "token_endpoint_auth_method": method},
        )
        return client

    # ----- authorization endpoint -------------------------------------------

    def authorize(self, query: str) -> str:
        """The Location of the redirect back to the client. Errors that cannot be
        sent to a verified redirect URI raise OAuthError (shown to the user)."""
        q = single_params(query)
        client = self.clients.get(q.get("client_id", ""))
        if client is None:
            raise OAuthError(400, "invalid_client", "unknown client_id")
        redirect_uri = q.get("redirect_uri")
        if redirect_uri is None and len(client["redirect_uris"]) == 1:
            redirect_uri = client["redirect_uris"][0]
        if redirect_uri not in client["redirect_uris"]:
            raise OAuthError(400, "invalid_request", "redirect_uri is not registered for this client")
        state = q.get("state")

        def back(params: dict[str, str]) -> str:
            if state is not None:
                params["state"] = state
            params["iss"] = self.issuer
            sep = "&" if urlsplit(redirect_uri).query else "?"
            return f"{redirect_uri}{sep}{urlencode(params)}"

        def refuse(error: str, description: str) -> str:
            self.record("errors", {"endpoint": "authorize", "error": error, "description": description})
            return back({"error": error, "error_description": description})

        if q.get("response_type") != "code":
            return refuse("unsupported_response_type", "only response_type=code")
        method = q.get("code_challenge_method")
        challenge = q.get("code_challenge", "")
        if method != "S256":
            return refuse("invalid_request", "PKCE with code_challenge_method=S256 is required")
        if len(challenge) != 43 or not set(challenge) <= B64URL:
            return refuse("invalid_request", "code_challenge must be a base64url SHA-256 digest")
        resource = q.get("resource")
        if resource is None:
            return refuse("invalid_target", "resource (RFC 8707) is required")
        if resource not in self.resources:
            return refuse("invalid_target", f"unknown resource {resource}")
        registered = client["scope"].split()
        scope = q.get("scope", client["scope"]).split()
        if not scope or not all(s in registered for s in scope):
            return refuse("invalid_scope", "scope not registered for this client")
        code = secrets.token_urlsafe(32)
        with self.lock:
            self.codes[code] = {
                "client_id": client["client_id"],
                "redirect_uri": redirect_uri,
                "redirect_uri_sent": "redirect_uri" in q,
                "challenge": challenge,
                "resource": resource,
                "scope": " ".join(scope),
                "expires": time.time() + CODE_TTL,
            }
        self.record(
            "authorizations",
            {
                "client_id": client["client_id"],
                "redirect_uri": redirect_uri,
                "response_type": q["response_type"],
                "code_challenge": challenge,
                "code_challenge_method": method,
                "resource": resource,
                "scope": " ".join(scope),
                "state_sent": state is not None,
            },
        )
        return back({"code": code})

    # ----- token endpoint ---------------------------------------------------

    def token(self, content_type: str, body: bytes, authorization: str | None) -> dict[str, Any]:
        if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            raise OAuthError(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
        form = single_params(body.decode("utf-8", "replace"))
        client = self.authenticate_client(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise OAuthError(400, "unsupported_grant_type", "only authorization_code")
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)  # single use
        if grant is None or grant["expires"] < time.time():
            raise OAuthError(400, "invalid_grant", "unknown, used or expired code")
        if grant["client_id"] != client["client_id"]:
            raise OAuthError(400, "invalid_grant", "the code was issued to another client")
        if grant["redirect_uri_sent"] and form.get("redirect_uri") != grant["redirect_uri"]:
            raise OAuthError(400, "invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128 or not set(verifier) <= UNRESERVED:
            raise OAuthError(400, "invalid_grant", "code_verifier missing or malformed")
        if not secrets.compare_digest(s256(verifier), grant["challenge"]):
            raise OAuthError(400, "invalid_grant", "PKCE verification failed")
        # RFC 8707 section 2.2: the token request may name the resource again; it
        # must be one the grant covers.
        resource = form.get("resource", grant["resource"])
        if resource != grant["resource"]:
            raise OAuthError(400, "invalid_target", "resource differs from the authorization request")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": USER,
            "aud": resource,
            "client_id": client["client_id"],
            "scope": grant["scope"],
            "iat": now,
            "exp": now + TOKEN_TTL,
            "jti": secrets.token_urlsafe(16),
        }
        access_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "at+jwt"})
        self.record(
            "tokens",
            {
                "client_id": client["client_id"],
                "grant_type": "authorization_code",
                "resource_sent": form.get("resource"),
                "pkce": "S256 verified",
                "code_verifier_length": len(verifier),
                "access_token": access_token,
            },
        )
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": TOKEN_TTL, "scope": grant["scope"]}

    def authenticate_client(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        """RFC 6749 section 2.3 with the client's registered method."""
        secret = None
        if authorization and authorization[:6].lower() == "basic ":
            try:
                raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
                client_id, _, secret = raw.partition(":")
                client_id, secret = unquote(client_id), unquote(secret)
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client", "malformed Basic credentials", {"WWW-Authenticate": "Basic"})
            method = "client_secret_basic"
        elif "client_secret" in form:
            client_id, secret, method = form.get("client_id", ""), form["client_secret"], "client_secret_post"
        else:
            client_id, method = form.get("client_id", ""), "none"
        client = self.clients.get(client_id)
        if client is None or client["token_endpoint_auth_method"] != method:
            raise OAuthError(401, "invalid_client", "unknown client or wrong authentication method")
        if method != "none" and not secrets.compare_digest(secret or "", client["client_secret"]):
            raise OAuthError(401, "invalid_client", "wrong client secret")
        return client


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


def is_redirect_uri(uri: Any) -> bool:
    if not isinstance(uri, str):
        return False
    parts = urlsplit(uri)
    return bool(parts.scheme) and bool(parts.netloc or parts.path) and not parts.fragment and "#" not in uri


def single_params(query: str) -> dict[str, str]:
    """Form or query parameters; RFC 6749 section 3.1: none may be repeated."""
    params = parse_qs(query, keep_blank_values=True)
    repeated = [k for k, v in params.items() if len(v) > 1]
    if repeated:
        raise OAuthError(400, "invalid_request", f"repeated parameter {repeated[0]}")
    return {k: v[0] for k, v in params.items()}


def make_handler(server: AuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def send_error_json(self, e: OAuthError) -> None:
            server.record("errors", {"path": self.path.split("?")[0], "error": e.error, "description": e.description})
            headers = {"Cache-Control": "no-store", **e.headers}
            self.send(e.status, {"error": e.error, "error_description": e.description}, headers)

        def body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n > 0 else b""

        def note(self) -> tuple[str, str]:
            path, _, query = self.path.partition("?")
            server.record("requests", {"method": self.command, "path": path})
            return path, query

        def do_GET(self) -> None:  # noqa: N802
            path, query = self.note()
            try:
                if path == "/.well-known/oauth-authorization-server":
                    self.send(200, server.metadata())
                elif path == "/jwks.json":
                    self.send(200, server.jwks())
                elif path == "/authorize":
                    self.send(302, None, {"Location": server.authorize(query), "Cache-Control": "no-store"})
                elif path == "/_test/events":
                    with server.lock:
                        events = json.loads(json.dumps(server.events))
                    self.send(200, events)
                else:
                    self.send(404, {"error": "not_found"})
            except OAuthError as e:
                self.send_error_json(e)

        def do_POST(self) -> None:  # noqa: N802
            path, _ = self.note()
            body = self.body()
            try:
                if path == "/register":
                    self.send(201, server.register(body), {"Cache-Control": "no-store"})
                elif path == "/token":
                    answer = server.token(
                        self.headers.get("Content-Type", ""), body, self.headers.get("Authorization")
                    )
                    self.send(200, answer, {"Cache-Control": "no-store", "Pragma": "no-cache"})
                else:
                    self.send(404, {"error": "not_found"})
            except OAuthError as e:
                self.send_error_json(e)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            sys.stderr.write(f"oauth_as: {self.command} {self.path.split('?')[0]} {args[1] if len(args) > 1 else ''}\n")

    return Handler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--key", required=True, help="PEM RSA private key that signs access tokens")
    p.add_argument("--kid", required=True, help="its key id in the JWKS")
    p.add_argument("--resource", action="append", required=True, help="a resource (RFC 8707) tokens may be for")
    args = p.parse_args()
    with open(args.key, "rb") as f:
        key_pem = f.read()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: None)  # handler set below, once the port is known
    issuer = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.RequestHandlerClass = make_handler(AuthServer(issuer, key_pem, args.kid, args.resource))

    def exit_when_stdin_closes() -> None:
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(json.dumps({"issuer": issuer}), flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
