"""Extra server processes for multi-process tests: the real ASGI app under uvicorn in its
own process, on the pytest test database and the shared Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """DATABASE_URL of the database the tests are using right now."""
    db = settings.DATABASES["default"]
    name = connection.settings_dict["NAME"]
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db['HOST']}:{db['PORT']}/{name}"


class ServerProcess:
    def __init__(self, port: int, extra_env: dict | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": test_database_url(),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--lifespan",
                "off",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            # A file, not a pipe: nobody reads a pipe while the server runs, and a full one
            # (say, tracebacks logged during an outage) would block the server.
            stderr=self.log,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling for the process to start listening
        raise RuntimeError("server did not become ready")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        # Shown by pytest only when the test failed: what the server logged.
        print(f"--- server on port {self.port} logged:\n{self.output()[-4000:]}")
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def start_servers(count: int, extra_env: dict | None = None) -> list[ServerProcess]:
    from tests.conftest import free_port

    servers = [ServerProcess(free_port(), extra_env) for _ in range(count)]
    try:
        for server in servers:
            server.wait_ready()
    except Exception:
        for server in servers:
            server.stop()
        raise
    return servers


def login(server: ServerProcess, username: str, password: str = "pw-for-tests") -> httpx.Client:
    """A browser-like session on ``server``: session cookie, and the CSRF token in headers
    for the JSON API."""
    client = httpx.Client(base_url=server.url, timeout=30)
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
        headers={"Referer": server.url + "/accounts/login/"},
    )
    if response.status_code != 302:
        client.close()
        raise AssertionError(f"login as {username} failed: HTTP {response.status_code}")
    client.headers.update({"X-CSRFToken": client.cookies["csrftoken"], "Referer": server.url + "/"})
    return client
