"""A loopback Slack: incoming-webhook paths and the Web API's chat.postMessage.

Records every message it accepts; `fail_next(n, status, retry_after)` makes the next n
requests answer an error (500 for an outage, 429 with Retry-After for a rate limit).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

WEBHOOK_PATH = "/services/T0FAKE/B0FAKE/fake-webhook-secret-0123456789"
BOT_TOKEN = "xoxb-0000-fake-bot-token-do-not-log"


@dataclass(frozen=True)
class Post:
    path: str
    text: str
    channel: str | None
    authorization: str | None


class SlackStandIn:
    def __init__(self, bot_token: str = BOT_TOKEN) -> None:
        self.bot_token = bot_token
        self.posts: list[Post] = []
        self.requests = 0  # every request, refused ones included
        self._failures: list[tuple[int, float | None]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def webhook_url(self) -> str:
        return self.base_url + WEBHOOK_PATH

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    def fail_next(self, count: int, status: int = 500, retry_after: float | None = None) -> None:
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def texts(self) -> list[str]:
        with self._lock:
            return [p.text for p in self.posts]

    def __enter__(self) -> SlackStandIn:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:  # keep test output quiet
                pass

            def _answer(self, status: int, body: object, headers: dict[str, str]) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(
                    body, str) else "text/plain")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                bot = self.path == "/api/chat.postMessage"
                with stand_in._lock:
                    stand_in.requests += 1
                    failure = stand_in._failures.pop(0) if stand_in._failures else None
                if failure is not None:
                    status, retry_after = failure
                    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None \
                        else {}
                    error = "ratelimited" if status == 429 else "internal_error"
                    self._answer(status, {"ok": False, "error": error} if bot else error,
                                 headers)
                    return
                if bot:
                    self._bot(raw)
                elif self.path == WEBHOOK_PATH:
                    payload = json.loads(raw)
                    stand_in._record(Post(self.path, payload.get("text", ""), None, None))
                    self._answer(200, "ok", {})
                else:
                    self._answer(404, "no_service", {})

            def _bot(self, raw: str) -> None:
                auth = self.headers.get("Authorization")
                if auth != f"Bearer {stand_in.bot_token}":
                    self._answer(200, {"ok": False, "error": "invalid_auth"}, {})
                    return
                if "json" in (self.headers.get("Content-Type") or ""):
                    payload = json.loads(raw)
                else:
                    payload = {k: v[0] for k, v in parse_qs(raw).items()}
                stand_in._record(Post(self.path, payload.get("text", ""),
                                      payload.get("channel"), auth))
                self._answer(200, {"ok": True, "channel": payload.get("channel"),
                                   "ts": f"{len(stand_in.posts)}.000100"}, {})

        return Handler

    def _record(self, post: Post) -> None:
        with self._lock:
            self.posts.append(post)
