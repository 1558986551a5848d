"""A local HTTP server (127.0.0.1 only) that records webhooks, and can fail on purpose."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Answers every POST 200 and records it, except: the first ``fail_first`` attempts
    answer 500; ``always_status`` answers every one with that status; ``status_for(path)``,
    when given, chooses each answer's status (benchmarks/soak.py fails some deliveries at
    random and refuses one path outright). Only 2xx answers are recorded.

    ``hold_first``: the first that many requests are recorded, then answered only after
    ``hold_seconds`` (or when the receiver closes): a slow receiver, for killing the sender
    mid-delivery. ``arrivals`` is released once per request, as it arrives."""

    def __init__(
        self,
        fail_first: int = 0,
        always_status: int | None = None,
        hold_first: int = 0,
        hold_seconds: float = 60,
        status_for: Callable[[str], int] | None = None,
    ) -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.always_status = always_status
        self.hold_first = hold_first
        self.hold_seconds = hold_seconds
        self.status_for = status_for
        self.event = threading.Event()
        self.arrivals = threading.Semaphore(0)
        self._let_go = threading.Event()
        self.lock = threading.Lock()  # the server answers on one thread per request
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server names it so
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.attempts += 1
                    attempt = receiver.attempts
                    if receiver.status_for is not None:
                        status = receiver.status_for(self.path)
                    else:
                        status = receiver.always_status or (
                            500 if attempt <= receiver.fail_first else 200
                        )
                    if status < 300:
                        receiver.received.append(
                            ({k.lower(): v for k, v in self.headers.items()}, body)
                        )
                        receiver.event.set()
                receiver.arrivals.release()
                if attempt <= receiver.hold_first:
                    receiver._let_go.wait(receiver.hold_seconds)
                try:
                    self.send_response(status)
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone (killed while we held its request)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base_url}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._let_go.set()
        self.server.shutdown()
        self.server.server_close()
