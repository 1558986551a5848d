"""Benchmark of what the SDK costs an agent. Not a test; run by hand:

    .venv/bin/python benchmarks/sdk_overhead.py
    .venv/bin/python benchmarks/sdk_overhead.py --calls 1000 --pending 100

Self-contained like benchmarks/gate.py, whose ``Services`` it uses: a throwaway PostgreSQL
and Redis on free loopback ports, ``migrate``, ``seed_demo``, an agent token, the agent's
rate limit raised (``benchmarks.prepare``), the real ASGI server (uvicorn,
``config.asgi:application``), the measurements, then everything stopped and removed. The
whole run is bounded by ``--deadline`` (default 600 s).

(a) **Added latency of a gated allowed call.** In this process, ``--calls`` calls each,
one after the other (after ``--warmup`` calls not counted), of the same function
``get_order_status(order_id)``: bare; through ``@airlock.gated`` (sync ``Airlock``: one
``POST /api/v1/actions`` answered ``allowed``, the function, one ``POST .../report``);
through ``@async_airlock.gated`` (``AsyncAirlock``, same requests); and, to show what the
two round trips cost apart, ``airlock.request()`` alone (the gate's answer, no report).
Printed: p50/p99 per mode and the added latency (gated minus bare) at each.

(b) **100 pending approvals held by the agent process.** One child process per mode, each
importing the same modules (the SDK, LangChain, LangGraph, the SQLite checkpointer):

- ``idle``: one client, one allowed call, nothing waiting (the floor);
- ``blocking``: ``--pending`` threads, each in a gated ``send_email`` that waits for people
  (``@gated``, the blocking mode: long-polls, lease renewals);
- ``interrupt``: ``--pending`` LangGraph threads (``thread_id``) through a graph whose
  tools node is ``AirlockToolNode`` with a ``SqliteSaver`` checkpointer: each run submits
  its ``send_email``, is answered ``pending`` and pauses with ``interrupt()``.

Once the server holds the mode's ``--pending`` cards (and, blocking, every thread is in
its long-poll), the child's threads, socket file descriptors, TCP connections to the
server, and resident memory (VmRSS) are read from ``/proc``. Printed side by side with
the ratios blocking / interrupt. The children are killed (SIGKILL: their cards stay
pending and are counted per mode by their summary).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SDK_SRC = ROOT / "sdk" / "python" / "src"
if str(SDK_SRC) not in sys.path:
    sys.path.insert(0, str(SDK_SRC))

PY = sys.executable
WRITE_TOOL = "send_email"
MODES = ("idle", "blocking", "interrupt")


def percentile(values: list[float], q: float) -> float:
    """Nearest rank, as benchmarks/gate.py."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- the child: an agent process holding pending approvals --------------------------------


def child(mode: str, url: str, token: str, count: int, workdir: str) -> None:
    """Runs in its own process: hold ``count`` pending approvals the ``mode`` way, print
    ``READY`` and stay (the parent reads /proc, then kills it)."""
    # The same imports in every mode, so the modes differ only by what they hold.
    import sqlite3

    from airlock_sdk import Airlock, RetryPolicy
    from airlock_sdk.adapters.langchain import AirlockToolNode
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, MessagesState, StateGraph

    retry = RetryPolicy(attempts=5, backoff=0.2, give_up_after=60)
    airlock = Airlock(url, token, retry=retry)

    @tool
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email to a customer."""
        return f"Email sent to {to}"

    def email(number: int) -> dict:
        return {"to": f"customer-{number}@example.com", "subject": "Your refund", "body": "Hi"}

    if mode == "idle":
        airlock.request("get_order_status", {"order_id": "ORD-1"}).raise_for_status()
    elif mode == "blocking":
        gated = airlock.gated(tool=WRITE_TOOL, effect="write", summary=f"bench {mode}")(
            send_email.func
        )
        for number in range(count):
            threading.Thread(target=gated, kwargs=email(number), daemon=True).start()
    elif mode == "interrupt":
        node = AirlockToolNode(
            [send_email], airlock, per_tool={WRITE_TOOL: {"summary": f"bench {mode}"}}
        )
        builder = StateGraph(MessagesState)
        builder.add_node("tools", node)
        builder.add_edge(START, "tools")
        builder.add_edge("tools", END)
        connection = sqlite3.connect(Path(workdir) / "checkpoints.db", check_same_thread=False)
        graph = builder.compile(checkpointer=SqliteSaver(connection))
        for number in range(count):
            call = {"name": WRITE_TOOL, "args": email(number), "id": f"call-{number}"}
            state = graph.invoke(
                {"messages": [AIMessage(content="", tool_calls=[call])]},
                {"configurable": {"thread_id": f"bench-{number}"}},
            )
            if not state.get("__interrupt__"):
                raise SystemExit(f"thread bench-{number} did not pause: {state}")
    print("READY", flush=True)
    threading.Event().wait()  # held until the parent kills this process


# --- the parent -----------------------------------------------------------------------------


def proc_figures(pid: int, server_port: int) -> dict[str, float]:
    """Threads, socket fds, TCP connections to the server and RSS (MiB) of process ``pid``."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    sockets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                sockets.add(target[8:-1])
    to_server = 0
    port_hex = f"{server_port:04X}"
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                # remote address:port, state 01 = ESTABLISHED, inode
                if fields[2].endswith(":" + port_hex) and fields[3] == "01":
                    to_server += fields[9] in sockets
    return {
        "threads": int(status["Threads"].strip()),
        "sockets": len(sockets),
        "tcp_to_airlock": to_server,
        "rss_mib": int(status["VmRSS"].strip().split()[0]) / 1024,
    }


