#!/usr/bin/env python3
"""Independent test server for the JWT-protected items API.

This server is written separately from parallax so that integration tests can
check parallax against an implementation it did not produce. It uses only the
Python 3.11 standard library and binds to 127.0.0.1 only.

Usage:
    python3 tests/servers/independent_api.py --port 0 --users USERS.csv \
        [--token-lifetime-s 60] [--service-ms 3] [--max-lifetime-s 600]

Once the socket is listening, the server prints exactly one line to stdout,
``listening on 127.0.0.1:PORT``, and flushes it. Log messages go to stderr.
The server stops on SIGTERM or SIGINT, and by itself after --max-lifetime-s.

Routes:
    POST /api/auth/login    JSON body {"email": ..., "password": ...}
    GET  /api/items         requires "Authorization: Bearer <token>"
    GET  /api/items/<id>    requires a bearer token
    POST /api/items         requires a bearer token, JSON object body
    GET  /__stats           test counters, no authentication, not part of the API

Every API response uses the JSON envelope with success, statusCode, message,
data, rows and apiCost. To test client robustness, this server differs from
the published example in ways a client must tolerate. It writes apiCost first
and success last, adds the unknown fields "version" and "requestId", sets
"rows" to null except on item reads, and uses its own message texts (except
"Login Success.").
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import signal
import sys
import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from urllib.parse import urlsplit

LISTEN_HOST = "127.0.0.1"
SERVER_VERSION_FIELD = "independent-1.0"

# Request bodies larger than this are rejected with 413, so a broken client
# cannot make the server buffer unbounded data.
MAX_BODY_BYTES = 1024 * 1024

# Created items are kept so that GET /api/items/<id> can return them, but only
# the newest ones, so that a long load test does not grow memory without bound.
MAX_CREATED_ITEMS = 10_000

# Idle keep-alive connections are closed after this many seconds, which frees
# their handler threads.
IDLE_CONNECTION_TIMEOUT_S = 60

ROUTE_LOGIN = "/api/auth/login"
ROUTE_ITEMS = "/api/items"
ROUTE_ITEM = "/api/items/{id}"
ROUTE_OTHER = "(unmatched)"

ITEM_PATH_RE = re.compile(r"^/api/items/([^/]+)$")
DIGITS_RE = re.compile(r"^[0-9]{1,18}$")

log = logging.getLogger("independent_api")


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def format_api_time(epoch_s: float) -> str:
    """Format a Unix time as local wall-clock time, e.g. "2026-03-31 15:56:56'255"."""
    moment = datetime.fromtimestamp(epoch_s)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + "'%03d" % (moment.microsecond // 1000)


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url and raise ValueError on any invalid input."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("invalid base64url characters")
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def member_code(username: str) -> str:
    """Derive a stable member code in the shape "1881-E62B-7341-A" from the username."""
    digest = hashlib.sha256(username.encode("utf-8")).digest()
    number_a = int.from_bytes(digest[0:2], "big") % 10000
    hex_part = digest[2:4].hex().upper()
    number_b = int.from_bytes(digest[4:6], "big") % 10000
    letter = chr(ord("A") + digest[6] % 26)
    return f"{number_a:04d}-{hex_part}-{number_b:04d}-{letter}"


# --------------------------------------------------------------------------
# Users and tokens
# --------------------------------------------------------------------------


class UserStore:
    """Users loaded from a CSV file with the header row ``username,password``."""

    def __init__(self, path: str) -> None:
        self.passwords: dict[str, str] = {}
        self.members: dict[str, dict] = {}
        with open(path, newline="", encoding="utf-8") as csv_file:
            reader = csv.DictReader(csv_file)
            fields = [name.strip() for name in (reader.fieldnames or [])]
            if "username" not in fields or "password" not in fields:
                raise ValueError(
                    f"{path}: header row must contain 'username,password', found {fields!r}"
                )
            reader.fieldnames = fields
            for line_number, row in enumerate(reader, start=2):
                username = (row.get("username") or "").strip()
                password = row.get("password") or ""
                if not username:
                    continue
                if username in self.passwords:
                    raise ValueError(f"{path}:{line_number}: duplicate username {username!r}")
                self.passwords[username] = password
                self.members[username] = {
                    "id": len(self.members) + 1,
                    "code": member_code(username),
                    "name": username.split("@", 1)[0],
                    "email": username,
                    "member": 1,
                    "status": "active",
                }
        if not self.passwords:
            raise ValueError(f"{path}: no users found")

    def check(self, username: str, password: str) -> bool:
        expected = self.passwords.get(username)
        if expected is None:
            # Compare anyway so that unknown and known usernames take similar time.
            hmac.compare_digest(password.encode("utf-8"), b"\0" * len(password.encode("utf-8")))
            return False
        return hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8"))


class TokenError(Exception):
    """A bearer token was missing, malformed, wrongly signed or expired."""


class TokenSigner:
    """HS256 JWT issuer and verifier with a secret that is random per process."""

    def __init__(self, lifetime_s: int) -> None:
        self.secret = secrets.token_bytes(32)
        self.lifetime_s = lifetime_s

    def _sign(self, signing_input: bytes) -> str:
        return b64url_encode(hmac.new(self.secret, signing_input, hashlib.sha256).digest())

    def issue(self, username: str) -> tuple[str, dict]:
        """Create a signed token for the user and return it with its claims."""
        # JWT NumericDate values are whole seconds here because many clients
        # parse "exp" as an integer. Rounding "iat" down means a token stays
        # valid for between lifetime-1 and lifetime seconds.
        issued_at = int(time.time())
        claims = {
            "sub": username,
            "iat": issued_at,
            "exp": issued_at + self.lifetime_s,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": "HS256", "typ": "JWT"}
        signing_input = (
            b64url_encode(json.dumps(header, separators=(",", ":")).encode("utf-8"))
            + "."
            + b64url_encode(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        )
        token = signing_input + "." + self._sign(signing_input.encode("ascii"))
        return token, claims

    def verify(self, token: str) -> dict:
        """Check the token's signature and expiry and return its claims, or raise TokenError."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("Token is not a valid JWT.")
        try:
            expected_signature = self._sign(f"{parts[0]}.{parts[1]}".encode("ascii"))
        except UnicodeEncodeError:
            raise TokenError("Token is not a valid JWT.") from None
        if not hmac.compare_digest(expected_signature.encode("ascii"), parts[2].encode("utf-8")):
            raise TokenError("Token signature is invalid.")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
        except ValueError:
            raise TokenError("Token is not a valid JWT.") from None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise TokenError("Token algorithm is not HS256.")
        if not isinstance(claims, dict):
            raise TokenError("Token is not a valid JWT.")
        expires_at = claims.get("exp")
        if not isinstance(expires_at, int) or isinstance(expires_at, bool):
            raise TokenError("Token has no valid exp claim.")
        if time.time() >= expires_at:
            raise TokenError("Token has expired, please log in again.")
        if not isinstance(claims.get("sub"), str):
            raise TokenError("Token has no valid sub claim.")
        return claims


