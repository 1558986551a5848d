"""Reads for the dashboard: the queue, recent decisions, one action with its trace, and the
decision cards built from them.

Every query starts from ``approvals.permissions``, so a page never holds an action its
viewer may not see. Cards are built in batches: a page of cards costs the same number of
queries whatever the number of cards on it (see ``build_cards``)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from django.db.models import Case, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.utils import timezone

from approvals import actions as write_path
from approvals import rules, standing
from approvals.environments import in_environment
from approvals.masking import masked_arguments
from approvals.models import Action, Decision, EmailDecisionLink, StandingApproval
from approvals.permissions import reviewable_actions, visible_actions
from approvals.states import Status
from core.digests import token_digest
from rollout import permissions as agent_perms
from rollout.models import Agent, Risk, ToolRule

# What a card offers to add to a pending action's wait (Permit's "+5 min", a little longer);
# approvals.forms accepts these.
EXTENSIONS = [(900, "+15 min"), (3600, "+1 h"), (4 * 3600, "+4 h")]

# Highest risk first: ``order_by(RISK_RANK.desc())``.
RISK_RANK = Case(
    When(risk=Risk.CRITICAL, then=Value(3)),
    When(risk=Risk.HIGH, then=Value(2)),
    When(risk=Risk.MEDIUM, then=Value(1)),
    default=Value(0),
    output_field=IntegerField(),
)

# Statuses an action can have once people (or expiry, a withdrawal or a kill switch) have
# decided it; the "recent decisions" page filters on these.
DECIDED_STATUSES = [
    Status.APPROVED,
    Status.REJECTED,
    Status.EXPIRED,
    Status.CANCELLED,
    Status.REVOKED,
    Status.EXECUTED,
    Status.FAILED,
    Status.ROLLBACK_REQUESTED,
    Status.ROLLED_BACK,
    Status.ROLLBACK_FAILED,
]

MAX_SEARCH_WORDS = 8

# The queue's orders: by what a reviewer most needs first (the default), by time left, or
# by age; each ends with the id so pages never overlap.
QUEUE_SORTS = {
    "risk": ("-risk_rank", "expires_at", "created_at", "id"),
    "expiry": ("expires_at", "-risk_rank", "created_at", "id"),
    "age": ("created_at", "id"),
}

# A live page names the cards it shows so the server can say what became of those that
# left the queue; more than this many ids is not a real page.
MAX_SHOWN_IDS = 200


@dataclass(frozen=True)
class ActionFilters:
    """What a list page is narrowed to. Empty strings mean "any"."""

    agent: str = ""
    risk: str = ""
    tool: str = ""
    status: str = ""
    # Words that must each appear in the tool, the summary or the agent's name.
    text: str = ""
    environment: str = ""

    def apply(self, queryset: QuerySet[Action]) -> QuerySet[Action]:
        for word in self.text.split()[:MAX_SEARCH_WORDS]:
            queryset = queryset.filter(
                Q(tool__icontains=word)
                | Q(summary__icontains=word)
                | Q(agent__name__icontains=word)
            )
        if self.agent:
            queryset = queryset.filter(agent__slug=self.agent)
        if self.risk:
            queryset = queryset.filter(risk=self.risk)
        if self.tool:
            queryset = queryset.filter(tool=self.tool)
        if self.status:
            queryset = queryset.filter(status=self.status)
        if self.environment:
            queryset = queryset.filter(in_environment(self.environment))
        return queryset


def action_list_page(
    user: Any,
    *,
    statuses: Sequence[str] = (),
    agent: str = "",
    tool: str = "",
    risk: str = "",
    correlation_id: str = "",
    after: tuple[datetime, int] | None = None,
    limit: int = 50,
) -> tuple[list[Action], bool]:
    """A page of the actions ``user`` may see (``visible_actions``), filtered, newest first
    by (created_at, id), starting after the keyset position ``after``; and whether more
    follow. Decisions (with reviewers) and reports come prefetched, so a page costs the
    same few queries whatever its size."""
    queryset = ActionFilters(agent=agent, risk=risk, tool=tool).apply(visible_actions(user))
    if statuses:
        queryset = queryset.filter(status__in=statuses)
    if correlation_id:
        queryset = queryset.filter(correlation_id=correlation_id)
    if after is not None:
        created_at, pk = after
        queryset = queryset.filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk)
        )
    rows = list(
        queryset.select_related("agent", "policy_version")
        .defer("policy_version__snapshot")
        .prefetch_related("decisions__reviewer", "reports")
        .order_by("-created_at", "-id")[: limit + 1]
    )
    return rows[:limit], len(rows) > limit


def with_card_data(queryset: QuerySet[Action]) -> QuerySet[Action]:
    """Everything a card shows, in two queries for any number of actions: the actions with
    agent, release and policy version joined (not the version's snapshot: a card shows only
    its number), then all their decisions with reviewers."""
    return (
        queryset.select_related("agent", "agent__tier", "release", "policy_version")
        .defer("policy_version__snapshot")
        .prefetch_related(
            Prefetch(
                "decisions",
                queryset=Decision.objects.select_related("reviewer").order_by("created_at", "id"),
            )
        )
    )


def cards_in_order(action_ids: Sequence[int]) -> list[Action]:
    """The actions of ``action_ids`` with their card data, in that order.

    List pages sort and paginate over ids alone and then load only the page's rows: sorting
    10,000 pending actions with their JSON and joins is several times slower than sorting
    their ids (see benchmarks/queue_page.py). The ids must come from a permission-filtered
    queryset (``pending_queue``)."""
    by_id = {
        action.pk: action for action in with_card_data(Action.objects.filter(pk__in=action_ids))
    }
    return [by_id[pk] for pk in action_ids if pk in by_id]


def pending_queue(
    user: Any, filters: ActionFilters = ActionFilters(), sort: str = "risk"
) -> QuerySet[Action]:
    """The pending actions ``user`` may decide on. By default highest risk first, then
    least time left (actions without an expiry last), then oldest first; ``sort`` "expiry"
    puts least time left first, "age" oldest first (``QUEUE_SORTS``)."""
    pending = reviewable_actions(user).filter(status=Status.PENDING)
    return (
        filters.apply(pending)
        .annotate(risk_rank=RISK_RANK)
        .order_by(*QUEUE_SORTS.get(sort, QUEUE_SORTS["risk"]))
    )


def recently_left_queue(user: Any, shown_ids: Iterable[int]) -> list[Action]:
    """Of the actions a live queue page showed, those that are no longer pending, so the
    page can show what became of them (approved, rejected, cancelled by a kill switch…)
    instead of silently dropping them."""
    ids = sorted(set(shown_ids))[:MAX_SHOWN_IDS]
    if not ids:
        return []
    left = reviewable_actions(user).filter(pk__in=ids).exclude(status=Status.PENDING)
    return list(with_card_data(left).order_by("-updated_at", "-id"))


@dataclass(frozen=True)
class StoppedGroup:
    """Cards one kill switch stopped, shown as one line: its ``feedback`` and their ids."""

    feedback: str
    action_ids: list[int]

    @property
    def count(self) -> int:
        return len(self.action_ids)

    @property
    def reason(self) -> str:
        return self.feedback.removeprefix(write_path.KILL_SWITCH_FEEDBACK)


def collapse_stopped(left: list[Action]) -> tuple[list[Action], list[StoppedGroup]]:
    """Split the actions that left a queue into those shown as cards and, where a kill
    switch stopped two or more, one line per switch (a stop must not crowd the queue)."""
    by_switch: dict[str, list[int]] = {}
    for action in left:
        if action.status == Status.CANCELLED and action.feedback.startswith(
            write_path.KILL_SWITCH_FEEDBACK
        ):
            by_switch.setdefault(action.feedback, []).append(action.pk)
    collapsed = {feedback for feedback, ids in by_switch.items() if len(ids) >= 2}
    cards = [action for action in left if action.feedback not in collapsed]
    groups = [StoppedGroup(feedback, sorted(by_switch[feedback])) for feedback in sorted(collapsed)]
    return cards, groups


def recent_decisions(user: Any, filters: ActionFilters = ActionFilters()) -> QuerySet[Action]:
    """Actions ``user`` may see that have been decided, newest decision first."""
    decided = visible_actions(user).filter(decided_at__isnull=False)
    return filters.apply(decided).order_by("-decided_at", "-id")


def action_for_viewer(user: Any, action_id: int) -> Action | None:
    """One action with its card data, or None when it does not exist or ``user`` may not
    see it (the same answer for both, so pages leak nothing)."""
    return with_card_data(visible_actions(user)).filter(pk=action_id).first()


def email_link(action_id: int, token: str) -> EmailDecisionLink | None:
    """The email decision link of ``action_id`` with ``token``, with its action's card
    data; None when there is none (a wrong, cut or altered token)."""
    link = (
        EmailDecisionLink.objects.select_related("person")
        .filter(action_id=action_id, token_digest=token_digest(token))
        .first()
    )
    if link is not None:
        link.action = with_card_data(Action.objects.filter(pk=action_id)).get()
    return link


@dataclass(frozen=True)
class FilterChoices:
    agents: list[tuple[str, str]]  # (slug, name)
    tools: list[str]


def queue_filter_choices(user: Any) -> FilterChoices:
    """Agents the user reviews and the tools those agents have rules for (read from the
    small rules table, not from the queue, so the cost does not grow with the queue)."""
    agents = agent_perms.reviewable_agents(user)
    tools = (
        ToolRule.objects.filter(agent__in=agents)
        .order_by("tool")
        .values_list("tool", flat=True)
        .distinct()
    )
    return FilterChoices(
        agents=list(agents.order_by("slug").values_list("slug", "name")), tools=list(tools)
    )


def decided_filter_choices(user: Any) -> FilterChoices:
    """Agents whose actions the user may see, and the tools among their decided actions."""
    agent_ids = visible_actions(user).values("agent_id")
    agents = Agent.objects.filter(pk__in=agent_ids).order_by("slug").values_list("slug", "name")
    tools = (
        visible_actions(user)
        .filter(decided_at__isnull=False)
        .order_by("tool")
        .values_list("tool", flat=True)
        .distinct()
    )
    return FilterChoices(agents=list(agents), tools=list(tools))


# --- decision cards -----------------------------------------------------------------------


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@dataclass(frozen=True)
class DiffLine:
    sign: str  # "+", "-" or " "
    text: str

    @property
    def kind(self) -> str:
        return {"+": "added", "-": "removed"}.get(self.sign, "same")


def arguments_diff(original: Any, edited: Any) -> list[DiffLine]:
    """Line diff of two argument objects as pretty, key-sorted JSON."""
    lines = difflib.ndiff(pretty_json(original).splitlines(), pretty_json(edited).splitlines())
    return [DiffLine(line[0], line[2:]) for line in lines if line[:1] in {"+", "-", " "}]


@dataclass(frozen=True)
class EvidenceItem:
    """One piece of evidence as the agent gave it. ``url`` is shown as text beside its host,
    never as a link: an agent's URL may point anywhere (or be ``javascript:``)."""

    kind: str
    title: str
    content: str
    url: str

    @property
    def url_host(self) -> str:
        if not self.url:
            return ""
        try:
            parts = urlsplit(self.url)
        except ValueError:
            return "unparseable URL"
        return parts.hostname or f"no host ({parts.scheme or 'relative'})"

    @classmethod
    def from_agent(cls, item: Any) -> EvidenceItem:
        if not isinstance(item, dict):
            return cls("", "", str(item), "")
        return cls(
            kind=str(item.get("kind") or ""),
            title=str(item.get("title") or ""),
            content=str(item.get("content") or ""),
            url=str(item.get("url") or ""),
        )


