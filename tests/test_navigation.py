"""Each person lands on their work and sees only the pages they may open: the home by role,
a chosen home, the navigation, and the 403/404 pages inside the layout."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import HomeChoice
from tests import factories


@pytest.fixture
def as_user(client: Client):
    def login(user):
        client.force_login(user)
        return client

    return login


def nav_labels(html: str) -> list[str]:
    nav = re.search(r'<nav class="topnav"[^>]*>(.*?)</nav>', html, re.S)
    assert nav, "the page has no main navigation"
    return re.findall(r">([^<]+)</a>", nav.group(1))


@pytest.mark.parametrize(
    ("groups", "lands_on"),
    [
        (("incident_owner",), "/incidents"),
        (("governance_owner",), "/changes"),
        (("auditor",), "/audit"),
        # several roles: the first of incident owner, reviewer, governance owner, auditor
        (("auditor", "governance_owner"), "/changes"),
        (("reviewer", "incident_owner"), "/incidents"),
    ],
)
def test_home__by_role__redirects_to_the_first_role_held(as_user, reference_data, groups, lands_on):
    client = as_user(factories.make_user("pat", groups=groups))
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == lands_on
    assert client.get(lands_on).status_code == 200


@pytest.mark.parametrize("groups", [("reviewer",), ("reviewer", "auditor")])
def test_home__reviewer__is_the_queue_in_place(as_user, reference_data, groups):
    response = as_user(factories.make_user("rae", groups=groups)).get("/")
    assert response.status_code == 200
    assert "<h1>Queue</h1>" in response.content.decode()


def test_home__per_agent_rights__count_as_the_role(as_user, support_agent):
    # Given someone who may only stop one agent
    ivy = factories.make_user("ivy", agent_perms={"rollout.kill_agent": support_agent})
    # Then their home is the incident console
    assert as_user(ivy).get("/")["Location"] == "/incidents"


def test_navigation__shows_only_pages_the_person_may_open(as_user, reference_data):
    cases = {
        ("reviewer",): ["Queue", "Decided", "Agents"],
        ("governance_owner",): ["Agents", "Changes"],
        ("incident_owner",): ["Agents", "Incidents"],
        ("auditor",): ["Decided", "Agents", "Changes", "Incidents", "Audit"],
    }
    for number, (groups, expected) in enumerate(cases.items()):
        client = Client()
        client.force_login(factories.make_user(f"p{number}", groups=groups))
        html = client.get("/accounts/profile/").content.decode()
        assert nav_labels(html) == expected, groups
        # and every link offered opens
        for href in re.findall(r'<nav class="topnav".*?</nav>', html, re.S)[0].split('href="')[1:]:
            path = href.split('"')[0]
            assert client.get(path).status_code == 200, (groups, path)


def test_navigation__superuser__sees_people_too(as_user, reference_data):
    html = as_user(factories.make_user("root", superuser=True)).get("/accounts/profile/")
    assert nav_labels(html.content.decode())[-1] == "People"


def test_chosen_home__allowed__stored_and_used(as_user, reference_data):
    # Given an incident owner who also reviews (default home: incidents)
    client = as_user(factories.make_user("max", groups=("incident_owner", "reviewer")))
    assert client.get("/")["Location"] == "/incidents"
    # When they choose the queue in their profile
    response = client.post("/home", {"home": "queue"}, follow=True)
    assert "Your home is now Queue." in response.content.decode()
    # Then "/" is the queue, and the profile says so
    assert client.get("/").status_code == 200
    assert (
        "Airlock opens on <strong>Queue</strong>"
        in client.get("/accounts/profile/").content.decode()
    )
    # When they return to the default
    client.post("/home", {"home": ""})
    assert client.get("/")["Location"] == "/incidents"
    assert not HomeChoice.objects.exists()


def test_chosen_home__not_allowed__refused_and_not_stored(as_user, reference_data):
    client = as_user(factories.make_user("gus", groups=("governance_owner",)))
    response = client.post("/home", {"home": "audit"}, follow=True)
    assert "cannot be your home" in response.content.decode()
    assert not HomeChoice.objects.exists()
    assert client.get("/")["Location"] == "/changes"


def test_chosen_home__role_taken_away__falls_back_to_the_default(as_user, reference_data):
    from django.contrib.auth.models import Group

    ada = factories.make_user("ada", groups=("governance_owner", "auditor"))
    client = as_user(ada)
    client.post("/home", {"home": "audit"})
    assert client.get("/")["Location"] == "/audit"
    ada.groups.remove(Group.objects.get(name="auditor"))
    assert client.get("/")["Location"] == "/changes"


# --- 403 and 404 pages ------------------------------------------------------------------


def test_403__page_inside_the_layout_says_what_to_do(as_user, reference_data):
    client = as_user(factories.make_user("rex", groups=("reviewer",)))
    response = client.get("/audit")
    html = response.content.decode()
    assert response.status_code == 403
    assert html.count("<h1") == 1
    assert "You may not open this page" in html
    assert "You may not read the audit log." in html  # the refusal's own sentence
    assert 'href="/"' in html  # back to their home
    assert nav_labels(html) == ["Queue", "Decided", "Agents"]


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/changes/999999", "/actions/999999", "/no-such-page"])
def test_404__page_inside_the_layout__debug_on_or_off(
    as_user, settings, reference_data, debug, path
):
    settings.DEBUG = debug
    client = as_user(factories.make_user("gil", groups=("governance_owner",)))
    response = client.get(path)
    html = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in html
    assert "your home page" in html
    assert "URLconf" not in html and "Django" not in html  # not the debug page
    assert nav_labels(html) == ["Agents", "Changes"]


@pytest.mark.parametrize("debug", [False, True])
def test_404__api__stays_json(as_user, settings, reference_data, debug):
    settings.DEBUG = debug
    response = as_user(factories.make_user("ann", groups=("reviewer",))).get("/api/v1/nothing")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
