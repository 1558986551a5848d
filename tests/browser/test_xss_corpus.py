"""Hostile text is harmless (issue 11, promise 6, its XSS part): an XSS corpus placed in
every field an agent can send through the real agent API — and in the names and reasons a
governance owner, an incident owner or a reviewer types — executes nothing in a real
Chromium on every page that shows it, and is shown there as text.

Everything is sent over HTTP as its author would send it (agent token, or a person's
session with CSRF). One superuser then opens every page that shows the text (the list of
pages is checked against the URLconf, so a new page cannot be skipped silently) and each
page must:

- run nothing: each payload calls ``__xss(<its number>)`` or fetches ``/xss-hit/<number>``
  or ``evil.example``; an init script and a request listener record any of that, and no
  dialog may open;
- inject nothing: no element or attribute a payload carries (``data-xss``, an ``on…``
  handler, ``hx-…`` pointing at the payload's target, a ``javascript:`` URL, an iframe,
  a ``<base>``, a ``<meta http-equiv>``, a stray ``<script>``…) is in the DOM;
- show each payload placed in a field it displays, as text (raw, or JSON-escaped where
  the page shows JSON), so that a page cannot pass by leaving the text out.

The browser ignores any Content-Security-Policy here (``bypass_csp``): what is proved is
that escaping alone defeats the corpus; a CSP is a second wall, tested on its own.
The live path too: cards and change requests that arrive over the websocket while the
page is open are rendered as text.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from django.contrib import admin
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from playwright.sync_api import Browser, BrowserContext, Page, expect

from approvals.actions import issue_email_decision_links
from approvals.models import Action
from core.identity import INVISIBLE
from rollout.models import PolicyVersion
from tests import factories
from tests.servers import login

pytestmark = [pytest.mark.browser]

LIVE_TIMEOUT_MS = 10_000  # generous: the machine may be busy
SETTLE_MS = 120  # after load: lets an injected onerror/onload/hx-trigger=load fire if any
EVIL_HOST = "evil.example"

# The corpus. "{n}" becomes the payload's number, so a payload that runs names the field
# it was placed in. Single-line, no leading/trailing spaces (DRF trims them).
CORPUS = [
    "<script>__xss({n})</script>",
    "<img src=x onerror=__xss({n}) data-xss>",
    "<IMG SRC=x OnErRoR=__xss({n}) data-xss>",
    "<svg/onload=__xss({n}) data-xss>",
    '"><img src=/xss-hit/{n} data-xss>',
    "'><svg/onload=__xss({n}) data-xss>",
    '" autofocus onfocus=__xss({n}) data-xss="',
    "' onmouseover=__xss({n}) data-xss='",
    "javascript:__xss({n})",
    '<a href="javascript:__xss({n})" data-xss>click {n}</a>',
    '<div hx-get="/xss-hit/{n}" hx-trigger="load" data-xss>htmx {n}</div>',
    '<b hx-on:htmx:load="__xss({n})" hx-get=/xss-hit/{n} hx-trigger=load data-xss>{n}</b>',
    "{{ 7*7 }} {% debug %} ${7*7} #{7*7} <%= 7*7 %> [[{n}]]",
    r"\u003cimg src=x onerror=__xss({n}) data-xss\u003e",
    "\uff1cscript\uff1e__xss({n})\uff1c/script\uff1e",
    "&lt;script&gt;__xss({n})&lt;/script&gt;",
    "%3Cscript%3E__xss({n})%3C/script%3E",
    '<div style="background:url(/xss-hit/{n});width:expression(__xss({n}))" data-xss>',
    '<style>@import "/xss-hit/{n}";</style>',
    '<iframe srcdoc="<script>parent.__xss({n})</script>" data-xss></iframe>',
    "[click](javascript:__xss({n})) ![x](/xss-hit/{n})",
    "</textarea></pre></title></script><img src=x onerror=__xss({n}) data-xss>",
    "--><!--<img src=x onerror=__xss({n}) data-xss>-->",
    "<math><mtext><table><mglyph><style><img src=x onerror=__xss({n}) data-xss>",
    '<noscript><p title="</noscript><img src=x onerror=__xss({n}) data-xss>">',
    "<details open ontoggle=__xss({n}) data-xss>",
    f'<base href="//{EVIL_HOST}/{{n}}/" data-xss>',
    '<meta http-equiv="refresh" content="0;url=/xss-hit/{n}" data-xss>',
    '<object data="/xss-hit/{n}" data-xss></object>',
    # (a right-to-left mark: bidirectional overrides and isolates are refused at the door,
    # tests/test_hostile_input.py)
    "\u200f<img src=x onerror=__xss({n}) data-xss>",
    "<scr<script>ipt>__xss({n})</scr</script>ipt>",
    f"<a href=//{EVIL_HOST}/{{n}} data-xss>link {{n}}</a>",
    "<svg><animate onbegin=__xss({n}) attributeName=x dur=1s data-xss>",
    "<video><source onerror=__xss({n}) data-xss></video>",
    "<link rel=stylesheet href=/xss-hit/{n} data-xss>",
    '<img src="x" onerror="&#95;&#95;xss({n})" data-xss>',
    "<input autofocus onfocus=__xss({n}) data-xss>",
    "<form action=/xss-hit/{n}><button data-xss>go {n}</button></form>",
]

# Runs in every frame before the page's own scripts: the one function every payload calls.
INIT_SCRIPT = """
(() => {
  const report = (n) => { try { window.__xssReport(String(n)); } catch (e) {} };
  window.__xss = report;
})();
"""

# The page's text as shown: text nodes of the body plus what form fields hold.
PAGE_TEXT_JS = """
() => [document.body.textContent,
       ...Array.from(document.querySelectorAll("input, textarea"), (f) => f.value)].join("\\n")