@dataclass(frozen=True)
class DecisionOffers:
    """Which decisions a card offers its viewer. ``approve_refusal`` says why approving is
    not offered on a pending action the viewer could otherwise decide (e.g. their own
    request), so the card can tell them instead of silently hiding the button."""

    approve: bool = False
    reject: bool = False
    rollback: bool = False
    approve_refusal: str = ""

    @property
    def edit(self) -> bool:
        return self.approve

    @property
    def any(self) -> bool:
        return self.approve or self.reject or self.rollback


@dataclass
class DecisionCard:
    """One action as a card shows it, with what its viewer may do to it."""

    action: Action
    approvals: list[Decision]
    decisions: list[Decision]
    offers: DecisionOffers
    now: datetime
    # Set by a view after a decision: a message on the card, and a bound form whose input
    # and errors the card shows again (e.g. invalid JSON in the editor).
    notice: str = ""
    notice_is_error: bool = False
    open_form: str = ""
    form: Any = None
    # The write path asked for a second factor (e.g. an edit raised the risk): the forms
    # ask for a code whatever the card's risk was.
    step_up_asked: bool = False
    extra: dict = field(default_factory=dict)
    # Who looks at the card: its arguments, the edit diff and the editor's text are shown
    # as this person may see them (``approvals.masking.masked_arguments``; None: masked).
    viewer: Any = None
    # Who may still approve it (``rules.still_needed``); None on a card built without it.
    needs: rules.StillNeeded | None = None
    # The tool's standing bounds when this viewer may approve with standing terms (only
    # the card's own page offers them; the queue's cards and bulk decisions never do).
    standing_offer: dict | None = None

    @cached_property
    def standing_created(self) -> Any:
        """The standing approval this card's approval created (None: none)."""
        if self.action.status == Status.PENDING:
            return None
        return StandingApproval.objects.filter(source_action=self.action).first()

    @property
    def standing_why_not(self) -> str:
        """Why approvers who asked for standing terms got none (they differed)."""
        if self.action.status == Status.PENDING or self.standing_created is not None:
            return ""
        return standing.disagreement(self.approvals) or ""

    @property
    def step_up_risk(self) -> str | None:
        """The risk the forms' step-up field is shown for (None: whenever step-up is on)."""
        return None if self.step_up_asked else self.action.risk

    @property
    def pk(self) -> int:
        return self.action.pk

    @property
    def is_pending(self) -> bool:
        return self.action.status == Status.PENDING

    @cached_property
    def shown_arguments(self) -> Any:
        return masked_arguments(self.action, self.viewer)

    @cached_property
    def arguments_json(self) -> str:
        return pretty_json(self.shown_arguments)

    @cached_property
    def text_arguments(self) -> list[tuple[str, str, bool]]:
        """The arguments as (name, shown value, is text) when one of them is text on several
        lines (an email's body): such text is shown as text, not as a JSON string full of
        ``\n``. Empty otherwise (the card shows the JSON as it is)."""
        arguments = self.shown_arguments
        if not isinstance(arguments, dict) or not any(
            isinstance(value, str) and "\n" in value for value in arguments.values()
        ):
            return []
        return [
            (str(name), value, True)
            if isinstance(value, str)
            else (str(name), pretty_json(value), False)
            for name, value in sorted(arguments.items())
        ]

    @cached_property
    def compensation_json(self) -> str:
        return pretty_json(self.action.compensation)

    @cached_property
    def is_edited(self) -> bool:
        return self.action.arguments != self.action.original_arguments

    @cached_property
    def diff(self) -> list[DiffLine]:
        if not self.is_edited:
            return []
        original = masked_arguments(self.action, self.viewer, original=True)
        return arguments_diff(original, self.shown_arguments)

    @cached_property
    def evidence(self) -> list[EvidenceItem]:
        items = self.action.evidence if isinstance(self.action.evidence, list) else []
        return [EvidenceItem.from_agent(item) for item in items]

    @property
    def rationale(self) -> dict:
        return self.action.rationale if isinstance(self.action.rationale, dict) else {}

    @property
    def blast_radius(self) -> dict:
        return self.action.blast_radius if isinstance(self.action.blast_radius, dict) else {}

    @property
    def confidence_percent(self) -> int | None:
        confidence = self.rationale.get("confidence")
        if isinstance(confidence, int | float) and not isinstance(confidence, bool):
            return round(confidence * 100)
        return None

    @property
    def seconds_left(self) -> int | None:
        if self.action.expires_at is None:
            return None
        return max(0, int((self.action.expires_at - self.now).total_seconds()))

    @property
    def extensions(self) -> list[tuple[int, str]]:
        """The extensions of the wait this card offers: those within the tier's maximum
        (``rules.extension_refusal`` decides; the write path asks it again)."""
        if not self.offers.reject or self.action.expires_at is None:
            return []
        tier = self.action.agent.tier
        offered = []
        for seconds, text in EXTENSIONS:
            refusal = rules.extension_refusal(
                self.action,
                may_review=True,
                seconds=seconds,
                max_pending_seconds=tier.max_pending_seconds if tier else 0,
                now=self.now,
            )
            if refusal is None:
                offered.append((seconds, text))
        return offered

    @property
    def approvers(self) -> list[str]:
        return [d.reviewer.get_username() for d in self.approvals]

    @property
    def rejection(self) -> Decision | None:
        return next((d for d in self.decisions if d.verdict == Decision.Verdict.REJECT), None)

    @property
    def edit_text(self) -> str:
        """What the argument editor holds: the reviewer's draft after a failed attempt,
        else the current arguments."""
        if self.open_form == "edit" and self.form is not None:
            return self.form.data.get("arguments", "")
        return self.arguments_json

    @property
    def drafts(self) -> dict[str, dict[str, str]]:
        """What the person typed into the form that failed, by form name, to show again."""
        if not self.open_form or self.form is None:
            return {}
        return {self.open_form: {name: self.form.data.get(name, "") for name in self.form.fields}}

    @property
    def form_errors(self) -> dict[str, list[str]]:
        """The failed form's errors, by form name."""
        if not self.open_form or self.form is None or not self.form.is_bound:
            return {}
        messages = [str(m) for field_messages in self.form.errors.values() for m in field_messages]
        return {self.open_form: messages}


