"""The drill's probe: another process that calls the real gate with the probe tool until it
is denied by the drill switch, printing one JSON line per call."""

import json
import os
import time
import uuid

import httpx
from django.core.management.base import BaseCommand, CommandError

from rollout.policy import PROBE_TOOL


class Command(BaseCommand):
    help = "Probe the gate for a kill-switch drill (used by incidents.drills)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", required=True)
        parser.add_argument("--timeout", type=float, default=20)

    def handle(self, *args, url: str, timeout: float, **options) -> None:
        token = os.environ.get("AIRLOCK_PROBE_TOKEN", "")
        if not token:
            raise CommandError("AIRLOCK_PROBE_TOKEN is not set")
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=url, timeout=10) as client:
            while time.monotonic() < deadline:
                sent_at = time.time()
                response = client.post(
                    "/api/v1/actions",
                    json={"tool": PROBE_TOOL, "arguments": {}},
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Idempotency-Key": uuid.uuid4().hex,
                    },
                )
                body = response.json()
                line = {
                    "sent_at": sent_at,
                    "received_at": time.time(),
                    "status": response.status_code,
                    "reason_code": body.get("reason_code", body.get("code")),
                }
                self.stdout.write(json.dumps(line))
                self.stdout.flush()
                if line["reason_code"] == "kill_switch":
                    return
                time.sleep(0.01)  # a steady probe, not a busy loop against the gate
