"""Tightening vs loosening (DESIGN "Asymmetric governance"), as a pure function: every kind
of change, both ways, plus mixed changes, snapshots and the structured diff."""

import pytest

from rollout.policy_diff import (
    LOOSENING,
    NO_CHANGE,
    TIGHTENING,
    apply_piece,
    changes_between,
    classify_change,
    diff_policies,
    limit_implies,
    touched_piece,
)

TIERS = {
    "shadow": {
        "name": "shadow",
        "rank": 0,
        "outcomes": {"read": "allow", "draft": "shadow", "write": "shadow"},
        "auto_approve_max_risk": "",
        "pending_ttl_seconds": {},
    },
    "read_only": {
        "name": "read_only",
        "rank": 1,
        "outcomes": {"read": "allow", "draft": "deny", "write": "deny"},
        "auto_approve_max_risk": "",
        "pending_ttl_seconds": {},
    },
    "supervised": {
        "name": "supervised",
        "rank": 3,
        "outcomes": {"read": "allow", "draft": "allow", "write": "pending"},
        "auto_approve_max_risk": "",
        "pending_ttl_seconds": {},
    },
    "autonomous": {
        "name": "autonomous",
        "rank": 4,
        "outcomes": {"read": "allow", "draft": "allow", "write": "auto"},
        "auto_approve_max_risk": "low",
        "pending_ttl_seconds": {},
    },
}


def rule(kind="allowed", effect="write", risk="medium", limits=None, rate=None, radius=None):
    return {
        "effect": effect,
        "rule": kind,
        "base_risk": risk,
        "argument_limits": limits or [],
        "blast_radius_from_arguments": radius or {},
        "rate_limit_per_minute": rate,
    }


def lim(field, op, value):
    return {"field": field, "op": op, "value": value}


AMOUNT_100 = lim("amount", "<=", 100)
AMOUNT_50 = lim("amount", "<=", 50)
ENV_STAGING = lim("environment", "in", ["staging"])
ENV_BOTH = lim("environment", "in", ["staging", "dev"])


