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
