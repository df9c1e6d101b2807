"""A minimal application node for the HAProxy demo and test: WSGI, threaded,
one process per node. Each request reads (or creates) the user's session in
Redis and answers which node served it and which node the ring gives the
session, so a driver can measure locality; the routing cookie is set by
`RouteCookieMiddleware`.

    python ops/haproxy/app.py --node app-1 --port 8001 --redis-port 6379 --ring ring:web --secret <hex>

Endpoints: `/` (the session page), `/stats` (JSON counters), `/load?extra=n`
(adds n to the load this node reports: the test's skew lever).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from redis_session import SessionStore
from redis_session.routing import RouteCookie, RouteCookieMiddleware, Router


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 256


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _cookie(environ: dict[str, Any], name: str) -> str | None:
    for part in str(environ.get("HTTP_COOKIE", "")).split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


class App:
    def __init__(self, node: str, store: SessionStore[Any], window: float = 2.0) -> None:
        self.node = node
        self.window = window
        self.store = store
        self.lock = threading.Lock()
        self.stamps: deque[float] = deque()
        self.extra = 0
        self.counts = {"requests": 0, "created": 0, "found": 0, "logouts": 0}

    def load(self) -> int:
        """Requests in the last `window` seconds, plus the test's extra."""
        now = time.monotonic()
        with self.lock:
            while self.stamps and self.stamps[0] < now - self.window:
                self.stamps.popleft()
            return len(self.stamps) + self.extra

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/stats":
            with self.lock:
                body = json.dumps({**self.counts, "node": self.node}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if path == "/load":
            qs = environ.get("QUERY_STRING", "")
            with self.lock:
                self.extra = int(qs.partition("=")[2] or 0)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        with self.lock:
            self.stamps.append(time.monotonic())
            self.counts["requests"] += 1
        sid = _cookie(environ, "sid")
        headers = [("Content-Type", "text/plain"), ("X-Served-By", self.node)]
        session = self.store.get(sid, fresh=True) if sid else None
        if session is None:
            if sid:
                with self.lock:
                    self.counts["logouts"] += 1  # a user who had a session lost it
                headers.append(("X-Logout", "1"))
            session = self.store.create(subject="demo", data={"n": 0})
            headers.append(("Set-Cookie", f"sid={session.sid}; Path=/; HttpOnly"))
            with self.lock:
                self.counts["created"] += 1
        else:
            with self.lock:
                self.counts["found"] += 1
        # the middleware reads it when this start_response call reaches it
        environ["app.sid"] = session.sid
        start_response("200 OK", headers)
        return [session.sid.encode()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--redis-port", type=int, default=6379)
    ap.add_argument("--ring", default="ring:web")
    ap.add_argument("--secret", required=True, help="the routing cookie's HMAC key, hex")
    ap.add_argument("--interval", type=float, default=0.3, help="seconds between load reports")
    ap.add_argument("--window", type=float, default=2.0, help="the load: requests in this many seconds")
    a = ap.parse_args()
    client = redis.Redis(host="127.0.0.1", port=a.redis_port)
    store: SessionStore[Any] = SessionStore(client, tenant="demo")
    app = App(a.node, store, a.window)
    router = Router(store, a.ring, node=a.node, load=app.load, interval=a.interval)
    cookie = RouteCookie(bytes.fromhex(a.secret), secure=False)
    inner = RouteCookieMiddleware(app, router, cookie, sid_of=lambda env: env.get("app.sid"))

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            node = environ.get("redis_session.node")
            if node:
                headers = [*headers, ("X-Route-Node", str(node))]
            return start_response(status, headers)

        return inner(environ, start)

    httpd = make_server("127.0.0.1", a.port, wsgi, server_class=_Server, handler_class=_Quiet)
    print(f"{a.node} listening on {a.port}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
