"""The incident console: kill targets must be known agents and tools (API, page, CLI: one
rule in the write path); a refused form keeps what was typed; the stop button says when a
target is already stopped; release says what resumes."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain import Actor
from incidents.actions import KillSwitchError, engage_kill_switch
from rollout.models import KillSwitch
from tests import factories
from tests.test_api_gate import session_client

INCIDENT = Actor.system("tests")


# --- unknown targets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"scope": "tool", "target": "send_emial"}, 400),
        ({"scope": "agent", "target": "no-such-agent"}, 400),
        ({"scope": "agent", "target": "no-such-agent", "allow_unknown_tool": True}, 400),
        ({"scope": "tool", "target": "send_emial", "allow_unknown_tool": True}, 201),
        ({"scope": "tool", "target": "send_email"}, 201),
    ],
)
def test_api_engage__unknown_target_refused_unless_an_unknown_tool_is_allowed(
    asgi_server, live_api, support_agent, incident_owner, body, expected
):
    with session_client(asgi_server, incident_owner) as person:
        response = person.post("/api/v1/kill-switches", json={**body, "reason": "storm"})
    assert response.status_code == expected, response.text
    if expected == 400:
        assert response.json()["code"] == "unknown_target"
        assert "target" in response.json()["fields"]
        assert not KillSwitch.objects.exists()
    else:
        assert KillSwitch.objects.get().target == body["target"]


def test_write_path__unknown_tool_refused_for_every_caller(db, support_agent):
    with pytest.raises(KillSwitchError) as refused:
        engage_kill_switch(scope="tool", target="send_emial", reason="r", actor=INCIDENT)
    assert refused.value.code == "unknown_target" and refused.value.status == 400
    with pytest.raises(CommandError, match="send_emial"):
        call_command("kill", "tool", "send_emial", "--reason", "x")
    assert not KillSwitch.objects.exists()
    call_command("kill", "tool", "send_emial", "--reason", "x", "--allow-unknown-tool")
    assert KillSwitch.objects.get().target == "send_emial"


def test_openapi__documents_allow_unknown_tool(client, reference_data):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "allow_unknown_tool" in schema and "unknown_target" in schema


# --- the page -------------------------------------------------------------------------------


def test_page__offers_known_tools_and_asks_to_confirm_an_unknown_one(
    client, incident_owner, support_agent
):
    client.force_login(incident_owner)
    page = client.get("/incidents").content.decode()
    assert '<option value="send_email">' in page
    assert '<label class="check" data-unknown-tool hidden>' in page
    refused = client.post(
        "/incidents/engage", {"scope": "tool", "target": "send_emial", "reason": "mail storm"}
    )
    assert refused.status_code == 400
    html = refused.content.decode()
    assert "No agent&#x27;s rule names the tool" in html
    assert '<label class="check" data-unknown-tool>' in html  # shown, not hidden
    assert 'value="send_emial"' in html and 'value="mail storm"' in html
    assert not KillSwitch.objects.exists()
    client.post(
        "/incidents/engage",
        {
            "scope": "tool",
            "target": "send_emial",
            "reason": "mail storm",
            "allow_unknown_tool": "on",
        },
    )
    assert KillSwitch.objects.get().target == "send_emial"


def test_page__wrong_confirmation_keeps_the_typed_reason(client, incident_owner, support_agent):
    client.force_login(incident_owner)
    response = client.post(
        "/incidents/engage",
        {
            "scope": "agent",
            "target": support_agent.slug,
            "reason": "refund loop since 03:12",
            "confirm": "support",
        },
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert 'value="refund loop since 03:12"' in html
    assert f'id="confirm-{support_agent.slug}-error"' in html
    assert "to confirm; nothing was engaged" in html
    assert not KillSwitch.objects.exists()


def test_page__stop_disabled_for_an_engaged_agent_and_release_says_what_resumes(
    client, incident_owner, support_agent, other_agent
):
    factories.submit(support_agent, "send_email")
    engage_kill_switch(
        scope="agent", target=support_agent.slug, reason="loop", actor=Actor.user(incident_owner)
    )
    client.force_login(incident_owner)
    html = client.get("/incidents").content.decode()
    assert (
        f'<button class="btn btn-danger btn-big" type="submit" disabled '
        f'aria-describedby="already-{support_agent.slug}">Stop {support_agent.slug}</button>'
    ) in html
    assert f"Already stopped by user:{incident_owner.username}" in html
    assert (
        f'<button class="btn btn-danger btn-big" type="submit">Stop {other_agent.slug}</button>'
    ) in html
    assert f"Gate calls of {support_agent.slug} run again." in html
    assert "The 1 cancelled and 0 revoked actions stay stopped: they do not come back" in html