CASES = [
    # (case, before, after, expected)
    # tier
    ("demote tier", {"tier": TIERS["autonomous"]}, {"tier": TIERS["supervised"]}, TIGHTENING),
    ("promote tier", {"tier": TIERS["supervised"]}, {"tier": TIERS["autonomous"]}, LOOSENING),
    (
        "promote shadow to read_only",
        {"tier": TIERS["shadow"]},
        {"tier": TIERS["read_only"]},
        LOOSENING,
    ),
    ("same tier", {"tier": TIERS["supervised"]}, {"tier": dict(TIERS["supervised"])}, NO_CHANGE),
    # activity
    ("deactivate", {"active": True}, {"active": False}, TIGHTENING),
    ("activate", {"active": False}, {"active": True}, LOOSENING),
    # agent rate limit
    ("lower agent rate", {"rate_limit_per_minute": 600}, {"rate_limit_per_minute": 60}, TIGHTENING),
    ("raise agent rate", {"rate_limit_per_minute": 60}, {"rate_limit_per_minute": 600}, LOOSENING),
    (
        "unlimited agent rate",
        {"rate_limit_per_minute": 60},
        {"rate_limit_per_minute": None},
        LOOSENING,
    ),
    (
        "limit an unlimited rate",
        {"rate_limit_per_minute": None},
        {"rate_limit_per_minute": 60},
        TIGHTENING,
    ),
    # tool rule kind
    (
        "forbid a tool",
        {"tools": {"t": rule("allowed")}},
        {"tools": {"t": rule("forbidden")}},
        TIGHTENING,
    ),
    (
        "allowed to requires_approval",
        {"tools": {"t": rule("allowed")}},
        {"tools": {"t": rule("requires_approval")}},
        TIGHTENING,
    ),
    (
        "requires_approval to forbidden",
        {"tools": {"t": rule("requires_approval")}},
        {"tools": {"t": rule("forbidden")}},
        TIGHTENING,
    ),
    (
        "un-forbid a tool",
        {"tools": {"t": rule("forbidden")}},
        {"tools": {"t": rule("requires_approval")}},
        LOOSENING,
    ),
    (
        "requires_approval to allowed",
        {"tools": {"t": rule("requires_approval")}},
        {"tools": {"t": rule("allowed")}},
        LOOSENING,
    ),
    (
        "forbidden to allowed",
        {"tools": {"t": rule("forbidden")}},
        {"tools": {"t": rule("allowed")}},
        LOOSENING,
    ),
    # adding and removing tools
    ("add an allowed tool", {"tools": {"t": None}}, {"tools": {"t": rule("allowed")}}, LOOSENING),
    (
        "add a requires_approval tool",
        {"tools": {"t": None}},
        {"tools": {"t": rule("requires_approval")}},
        LOOSENING,
    ),
    (
        "add a forbidden tool",
        {"tools": {"t": None}},
        {"tools": {"t": rule("forbidden")}},
        TIGHTENING,
    ),
    (
        "remove an allowed tool (default deny)",
        {"tools": {"t": rule("allowed")}},
        {"tools": {"t": None}},
        TIGHTENING,
    ),
    (
        "remove a forbidden tool",
        {"tools": {"t": rule("forbidden")}},
        {"tools": {"t": None}},
        TIGHTENING,
    ),
    ("remove a missing tool", {"tools": {"t": None}}, {"tools": {"t": None}}, NO_CHANGE),
    # effect and base risk
    (
        "effect read to write",
        {"tools": {"t": rule(effect="read")}},
        {"tools": {"t": rule(effect="write")}},
        TIGHTENING,
    ),
    (
        "effect write to draft",
        {"tools": {"t": rule(effect="write")}},
        {"tools": {"t": rule(effect="draft")}},
        LOOSENING,
    ),
    (
        "raise base risk",
        {"tools": {"t": rule(risk="low")}},
        {"tools": {"t": rule(risk="high")}},
        TIGHTENING,
    ),
    (
        "lower base risk",
        {"tools": {"t": rule(risk="critical")}},
        {"tools": {"t": rule(risk="medium")}},
        LOOSENING,
    ),
    # argument limits
    (
        "add a limit",
        {"tools": {"t": rule()}},
        {"tools": {"t": rule(limits=[AMOUNT_100])}},
        TIGHTENING,
    ),
    (
        "remove a limit",
        {"tools": {"t": rule(limits=[AMOUNT_100])}},
        {"tools": {"t": rule()}},
        LOOSENING,
    ),
    (
        "lower a <= bound",
        {"tools": {"t": rule(limits=[AMOUNT_100])}},
        {"tools": {"t": rule(limits=[AMOUNT_50])}},
        TIGHTENING,
    ),
    (
        "raise a <= bound",
        {"tools": {"t": rule(limits=[AMOUNT_50])}},
        {"tools": {"t": rule(limits=[AMOUNT_100])}},
        LOOSENING,
    ),
    (
        "<= to < at the same bound",
        {"tools": {"t": rule(limits=[AMOUNT_100])}},
        {"tools": {"t": rule(limits=[lim("amount", "<", 100)])}},
        TIGHTENING,
    ),
    (
        "< to <= at the same bound",
        {"tools": {"t": rule(limits=[lim("amount", "<", 100)])}},
        {"tools": {"t": rule(limits=[AMOUNT_100])}},
        LOOSENING,
    ),
    (
        "raise a >= bound",
        {"tools": {"t": rule(limits=[lim("n", ">=", 1)])}},
        {"tools": {"t": rule(limits=[lim("n", ">=", 5)])}},
        TIGHTENING,
    ),
    (
        "lower a >= bound",
        {"tools": {"t": rule(limits=[lim("n", ">=", 5)])}},
        {"tools": {"t": rule(limits=[lim("n", ">=", 1)])}},
        LOOSENING,
    ),
    (
        "shrink an in list",
        {"tools": {"t": rule(limits=[ENV_BOTH])}},
        {"tools": {"t": rule(limits=[ENV_STAGING])}},
        TIGHTENING,
    ),
    (
        "grow an in list",
        {"tools": {"t": rule(limits=[ENV_STAGING])}},
        {"tools": {"t": rule(limits=[ENV_BOTH])}},
        LOOSENING,
    ),
    (
        "grow a not_in list",
        {"tools": {"t": rule(limits=[lim("env", "not_in", ["prod"])])}},
        {"tools": {"t": rule(limits=[lim("env", "not_in", ["prod", "live"])])}},
        TIGHTENING,
    ),
    (
        "shrink a not_in list",
        {"tools": {"t": rule(limits=[lim("env", "not_in", ["prod", "live"])])}},
        {"tools": {"t": rule(limits=[lim("env", "not_in", ["prod"])])}},
        LOOSENING,
    ),
    (
        "lower max_length",
        {"tools": {"t": rule(limits=[lim("body", "max_length", 500)])}},
        {"tools": {"t": rule(limits=[lim("body", "max_length", 100)])}},
        TIGHTENING,
    ),
    (
        "change a pattern (unprovable)",
        {"tools": {"t": rule(limits=[lim("to", "matches", "^a.*$")])}},
        {"tools": {"t": rule(limits=[lim("to", "matches", "^ab.*$")])}},
        LOOSENING,
    ),
    (
        "bound on another field",
        {"tools": {"t": rule(limits=[AMOUNT_100])}},
        {"tools": {"t": rule(limits=[lim("total", "<=", 100)])}},
        LOOSENING,
    ),
    (
        "reorder limits",
        {"tools": {"t": rule(limits=[AMOUNT_100, ENV_STAGING])}},
        {"tools": {"t": rule(limits=[ENV_STAGING, AMOUNT_100])}},
        NO_CHANGE,
    ),
    (
        "in [1] to in [true] (true is not 1)",
        {"tools": {"t": rule(limits=[lim("n", "in", [1])])}},
        {"tools": {"t": rule(limits=[lim("n", "in", [True])])}},
        LOOSENING,
    ),
    # tool rate limits
    (
        "lower a tool rate",
        {"tools": {"t": rule(rate=10)}},
        {"tools": {"t": rule(rate=5)}},
        TIGHTENING,
    ),
    (
        "raise a tool rate",
        {"tools": {"t": rule(rate=5)}},
        {"tools": {"t": rule(rate=10)}},
        LOOSENING,
    ),
    (
        "drop a tool rate",
        {"tools": {"t": rule(rate=5)}},
        {"tools": {"t": rule(rate=None)}},
        LOOSENING,
    ),
    (
        "add a tool rate",
        {"tools": {"t": rule(rate=None)}},
        {"tools": {"t": rule(rate=5)}},
        TIGHTENING,
    ),
    # risk from the arguments: more dimensions only raise risk; fewer or moved may lower it
    (
        "map amount from the arguments",
        {"tools": {"t": rule()}},
        {"tools": {"t": rule(radius={"amount": "amount"})}},
        TIGHTENING,
    ),
    (
        "map a further dimension",
        {"tools": {"t": rule(radius={"amount": "amount"})}},
        {"tools": {"t": rule(radius={"amount": "amount", "records_affected": "rows"})}},
        TIGHTENING,
    ),
    (
        "unmap amount",
        {"tools": {"t": rule(radius={"amount": "amount"})}},
        {"tools": {"t": rule()}},
        LOOSENING,
    ),
    (
        "point amount at another argument",
        {"tools": {"t": rule(radius={"amount": "amount"})}},
        {"tools": {"t": rule(radius={"amount": "fee"})}},
        LOOSENING,
    ),
    (
        "swap one mapped dimension for another",
        {"tools": {"t": rule(radius={"amount": "amount"})}},
        {"tools": {"t": rule(radius={"records_affected": "rows"})}},
        LOOSENING,
    ),
    (
        "map amount, raise the rate",
        {"tools": {"t": rule(rate=5)}},
        {"tools": {"t": rule(rate=10, radius={"amount": "amount"})}},
        LOOSENING,
    ),
    (
        "same mapping",
        {"tools": {"t": rule(radius={"amount": "amount"})}},
        {"tools": {"t": rule(radius={"amount": "amount"})}},
        NO_CHANGE,
    ),
    # mixed edits are loosening
    (
        "demote and allow a tool",
        {"tier": TIERS["autonomous"], "tools": {"t": rule("forbidden")}},
        {"tier": TIERS["supervised"], "tools": {"t": rule("allowed")}},
        LOOSENING,
    ),
    (
        "tighten one limit, loosen another",
        {"tools": {"t": rule(limits=[AMOUNT_100, ENV_STAGING])}},
        {"tools": {"t": rule(limits=[AMOUNT_50, ENV_BOTH])}},
        LOOSENING,
    ),
    (
        "lower rate, raise base risk",
        {"tools": {"t": rule(rate=10, risk="low")}},
        {"tools": {"t": rule(rate=5, risk="high")}},
        TIGHTENING,
    ),
    (
        "forbid one tool, allow another",
        {"tools": {"a": rule("allowed"), "b": None}},
        {"tools": {"a": rule("forbidden"), "b": rule("allowed")}},
        LOOSENING,
    ),
]


