"""Shared fixtures. The suite runs on PostgreSQL and Redis started by scripts/test."""

from __future__ import annotations

import inspect
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.apps import apps as django_apps

from rollout.reference import ensure_reference_data
from tests import factories

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # sync Playwright beside the ORM

# tests.flush: transactional tests empty the database with DELETE, not one slow TRUNCATE.
pytest_plugins = ["tests.sockets", "tests.flush"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``scripts/test`` runs ``-n 2 --dist loadgroup``): the tests that
    start Chromium, servers or worker processes form one group run first and one after
    another on one worker, so at most one of them loads the two cores at a time while the
    other worker runs the in-process tests; every other test stays with its module (a
    module's shared world is built once)."""
    if config.getoption("dist", default="no") != "loadgroup":
        return
    heavy, light = [], []
    for item in items:
        if item.get_closest_marker("browser") or item.get_closest_marker("multiprocess"):
            item.add_marker(pytest.mark.xdist_group("heavy"))
            heavy.append(item)
        else:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
            light.append(item)
    items[:] = heavy + light


@pytest.fixture(autouse=True)
def _own_channel_layer_for_async_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """An async test gets a channel layer instance of its own. The layer is a process-wide
    singleton that keeps event-loop-bound state (receive locks, cleaner tasks, pools keyed by
    loop); each async test runs in a new loop, and the threaded test server in a loop of its
    own — sharing one instance across them can leave a task the loop's shutdown waits on
    forever. Sync tests keep the shared instance (the test server uses it)."""
    if not inspect.iscoroutinefunction(request.function):
        yield
        return
    shared = channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    yield
    # The test's own instance is flushed when its loop closes (channels_redis wraps close).
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    if shared is not None:
        channel_layers.backends[DEFAULT_CHANNEL_LAYER] = shared


@pytest.fixture
def reference_data(db: None) -> None:
    """Tiers and roles (emptied between transactional tests, so restored here)."""
    ensure_reference_data(django_apps)


@pytest.fixture
def support_agent(reference_data: None):
    return factories.make_agent("support-assistant")


@pytest.fixture
def other_agent(reference_data: None):
    return factories.make_agent("other-agent")


@pytest.fixture
def reviewer(reference_data: None):
    return factories.make_user("rita", groups=("reviewer",))


@pytest.fixture
def reviewer2(reference_data: None):
    return factories.make_user("rob", groups=("reviewer",))


@pytest.fixture
def critical_reviewer(reference_data: None):
    return factories.make_user(
        "cora", groups=("reviewer",), perms=("rollout.critical_approve_agent",)
    )


@pytest.fixture
def incident_owner(reference_data: None):
    return factories.make_user("ivan", groups=("incident_owner",))


@pytest.fixture
def auditor(reference_data: None):
    return factories.make_user("audrey", groups=("auditor",))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedASGIServer:
    """The real ASGI application (or ``app``, e.g. a tool service in a grant test) served by
    uvicorn on a loopback port, in a thread of the test process (so it shares the test
    database settings)."""

    def __init__(self, app: Any = None) -> None:
        import uvicorn

        if app is None:
            from config.asgi import application as app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("ASGI test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="session")
def asgi_server(django_db_setup: None, django_db_blocker) -> Iterator[ThreadedASGIServer]:
    server = ThreadedASGIServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live_api(asgi_server: ThreadedASGIServer, transactional_db: None) -> Iterator[httpx.Client]:
    """A real HTTP client against the running server; data is committed (transactional)."""
    with httpx.Client(base_url=asgi_server.url, timeout=90) as client:
        yield client
