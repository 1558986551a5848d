"""Every page of the URLconf passes axe-core's WCAG 2.1 A/AA rules and fits a phone.

The pages come from the authorization matrix's table of every URL (``tests/authz_support``
``OPS``, which ``tests/test_authz_matrix.py`` already holds to the URLconf: a new URL without
a row fails there), so a new page is swept here as soon as it has its row. Each page is
opened as every role the matrix lets open it — reviewer, governance owner, incident owner,
auditor, the superuser for Django's admin, and no one for the public pages — in real
Chromium, at a laptop's 1280 px and a phone's 390 px, and must show:

- no violation of axe-core's ``wcag2a``, ``wcag2aa``, ``wcag21a`` and ``wcag21aa`` rules;
- no horizontal scrolling (the page is no wider than the viewport);
- no Content-Security-Policy violation in the console.

One browser context per role for the whole sweep (its session cookie set once): a login per
page would cost more than the check. Failures are collected and reported together, page by
page, so one run shows everything left to fix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

import tests.test_authz_matrix as matrix
from tests import authz_support as az

pytestmark = [pytest.mark.browser]

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
VIEWPORTS = {"laptop": (1280, 800), "phone": (390, 844)}
# The matrix's roles that browse, and what each stands for here.
BROWSING_ROLES = ("anonymous", "reviewer", "governor", "incident", "auditor", "superuser")
SUCCESS = "200"


def pages_for(role: str) -> list[az.Op]:
    """The HTML pages ``role`` may open (by the matrix), each with its own agent's object."""
    pages = []
    for op in az.OPS:
        if op.method != "GET" or op.kind not in ("page", "public"):
            continue
        cell = matrix.EXPECTED.get(op.key, {}).get(role)
        if cell and cell[0] == SUCCESS:
            pages.append(op)
    return pages


@pytest.fixture
def world(transactional_db: None) -> az.World:
    """The matrix's world, committed so the server's threads see it (and what a page's
    ``prepare`` adds, such as an engaged kill switch); flushed after each role's test."""
    return az.build_world()


@pytest.fixture(scope="module")
def axe_script() -> str:
    from axe_playwright_python.sync_playwright import Axe

    return Axe().axe_script


def open_page(page: Any, url: str, axe_script: str, csp_errors: list[str]) -> list[str]:
    """Load ``url`` and axe-core into it; what went wrong while loading (CSP errors)."""
    csp_errors.clear()
    page.goto(url, wait_until="load")
    # A page that draws itself after loading (Swagger UI on /api/docs/) is aria-busy until it
    # has: check what the person meets, not the empty frame.
    page.wait_for_selector('[aria-busy="true"]', state="detached")
    page.evaluate(axe_script)
    return [f"console: {text}" for text in csp_errors]


def check_viewport(page: Any) -> list[str]:
    """What is wrong with the loaded page at its current viewport: axe violations (rule,
    impact, the first offending elements) and horizontal overflow."""
    problems = []
    options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
    results = page.evaluate(f"axe.run(document, {json.dumps(options)})")
    for violation in results["violations"]:
        targets = [" ".join(map(str, node["target"])) for node in violation["nodes"][:3]]
        problems.append(
            f"axe {violation['id']} ({violation['impact']}): {violation['help']} — "
            f"{len(violation['nodes'])} element(s), e.g. {targets}"
        )
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    if overflow > 0:
        problems.append(f"wider than the viewport by {overflow} px (horizontal scrolling)")
    return problems


# Whether each operation answers HTML (by URL name, method and query: the object ids in its
# path differ per role's world): the same view answers the same type to every role it lets
# in, and rendering each page once more per role just to read its Content-Type was ~1/6
# of the sweep's time.
_ANSWERS_HTML: dict[tuple[str, str, str], bool] = {}


def is_html(op: az.Op, get: Any, path: str) -> bool:
    """Whether ``op`` answers HTML, asked with ``get(path)`` the first time only."""
    key = (*op.key, op.query)
    if key not in _ANSWERS_HTML:
        _ANSWERS_HTML[key] = "text/html" in get(path).get("Content-Type", "")
    return _ANSWERS_HTML[key]


@pytest.mark.parametrize("role", BROWSING_ROLES)
def test_every_page__wcag21_aa__fits_a_phone__no_csp_errors(
    role: str, world: az.World, dashboard_server: Any, browser: Any, axe_script: str
) -> None:
    pages = pages_for(role)
    assert pages or role == "anonymous", f"the matrix lets {role} open no page"
    # Where `/` lands each role (their home, or the login page) is one of the pages swept
    # here, so its phone check covers the first page every person sees.
    landing = world.client(role).get("/", follow=True).request["PATH_INFO"]
    assert landing in {op.url(world.own).split("?")[0] for op in pages}, (role, landing)
    context = browser.new_context()
    if role in world.sessions:
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": world.sessions[role],
                    "url": dashboard_server.url,
                }
            ]
        )
    page = context.new_page()
    csp_errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            csp_errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    failures = []
    try:
        for op in pages:
            if op.prepare:
                op.prepare(world)
            path = op.url(world.own)
            if not is_html(op, world.client(role).get, path):
                continue  # not a page: a schema, a health check
            url = dashboard_server.url + path
            # Loaded once at the first viewport and resized, as a person turning a phone or
            # narrowing a window sees it: the layout follows the media queries without a
            # reload, and axe (injected once) checks each width.
            for index, (viewport, (width, height)) in enumerate(VIEWPORTS.items()):
                page.set_viewport_size({"width": width, "height": height})
                if index:
                    # What the page's scripts do on a resize (static/a11y.js marks boxes that
                    # now scroll) runs on the next frame: check the page a person then sees.
                    page.evaluate(
                        "() => new Promise(done => requestAnimationFrame("
                        "() => requestAnimationFrame(done)))"
                    )
                problems = open_page(page, url, axe_script, csp_errors) if index == 0 else []
                problems += check_viewport(page)
                failures += [f"{op.name} {url} [{viewport}]: {problem}" for problem in problems]
    finally:
        context.close()
    assert not failures, f"{len(failures)} problem(s) as {role}:\n" + "\n".join(failures)