def measure_latency(url: str, token: str, calls: int, warmup: int) -> dict[str, list[float]]:
    import asyncio

    from airlock_sdk import Airlock, AsyncAirlock

    def get_order_status(order_id: str) -> str:
        return f"{order_id}: delivered"

    async def aget_order_status(order_id: str) -> str:
        return f"{order_id}: delivered"

    airlock = Airlock(url, token)
    aairlock = AsyncAirlock(url, token)
    gated = airlock.gated(tool="get_order_status", effect="read")(get_order_status)
    agated = aairlock.gated(tool="get_order_status", effect="read")(aget_order_status)

    def request_only(order_id: str) -> str:
        decision = airlock.request("get_order_status", {"order_id": order_id})
        decision.raise_for_status()
        return get_order_status(**decision.arguments)

    def timed(fn) -> list[float]:
        for number in range(warmup):
            fn(f"ORD-W{number}")
        out = []
        for number in range(calls):
            started = time.perf_counter()
            fn(f"ORD-{number}")
            out.append((time.perf_counter() - started) * 1000)
        return out

    async def atimed() -> list[float]:
        for number in range(warmup):
            await agated(f"ORD-AW{number}")
        out = []
        for number in range(calls):
            started = time.perf_counter()
            await agated(f"ORD-A{number}")
            out.append((time.perf_counter() - started) * 1000)
        await aairlock.aclose()
        return out

    try:
        return {
            "bare function": timed(get_order_status),
            "airlock.request() only": timed(request_only),
            "@gated (sync)": timed(gated),
            "@gated (async)": asyncio.run(atimed()),
        }
    finally:
        airlock.close()