class _AgentScopes:
    """Which agents people hold a permission on, asked of ``rollout.permissions`` once per
    person and permission however many cards need it."""

    def __init__(self) -> None:
        self._ids: dict[tuple[int, str], frozenset[int]] = {}

    def holds(self, person: Any, perm: str, agent_id: int) -> bool:
        key = (person.pk, perm)
        if key not in self._ids:
            ids = agent_perms.agents_for(person, perm).values_list("id", flat=True)
            self._ids[key] = frozenset(ids)
        return agent_id in self._ids[key]


def _may_request_rollback(action: Action, user: Any, scopes: _AgentScopes, now: datetime) -> bool:
    may_review = scopes.holds(user, agent_perms.REVIEW, action.agent_id)
    return rules.rollback_refusal(action, may_review=may_review, now=now) is None


def build_cards(actions: Iterable[Action], user: Any) -> list[DecisionCard]:
    """Cards for a page of actions loaded ``with_card_data``, their offers asked of
    ``approvals.rules`` — the write path's own rule — over the prefetched decisions.
    Permissions are asked once per person and permission, never per card, so the page's
    query count does not grow with its number of cards."""
    now = timezone.now()
    scopes = _AgentScopes()
    cards = []
    for action in actions:
        decisions = list(action.decisions.all())
        approvals = rules.current_approvals(action, decisions)

        def is_critical(person: Any, agent_id: int = action.agent_id) -> bool:
            return scopes.holds(person, agent_perms.CRITICAL_APPROVE, agent_id)

        may_review = scopes.holds(user, agent_perms.REVIEW, action.agent_id)
        approve, reject = (
            rules.decision_refusal(
                action,
                user,
                verdict,
                approvals=approvals,
                may_review=may_review,
                is_critical_approver=is_critical,
                now=now,
            )
            for verdict in (Decision.Verdict.APPROVE, Decision.Verdict.REJECT)
        )
        cards.append(
            DecisionCard(
                action,
                approvals,
                decisions,
                _offers(approve, reject, _may_request_rollback(action, user, scopes, now)),
                now,
                viewer=user,
                needs=rules.still_needed(action, approvals, is_critical),
            )
        )
    return cards


