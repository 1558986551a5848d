"""The action lifecycle table: every allowed move works, every other raises."""

import itertools
from types import SimpleNamespace

import pytest

from approvals.states import FINAL, TRANSITIONS, IllegalTransition, Status, transition

ALLOWED = {
    (Status.PENDING, Status.APPROVED),
    (Status.PENDING, Status.REJECTED),
    (Status.PENDING, Status.EXPIRED),
    (Status.PENDING, Status.CANCELLED),
    (Status.APPROVED, Status.EXECUTED),
    (Status.APPROVED, Status.FAILED),
    (Status.APPROVED, Status.REVOKED),
    (Status.ALLOWED, Status.EXECUTED),
    (Status.ALLOWED, Status.FAILED),
    (Status.ALLOWED, Status.REVOKED),
    (Status.EXECUTED, Status.ROLLBACK_REQUESTED),
    (Status.ROLLBACK_REQUESTED, Status.ROLLED_BACK),
    (Status.ROLLBACK_REQUESTED, Status.ROLLBACK_FAILED),
}
ALL_PAIRS = list(itertools.product(Status.values, Status.values))


def test_table__matches_the_design_lifecycle():
    table = {(src, dst) for src, nexts in TRANSITIONS.items() for dst in nexts}
    assert table == ALLOWED
    assert set(TRANSITIONS) == set(Status.values)


@pytest.mark.parametrize(("current", "new"), sorted(ALLOWED))
def test_transition__allowed_move__changes_status(current, new):
    action = SimpleNamespace(status=current)
    assert transition(action, new) == current
    assert action.status == new


@pytest.mark.parametrize(("current", "new"), [p for p in ALL_PAIRS if p not in ALLOWED])
def test_transition__any_other_move__raises_and_keeps_status(current, new):
    action = SimpleNamespace(status=current)
    with pytest.raises(IllegalTransition):
        transition(action, new)
    assert action.status == current


def test_final_states__denied_and_shadowed_are_final():
    assert {
        Status.DENIED,
        Status.SHADOWED,
        Status.REJECTED,
        Status.EXPIRED,
        Status.CANCELLED,
    } <= FINAL
    assert Status.PENDING not in FINAL