def hold_pending(services, args, token: str, mode: str) -> dict[str, float]:
    """Start the ``mode`` child, wait until the server holds its cards (and its blocking
    threads are in their long-polls), read its figures, kill it."""
    from benchmarks.gate import BenchmarkError, wait_until

    url = f"http://127.0.0.1:{services.http_port}"
    workdir = tempfile.mkdtemp(prefix=f"sdk-{mode}.", dir=services.tmp)
    started = time.monotonic()
    proc = subprocess.Popen(
        [PY, __file__, "--child", mode, "--url", url, "--token", token],
        cwd=ROOT,
        env={**os.environ, "PENDING": str(args.pending), "WORKDIR": workdir},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if line.strip() != "READY":
            proc.kill()
            raise BenchmarkError(f"{mode} agent failed:\n{line}{proc.stdout.read()[-3000:]}")
        expected = 0 if mode == "idle" else args.pending

        def held() -> bool:
            if proc.poll() is not None:
                raise BenchmarkError(f"the {mode} agent exited")
            pending = int(
                services.sql(
                    "SELECT count(*) FROM approvals_action WHERE status = 'pending' "
                    f"AND summary = 'bench {mode}'"
                ).strip()
                or 0
            )
            return pending >= expected

        wait_until(f"{expected} pending {mode} cards", 120, held)
        ready_after = time.monotonic() - started
        if mode == "blocking":
            # Each thread submitted, then entered its long-poll on its own connection.
            wait_until(
                "every blocking thread in its long-poll",
                60,
                lambda: (
                    proc_figures(proc.pid, services.http_port)["tcp_to_airlock"] >= args.pending
                ),
            )
        time.sleep(1.0)  # settle: the figures are read from a process at rest
        figures = proc_figures(proc.pid, services.http_port)
        figures["seconds_to_hold"] = ready_after
        checkpoint = Path(workdir) / "checkpoints.db"
        figures["checkpoint_kib"] = checkpoint.stat().st_size / 1024 if checkpoint.exists() else 0
        return figures
    finally:
        proc.kill()
        proc.wait(timeout=30)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--calls", type=int, default=500, help="measured calls per latency mode (500)")
    add("--warmup", type=int, default=30, help="warm-up calls per latency mode (30)")
    add("--pending", type=int, default=100, help="pending approvals held per mode (100)")
    add(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="uvicorn worker processes (default: one per core)",
    )
    add("--fsync", choices=["on", "off"], default="on", help="PostgreSQL fsync (on)")
    add("--http-rate", default="100000/s", help="AGENT_HTTP_RATE for the server")
    add("--deadline", type=int, default=600, help="abort the whole run after this many s")
    add("--child", choices=MODES, help=argparse.SUPPRESS)
    add("--url", help=argparse.SUPPRESS)
    add("--token", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.child:
        child(args.child, args.url, args.token, int(os.environ["PENDING"]), os.environ["WORKDIR"])
        return 0

    from benchmarks.gate import AGENT, BenchmarkError, Deadline, Services, log

    t0 = time.monotonic()

    def on_alarm(signum, frame):
        raise Deadline(f"the run exceeded --deadline {args.deadline} s")

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(args.deadline)
    services = Services(args)
    try:
        return run(services, args, t0, AGENT, log)
    except Deadline as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        log("==> stopping uvicorn, Redis and PostgreSQL; removing the temp dir")
        services.stop()
        log(f"==> done in {time.monotonic() - t0:.1f} s")


def run(services, args: argparse.Namespace, t0: float, agent: str, log) -> int:
    def step(name: str) -> None:
        log(f"==> {name}   (t={time.monotonic() - t0:.1f} s)")

    log(
        f"Airlock SDK overhead, {time.strftime('%Y-%m-%d %H:%M:%S')}, Python {sys.version.split()[0]}"
    )
    load = os.getloadavg()
    log(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} at start; agent, server, PostgreSQL and Redis share these cores"
    )
    step("PostgreSQL and Redis")
    services.start_databases()
    step("migrate, seed_demo, agent_token, benchmark set-up")
    services.manage("migrate", "--noinput", timeout=180)
    services.manage("seed_demo")
    token = services.manage("agent_token", agent, "--name", "benchmark").strip().splitlines()[-1]
    services.python_module("benchmarks.prepare", agent, "1000000")
    step(f"uvicorn config.asgi:application --workers {args.workers}")
    services.start_server({})
    url = f"http://127.0.0.1:{services.http_port}"

    step(f"(a) {args.calls} calls per mode, one after the other ({args.warmup} warm-up)")
    latencies = measure_latency(url, token, args.calls, args.warmup)

    holds: dict[str, dict[str, float]] = {}
    for mode in MODES:
        step(f"(b) {mode}: an agent process holding {args.pending} pending approvals")
        holds[mode] = hold_pending(services, args, token, mode)

    log("")
    log(f"(a) latency of one call, ms (n={args.calls} each)")
    log(f"    {'mode':<26}{'p50':>10}{'p99':>10}{'added p50':>12}{'added p99':>12}")
    bare = latencies["bare function"]
    for name, values in latencies.items():
        added = (
            ("", "")
            if name == "bare function"
            else (
                f"{percentile(values, 0.5) - percentile(bare, 0.5):.2f}",
                f"{percentile(values, 0.99) - percentile(bare, 0.99):.2f}",
            )
        )
        log(
            f"    {name:<26}{percentile(values, 0.5):>10.3f}{percentile(values, 0.99):>10.3f}"
            f"{added[0]:>12}{added[1]:>12}"
        )
    one_trip = percentile(latencies["airlock.request() only"], 0.5)
    log(
        f"    gated (sync) p50 / request-only p50: "
        f"{percentile(latencies['@gated (sync)'], 0.5) / one_trip:.2f}x "
        "(the gate's answer plus the execution report: two round trips)"
    )

    log("")
    log(f"(b) the agent process holding {args.pending} pending approvals")
    rows = [
        ("threads", "threads", "{:.0f}"),
        ("socket fds", "sockets", "{:.0f}"),
        ("TCP to Airlock", "tcp_to_airlock", "{:.0f}"),
        ("RSS MiB", "rss_mib", "{:.1f}"),
        ("checkpoint KiB", "checkpoint_kib", "{:.0f}"),
        ("s to start, hold", "seconds_to_hold", "{:.1f}"),
    ]
    log(f"    {'':<18}" + "".join(f"{mode:>12}" for mode in MODES) + f"{'blk/intr':>12}")
    for label, key, fmt in rows:
        cells = "".join(f"{fmt.format(holds[mode][key]):>12}" for mode in MODES)
        blocking, intr = holds["blocking"][key], holds["interrupt"][key]
        ratio = f"{blocking / intr:.1f}x" if intr and blocking else "—"
        log(f"    {label:<18}{cells}{ratio:>12}")
    idle_rss = holds["idle"]["rss_mib"]
    over_idle = {mode: holds[mode]["rss_mib"] - idle_rss for mode in ("blocking", "interrupt")}
    if over_idle["interrupt"] > 0:
        log(
            "    RSS over idle, blocking / interrupt: "
            f"{over_idle['blocking'] / over_idle['interrupt']:.1f}x"
        )
    for mode in ("blocking", "interrupt"):
        extra = holds[mode]["rss_mib"] - idle_rss
        log(
            f"    {mode}: +{holds[mode]['threads'] - holds['idle']['threads']:.0f} threads, "
            f"+{extra:.1f} MiB over idle = {extra * 1024 / args.pending:.0f} KiB per pending "
            "approval"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