def _offers(
    approve: rules.Refusal | None, reject: rules.Refusal | None, rollback: bool
) -> DecisionOffers:
    return DecisionOffers(
        approve=approve is None,
        reject=reject is None,
        rollback=rollback,
        approve_refusal=approve.detail if approve and reject is None else "",
    )


def build_card(action: Action, user: Any) -> DecisionCard:
    """The card of one action, its offers asked of the write path's own
    ``decision_refusal``."""
    now = timezone.now()
    approve = write_path.decision_refusal(action, user, Decision.Verdict.APPROVE)
    reject = write_path.decision_refusal(action, user, Decision.Verdict.REJECT)
    approvals = write_path.current_approvals(action)

    def is_critical(person: Any) -> bool:
        return agent_perms.can_approve_critical(person, action.agent)

    return DecisionCard(
        action,
        approvals,
        list(action.decisions.all()),
        _offers(approve, reject, _may_request_rollback(action, user, _AgentScopes(), now)),
        now,
        viewer=user,
        needs=rules.still_needed(action, approvals, is_critical),
        standing_offer=_standing_offer(action) if approve is None else None,
    )


def _standing_offer(action: Action) -> dict | None:
    """The bounds a card offers standing terms within, asked of the write path's own rule
    (``approvals.standing.terms_refusal``) with the smallest terms: None when the tool's
    policy allows none for this action (off, its risk above the bound, a shadow agent)."""
    policy = Agent.objects.select_related("current_policy").get(pk=action.agent_id).current_policy
    if policy is None or standing.terms_refusal(action, standing.Terms(1, 1), policy.snapshot):
        return None
    bounds = standing.policy_for(policy.snapshot, action.environment)["tools"][action.tool][
        "standing"
    ]
    return {
        **bounds,
        "minutes": min(60, bounds["max_minutes"]),
        "uses": min(10, bounds["max_uses"]),
        "environment": standing.environment_of(action.blast_radius),
    }


@dataclass(frozen=True)
class BulkGroup:
    """Low-risk pending cards of one tool that the viewer may approve and reject, offered
    as one bulk decision (``approvals.actions.bulk_decide``)."""

    tool: str
    cards: list[DecisionCard]


def bulk_groups(cards: Iterable[DecisionCard], minimum: int = 2) -> list[BulkGroup]:
    """The page's cards a bulk decision may cover, one group per tool of at least
    ``minimum`` cards (never a high or critical one: ``rules.BULK_RISKS``)."""
    by_tool: dict[str, list[DecisionCard]] = {}
    for card in cards:
        if (
            card.is_pending
            and card.action.risk in rules.BULK_RISKS
            and card.offers.approve
            and card.offers.reject
        ):
            by_tool.setdefault(card.action.tool, []).append(card)
    return [
        BulkGroup(tool, group) for tool, group in sorted(by_tool.items()) if len(group) >= minimum
    ]
