"""Real Chromium (the system's, launched by path) driven by sync Playwright against the
threaded ASGI server of ``tests/conftest.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ThreadedASGIServer

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # A page served through Playwright's route.fulfill (used to add a CSP header) counts as
    # coming from an unknown address, and Chromium's local-network checks then block its
    # websocket to 127.0.0.1. Pages served directly are unaffected either way.
    "--disable-features=LocalNetworkAccessChecks",
]
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def dashboard_server(django_db_setup: None, django_db_blocker) -> Iterator[ThreadedASGIServer]:
    """The ``asgi_server`` of tests/conftest.py, plus ``/static/``: the ASGI app serves no
    static files when DEBUG is off (production puts them behind the proxy), so, as Channels'
    live-server test case does, the app is wrapped in Django's static files handler."""
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    server = ThreadedASGIServer()
    server.server.config.app = ASGIStaticFilesHandler(server.server.config.app)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """One headless Chromium per module (closed before other modules' async tests run)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=os.environ.get("AIRLOCK_CHROMIUM", "/usr/bin/chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