@pytest.mark.parametrize(
    ("before", "after", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_classify_change__each_kind_of_change__has_its_direction(before, after, expected):
    assert classify_change(before, after) == expected


# Adding or removing a *forbidden* rule changes no outcome (forbidden and unknown tools are
# both denied), so either way is a tightening; every other tightening undone loosens.
TIGHTENINGS = [c for c in CASES if c[3] == TIGHTENING and "forbidden tool" not in c[0]]


@pytest.mark.parametrize(
    ("before", "after"), [c[1:3] for c in TIGHTENINGS], ids=[c[0] for c in TIGHTENINGS]
)
def test_classify_change__undoing_a_tightening__is_a_loosening(before, after):
    assert classify_change(after, before) == LOOSENING


def test_classify_change__full_snapshots__compares_their_governable_parts():
    # Given two full policy snapshots differing only in the tier
    snapshot = {
        "agent": {"slug": "a", "active": True, "rate_limit_per_minute": 600},
        "tier": TIERS["supervised"],
        "tools": {"t": rule()},
        "risk_rules": {},
        "approval_matrix": {},
    }
    promoted = {**snapshot, "tier": TIERS["autonomous"]}
    # Then
    assert classify_change(snapshot, promoted) == LOOSENING
    assert classify_change(promoted, snapshot) == TIGHTENING
    assert classify_change(snapshot, dict(snapshot)) == NO_CHANGE


def test_changes_between__readable_texts():
    before = {
        "tier": TIERS["supervised"],
        "tools": {"send_email": rule("requires_approval", limits=[AMOUNT_100]), "x": None},
    }
    after = {
        "tier": TIERS["autonomous"],
        "tools": {
            "send_email": rule("allowed", limits=[AMOUNT_50]),
            "x": rule("forbidden", effect="read", risk="low"),
        },
    }
    texts = [(c.direction, c.text) for c in changes_between(before, after)]
    assert texts == [
        (LOOSENING, "promote supervised → autonomous"),
        (LOOSENING, "send_email: rule requires_approval → allowed"),
        (TIGHTENING, "send_email: limit amount ≤ 100 → ≤ 50"),
        (TIGHTENING, "forbid x (read, forbidden, base risk low)"),
    ]


@pytest.mark.parametrize(
    ("stricter", "looser", "implied"),
    [
        (AMOUNT_50, AMOUNT_100, True),
        (AMOUNT_100, AMOUNT_50, False),
        (lim("amount", "<=", "50"), AMOUNT_100, True),  # the gate reads "50" as a number
        (lim("amount", "<", 100), AMOUNT_100, True),
        (lim("amount", ">=", 0), AMOUNT_100, False),
        (lim("environment", "==", "staging"), ENV_BOTH, True),
        (lim("e", "in", []), AMOUNT_100 | {"field": "e"}, True),
        (lim("e", "in", ["a"]), lim("e", "!=", "b"), True),
        (lim("e", "in", ["a", "b"]), lim("e", "!=", "b"), False),
        (lim("e", "not_in", ["a", "b"]), lim("e", "!=", "b"), True),
        (lim("e", "in", ["a"]), lim("e", "not_in", ["b"]), True),
        (lim("e", "in", ["a"]), lim("e", "==", "a"), True),
        (lim("n", "in", [True]), lim("n", "in", [1]), False),
        (lim("n", "==", 1), lim("n", "in", [1.0]), True),
    ],
)
def test_limit_implies__only_what_the_gate_guarantees(stricter, looser, implied):
    assert limit_implies(stricter, looser) is implied


def test_touched_piece_and_apply_piece__round_trip():
    current = {
        "tier": TIERS["supervised"],
        "active": True,
        "rate_limit_per_minute": 600,
        "tools": {"a": rule(), "b": rule("forbidden")},
    }
    change = {"tier": TIERS["autonomous"], "tools": {"b": None, "c": rule()}}
    before = touched_piece(current, change)
    assert before == {"tier": TIERS["supervised"], "tools": {"b": rule("forbidden"), "c": None}}
    applied = apply_piece(current, change)
    assert applied["tier"] == TIERS["autonomous"]
    assert set(applied["tools"]) == {"a", "c"}
    assert applied["active"] is True


def test_diff_policies__structured_diff_of_two_snapshots():
    # Given v1 and v2 of an agent: promoted, one tool added, one removed, one changed
    v1 = {
        "agent": {"slug": "a", "active": True, "rate_limit_per_minute": 600},
        "tier": TIERS["supervised"],
        "tools": {
            "keep": rule(),
            "gone": rule("forbidden"),
            "changed": rule("requires_approval", limits=[AMOUNT_100]),
        },
        "risk_rules": {"high_amount": 1000},
        "approval_matrix": {},
    }
    v2 = {
        "agent": {"slug": "a", "active": False, "rate_limit_per_minute": 600},
        "tier": TIERS["autonomous"],
        "tools": {
            "keep": rule(),
            "new": rule(effect="read"),
            "changed": rule("allowed", limits=[AMOUNT_100]),
        },
        "risk_rules": {"high_amount": 2000},
        "approval_matrix": {},
    }
    # When
    diff = diff_policies(v1, v2)
    # Then
    assert diff["tier"]["before"] == "supervised" and diff["tier"]["after"] == "autonomous"
    assert diff["tier"]["fields"]["outcomes.write"] == {"before": "pending", "after": "auto"}
    assert diff["agent"] == {"active": {"before": True, "after": False}}
    assert list(diff["tools"]["added"]) == ["new"]
    assert list(diff["tools"]["removed"]) == ["gone"]
    assert diff["tools"]["changed"] == {
        "changed": {"rule": {"before": "requires_approval", "after": "allowed"}}
    }
    assert diff["other"] == {"risk_rules.high_amount": {"before": 1000, "after": 2000}}
    assert diff["classification"] == LOOSENING
    assert not diff["empty"]
    assert diff_policies(v1, v1)["empty"]


def test_changes_between__rule_stored_before_the_mapping_existed__no_change():
    # Given a policy version written before blast_radius_from_arguments existed
    old = {"tools": {"t": {k: v for k, v in rule().items() if k != "blast_radius_from_arguments"}}}
    # Then today's same rule with no mapping is no change, and a mapping is a tightening
    assert changes_between(old, {"tools": {"t": rule()}}) == []
    assert diff_policies(old, {"tools": {"t": rule()}})["empty"] is True
    assert classify_change(old, {"tools": {"t": rule(radius={"amount": "amount"})}}) == TIGHTENING


def test_changes_between__mapping_texts_are_readable():
    before = {"tools": {"t": rule(radius={"amount": "amount", "users_affected": "to.count"})}}
    after = {"tools": {"t": rule(radius={"amount": "fee", "records_affected": "rows"})}}
    assert [(c.direction, c.text) for c in changes_between(before, after)] == [
        (LOOSENING, "t: risk from arguments, amount ← arguments.amount → arguments.fee"),
        (TIGHTENING, "t: risk from arguments, add records_affected ← arguments.rows"),
        (LOOSENING, "t: risk from arguments, drop users_affected ← arguments.to.count"),
    ]
    added = changes_between({"tools": {"n": None}}, {"tools": {"n": rule(radius={"amount": "a"})}})
    assert added[0].text.endswith("risk from amount ← arguments.a)")


# Every kind of change a governance owner can make, with the one line they read for it (the
# change request page, the API's ``changes[].text`` and the audit event all show these).
READABLE_CHANGES = [
    (
        "promote",
        {"tier": TIERS["supervised"]},
        {"tier": TIERS["autonomous"]},
        [(LOOSENING, "promote supervised → autonomous")],
    ),
    (
        "demote",
        {"tier": TIERS["autonomous"]},
        {"tier": TIERS["read_only"]},
        [(TIGHTENING, "demote autonomous → read_only")],
    ),
    ("deactivate", {"active": True}, {"active": False}, [(TIGHTENING, "deactivate the agent")]),
    (
        "agent rate",
        {"rate_limit_per_minute": 60},
        {"rate_limit_per_minute": 600},
        [(LOOSENING, "raise the agent's rate limit 60/min → 600/min")],
    ),
    (
        "add tool",
        {"tools": {"t": None}},
        {"tools": {"t": rule("requires_approval")}},
        [(LOOSENING, "add t (write, requires_approval, base risk medium)")],
    ),
    (
        "remove tool",
        {"tools": {"t": rule()}},
        {"tools": {"t": None}},
        [(TIGHTENING, "remove t (default deny)")],
    ),
    (
        "rule",
        {"tools": {"t": rule("allowed")}},
        {"tools": {"t": rule("requires_approval")}},
        [(TIGHTENING, "t: rule allowed → requires_approval")],
    ),
    (
        "effect",
        {"tools": {"t": rule(effect="write")}},
        {"tools": {"t": rule(effect="read")}},
        [(LOOSENING, "t: effect write → read")],
    ),
    (
        "base risk",
        {"tools": {"t": rule(risk="medium")}},
        {"tools": {"t": rule(risk="high")}},
        [(TIGHTENING, "t: base risk medium → high")],
    ),
    (
        "raise a limit",
        {"tools": {"t": rule(limits=[lim("amount", "<=", 10000)])}},
        {"tools": {"t": rule(limits=[lim("amount", "<=", 20000)])}},
        [(LOOSENING, "t: limit amount ≤ 10,000 → ≤ 20,000")],
    ),
    (
        "lower a limit",
        {"tools": {"t": rule(limits=[lim("amount", "<=", 20000.5)])}},
        {"tools": {"t": rule(limits=[lim("amount", "<=", 1500)])}},
        [(TIGHTENING, "t: limit amount ≤ 20,000.5 → ≤ 1,500")],
    ),
    (
        "add a limit",
        {"tools": {"t": rule()}},
        {"tools": {"t": rule(limits=[lim("to", "in", ["a@example.com", "b@example.com"])])}},
        [(TIGHTENING, 't: add or tighten limit to in "a@example.com", "b@example.com"')],
    ),
    (
        "drop a limit",
        {"tools": {"t": rule(limits=[lim("body", "max_length", 5000)])}},
        {"tools": {"t": rule()}},
        [(LOOSENING, "t: drop or loosen limit body length ≤ 5,000")],
    ),
    (
        "tool rate",
        {"tools": {"t": rule(rate=10)}},
        {"tools": {"t": rule(rate=5)}},
        [(TIGHTENING, "t: lower rate limit 10/min → 5/min")],
    ),
    (
        "risk mapping",
        {"tools": {"t": rule()}},
        {"tools": {"t": rule(radius={"amount": "amount"})}},
        [(TIGHTENING, "t: risk from arguments, add amount ← arguments.amount")],
    ),
]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [case[1:] for case in READABLE_CHANGES],
    ids=[case[0] for case in READABLE_CHANGES],
)
def test_changes_between__every_kind_reads_as_one_plain_line(before, after, expected):
    texts = [(c.direction, c.text) for c in changes_between(before, after)]
    assert texts == expected
    assert not any("{" in text or "[" in text for _, text in texts)  # never raw JSON
