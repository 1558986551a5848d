"""Django's ASGI handler, with each request's worker thread taken from a pool of idle ones.

Django runs a request's synchronous code (every sync middleware, the view, the
``request_started``/``request_finished`` receivers) in one thread of its own: the request is
a ``ThreadSensitiveContext``, and asgiref gives such a context a new single-thread executor,
which starts an OS thread on first use and joins it when the request ends. Measured with
``benchmarks/gate.py --profile``, starting and joining that thread was 7-9 % of the server's
samples on a gate call (benchmarks/README.md, issue 22). Here the context is handed an idle
single-thread executor instead (asgiref's ``ThreadSensitiveContext(executor=…)``), returned
for the next request when this one ends: still one thread per request at a time and all of
the request's sync code in it, as Django expects, but the thread is reused, as a WSGI server
reuses its threads. Whatever a request leaves in its thread's locals is what Django already
cleans up between requests on a reused thread: the ``request_finished`` receivers return
the database connection to the pool."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

# Idle request threads kept per process; more requests at once than this start (and then
# stop) threads of their own, as Django's handler does for every request.
MAX_IDLE_THREADS = 64


class ReusedThreadASGIHandler(ASGIHandler):
    """``ASGIHandler`` whose requests run their sync code in reused threads."""

    def __init__(self) -> None:
        super().__init__()
        self._idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # Only this process's event loop thread touches the list: no lock needed.
        executor = (
            self._idle.pop()
            if self._idle
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        )
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            # A sync call that outlived its request (a view still running after the client
            # went away) keeps the thread busy: the next request on it simply waits its turn.
            if len(self._idle) < MAX_IDLE_THREADS:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)


def get_asgi_application() -> ReusedThreadASGIHandler:
    """``django.core.asgi.get_asgi_application`` with the handler above."""
    django.setup(set_prefix=False)
    return ReusedThreadASGIHandler()
