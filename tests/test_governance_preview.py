"""Preview before propose: every change form shows the readable diff, which way it moves
the agent's autonomy and the backtest delta against today's policy, writing nothing; the
propose that follows submits the same values (validated again); a mixed change can apply
its tightening parts now and propose the rest."""

import re

import pytest
from django.test import Client

from audit.models import AuditEvent
from governance.models import ChangeRequest
from rollout.models import PolicyVersion
from tests import factories

RULE = "/agents/support-assistant/rules/edit/create_refund_request"
BASE = {"effect": "write", "rule": "requires_approval", "base_risk": "medium"}


@pytest.fixture
def governor(reference_data):
    return factories.make_user("gwen", groups=("governance_owner",))


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def written():
    return (
        AuditEvent.objects.count(),
        ChangeRequest.objects.count(),
        PolicyVersion.objects.count(),
    )


def hidden_fields(page: str) -> dict:
    """The values the preview carries to the propose step (its hidden inputs)."""
    form = page[page.index('id="propose-form"') :]
    return {
        name: value
        for name, value in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form)
        if name != "csrfmiddlewaretoken"
    }


def delta_cell(page: str, outcome: str) -> str:
    match = re.search(rf'data-testid="delta-{outcome}">([^<]*)<', page)
    return match.group(1).strip()


def test_preview__tightening__lines_classification_and_delta__writes_nothing(
    support_agent, governor
):
    factories.submit(support_agent, "create_refund_request", {"amount": 5000})
    client = logged_in(governor)
    before = written()
    response = client.post(
        RULE, {**BASE, "argument_limits": "amount <= 500", "reason": "smaller", "step": "preview"}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert written() == before  # no audit event, no change request, no version
    assert "tightens</span> create_refund_request: limit amount ≤ 10,000 → ≤ 500" in page
    assert 'data-classification="tightening"' in page and "applies <strong>at once" in page
    assert delta_cell(page, "denied") == "1 more"
    assert delta_cell(page, "pending") == "1 fewer"
    assert delta_cell(page, "allowed") == "no change"
    assert "Apply now" in page


def test_preview__loosening__delta_with_examples__then_propose_creates_what_was_previewed(
    support_agent, governor
):
    big = [
        factories.submit(support_agent, "create_refund_request", {"amount": 20000})
        for _ in range(2)
    ]
    factories.submit(support_agent, "create_refund_request", {"amount": 100})
    client = logged_in(governor)
    before = written()
    page = client.post(
        RULE, {**BASE, "argument_limits": "amount <= 50000", "reason": "bigger", "step": "preview"}
    ).content.decode()
    assert written() == before
    assert "loosens</span> create_refund_request: limit amount ≤ 10,000 → ≤ 50,000" in page
    assert 'data-classification="loosening"' in page
    assert delta_cell(page, "denied") == "2 fewer"
    assert delta_cell(page, "pending") == "2 more"
    for action in big:
        assert f'href="/actions/{action.pk}"' in page
    assert "Apply the tightening parts now" not in page

    # Propose after the preview: the carried values, validated again
    carried = hidden_fields(page)
    assert "50000" in carried["argument_limits"] and carried["reason"] == "bigger"
    response = client.post(
        RULE,
        {
            **BASE,
            "argument_limits": "amount <= 50000",
            "reason": carried["reason"],
            "step": "propose",
        },
    )
    cr = ChangeRequest.objects.get()
    assert response["Location"] == f"/changes/{cr.pk}"
    assert cr.after["tools"]["create_refund_request"]["argument_limits"] == [
        {"field": "amount", "op": "<=", "value": 50000}
    ]
    assert cr.reason == "bigger"


def test_propose__tampered_carried_values__validated_again(support_agent, governor):
    client = logged_in(governor)
    response = client.post(
        RULE,
        {**BASE, "rule": "sometimes", "argument_limits": "", "reason": "x", "step": "propose"},
    )
    assert response.status_code == 200  # the form again, with its error
    assert ChangeRequest.objects.count() == 0
    support_agent.refresh_from_db()
    assert support_agent.current_policy.number == 1


def test_preview__mixed__offers_the_split__which_applies_only_the_tightening_parts(
    support_agent, governor
):
    client = logged_in(governor)
    values = {"active": "", "rate_limit_per_minute": "100000", "reason": "pause, then more"}
    before = written()
    page = client.post(
        "/agents/support-assistant/settings", {**values, "step": "preview"}
    ).content.decode()
    assert written() == before
    assert 'data-classification="mixed"' in page
    assert "tightens</span> deactivate" in page
    assert re.search(r"loosens</span> \w+ the agent&#x27;s rate limit", page)
    assert "Apply the tightening parts now" in page

    response = client.post("/agents/support-assistant/settings", {**values, "step": "split"})
    cr = ChangeRequest.objects.get()
    assert response["Location"] == f"/changes/{cr.pk}"
    support_agent.refresh_from_db()
    assert support_agent.active is False  # the tightening applied now
    assert support_agent.current_policy.number == 2
    assert support_agent.rate_limit_per_minute != 100000  # the loosening waits
    assert cr.after == {"rate_limit_per_minute": 100000}


def test_change_request_page__shows_readable_lines_not_json(support_agent, governor):
    client = logged_in(governor)
    client.post(RULE, {**BASE, "argument_limits": "amount <= 20000", "reason": "more"})
    cr = ChangeRequest.objects.get()
    for url in (f"/changes/{cr.pk}", "/changes"):
        page = client.get(url).content.decode()
        assert "create_refund_request: limit amount ≤ 10,000 → ≤ 20,000" in page
        assert "loosens" in page
        assert "argument_limits" not in page and "&quot;field&quot;" not in page


SECTION_URLS = {
    "Overview": "/agents/support-assistant",
    "Policy": "/agents/support-assistant/policy",
    "Access": "/agents/support-assistant/access",
    "Tokens": "/agents/support-assistant/tokens",
    "Metrics": "/agents/support-assistant/metrics",
    "History": "/agents/support-assistant/history",
}


def test_agent_sections__each_its_own_url__shown_like_the_agent_page(
    support_agent, governor, other_agent
):
    client = logged_in(governor)
    for label, url in SECTION_URLS.items():
        page = client.get(url).content.decode()
        assert f'aria-current="page">{label}</a>' in page, url
        assert page.count("<h1") == 1
    policy = client.get(SECTION_URLS["Policy"]).content.decode()
    assert "<code>amount ≤ 10,000</code>" in policy  # limits read as a person reads them
    # A reviewer of another agent is refused every section, as the agent page refuses them
    stranger = factories.make_user("rex", agent_perms={"rollout.review_agent": other_agent})
    client = logged_in(stranger)
    for url in SECTION_URLS.values():
        assert client.get(url).status_code == 404, url


def test_forms_land_back_on_their_section(support_agent, governor):
    client = logged_in(governor)
    response = client.post(
        "/agents/support-assistant/settings",
        {"active": "on", "rate_limit_per_minute": "1", "reason": "slower"},
    )
    assert response["Location"] == "/agents/support-assistant/policy"
    response = client.post("/agents/support-assistant/tokens", {"name": ""})
    assert response["Location"] == "/agents/support-assistant/tokens"