# --------------------------------------------------------------------------
# Items and statistics
# --------------------------------------------------------------------------


SEED_ITEMS = [
    {"id": 1, "sku": "PX-0001", "name": "Anchor bolt", "price": 0.45, "stock": 1200},
    {"id": 2, "sku": "PX-0002", "name": "Bearing 608", "price": 1.9, "stock": 340},
    {"id": 3, "sku": "PX-0003", "name": "Cable tie", "price": 0.05, "stock": 9000},
    {"id": 4, "sku": "PX-0004", "name": "Drive belt", "price": 12.75, "stock": 18},
    {"id": 5, "sku": "PX-0005", "name": "End cap", "price": 0.8, "stock": 500},
    {"id": 6, "sku": "PX-0006", "name": "Flat washer", "price": 0.02, "stock": 25000},
    {"id": 7, "sku": "PX-0007", "name": "Gear rack", "price": 23.0, "stock": 7},
    {"id": 8, "sku": "PX-0008", "name": "Hex nut", "price": 0.03, "stock": 14000},
    {"id": 9, "sku": "PX-0009", "name": "Idler pulley", "price": 6.4, "stock": 63},
    {"id": 10, "sku": "PX-0010", "name": "Jam nut", "price": 0.04, "stock": 0},
]


class ItemStore:
    """The fixed seed items plus a bounded, thread-safe store of created items.

    GET /api/items lists only the seed items, so its row count stays 10 no
    matter how many items a load test creates.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seed = {item["id"]: item for item in SEED_ITEMS}
        self._created: OrderedDict[int, dict] = OrderedDict()
        self._next_id = max(self._seed) + 1

    def list_seed(self) -> list[dict]:
        return [dict(item) for item in SEED_ITEMS]

    def get(self, item_id: int) -> dict | None:
        if item_id in self._seed:
            return dict(self._seed[item_id])
        with self._lock:
            item = self._created.get(item_id)
            return dict(item) if item is not None else None

    def create(self, fields: dict, created_by: str) -> dict:
        with self._lock:
            item_id = self._next_id
            self._next_id += 1
            # Client fields come first, and the server-owned fields override
            # any client values with the same names.
            item = dict(fields)
            item["id"] = item_id
            item["createdBy"] = created_by
            item["createdAt"] = format_api_time(time.time())
            self._created[item_id] = item
            while len(self._created) > MAX_CREATED_ITEMS:
                self._created.popitem(last=False)
            return dict(item)


class Stats:
    """Thread-safe request counters that GET /__stats returns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.logins_ok = 0
        self.logins_failed = 0
        self.requests: dict[str, dict[str, int]] = {}

    def record(self, method: str, route: str, status: int) -> None:
        key = f"{method} {route}"
        with self._lock:
            by_status = self.requests.setdefault(key, {})
            by_status[str(status)] = by_status.get(str(status), 0) + 1
            if method == "POST" and route == ROUTE_LOGIN:
                if status == 200:
                    self.logins_ok += 1
                else:
                    self.logins_failed += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "logins_ok": self.logins_ok,
                "logins_failed": self.logins_failed,
                "requests": {key: dict(counts) for key, counts in self.requests.items()},
            }