"""

# What a payload would have injected had it been parsed as markup.
INJECTED_JS = """
(evilHost) => {
  const found = [];
  const show = (el) => el.outerHTML.slice(0, 160);
  const urlAttributes = ["href", "src", "action", "formaction", "data", "xlink:href",
                         "background", "poster", "srcset", "ping"];
  const hostile = (value) => {
    if (/^\\s*(javascript|vbscript|data):/i.test(value)) return true;
    try {
      const url = new URL(value, location.href);
      return url.pathname.startsWith("/xss-hit/") || url.hostname === evilHost;
    } catch (e) { return false; }
  };
  for (const el of document.querySelectorAll("*")) {
    const tag = el.tagName.toLowerCase();
    for (const { name, value } of Array.from(el.attributes)) {
      const n = name.toLowerCase();
      if (n === "data-xss" || n.startsWith("on") || n === "srcdoc") {
        found.push(`injected attribute ${n}: ${show(el)}`);
      } else if (/^(data-)?hx-/.test(n) && /xss|evil|__/i.test(value)) {
        found.push(`injected htmx attribute ${n}: ${show(el)}`);
      } else if (urlAttributes.includes(n) && hostile(value)) {
        found.push(`injected hostile URL in ${n}: ${show(el)}`);
      } else if (n === "style" && /xss|expression|url\\(/i.test(value)) {
        found.push(`injected style: ${show(el)}`);
      }
    }
    if (["iframe", "frame", "object", "embed", "base", "noscript", "math", "video",
         "audio", "applet"].includes(tag)) {
      found.push(`injected element <${tag}>: ${show(el)}`);
    } else if (tag === "meta" && el.hasAttribute("http-equiv")) {
      found.push(`injected meta http-equiv: ${show(el)}`);
    } else if (tag === "script") {
      const src = el.getAttribute("src") || "";
      const json = (el.getAttribute("type") || "").includes("json");
      if (!(src.startsWith("/static/") || src.startsWith("/admin/jsi18n")) && !json) {
        found.push(`injected script: ${show(el)}`);
      }
    } else if (tag === "style" && /xss/i.test(el.textContent)) {
      found.push(`injected style element: ${show(el)}`);
    }
  }
  // Titles are text-only (RCDATA): markup there is shown to the user as is.
  if (document.title.includes("<")) found.push(`markup in the title: ${document.title}`);
  return found;
}
"""


@dataclass
class Placement:
    field: str
    number: int
    text: str

    def shown_forms(self) -> tuple[str, str, str]:
        """As text, as it reads inside JSON shown on a page (quotes and backslashes
        escaped; pages dump JSON with ensure_ascii=False), and as the card shows agent
        text: every invisible character as a visible ⟨U+XXXX⟩ marker."""
        marked = INVISIBLE.sub(lambda m: f"\u27e8U+{ord(m.group()):04X}\u27e9", self.text)
        return self.text, json.dumps(self.text, ensure_ascii=False)[1:-1], marked


class Corpus:
    """Hands out numbered payloads, one per field, cycling through ``CORPUS``; remembers
    which field got which."""

    def __init__(self) -> None:
        self.by_field: dict[str, Placement] = {}
        self.by_number: dict[int, Placement] = {}
        self._cycle = itertools.cycle(range(len(CORPUS)))

    def place(self, field_name: str, template: str) -> str:
        """``template`` (with its number for "{n}") as the payload of ``field_name``."""
        assert field_name not in self.by_field, field_name
        number = len(self.by_number) + 1
        placement = Placement(field_name, number, template.replace("{n}", str(number)))
        self.by_field[field_name] = placement
        self.by_number[number] = placement
        return placement.text

    def __call__(self, field_name: str, max_length: int = 2000) -> str:
        """A payload for ``field_name`` that fits ``max_length``."""
        number = len(self.by_number) + 1
        for _ in range(len(CORPUS)):
            template = CORPUS[next(self._cycle)]
            if len(template.replace("{n}", str(number))) <= max_length:
                return self.place(field_name, template)
        raise AssertionError(f"no payload fits {max_length} characters")

    def every(self, prefix: str) -> list[str]:
        """The whole corpus, one payload per entry, as fields ``prefix[i]``."""
        return [self.place(f"{prefix}[{i}]", t) for i, t in enumerate(CORPUS)]

    def fields(self, *prefixes: str) -> list[str]:
        """Every field placed under these prefixes (``"A."`` → all of action A's)."""
        return [name for name in self.by_field if name.startswith(prefixes)]

    def describe(self, number: str) -> str:
        placement = self.by_number.get(int(number)) if number.isdigit() else None
        return f"payload {number} ({placement.field if placement else 'unknown'})"


# --- the authors, over HTTP -----------------------------------------------------------------


@dataclass
class AgentClient:
    """An agent on the real agent API."""

    http: httpx.Client
    token: str

    def call(self, method: str, path: str, body: dict | None = None, **headers: str) -> dict:
        response = self.http.request(
            method,
            path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}", **headers},
        )
        assert response.status_code in (200, 201), f"{path}: {response.text}"
        return response.json()

    def submit(self, body: dict, key: str | None = None) -> dict:
        key = key or uuid.uuid4().hex
        return self.call("POST", "/api/v1/actions", body, **{"Idempotency-Key": key})


def ok(response: httpx.Response) -> dict:
    """The JSON of a successful API call."""
    assert response.status_code in (200, 201), f"{response.request.url}: {response.text}"
    return response.json()


def form_post(http: httpx.Client, url: str, data: dict, expected_status: int = 302) -> None:
    """Submit a page's form as the browser would (it redirects when it succeeded, unless
    it shows something once, like a new token)."""
    response = http.post(url, data={**data, "csrfmiddlewaretoken": http.cookies["csrftoken"]})
    assert response.status_code == expected_status, f"{url}: HTTP {response.status_code}"


@dataclass
class World:
    """What the setup made: ids and slugs the pages and the URL probe need."""

    corpus: Corpus
    actions: dict[str, int] = field(default_factory=dict)
    change_applied: int = 0
    change_open: int = 0
    version_number: int = 0
    version_id: int = 0
    engaged_switch: int = 0
    person_id: int = 0
    agent_token_id: int = 0
    agent_token: str = ""
    email_link: str = ""  # the token of sam's email Approve link of action A


def submission_body(p: Corpus, prefix: str, tool: str = "send_email") -> dict:
    """A submission carrying a payload in every field the agent API takes."""
    return {
        "tool": tool,
        "arguments": {
            "to": "customer@example.com",
            p(f"{prefix}arguments.key"): p(f"{prefix}arguments.value"),
            "nested": {
                "deeper": [{p(f"{prefix}arguments.nested_key"): p(f"{prefix}arguments.nested")}]
            },
            "corpus": p.every(f"{prefix}arguments.corpus"),
        },
        "summary": p(f"{prefix}summary"),
        "rationale": {
            "objective": p(f"{prefix}rationale.objective"),
            "plan": p(f"{prefix}rationale.plan"),
            "alternatives": [p(f"{prefix}rationale.alternatives[{i}]", 1000) for i in range(20)],
            "confidence": 0.5,
        },
        "evidence": [
            {
                "kind": p(f"{prefix}evidence[{i}].kind", 60),
                "title": p(f"{prefix}evidence[{i}].title", 300),
                "content": content,
            }
            for i, content in enumerate(p.every(f"{prefix}evidence.content"))
        ]
        + [
            {
                "kind": "link",
                "title": "link",
                # A URL must validate (no spaces), so this one is built by hand.
                "url": p.place(
                    f"{prefix}evidence.url",
                    f'https://{EVIL_HOST}/"><img/src/onerror=__xss({{n}})/data-xss>',
                ),
            }
        ],
        "blast_radius": {
            "environment": p(f"{prefix}blast_radius.environment", 60),
            "reversible": True,
            "records_affected": 3,
            "amount": {
                "value": 12.5,
                "currency": p.place(f"{prefix}blast_radius.amount.currency", "<s>{n}</s>"),
            },
            "systems": [p(f"{prefix}blast_radius.systems[{i}]", 120) for i in range(3)],
        },
        "release": {
            "model": p(f"{prefix}release.model", 120),
            "prompt_version": p(f"{prefix}release.prompt_version", 120),
            "tool_schema_version": p(f"{prefix}release.tool_schema_version", 120),
            p(f"{prefix}release.extra_key", 120): p(f"{prefix}release.extra", 200),
        },
        "on_behalf_of": p(f"{prefix}on_behalf_of", 150),
        # Shown only as its host; the payload is in its path.
        "callback_url": p.place(
            f"{prefix}callback_url", "https://hooks.example/cb?<script>__xss({n})</script>"
        ),
        "compensation": {
            "undo": {p(f"{prefix}compensation.key", 120): p(f"{prefix}compensation.value")},
            "window_seconds": 3600,
        },
        "correlation_id": p(f"{prefix}correlation_id", 80),
    }


def small_body(p: Corpus, prefix: str, tool: str = "send_email", **extra: Any) -> dict:
    return {
        "tool": tool,
        "arguments": {p(f"{prefix}arguments.key"): p(f"{prefix}arguments.value")},
        "summary": p(f"{prefix}summary"),
        **extra,
    }


def build_world(base_url: str, settings: Any) -> World:
    """Every author writes its payloads through the interface it really uses."""
    p = Corpus()
    world = World(p)
    # The callback URL's host must be allowed without a DNS lookup (no network here).
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.example"]
    sam = factories.make_user("sam", superuser=True)  # sees everything, governs, decides
    factories.make_user("gail", groups=("governance_owner",))  # the second governance owner
    person = factories.make_user("pat", groups=("reviewer",))
    # A person's name is typed in the admin (no Airlock page edits it).
    person.first_name = p("person.first_name", 150)
    person.last_name = p("person.last_name", 150)
    person.save(update_fields=["first_name", "last_name"])
    world.person_id = person.pk

    server = type("Server", (), {"url": base_url})
    with closing(login(server, "sam")) as sam_http, closing(login(server, "gail")) as gail_http:
        # Governance owners: register, promote with tools (four eyes), tighten, propose.
        ok(
            sam_http.post(
                "/api/v1/agents",
                json={
                    "slug": "xss-agent",
                    "name": p("agent.name", 120),
                    "description": p("agent.description"),
                },
            )
        )
        change = ok(
            sam_http.post(
                "/api/v1/agents/xss-agent/changes",
                json={
                    "changes": {
                        "tier": "supervised",
                        "tools": {
                            "send_email": {"effect": "write", "rule": "requires_approval"},
                            "create_ticket_draft": {"effect": "draft", "rule": "allowed"},
                            "search_policy_docs": {
                                "effect": "read",
                                "rule": "allowed",
                                "argument_limits": [
                                    {
                                        "field": "query",
                                        "op": "matches",
                                        "value": p.place(
                                            "rule.limit", "<img src=x onerror=__xss({n}) data-xss>"
                                        ),
                                    }
                                ],
                            },
                        },
                    },
                    "reason": p("change.applied.reason", 300),
                },
            )
        )["change_request"]
        world.change_applied = change["id"]
        ok(
            gail_http.post(
                f"/api/v1/changes/{change['id']}/approve",
                json={"revision": 1, "comment": p("change.applied.approval_comment")},
            )
        )
        tightened = ok(
            sam_http.post(
                "/api/v1/agents/xss-agent/changes",
                json={
                    "changes": {"rate_limit_per_minute": 500},
                    "reason": p("version.reason", 300),
                },
            )
        )
        world.version_number = tightened["policy_version"]
        world.change_open = ok(
            sam_http.post(
                "/api/v1/agents/xss-agent/changes",
                json={
                    "changes": {
                        "tools": {"get_order_status": {"effect": "read", "rule": "allowed"}}
                    },
                    "reason": p("change.open.reason", 300),
                },
            )
        )["change_request"]["id"]
        issued = ok(
            sam_http.post("/api/v1/agents/xss-agent/tokens", json={"name": p("token.name", 80)})
        )
        world.agent_token_id = issued["id"]
        world.agent_token = issued["token"]
        # An incident owner: one switch engaged and released, one still engaged (on tools
        # the actions below do not use, so they are not stopped).
        released = ok(
            sam_http.post(
                "/api/v1/kill-switches",
                json={
                    "scope": "tool",
                    "target": p("switch.released.target", 120),
                    "reason": p("switch.released.reason"),
                    "allow_unknown_tool": True,
                },
            )
        )
        ok(
            sam_http.post(
                f"/api/v1/kill-switches/{released['id']}/release",
                json={"reason": p("switch.release_reason")},
            )
        )
        world.engaged_switch = ok(
            sam_http.post(
                "/api/v1/kill-switches",
                json={
                    "scope": "tool",
                    "target": p("switch.engaged.target", 120),
                    "reason": p("switch.engaged.reason"),
                    "allow_unknown_tool": True,
                },
            )
        )["id"]
        # A person's own token name (profile page).
        form_post(
            sam_http,
            "/accounts/tokens/",
            {
                "name": p("personal_token.name", 80),
                "scopes": ["read_audit"],
                "expires_in_days": "30",
                "current_password": "pw-for-tests",  # creating a credential re-asks it
            },
            expected_status=200,  # the page that shows the new token once
        )

        with httpx.Client(base_url=base_url, timeout=60) as http:
            agent = AgentClient(http, issued["token"])
            # A: pending, every field of a submission; its key a payload too (never shown;
            # a header, so ASCII).
            key = p.place("A.idempotency_key", '"><img src=x onerror=__xss({n}) data-xss>')
            world.actions["A"] = agent.submit(submission_body(p, "A."), key=key)["id"]
            # sam's email link to A (the notification email's, issued as when it is sent)
            links = issue_email_decision_links(
                action=Action.objects.get(pk=world.actions["A"]), person=sam
            )
            world.email_link = links["approve"]
            # B: approved, executed (result), rollback requested and reported (result).
            b = agent.submit(
                small_body(
                    p,
                    "B.",
                    compensation={p("B.compensation.key", 120): p("B.compensation.value")},
                )
            )
            world.actions["B"] = b["id"]
            approved = ok(
                sam_http.post(
                    f"/api/v1/actions/{b['id']}/decisions",
                    json={"verdict": "approve", "comment": p("B.approval_comment")},
                )
            )
            agent.call(
                "POST",
                f"/api/v1/actions/{b['id']}/execution",
                {
                    "outcome": "succeeded",
                    "payload_hash": approved["payload_hash"],
                    "result": {
                        p("B.result.key", 120): p("B.result.value"),
                        "all": p.every("B.result.corpus"),
                    },
                    "error": p("B.execution_error"),
                },
            )
            form_post(
                sam_http, f"/actions/{b['id']}/rollback", {"comment": p("B.rollback_comment")}
            )
            agent.call(
                "POST",
                f"/api/v1/actions/{b['id']}/rollback",
                {
                    "outcome": "rolled_back",
                    "result": {p("B.rollback_result.key", 120): p("B.rollback_result.value")},
                },
            )
            # C: rejected, the reviewer's reason going back to the agent.
            c = agent.submit(small_body(p, "C."))
            world.actions["C"] = c["id"]
            ok(
                sam_http.post(
                    f"/api/v1/actions/{c['id']}/decisions",
                    json={"verdict": "reject", "comment": p("C.reject_comment")},
                )
            )
            # C kept as a regression case, with a note (the trace's form).
            form_post(
                sam_http,
                "/agents/xss-agent/cases/keep",
                {"action_id": c["id"], "expected": "", "note": p("case.note", 500)},
            )
            # D: a tool name as hostile as the API's tool-name rule lets through (denied).
            world.actions["D"] = agent.submit(
                small_body(p, "D.", tool=p.place("D.tool", "javascript:__xss/{n}"))
            )["id"]
            # E: allowed, then reported failed with an error and a result.
            e = agent.submit(small_body(p, "E.", tool="create_ticket_draft"))
            world.actions["E"] = e["id"]
            agent.call(
                "POST",
                f"/api/v1/actions/{e['id']}/execution",
                {
                    "outcome": "failed",
                    "payload_hash": e["payload_hash"],
                    "result": {p("E.result.key", 120): p("E.result.value")},
                    "error": p("E.execution_error"),
                },
            )
            # S: a shadow-tier agent's action (the shadow-labelling page lists it).
            shadow = factories.make_agent("shadow-agent", tier="shadow")
            world.actions["S"] = AgentClient(http, factories.make_token(shadow)).submit(
                small_body(p, "S.")
            )["id"]
    version = PolicyVersion.objects.get(agent__slug="xss-agent", number=world.version_number)
    world.version_id = version.pk
    return world


def in_thread(function, *args, **kwargs):
    """Call ``function`` in another thread: sync Playwright runs an event loop in this one,
    where the write path's on-commit broadcasts (``async_to_sync``) cannot run."""
    result: list = []
    error: list = []

    def work():
        try:
            result.append(function(*args, **kwargs))
        except BaseException as exc:  # re-raised in the test's thread
            error.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=120)
    if error:
        raise error[0]
    return result[0]


