"""Throwaway PostgreSQL and Redis servers: a temp dir, free loopback ports, stopped and
removed afterwards.

The one harness for everything that starts servers of its own: the tests that stop and
start them to inject faults (``tests/test_faults.py``, ``tests/test_channel_layer.py``) and
the benchmarks (``benchmarks/gate.py``'s ``Services``, which the other benchmarks build on,
and ``benchmarks/audit_verify.py``). It imports nothing of Django or the project, so a
benchmark can start its servers before it chooses its settings."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

HOST = "127.0.0.1"


class ThrowawayError(RuntimeError):
    """A throwaway server could not be started (the message carries the tool's stderr)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def pg_bin() -> Path:
    """The newest installed PostgreSQL's ``bin`` directory."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if not found:
        raise ThrowawayError("PostgreSQL is not installed (apt-get install postgresql)")
    return found[-1].parent


class ThrowawayPostgres:
    """initdb + pg_ctl in ``directory`` (a new temp dir by default; ``data/`` and
    ``postgres.log`` in it), as the postgres user when run as root, on a free loopback port.
    ``settings`` are server settings (``-c name=value``); ``fsync`` is off unless given.
    ``start()`` initialises the cluster the first time; ``stop()`` and ``start()`` may then
    alternate; ``remove()`` stops it and removes the temp dir it made."""

    def __init__(
        self, directory: Path | None = None, *, settings: Mapping[str, str] | None = None
    ) -> None:
        self.bin = pg_bin()
        self._owns_dir = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="airlock-pg-")) if directory is None else directory
        self.port = free_port()
        self.url = f"postgres://postgres@{HOST}:{self.port}/airlock"
        self.settings = {"fsync": "off", **(settings or {})}
        self.data = self.dir / "data"
        self.started = False

    def _as_postgres(self, *command: str, timeout: float = 120) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*prefix, *command], cwd=self.dir, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise ThrowawayError(f"{Path(command[0]).name} failed:\n{done.stderr[-2000:]}")

    def _initdb(self) -> None:
        self.dir.chmod(0o755)
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")  # fmt: skip

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        options = " ".join(
            [f"-p {self.port} -k {self.dir} -c listen_addresses={HOST}"]
            + [f"-c {name}={value}" for name, value in self.settings.items()]
        )
        self.started = True  # from here on, stop() has something to try
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                          str(self.dir / "postgres.log"), "-w", "-t", "60", "start",
                          "-o", options)  # fmt: skip

    def create_database(self, name: str = "airlock") -> None:
        subprocess.run(
            [str(self.bin / "createdb"), "-h", HOST, "-p", str(self.port), "-U", "postgres", name],
            check=True,
            timeout=60,
        )

    def start_with_database(self) -> str:
        """Start it with an empty ``airlock`` database; returns its URL."""
        self.start()
        self.create_database()
        return self.url

    def stop(self) -> None:
        self.started = False
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                          "-t", "60", "-w", "stop")  # fmt: skip

    def remove(self) -> None:
        if self.started:
            with contextlib.suppress(ThrowawayError, subprocess.SubprocessError):
                self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def psql(self, query: str) -> str:
        """``query``'s rows, unaligned, ``=`` between fields."""
        return subprocess.run(
            [str(self.bin / "psql"), "-h", HOST, "-p", str(self.port), "-U", "postgres",
             "-d", "airlock", "-At", "-F", "=", "-c", query],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip


class ThrowawayRedis:
    """A daemonized redis-server without persistence in ``directory`` (a new temp dir by
    default) on a free loopback port; ``stop()`` and ``start()`` may alternate."""

    def __init__(self, directory: Path | None = None) -> None:
        self._owns_dir = directory is None
        self.dir = (
            Path(tempfile.mkdtemp(prefix="airlock-redis-")) if directory is None else directory
        )
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.pidfile = self.dir / "redis.pid"

    def answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    def start(self) -> None:
        """Start it (nothing to do when it is running)."""
        if self.answers():
            return
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--daemonize", "yes",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--pidfile", str(self.pidfile), "--logfile", str(self.dir / "redis.log")],
            check=True, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.answers():
                return
            time.sleep(0.1)  # redis-server daemonizes before it listens
        raise ThrowawayError("redis did not start")

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self.pidfile.read_text().strip())
        return None

    def stop(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "nosave"],
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 30
        while self.pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the pid file goes when the server has exited

    def remove(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
