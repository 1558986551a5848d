"""Helpers for the SDK and adapter tests: people deciding from another thread while the
agent waits, and a TCP proxy that drops connections to exercise the SDK's retries."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connection

from approvals import actions
from approvals.models import Action


class Decider:
    """While the test's agent code blocks on the gate, decides pending actions from a
    thread: ``decisions`` is a list of ``(tool, decide)``; each new pending action of that
    tool gets the first unused ``decide(action)`` for it, in order of appearance.

    Like a person, it takes a moment (``think``) before deciding: a decision that lands
    before the agent's long-poll reaches the server is only seen when that poll times out
    (the API's ``?wait=N`` waits for a change from the status it reads when it starts)."""

    def __init__(
        self,
        decisions: list[tuple[str, Callable[[Action], Any]]],
        timeout: float = 30,
        think: float = 0.3,
    ) -> None:
        self.decisions = list(decisions)
        self.think = think
        self.timeout = timeout
        self.decided: list[int] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while self.decisions and not self._stop.is_set() and time.monotonic() < deadline:
                tools = {tool for tool, _ in self.decisions}
                pending = (
                    Action.objects.filter(status="pending", tool__in=tools)
                    .exclude(pk__in=self.decided)
                    .order_by("id")
                    .first()
                )
                if pending is None:
                    time.sleep(0.05)  # polling the database for the agent's request
                    continue
                self.decided.append(pending.pk)
                time.sleep(self.think)
                index = next(
                    i for i, (tool, _) in enumerate(self.decisions) if tool == pending.tool
                )
                self.decisions.pop(index)[1](pending)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            connection.close()

    def __enter__(self) -> Decider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)
        if self.errors:
            raise self.errors[0]


def approve_with(user: Any, arguments: dict | None = None, comment: str = "") -> Callable:
    return lambda action: actions.approve(
        action_id=action.pk, user=user, arguments=arguments, comment=comment
    )


def reject_with(user: Any, comment: str) -> Callable:
    return lambda action: actions.reject(action_id=action.pk, user=user, comment=comment)


@contextlib.contextmanager
def later(fn: Callable[[], Any], delay: float = 0.5) -> Iterator[None]:
    """Run ``fn`` in a thread after ``delay`` seconds; re-raise its error at the end."""
    errors: list[BaseException] = []

    def run() -> None:
        time.sleep(delay)
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=30)
    if errors:
        raise errors[0]


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FlakyProxy:
    """A TCP proxy to the test server that misbehaves on purpose.

    - ``refuse``: the first N connections are accepted and closed at once (the client
      sees a connection reset / disconnect), like a server that is restarting;
    - ``drop_response_when``: for requests whose first bytes contain this marker, the
      request reaches the server but the proxy cuts the connection instead of returning
      the response (``drops`` times), like a network failure after the server acted."""

    def __init__(
        self,
        upstream_port: int,
        *,
        refuse: int = 0,
        drop_response_when: bytes | None = None,
        drops: int = 1,
    ) -> None:
        self.upstream_port = upstream_port
        self.refuse = refuse
        self.marker = drop_response_when
        self.drops = drops
        self.connections = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> FlakyProxy:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for sock in self._sockets:  # shutdown (not just close) wakes a thread blocked in recv
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self._server.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                refuse = self.connections <= self.refuse
            if refuse:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            state = {"drop": False}
            self._spawn(self._pump_requests, client, upstream, state)
            self._spawn(self._pump_responses, upstream, client, state)

    def _pump_requests(self, client: socket.socket, upstream: socket.socket, state: dict) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.marker and self.marker in data:
                    with self._lock:
                        if self.dropped < self.drops:
                            self.dropped += 1
                            state["drop"] = True
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _pump_responses(self, upstream: socket.socket, client: socket.socket, state: dict) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if state["drop"]:
                    break  # the server answered; the agent never hears it
                client.sendall(data)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
