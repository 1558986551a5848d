"""Explicit hooks: a lower layer's call reaches the one handler an app above connected,
and fails loudly when none is connected (an owed notice is never dropped silently)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from approvals import hooks
from approvals.notifications import owe_installation_notice
from core.hooks import Hook
from core.notices import owe_notice
from incidents.breakers import check_circuit_breaker
from incidents.drills import probe_call


def test_hook_without_handler__raises_naming_the_hook():
    hook = Hook("example", "an example")
    with pytest.raises(ImproperlyConfigured, match="example"):
        hook(1)


def test_hook_refuses_a_second_different_handler_but_accepts_the_same_again():
    hook = Hook("example", "an example")

    def first(x):
        return x + 1

    hook.connect(first)
    hook.connect(first)
    assert hook(1) == 2
    with pytest.raises(ImproperlyConfigured, match="already has a handler"):
        hook.connect(lambda x: x)


def test_installed_approvals_answers_the_notice_hook():
    assert owe_notice._handler is owe_installation_notice


def test_installed_incidents_answers_the_breaker_and_drill_probe_hooks():
    # approvals sits below incidents: it reaches the breaker and the probe only this way
    assert hooks.after_counted_outcome._handler is check_circuit_breaker
    assert hooks.drill_probe_call._handler is probe_call


def test_installed_slack_approvals_answers_the_pending_hooks():
    # approvals owes Slack messages (and their updates) only through these two hooks
    from slack_approvals.actions import owe_message_updates, owe_messages_for_pending

    assert hooks.action_pending._handler is owe_messages_for_pending
    assert hooks.action_left_pending._handler is owe_message_updates


def test_installed_governance_answers_the_keep_case_hook():
    # The trace (audit console) and the incident page offer "keep as a case"; the rule is
    # governance's, asked through this hook
    from approvals.kept_cases import may_keep_case
    from governance.permissions import can_keep_case

    assert may_keep_case._handler is can_keep_case
