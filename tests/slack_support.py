"""A stand-in for Slack's Web API on 127.0.0.1 that records every call (slack-sdk's
``WebClient`` is pointed at it through ``SLACK_API_URL``), and requests signed as Slack
signs them (``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the signing secret)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

SIGNING_SECRET = "test-slack-signing-secret"
BOT_TOKEN = "xoxb-test-bot-token"
TEAM = "T0AIRLOCK"
DM_CHANNEL = "D0DIRECT"


@dataclass
class Call:
    method: str  # the Web API method, e.g. "chat.postMessage"
    args: dict
    authorization: str

    def blocks(self) -> list[dict]:
        value = self.args.get("blocks") or []
        return json.loads(value) if isinstance(value, str) else value

    def text_of_blocks(self) -> str:
        return json.dumps(self.blocks(), ensure_ascii=False)

    def buttons(self) -> dict[str, dict]:
        return {
            element["action_id"]: element
            for block in self.blocks()
            if block.get("type") == "actions"
            for element in block["elements"]
        }


@dataclass
class RecordingSlack:
    """The recording server: ``calls`` in order; ``script`` maps a method to responses to
    give (status, headers, body) before the default success answers."""

    calls: list[Call] = field(default_factory=list)
    script: dict[str, list[tuple[int, dict, dict]]] = field(default_factory=dict)
    url: str = ""

    def of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def reset(self) -> None:
        self.calls.clear()
        self.script.clear()


_ts = itertools.count(1)


def _default(method: str, args: dict) -> dict:
    if method == "conversations.open":
        return {"ok": True, "channel": {"id": DM_CHANNEL}}
    if method == "chat.postMessage":
        return {"ok": True, "channel": args.get("channel"), "ts": f"1700000000.{next(_ts):06d}"}
    if method == "chat.update":
        return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
    return {"ok": True}


def start_recording_slack() -> tuple[RecordingSlack, ThreadingHTTPServer]:
    state = RecordingSlack()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            method = parts.path.rsplit("/", 1)[-1]
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            args: dict[str, Any] = dict(parse_qsl(parts.query))
            if raw:
                if "json" in (self.headers.get("Content-Type") or ""):
                    args.update(json.loads(raw))
                else:
                    args.update(dict(parse_qsl(raw)))
            state.calls.append(Call(method, args, self.headers.get("Authorization", "")))
            scripted = state.script.get(method)
            status, headers, body = (
                scripted.pop(0) if scripted else (200, {}, _default(method, args))
            )
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state, server


def signed_headers(
    body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """The headers Slack sends with ``body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def form_body(payload: dict) -> str:
    """An interactivity request's body: the payload as Slack form-encodes it."""
    return urlencode({"payload": json.dumps(payload)})


def block_action(
    button: str, value: str, *, user: str, team: str = TEAM, trigger_id: str = "trig.1"
) -> dict:
    return {
        "type": "block_actions",
        "team": {"id": team},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "channel": {"id": DM_CHANNEL},
        "container": {"type": "message", "channel_id": DM_CHANNEL},
        "trigger_id": trigger_id,
        "actions": [{"action_id": button, "block_id": "airlock_decision", "value": value}],
    }


def view_submission(metadata: str, reason: str | None, *, user: str, team: str = TEAM) -> dict:
    return {
        "type": "view_submission",
        "team": {"id": team},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "view": {
            "callback_id": "airlock_reject_reason",
            "private_metadata": metadata,
            "state": {
                "values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
            },
        },
    }
