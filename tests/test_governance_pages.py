"""The governance pages: forms validate (an argument limit that does not parse is refused
with a message), tightenings apply, loosenings land on /changes, charts are inline SVG."""

import pytest
from django import forms
from django.test import Client

from governance.forms import format_limits, parse_limits
from governance.models import ChangeRequest
from tests import factories


@pytest.fixture
def governor(reference_data):
    return factories.make_user("gwen", groups=("governance_owner",))


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("text", "limits"),
    [
        ("amount <= 10000", [{"field": "amount", "op": "<=", "value": 10000}]),
        (
            "environment in [staging, dev]",
            [{"field": "environment", "op": "in", "value": ["staging", "dev"]}],
        ),
        (
            'environment in ["staging"]\n\nn not_in [1, 2]',
            [
                {"field": "environment", "op": "in", "value": ["staging"]},
                {"field": "n", "op": "not_in", "value": [1, 2]},
            ],
        ),
        (
            "to matches ^[a-z]+@example\\.com$",
            [{"field": "to", "op": "matches", "value": "^[a-z]+@example\\.com$"}],
        ),
        ('mode == "safe"', [{"field": "mode", "op": "==", "value": "safe"}]),
        ('[{"field": "a", "op": "<", "value": 1}]', [{"field": "a", "op": "<", "value": 1}]),
    ],
)
def test_parse_limits__round_trips_through_format(text, limits):
    assert parse_limits(text) == limits
    assert parse_limits(format_limits(limits)) == limits


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("amount <= lots", "line 1: <= needs a number"),
        ("amount about 5", "line 1: write it as 'field operator value'"),
        ("ok <= 1\nname matches ([", "line 2: invalid pattern"),
        ("[{]", "Not valid JSON"),
    ],
)
def test_parse_limits__unparseable__refused_with_the_line(text, message):
    with pytest.raises(forms.ValidationError) as exc:
        parse_limits(text)
    assert any(message in m for m in exc.value.messages)


def test_rule_form__unparseable_limit__refused_with_message_and_nothing_changes(
    support_agent, governor
):
    client = logged_in(governor)
    response = client.post(
        "/agents/support-assistant/rules/edit/create_refund_request",
        {
            "effect": "write",
            "rule": "requires_approval",
            "base_risk": "medium",
            "argument_limits": "amount <= ten thousand",
            "reason": "typo",
        },
    )
    assert response.status_code == 200
    assert "line 1: &lt;= needs a number" in response.content.decode()
    support_agent.refresh_from_db()
    assert support_agent.current_policy.number == 1


def test_rule_form__tighter_limit_applies__looser_limit_becomes_change_request(
    support_agent, governor
):
    client = logged_in(governor)
    base = {"effect": "write", "rule": "requires_approval", "base_risk": "medium"}
    response = client.post(
        "/agents/support-assistant/rules/edit/create_refund_request",
        {**base, "argument_limits": "amount <= 500", "reason": "smaller"},
        follow=True,
    )
    assert "Applied at once" in response.content.decode()
    response = client.post(
        "/agents/support-assistant/rules/edit/create_refund_request",
        {**base, "argument_limits": "amount <= 50000", "reason": "bigger"},
    )
    cr = ChangeRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/changes/{cr.pk}"
    page = client.get(f"/changes/{cr.pk}").content.decode()
    assert "create_refund_request: limit amount ≤ 500 → ≤ 50,000" in page
    assert "You wrote this change request" in page  # the author is not offered Approve


def test_add_rule_and_promote__change_requests_listed_on_changes(support_agent, governor):
    client = logged_in(governor)
    client.post(
        "/agents/support-assistant/rules/add",
        {
            "tool": "search_kb",
            "effect": "read",
            "rule": "allowed",
            "base_risk": "low",
            "reason": "needs docs",
        },
    )
    client.post("/agents/support-assistant/tier", {"tier": "autonomous", "reason": "ready"})
    listing = client.get("/changes").content.decode()
    assert "add search_kb (read, allowed, base risk low)" in listing
    assert "promote supervised → autonomous" in listing
    fragment = client.get("/changes?partial=1")
    assert fragment["X-Airlock-Fragment"] == "changes" and "<html" not in fragment.content.decode()


def test_agent_pages__render_charts_readiness_backtest_and_versions(support_agent, governor):
    factories.submit(support_agent, "update_crm_note", {"note": "x"})
    factories.submit(support_agent, "get_order_status", {"order_id": "1"})
    client = logged_in(governor)
    listing = client.get("/agents").content.decode()
    assert listing.count('<svg class="spark') == 4 and "support-assistant" in listing
    page = client.get(
        "/agents/support-assistant?backtest_tier=autonomous&days=14&diff_from=1&diff_to=1"
    ).content.decode()
    assert "Promotion readiness" in page and "Not ready" in page
    assert "would have run without a human at tier autonomous" in page
    metrics = client.get("/agents/support-assistant/metrics").content.decode()
    assert (
        '<svg class="chart chart-bars"' in metrics and '<svg class="chart chart-lines"' in metrics
    )
    history = client.get("/agents/support-assistant/history?diff_from=1&diff_to=1")
    assert "Policy versions" in history.content.decode()
    for html in (page, metrics, history.content.decode()):
        assert "<script" not in html.split("</head>")[1]  # no inline script in the body
        assert " onclick=" not in html and " style=" not in html
    assert client.get("/agents/support-assistant/versions/1").status_code == 200


def test_token_page__shows_the_token_once_uncached(support_agent, governor):
    client = logged_in(governor)
    response = client.post("/agents/support-assistant/tokens", {"name": "ci"})
    assert response["Cache-Control"] == "no-store"
    token = response.content.decode().split('data-testid="new-token">')[1].split("<")[0]
    assert token.startswith("alk_")
    assert token not in client.get("/agents/support-assistant/tokens").content.decode()


def test_agent_supplied_text_is_escaped(support_agent, governor):
    factories.submit(support_agent, "<script>alert(1)</script>", {}, release={"model": "<b>m</b>"})
    page = logged_in(governor).get("/agents/support-assistant").content.decode()
    assert "<b>m</b>" not in page and "&lt;b&gt;m&lt;/b&gt;" in page
