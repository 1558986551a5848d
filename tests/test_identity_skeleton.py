"""Identities compared by skeleton, never by spelling (issue 15, class 4).

The person an agent acted for (``on_behalf_of``) may not approve — whatever spelling the
agent sent (case, fullwidth, look-alike letters); invisible and control characters are
refused in names and keys (``400 invalid_text``, nothing written); no two people share a
username skeleton, on any path that saves a user; and the card shows invisible characters
in agent-supplied text as visible markers."""

from __future__ import annotations

import string
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from approvals.models import Action
from audit.models import AuditEvent
from core.identity import (
    DEFAULT_IGNORABLE,
    DEFAULT_IGNORABLE_RANGES,
    same_person,
    skeleton,
    users_matching,
)
from tests import factories

# --- the pure function ------------------------------------------------------------------

CYRILLIC_IE = "\u0435"  # looks like Latin "e"
SOFT_HYPHEN = "\u00ad"
USERNAME_ALPHABET = string.ascii_letters + string.digits + "@.+-_"
# Default-ignorable code points, a few from each kind (bidi controls included).
IGNORABLES = [
    chr(code)
    for start, end, _ in DEFAULT_IGNORABLE_RANGES
    for code in sorted({start, end, (start + end) // 2})
]


def fullwidth(text: str) -> str:
    """ASCII ``!``..``~`` as their fullwidth compatibility forms (NFKC maps them back)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize(
    "spelling",
    [
        "Reviewer2",
        "REVIEWER2",
        fullwidth("reviewer2"),
        fullwidth("Reviewer") + "2",
        f"revie{SOFT_HYPHEN}wer2",
        f"r{CYRILLIC_IE}vi{CYRILLIC_IE}wer2",
        "revie\u200bwer2\u200e",
    ],
)
def test_skeleton__spellings_of_one_name__same_person(spelling: str) -> None:
    assert same_person(spelling, "reviewer2")
    assert skeleton(spelling) == skeleton("reviewer2") == "reviewer2"


@pytest.mark.parametrize(("a", "b"), [("reviewer2", "reviewer3"), ("rita", "rob"), ("", "")])
def test_skeleton__different_or_empty_names__not_same_person(a: str, b: str) -> None:
    assert not same_person(a, b)


def test_same_person__invisible_only_name__matches_nobody() -> None:
    assert skeleton("\u200b\u00ad\u3164") == ""
    assert not same_person("\u200b", "\u00ad")


def test_default_ignorable_table__matches_each_listed_code_point_and_no_letters() -> None:
    for start, end, _ in DEFAULT_IGNORABLE_RANGES:
        for code in (start, end):
            assert DEFAULT_IGNORABLE.fullmatch(chr(code)), hex(code)
    for visible in "aZ09 -_.@\u00e9\u0430\u05d0\u4e00\U0001f600":
        assert not DEFAULT_IGNORABLE.search(visible), hex(ord(visible))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=24))
def test_skeleton__any_text__idempotent(text: str) -> None:
    assert skeleton(skeleton(text)) == skeleton(text)


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=USERNAME_ALPHABET, min_size=1, max_size=20),
    st.lists(st.tuples(st.integers(min_value=0), st.sampled_from(IGNORABLES)), max_size=5),
)
def test_skeleton__inserted_default_ignorables__unchanged(
    name: str, insertions: list[tuple[int, str]]
) -> None:
    hidden = name
    for position, char in insertions:
        at = position % (len(hidden) + 1)
        hidden = hidden[:at] + char + hidden[at:]
    assert skeleton(hidden) == skeleton(name)
    assert same_person(hidden, name)


# Letters of scripts people's names are written in, whose case round-trips.
CASED = string.ascii_letters + string.digits + "éüßøåçñ" + "αβγδεζηθλμπστ" + "абвгдежзиклмн"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=CASED, min_size=1, max_size=20))
def test_skeleton__case_changes__unchanged(name: str) -> None:
    for variant in (name.upper(), name.lower(), name.swapcase(), name.title()):
        assert skeleton(variant) == skeleton(name), variant
        assert same_person(variant, name)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=USERNAME_ALPHABET, min_size=1, max_size=20))
def test_skeleton__nfkc_compatible_variants__unchanged(name: str) -> None:
    assert skeleton(fullwidth(name)) == skeleton(name)


# --- the agent API -----------------------------------------------------------------------


def agent_client(agent: Any) -> Client:
    return Client(headers={"Authorization": f"Bearer {factories.make_token(agent)}"})


def submit(client: Client, body: dict, key: str | None = None) -> Any:
    return client.post(
        "/api/v1/actions",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )


def decide(user: Any, action_id: int) -> Any:
    person = Client()
    person.force_login(user)
    return person.post(
        f"/api/v1/actions/{action_id}/decisions",
        {"verdict": "approve"},
        content_type="application/json",
    )


EMAIL = {"tool": "send_email", "arguments": {"to": "dana@example.com"}, "summary": "Hello"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "on_behalf_of",
    [
        "rita",
        "Rita",
        "RITA",
        fullwidth("rita"),
        "r\u0456t\u0430",  # Cyrillic i and a
        f"rit{fullwidth('a').upper()}",
    ],
)
def test_decide__on_behalf_of_spelled_otherwise__requester_refused_other_reviewer_approves(
    support_agent: Any, reviewer: Any, reviewer2: Any, on_behalf_of: str
) -> None:
    # Given an agent acting for rita under some spelling of her name
    response = submit(agent_client(support_agent), {**EMAIL, "on_behalf_of": on_behalf_of})
    assert response.status_code == 201, response.content
    action_id = response.json()["id"]
    # When rita approves it through the API
    mine = decide(reviewer, action_id)
    # Then she is refused as its requester, and it stays pending
    assert (mine.status_code, mine.json()["code"]) == (403, "own_request")
    assert Action.objects.get(pk=action_id).status == "pending"
    # and another reviewer may approve it
    other = decide(reviewer2, action_id)
    assert other.status_code == 201, other.content
    assert Action.objects.get(pk=action_id).status == "approved"


def snapshot() -> tuple:
    return (Action.objects.count(), AuditEvent.objects.count())


HOSTILE_SUBMISSIONS = [
    # (id, body, field named in the answer)
    ("key-zwj", {**EMAIL, "arguments": {"to\u200d": "x@example.com"}}, "arguments.to\\u200d"),
    ("key-soft-hyphen", {**EMAIL, "arguments": {"t\u00ado": "x"}}, "arguments.t\\u00ado"),
    (
        "nested-key-tag",
        {**EMAIL, "arguments": {"to": "x", "meta": {"a\U000e0041": 1}}},
        "arguments.meta.a\\U000e0041",
    ),
    ("key-variation-selector", {**EMAIL, "release": {"model\ufe0f": "m"}}, "release.model\\ufe0f"),
    ("on-behalf-of-soft-hyphen", {**EMAIL, "on_behalf_of": "ri\u00adta"}, "on_behalf_of"),
    ("on-behalf-of-zwj", {**EMAIL, "on_behalf_of": "ri\u200dta"}, "on_behalf_of"),
    ("on-behalf-of-lrm", {**EMAIL, "on_behalf_of": "rita\u200e"}, "on_behalf_of"),
    ("on-behalf-of-isolate", {**EMAIL, "on_behalf_of": "\u2066rita\u2069"}, "on_behalf_of"),
    ("on-behalf-of-alm", {**EMAIL, "on_behalf_of": "\u061crita"}, "on_behalf_of"),
    ("on-behalf-of-tag", {**EMAIL, "on_behalf_of": "rita\U000e0041"}, "on_behalf_of"),
    ("on-behalf-of-control", {**EMAIL, "on_behalf_of": "ri\x1bta"}, "on_behalf_of"),
    ("correlation-zwnj", {**EMAIL, "correlation_id": "run\u200c1"}, "correlation_id"),
    ("correlation-soft-hyphen", {**EMAIL, "correlation_id": "run\u00ad1"}, "correlation_id"),
    ("tool-soft-hyphen", {**EMAIL, "tool": "send\u00ad_email"}, "tool"),
    ("tool-zwj", {**EMAIL, "tool": "send_email\u200d"}, "tool"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [pytest.param(body, field, id=name) for name, body, field in HOSTILE_SUBMISSIONS],
)
def test_submit__invisible_character_in_a_name_or_key__400_invalid_text_nothing_written(
    support_agent: Any, reviewer: Any, body: dict, field: str
) -> None:
    client = agent_client(support_agent)
    before = snapshot()
    response = submit(client, body)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["code"] == "invalid_text"
    assert field in answer["fields"], answer
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key",
    ["k\u200b1", "k\u00ad1", "k\u200d1", "k\u202e1", "k\u200e1", "k\x011", "k\x7f1", "k\x851"],
)
def test_submit__invisible_or_control_character_in_idempotency_key__400_invalid_text(
    support_agent: Any, key: str
) -> None:
    client = agent_client(support_agent)
    before = snapshot()
    response = submit(client, EMAIL, key=key)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["code"] == "invalid_text"
    assert "Idempotency-Key" in answer["fields"]
    assert snapshot() == before


@pytest.mark.django_db
def test_submit__zwj_and_zwnj_inside_free_text_values__accepted(support_agent: Any) -> None:
    # Scripts and emoji need the joiners: values keep them (keys and names do not).
    summary = (
        "Notify \U0001f469\u200d\U0001f4bb team; \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    )
    response = submit(agent_client(support_agent), {**EMAIL, "summary": summary})
    assert response.status_code == 201, response.content
    assert Action.objects.get(pk=response.json()["id"]).summary == summary


@pytest.mark.django_db(transaction=True)
def test_submit__utf8_zero_width_space_in_idempotency_key_over_http__400_invalid_text(
    live_api: Any, support_agent: Any
) -> None:
    # A real server hands headers over decoded as ISO-8859-1; the key is read back as UTF-8.
    token = factories.make_token(support_agent)
    before = snapshot()
    response = live_api.post(
        "/api/v1/actions",
        json=EMAIL,
        headers={
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": "k\u200b1".encode(),
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_text"
    assert "Idempotency-Key" in response.json()["fields"]
    assert snapshot() == before


# --- usernames ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["Rita", "RITA", "r\u0456t\u0430", fullwidth("rita"), "rit\u0430"])
def test_create_user__username_with_an_existing_skeleton__validation_error(
    reviewer: Any, name: str
) -> None:
    users = get_user_model().objects.count()
    with pytest.raises(ValidationError):
        get_user_model().objects.create_user(username=name, password="pw-for-tests")
    assert get_user_model().objects.count() == users


@pytest.mark.django_db
def test_rename__to_another_persons_skeleton__refused_keeping_own_name_is_fine(
    reviewer: Any, reviewer2: Any
) -> None:
    reviewer2.username = "R\u0456ta"
    with pytest.raises(ValidationError):
        reviewer2.save()
    # Keeping one's name, or respelling it, is fine.
    reviewer.first_name = "Rita"
    reviewer.save()
    reviewer.username = "Rita"
    reviewer.save()
    assert users_matching("rita") == [reviewer.pk]


@pytest.mark.django_db
def test_admin_add_user__colliding_username__field_error_no_user(reviewer: Any) -> None:
    admin = Client()
    admin.force_login(factories.make_user("ada", superuser=True))
    users = get_user_model().objects.count()
    response = admin.post(
        "/admin/auth/user/add/",
        {
            "username": "r\u0456ta",
            "password1": "a-long-password-9",
            "password2": "a-long-password-9",
            "usable_password": "true",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert "username" in errors, errors
    assert get_user_model().objects.count() == users
    # A distinct name is added.
    response = admin.post(
        "/admin/auth/user/add/",
        {
            "username": "rosa",
            "password1": "a-long-password-9",
            "password2": "a-long-password-9",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:500]
    assert get_user_model().objects.filter(username="rosa").exists()


@pytest.mark.django_db
def test_admin_change_user__rename_to_colliding_username__field_error(
    reviewer: Any, reviewer2: Any
) -> None:
    admin = Client()
    admin.force_login(factories.make_user("ada", superuser=True))
    url = f"/admin/auth/user/{reviewer2.pk}/change/"
    form = admin.get(url).context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name not in {"groups", "user_permissions", "password"}
    }
    data.update({"username": "RITA", "date_joined_0": "2026-01-01", "date_joined_1": "10:00:00"})
    data.pop("date_joined", None)
    data.pop("last_login", None)
    response = admin.post(url, data)
    assert response.status_code == 200
    assert "username" in response.context["adminform"].form.errors
    reviewer2.refresh_from_db()
    assert reviewer2.username == "rob"


# --- the card ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_card__invisible_characters_in_agent_text__shown_as_visible_markers(
    support_agent: Any, reviewer: Any
) -> None:
    # Written through the gate's write path, as a body the API refuses could never be.
    action = factories.submit(
        support_agent,
        "send_email",
        {"to": "ceo@exam\u200bple.com"},
        summary="Pay <b>ACME</b>\u200b now",
        rationale={"objective": "re\u00adfund"},
        evidence=[{"kind": "note", "title": "In\u2066voice", "content": "x\u200dy"}],
        on_behalf_of="rob\u200e",
    )
    person = Client()
    person.force_login(reviewer)
    html = person.get(f"/actions/{action.pk}").content.decode()
    marker = '<span class="invisible-char" title="invisible character">\u27e8U+{}\u27e9</span>'
    assert "Pay &lt;b&gt;ACME&lt;/b&gt;" + marker.format("200B") + " now" in html
    assert "ceo@exam" + marker.format("200B") + "ple.com" in html
    assert "re" + marker.format("00AD") + "fund" in html
    assert "In" + marker.format("2066") + "voice" in html
    assert "x" + marker.format("200D") + "y" in html
    assert "rob" + marker.format("200E") in html