# --- the pages --------------------------------------------------------------------------------

# Fields stored but shown on no page (so no page can be asked to show them).
NOT_SHOWN = {
    ".idempotency_key": "kept only to recognise replays",
    ".callback_url": "pages show only a callback's host (hooks.example)",
}
# What a decision card shows of its action; the trace shows the rest.
TRACE_ONLY = (
    "correlation_id",
    "release.tool_schema_version",
    "release.extra",
    "compensation.",
    "approval_comment",
    "execution_error",
    "result.",
    "rollback_result.",
)


@dataclass
class Visit:
    url_name: str
    url: str
    expected: list[str]  # fields whose payload this page must show as text


def action_fields(world: World, letter: str, *, card_only: bool = False) -> list[str]:
    fields = [f for f in world.corpus.fields(f"{letter}.") if not f.endswith(tuple(NOT_SHOWN))]
    if card_only:
        fields = [f for f in fields if not any(part in f for part in TRACE_ONLY)]
    return fields


def visits(world: World) -> list[Visit]:
    """Every page that shows stored text, with what it must show."""
    a, f = world.actions, world.corpus.fields
    pages = [
        # First, while the agent's events (about 30) fit the search's first page of 50:
        # opening an action page audits a view.
        Visit(
            "audit-search",
            "/audit?agent=xss-agent",
            [
                "agent.name",
                "rule.limit",
                "change.applied.reason",
                "change.applied.approval_comment",
                "change.open.reason",
                "version.reason",
                "token.name",
                "A.correlation_id",
                "B.approval_comment",
                "B.execution_error",
                "B.rollback_comment",
                "C.reject_comment",
                "D.tool",
                "E.execution_error",
            ],
        ),
        Visit(
            "audit-search",
            "/audit?verb=kill_switch.engaged",
            [
                "switch.engaged.target",
                "switch.engaged.reason",
                "switch.released.target",
                "switch.released.reason",
            ],
        ),
        Visit(
            "audit-search",
            "/audit?"
            + urlencode(
                {
                    "correlation_id": world.corpus.by_field["A.correlation_id"].text,
                    "q": world.corpus("audit.query_text", 200),
                }
            ),
            ["A.correlation_id", "audit.query_text"],
        ),
        Visit("queue", "/queue", [*action_fields(world, "A", card_only=True), "agent.name"]),
        # The page an email's Approve link opens: the card, and the confirmation.
        Visit(
            "email-decision",
            f"/actions/{a['A']}/email/{world.email_link}",
            [*action_fields(world, "A", card_only=True), "agent.name"],
        ),
        Visit("decided", "/decided", ["agent.name", "B.rollback_comment", "C.reject_comment"]),
    ]
    for letter, action_id in a.items():
        mine = action_fields(world, letter)
        pages.append(Visit("action-detail", f"/actions/{action_id}", mine))
        pages.append(Visit("audit-action", f"/audit/actions/{action_id}", mine))
    pages += [
        Visit(
            "audit-policy-version",
            f"/audit/policy-versions/{world.version_id}",
            ["version.reason", "rule.limit"],
        ),
        Visit("rollout:agent-list", "/agents", ["agent.name"]),
        Visit(
            "rollout:agent-detail",
            "/agents/xss-agent",
            [
                "agent.name",
                "agent.description",
                "change.open.reason",
                "A.release.model",
                "A.release.prompt_version",
                "A.release.tool_schema_version",
            ],
        ),
        # The agent page's other sections, each its own URL
        Visit("rollout:agent-policy", "/agents/xss-agent/policy", ["agent.name", "rule.limit"]),
        Visit("rollout:token-issue", "/agents/xss-agent/tokens", ["agent.name", "token.name"]),
        Visit("rollout:agent-access", "/agents/xss-agent/access", ["agent.name"]),
        Visit("rollout:agent-metrics", "/agents/xss-agent/metrics", ["agent.name"]),
        Visit(
            "rollout:agent-history",
            "/agents/xss-agent/history",
            ["agent.name", "change.applied.reason", "version.reason"],
        ),
        Visit(
            "rollout:version-detail",
            f"/agents/xss-agent/versions/{world.version_number}",
            ["version.reason", "rule.limit"],
        ),
        Visit(
            "rollout:rule-edit", "/agents/xss-agent/rules/edit/search_policy_docs", ["rule.limit"]
        ),
        Visit("rollout:shadow-actions", "/agents/shadow-agent/shadow", ["S.summary"]),
        Visit(
            "rollout:change-list",
            "/changes?status=all",
            ["change.applied.reason", "change.open.reason", "rule.limit"],
        ),
        Visit(
            "rollout:change-detail",
            f"/changes/{world.change_applied}",
            ["change.applied.reason", "change.applied.approval_comment", "rule.limit"],
        ),
        Visit("rollout:change-detail", f"/changes/{world.change_open}", ["change.open.reason"]),
        Visit("rollout:change-edit", f"/changes/{world.change_open}/edit", ["change.open.reason"]),
        Visit("incidents", "/incidents", [*f("switch."), "agent.name"]),
        Visit(
            "incident-detail",
            f"/incidents/{world.engaged_switch}",
            ["switch.engaged.target", "switch.engaged.reason"],
        ),
        Visit("rollout:agent-cases", "/agents/xss-agent/cases", ["case.note"]),
        Visit("people", "/people", ["person.first_name", "person.last_name"]),
        Visit("profile", "/accounts/profile/", ["personal_token.name"]),
        # Forms that show no stored text. Those taking ?next= get a payload there: the login
        # form keeps it (a relative URL) as its hidden "next", step-up drops it.
        Visit("rollout:agent-register", "/agents/new", []),
        Visit("rollout:rule-add", "/agents/xss-agent/rules/add", []),
        Visit(
            "rollout:environment-rule",
            "/agents/xss-agent/environments/rule?environment=production&tool=search_policy_docs",
            ["rule.limit"],
        ),
        Visit(
            "login",
            "/accounts/login/?" + urlencode({"next": world.corpus("query.next")}),
            ["query.next"],
        ),
        Visit(
            "step-up", "/accounts/step-up/?" + urlencode({"next": world.corpus("query.next2")}), []
        ),
    ]
    # The admin's read-only windows on the same rows: its index and every changelist.
    pages.append(Visit("admin:index", "/admin/", []))
    for model in admin.site._registry:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"
        pages.append(Visit(name, reverse(name), ADMIN_SHOWS.get(name, [])))
    return pages