# --------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------


class RequestBodyError(Exception):
    """The request body could not be read, for example because it is too large."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ApiServer(ThreadingHTTPServer):
    # Handler threads must not keep the process alive after shutdown, because
    # idle keep-alive connections may still be open at that point.
    daemon_threads = True
    # A load test opens many connections at once, and the listen backlog of 5
    # that socketserver uses by default can drop some of them.
    request_queue_size = 1024

    def __init__(self, port: int, users: UserStore, signer: TokenSigner,
                 service_s: float) -> None:
        self.users = users
        self.signer = signer
        self.service_s = service_s
        self.items = ItemStore()
        self.stats = Stats()
        super().__init__((LISTEN_HOST, port), ApiRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can send a
        # reverse DNS query. The fixed name avoids any traffic off this host.
        TCPServer.server_bind(self)
        self.server_name = LISTEN_HOST
        self.server_port = self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        # Clients that disconnect mid-response are routine under load, so
        # these errors are not logged.
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        log.exception("unhandled error while serving %s", client_address)


class ApiRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "IndependentAPI/1.0"
    timeout = IDLE_CONNECTION_TIMEOUT_S
    # Buffer each response and send it with TCP_NODELAY, so that headers and a
    # small body go out in one write and Nagle's algorithm adds no delay.
    wbufsize = -1
    disable_nagle_algorithm = True

    server: ApiServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (name fixed by the base class)
        # Per-request logging is off because load tests send thousands of requests.
        pass

    # ---- method entry points -------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---- routing ---------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        started_wall = time.time()
        started_clock = time.perf_counter()
        path = urlsplit(self.path).path

        if path == "/__stats" and method == "GET":
            self._discard_body()
            self._send_json(200, self.server.stats.snapshot())
            return

        item_match = ITEM_PATH_RE.match(path)
        if path == ROUTE_LOGIN:
            route, allowed = ROUTE_LOGIN, ("POST",)
        elif path == ROUTE_ITEMS:
            route, allowed = ROUTE_ITEMS, ("GET", "POST")
        elif item_match:
            route, allowed = ROUTE_ITEM, ("GET",)
        else:
            route, allowed = ROUTE_OTHER, ()

        try:
            if not allowed:
                self._discard_body()
                status, message, data, rows = 404, f"No such endpoint: {path}", None, None
            elif method not in allowed:
                self._discard_body()
                status, message, data, rows = (
                    405, f"Method {method} is not allowed on {path}.", None, None)
            elif route == ROUTE_LOGIN:
                status, message, data, rows = self._handle_login()
            else:
                status, message, data, rows = self._handle_protected(
                    method, route, item_match.group(1) if item_match else None)
        except RequestBodyError as error:
            status, message, data, rows = error.status, error.message, None, None
            self.close_connection = True
        except Exception:
            log.exception("handler failed for %s %s", method, path)
            status, message, data, rows = 500, "Internal server error.", None, None
            self.close_connection = True

        self.server.stats.record(method, route, status)
        extra_headers = {}
        if status == 401:
            extra_headers["WWW-Authenticate"] = 'Bearer realm="api", error="invalid_token"'
        if status == 405:
            extra_headers["Allow"] = ", ".join(allowed)
        finished_wall = time.time()
        duration_s = time.perf_counter() - started_clock
        envelope = {
            "apiCost": {
                "start": format_api_time(started_wall),
                "finish": format_api_time(finished_wall),
                "duration": round(duration_s, 6),
            },
            "version": SERVER_VERSION_FIELD,
            "requestId": uuid.uuid4().hex[:16],
            "rows": rows,
            "data": data,
            "message": message,
            "statusCode": status,
            "success": 200 <= status < 300,
        }
        self._send_json(status, envelope, extra_headers)

    def _handle_login(self) -> tuple[int, str, object, object]:
        raw_body = self._read_body()
        time.sleep(self.server.service_s)
        try:
            body = json.loads(raw_body)
        except (UnicodeDecodeError, ValueError):
            return 400, "Request body must be a JSON object with email and password.", None, None
        if not isinstance(body, dict):
            return 400, "Request body must be a JSON object with email and password.", None, None
        email = body.get("email")
        password = body.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            return 400, "Fields 'email' and 'password' are required strings.", None, None

        if not self.server.users.check(email, password):
            return 401, "Email or password is incorrect.", None, None
        token, _claims = self.server.signer.issue(email)
        data = {"token": token, "member": dict(self.server.users.members[email])}
        return 200, "Login Success.", data, None

    def _handle_protected(self, method: str, route: str,
                          raw_id: str | None) -> tuple[int, str, object, object]:
        # Read the body before responding so that the connection stays usable
        # for the next request even when the token is rejected.
        raw_body = self._read_body() if method == "POST" else self._discard_body()
        time.sleep(self.server.service_s)
        try:
            claims = self._authenticate()
        except TokenError as error:
            return 401, str(error), None, None

        items = self.server.items
        if route == ROUTE_ITEMS and method == "GET":
            listing = items.list_seed()
            return 200, "Items fetched.", listing, len(listing)

        if route == ROUTE_ITEMS and method == "POST":
            try:
                fields = json.loads(raw_body)
            except (UnicodeDecodeError, ValueError):
                return 400, "Request body must be a JSON object.", None, None
            if not isinstance(fields, dict):
                return 400, "Request body must be a JSON object.", None, None
            created = items.create(fields, claims["sub"])
            return 201, "Item created.", created, None

        # The remaining route is GET /api/items/{id}.
        item = items.get(int(raw_id)) if DIGITS_RE.match(raw_id or "") else None
        if item is None:
            return 404, f"Item {raw_id} was not found.", None, None
        return 200, "Item fetched.", item, 1

    def _authenticate(self) -> dict:
        header = self.headers.get("Authorization")
        if header is None:
            raise TokenError("Authorization header is missing.")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenError("Authorization header must be 'Bearer <token>'.")
        claims = self.server.signer.verify(token)
        if claims["sub"] not in self.server.users.passwords:
            raise TokenError("Token subject is not a known user.")
        return claims

    # ---- request body and response I/O -----------------------------------

    def _read_body(self) -> bytes:
        """Read the whole request body, honouring Content-Length or chunked encoding."""
        transfer_encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in transfer_encoding:
            return self._read_chunked_body()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise RequestBodyError(400, f"Invalid Content-Length: {length_header!r}.") from None
        if length < 0:
            raise RequestBodyError(400, f"Invalid Content-Length: {length_header!r}.")
        if length > MAX_BODY_BYTES:
            raise RequestBodyError(413, f"Request body exceeds {MAX_BODY_BYTES} bytes.")
        return self.rfile.read(length)

    def _read_chunked_body(self) -> bytes:
        chunks = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise RequestBodyError(400, "Invalid chunked request body.") from None
            if size == 0:
                # Skip optional trailer lines up to the empty line that ends the body.
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise RequestBodyError(413, f"Request body exceeds {MAX_BODY_BYTES} bytes.")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _discard_body(self) -> bytes:
        self._read_body()
        return b""

    def _send_json(self, status: int, payload: object,
                   extra_headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Independent stdlib-only test server for the JWT-protected items API.")
    parser.add_argument("--port", type=int, required=True,
                        help="TCP port on 127.0.0.1; 0 picks a free port")
    parser.add_argument("--users", required=True,
                        help="CSV file with header row 'username,password'")
    parser.add_argument("--token-lifetime-s", type=int, default=60,
                        help="JWT lifetime in whole seconds (default: 60)")
    parser.add_argument("--service-ms", type=float, default=3.0,
                        help="milliseconds each API handler sleeps before responding (default: 3)")
    parser.add_argument("--max-lifetime-s", type=float, default=600.0,
                        help="seconds after which the server stops by itself (default: 600)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    if args.token_lifetime_s < 1:
        parser.error(f"--token-lifetime-s must be at least 1, got {args.token_lifetime_s}")
    if not (math.isfinite(args.service_ms) and args.service_ms >= 0):
        parser.error(f"--service-ms must be a finite number >= 0, got {args.service_ms}")
    if not (math.isfinite(args.max_lifetime_s) and args.max_lifetime_s > 0):
        parser.error(f"--max-lifetime-s must be a finite number > 0, got {args.max_lifetime_s}")
    return args


def main(argv: list[str]) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="independent_api: %(levelname)s: %(message)s")
    args = parse_args(argv)
    try:
        users = UserStore(args.users)
    except (OSError, ValueError, csv.Error) as error:
        log.error("failed to load users: %s", error)
        return 2

    signer = TokenSigner(args.token_lifetime_s)
    try:
        server = ApiServer(args.port, users, signer, args.service_ms / 1000.0)
    except OSError as error:
        log.error("failed to listen on %s:%d: %s", LISTEN_HOST, args.port, error)
        return 1

    stop_requested = threading.Event()

    def request_stop(signal_number: int, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signal_number).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    # serve_forever runs in a helper thread because shutdown() blocks until
    # serve_forever returns, so calling it from a signal handler on the same
    # thread would deadlock.
    serve_thread = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    serve_thread.start()
    port = server.server_address[1]
    log.info("started with %d users, token lifetime %d s, service time %g ms, "
             "max lifetime %g s", len(users.passwords), args.token_lifetime_s,
             args.service_ms, args.max_lifetime_s)
    print(f"listening on {LISTEN_HOST}:{port}", flush=True)

    deadline = time.monotonic() + args.max_lifetime_s
    while not stop_requested.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.info("max lifetime of %g s reached, stopping", args.max_lifetime_s)
            break
        stop_requested.wait(min(remaining, 1.0))

    server.shutdown()
    server.server_close()
    serve_thread.join(timeout=5)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
