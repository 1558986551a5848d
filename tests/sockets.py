"""Test websockets that are always closed, whatever the test did.

An in-process ``WebsocketCommunicator`` runs its consumer as a task of the test's event loop.
A test that fails (or forgets) before ``disconnect()`` leaves that task and the channel
layer's receive behind, and pytest-asyncio's loop shutdown then waits on them — the suite
hangs instead of failing. Every communicator opened through :func:`connect` is remembered
and disconnected by the ``close_test_sockets`` fixture in the test's own loop.
"""

from __future__ import annotations

import contextlib

import pytest
from channels.testing import WebsocketCommunicator

CONNECT_TIMEOUT = 5

_opened: list[WebsocketCommunicator] = []


async def connect(
    application, path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[WebsocketCommunicator, bool, object]:
    """Opens a websocket on ``application``; returns the communicator, whether the server
    accepted it and the close code if it did not."""
    communicator = WebsocketCommunicator(application, path, headers=headers)
    _opened.append(communicator)
    connected, code = await communicator.connect(timeout=CONNECT_TIMEOUT)
    return communicator, connected, code


@pytest.fixture
async def close_test_sockets():
    """Disconnects every websocket the test opened (a second disconnect is harmless)."""
    yield
    while _opened:
        communicator = _opened.pop()
        # An already closed or crashed consumer may raise here; it is gone either way.
        with contextlib.suppress(Exception):
            await communicator.disconnect(timeout=CONNECT_TIMEOUT)
