"""The calls approvals owes the incident workflow above it (``core.hooks``): the circuit
breaker after each outcome it counts, and the drill probe's recognition at the gate.
``incidents`` connects both in ``AppConfig.ready``; approvals never imports it."""

from __future__ import annotations

from core.hooks import Hook

after_counted_outcome = Hook(
    "after_counted_outcome",
    """after_counted_outcome(agent_id: int) -> object: an outcome the agent's circuit
    breaker counts has been recorded — a gate call (whatever its answer), a rejection or a
    failed execution report. Called only for an agent with ``circuit_breaker`` configured,
    after the change's own transaction block has closed: the change is committed (unless
    the caller holds an outer transaction) and the handler's own writes — a breaker's kill
    switch or demotion, audited — go in a transaction of its own, so a tripping breaker
    never rolls back the outcome that tripped it. Must not raise: the caller's answer is
    already decided. The return value is ignored.""",
)

drill_probe_call = Hook(
    "drill_probe_call",
    """drill_probe_call(token: object | None, body: dict) -> bool: whether this gate call
    is a running drill's own probe (``token`` is the request's credential record, ``body``
    the validated submission). The answer reaches the pure policy engine as
    ``GateRequest.drill_probe``. Called before the gate's transaction opens, and only reads;
    raises a ``core.errors.Refused`` (``403 drill_token``) for a drill's token used for
    anything but its running drill's bare probe.""",
)

action_pending = Hook(
    "action_pending",
    """action_pending(action: Action) -> None: the gate just created ``action`` as pending
    (the one place an action becomes pending: ``approvals.actions._decide_and_record``).
    Called inside the gate's transaction, after the action and its ``action.submitted``
    event are written: what the handler owes (Slack direct messages to the people who may
    decide it, as outbox rows) commits or rolls back with the action; anything it sends is
    queued with ``transaction.on_commit``. Must be cheap when there is nothing to owe (the
    gate's hot path). The return value is ignored.""",
)

action_left_pending = Hook(
    "action_left_pending",
    """action_left_pending(action: Action) -> None: ``action`` leaves pending now — approved,
    rejected, expired, withdrawn, cancelled by a kill switch or as ``agent_gone``. Called by
    ``approvals.states.transition`` (the one place a status changes) inside the change's
    transaction, with the new status set in memory and the row locked; the handler's writes
    (owed updates of Slack messages, as outbox rows) commit or roll back with the change. It
    must not read the action back from the database (not yet saved) nor raise. The return
    value is ignored.""",
)