ADMIN_SHOWS: dict[str, list[str]] = {
    "admin:auth_user_changelist": ["person.first_name", "person.last_name"],
    "admin:rollout_agent_changelist": ["agent.name"],
    "admin:rollout_policyversion_changelist": ["change.applied.reason", "version.reason"],
    "admin:rollout_agenttoken_changelist": ["token.name"],
    "admin:rollout_release_changelist": [
        "A.release.model",
        "A.release.prompt_version",
        "A.release.tool_schema_version",
    ],
    "admin:rollout_killswitch_changelist": ["switch.engaged.target", "switch.released.target"],
}

# HTML pages of the URLconf this test does not open, and why. Every other URL pattern is
# either opened above, answers GET with 405 (a form's POST target), or answers with
# something other than HTML (the JSON API, exports, metrics): the probe below checks that,
# so a new page fails this test until it is opened or listed here.
SKIPPED = {
    "login-verify": "only reached mid-login; shows the person's username, no stored text",
    "login-enrol": "only reached mid-login; shows the person's username and a QR code",
    "two-factor": "shows the viewer's username and a QR code, no stored text",
    "admin-login-redirect": "a redirect to the login page",
    "api-docs": "Swagger UI of the OpenAPI schema: no stored data",
    "home": "the queue (opened as 'queue') for a reviewer, else a redirect to their home",
    "audit-verification": "the verification status fragment of /audit (opened there as "
    "'audit-search', which renders the same fragment); opened directly it redirects to /audit",
}
# The admin's other pages (add, change, delete, history, password forms) are Django's own
# templates, autoescaped like its changelists, which are opened.
ADMIN_NAMESPACE = "admin"


def url_patterns() -> Iterator[tuple[str, str]]:
    """(qualified name, route) of every URL pattern outside the admin."""

    def walk(patterns: list, prefix: str, namespace: str) -> Iterator[tuple[str, str]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace == ADMIN_NAMESPACE:
                    continue
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
            else:
                assert isinstance(pattern, URLPattern)
                assert pattern.name, f"unnamed URL pattern {prefix}{pattern.pattern}"
                yield namespace + pattern.name, prefix + str(pattern.pattern)

    yield from walk(get_resolver().url_patterns, "", "")


def probe_unvisited_pages(http: httpx.Client, world: World, visited: set[str]) -> list[str]:
    """GET every URL pattern not visited; return the HTML pages that are neither visited
    nor listed in SKIPPED."""
    samples = {
        "action_id": world.actions["A"],
        "slug": "xss-agent",
        "tool": "search_policy_docs",
        "token_id": world.agent_token_id,
        "number": world.version_number,
        "version_id": world.version_id,
        "change_id": world.change_open,
        "switch_id": world.engaged_switch,
        "user_id": world.person_id,
        "event_id": 1,
        "standing_id": 1,
        "case_id": 1,
    }
    unlisted = []
    names = set()
    for name, route in url_patterns():
        names.add(name)
        if name in visited or name in SKIPPED:
            continue
        params = re.findall(r"<(?:[^>:]+:)?([^>]+)>", route)
        missing = [param for param in params if param not in samples]
        assert not missing, f"{name}: add a sample value for {missing} to this probe"
        url = reverse(name, kwargs={param: samples[param] for param in params})
        response = http.get(url, follow_redirects=False)
        is_html = response.headers.get("content-type", "").startswith("text/html")
        if response.status_code == 405 or not is_html:
            continue
        unlisted.append(f"{name} ({url}: HTTP {response.status_code})")
    stale = sorted(
        (visited | set(SKIPPED)) - names - {n for n in visited if n.startswith("admin:")}
    )
    assert not stale, f"listed but not in the URLconf: {stale}"
    return unlisted


# --- the browser ----------------------------------------------------------------------------


@dataclass
class Watch:
    """Everything a payload could do that the browser can tell."""

    corpus: Corpus
    hits: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.expose_binding(
            "__xssReport",
            lambda source, number: self.hits.append(
                f"{self.corpus.describe(number)} ran on {source['frame'].url}"
            ),
        )
        context.add_init_script(INIT_SCRIPT)
        context.on("request", self._request)
        # Nothing may leave for the attacker's host; abort at once (no DNS wait).
        context.route(re.compile(rf"^https?://{re.escape(EVIL_HOST)}"), lambda r: r.abort())

    def _request(self, request: Any) -> None:
        parts = urlsplit(request.url)
        if parts.path.startswith("/xss-hit/") or parts.hostname == EVIL_HOST:
            self.requests.append(f"{request.url} (from {request.frame.url})")

    def check(self, page: Page, where: str, expected: list[str]) -> None:
        """Record what is wrong with the page as it is now."""
        for injected in page.evaluate(INJECTED_JS, EVIL_HOST):
            self.problems.append(f"{where}: {injected}")
        text = page.evaluate(PAGE_TEXT_JS)
        for name in expected:
            placement = self.corpus.by_field[name]
            if not any(form in text for form in placement.shown_forms()):
                self.problems.append(
                    f"{where}: {name} (payload {placement.number}) not shown as text"
                )

    def visit(self, page: Page, url: str, expected: list[str]) -> None:
        response = page.goto(url)
        assert response is not None and response.status == 200, (
            f"{url}: {response and response.status}"
        )
        page.wait_for_timeout(SETTLE_MS)
        if urlsplit(page.url).path != urlsplit(url).path:
            self.problems.append(f"{url}: navigated away to {page.url}")
        self.check(page, url, expected)

    def report(self) -> list[str]:
        return (
            [f"executed: {hit}" for hit in self.hits]
            + [f"requested: {url}" for url in self.requests]
            + [f"dialog: {message}" for message in self.dialogs]
            + self.problems
        )


@pytest.fixture
def world(dashboard_server, transactional_db, reference_data, settings) -> World:
    return in_thread(build_world, dashboard_server.url, settings)


def test_xss_corpus__in_every_field__shown_as_text_on_every_page__never_runs(
    browser: Browser, dashboard_server, world: World
):
    expect.set_options(timeout=LIVE_TIMEOUT_MS)
    pages = visits(world)
    server = type("Server", (), {"url": dashboard_server.url})
    with closing(login(server, "sam")) as sam_http:
        # Given every page of the URLconf is either opened below or listed with a reason
        unlisted = probe_unvisited_pages(sam_http, world, {visit.url_name for visit in pages})
        assert not unlisted, f"HTML pages neither opened nor listed in SKIPPED: {unlisted}"

        watch = Watch(world.corpus)
        context = browser.new_context(
            base_url=dashboard_server.url, bypass_csp=True, viewport={"width": 1280, "height": 900}
        )
        try:
            watch.attach(context)
            page = context.new_page()
            page.set_default_timeout(LIVE_TIMEOUT_MS)
            page.on(
                "dialog", lambda dialog: (watch.dialogs.append(dialog.message), dialog.dismiss())
            )
            page.goto("/accounts/login/")
            page.fill("#id_username", "sam")
            page.fill("#id_password", "pw-for-tests")
            page.click("button[type=submit]")
            page.wait_for_url(dashboard_server.url + "/incidents")  # sam holds every role

            # When a person who sees everything opens every page that shows the text
            for visit in pages:
                watch.visit(page, visit.url, visit.expected)

            # And cards arrive live on the open queue: a new one, then its rejection
            page.goto("/queue")
            expect(page.locator("[data-live-status]")).to_have_text("live")
            expect(page.locator("[data-live-synced]")).to_have_count(1)
            with httpx.Client(base_url=dashboard_server.url, timeout=60) as http:
                agent = AgentClient(http, world.agent_token)
                live = agent.submit(submission_body(world.corpus, "L."))
            card = page.locator(f"#card-{live['id']}")
            expect(card).to_be_visible()
            page.wait_for_timeout(SETTLE_MS)
            watch.check(page, "queue, live card", action_fields(world, "L", card_only=True))
            ok(
                sam_http.post(
                    f"/api/v1/actions/{live['id']}/decisions",
                    json={"verdict": "reject", "comment": world.corpus("L.reject_comment")},
                )
            )
            expect(card).to_have_attribute("data-status", "rejected")
            page.wait_for_timeout(SETTLE_MS)
            watch.check(page, "queue, live rejection", ["L.reject_comment"])

            # And a change request arrives live on the open change list
            page.goto("/changes")
            expect(page.locator("[data-live-status]")).to_have_text("live")
            expect(page.locator("[data-live-synced]")).to_have_count(1)
            change = ok(
                sam_http.post(
                    "/api/v1/agents/xss-agent/changes",
                    json={
                        "changes": {
                            "tools": {"get_order_status": {"effect": "read", "rule": "allowed"}}
                        },
                        "reason": world.corpus("live.change.reason", 300),
                    },
                )
            )["change_request"]
            expect(page.locator(f"[data-change-id='{change['id']}']")).to_be_visible()
            page.wait_for_timeout(SETTLE_MS)
            watch.check(page, "changes, live", ["live.change.reason"])
        finally:
            context.close()

    # Then nothing ran, nothing was injected or fetched, and every payload was shown as text
    problems = watch.report()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
