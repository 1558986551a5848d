"""Reading the audit log: what one reader may see (``AuditScope``; who gets which is the
console's ``audit.console.access``), filters, keyset pages, and where each event's target
lives.

Pages are cut by event id (keyset pagination): ``before`` gives the next older page,
``after`` the next newer one. No page ever counts or offsets, so the 1,000th page of a
million events costs what the first does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode

from audit.chain import partition_agent
from audit.models import AuditEvent
from audit.verbs import VERBS

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class AuditScope:
    """The events one person may read: all, or those of some agents (the partitions of
    those agents' chains)."""

    everything: bool
    agent_slugs: frozenset[str] = frozenset()

    def restrict(self, queryset: QuerySet) -> QuerySet:
        if self.everything:
            return queryset
        return queryset.filter(agent_slug__in=sorted(self.agent_slugs))

    def allows_partition(self, partition: str) -> bool:
        """An agent's chain stripes (``slug#1``…) belong to that agent."""
        return self.everything or partition_agent(partition) in self.agent_slugs

    def allows_agent(self, slug: str) -> bool:
        return self.everything or slug in self.agent_slugs


@dataclass(frozen=True)
class AuditFilters:
    """One search of the log. Empty fields do not filter."""

    since: datetime | None = None
    until: datetime | None = None
    agent: str = ""
    actor: str = ""
    verb: str = ""
    action_id: int | None = None
    correlation_id: str = ""
    text: str = ""

    def q(self) -> Q:
        q = Q()
        if self.since:
            q &= Q(created_at__gte=self.since)
        if self.until:
            q &= Q(created_at__lt=self.until)
        if self.agent:
            q &= Q(agent_slug=self.agent)
        if self.actor:
            q &= Q(actor=self.actor)
        if self.verb:
            q &= Q(verb=self.verb)
        if self.action_id is not None:
            q &= Q(target_type="action", target_id=str(self.action_id))
        if self.correlation_id:
            q &= Q(correlation_id=self.correlation_id)
        if self.text:
            # Free text anywhere in the event's data (reasons, comments, tools, …).
            q &= Q(data__icontains=self.text)
        return q

    def params(self) -> dict[str, str]:
        """The filters as query parameters (for links, exports and the export's head)."""
        values = {
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "agent": self.agent,
            "actor": self.actor,
            "verb": self.verb,
            "action": "" if self.action_id is None else str(self.action_id),
            "correlation_id": self.correlation_id,
            "q": self.text,
        }
        return {key: value for key, value in values.items() if value}

    def querystring(self, **extra: Any) -> str:
        params = {**self.params(), **{k: str(v) for k, v in extra.items() if v not in (None, "")}}
        return urlencode(params)

    @property
    def contiguous(self) -> bool:
        """True when the selection keeps every event of each partition it touches (only
        the agent narrows it), so that an export can be checked for gaps link by link."""
        return not any(
            (
                self.since,
                self.until,
                self.actor,
                self.verb,
                self.action_id is not None,
                self.correlation_id,
                self.text,
            )
        )


class UTCDateTimeField(forms.DateTimeField):
    """A date-time converted to UTC. Python accepts offsets up to ±23:59 that PostgreSQL
    refuses (``+17:23`` made the search a 500), and the filters speak UTC anyway."""

    def to_python(self, value: Any) -> datetime | None:
        result = super().to_python(value)
        if result is None:
            return None
        try:
            return result.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Out of range.", code="invalid") from None


class AuditFilterForm(forms.Form):
    """The search form of ``/audit``, the export and the API (same parameter names)."""

    since = UTCDateTimeField(
        required=False,
        label="From",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="UTC",
    )
    until = UTCDateTimeField(
        required=False,
        label="Until",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="UTC, exclusive",
    )
    agent = forms.CharField(
        required=False, max_length=80, widget=forms.TextInput(attrs={"placeholder": "agent"})
    )
    actor = forms.CharField(
        required=False, max_length=150, widget=forms.TextInput(attrs={"placeholder": "actor"})
    )
    verb = forms.ChoiceField(required=False)
    action = forms.IntegerField(
        required=False,
        min_value=1,
        label="Action id",
        widget=forms.NumberInput(attrs={"placeholder": "action #"}),
    )
    correlation_id = forms.CharField(
        required=False,
        max_length=80,
        label="Correlation id",
        widget=forms.TextInput(attrs={"placeholder": "correlation id"}),
    )
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Text",
        widget=forms.TextInput(attrs={"placeholder": "text in reasons, comments…"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["verb"].choices = [("", "any verb"), *((name, name) for name in sorted(VERBS))]

    def filters(self) -> AuditFilters:
        """The valid part of the input (an invalid field filters nothing; its error shows)."""
        data: dict = {}
        if self.is_bound:
            self.is_valid()  # fills cleaned_data with the fields that are valid
            data = self.cleaned_data
        return AuditFilters(
            since=data.get("since"),
            until=data.get("until"),
            agent=(data.get("agent") or "").strip(),
            actor=(data.get("actor") or "").strip(),
            verb=data.get("verb") or "",
            action_id=data.get("action"),
            correlation_id=(data.get("correlation_id") or "").strip(),
            text=(data.get("q") or "").strip(),
        )


def events_for(scope: AuditScope, filters: AuditFilters) -> QuerySet[AuditEvent]:
    return scope.restrict(AuditEvent.objects.filter(filters.q()))


@dataclass
class EventPage:
    events: list[AuditEvent]
    older: int | None = None  # pass as ``before`` for the next older page
    newer: int | None = None  # pass as ``after`` for the next newer page
    rows: list[EventRow] = field(default_factory=list)


def search_events(
    scope: AuditScope,
    filters: AuditFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> EventPage:
    """One page of matching events, newest first."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    queryset = events_for(scope, filters)
    if after is not None:
        chunk = list(queryset.filter(id__gt=after).order_by("id")[: limit + 1])
        more_newer = len(chunk) > limit
        events = list(reversed(chunk[:limit]))
        page = EventPage(events)
        page.newer = events[0].pk if events and more_newer else None
        page.older = events[-1].pk if events else None
        if page.older is not None and not queryset.filter(id__lt=page.older).exists():
            page.older = None
    else:
        if before is not None:
            queryset = queryset.filter(id__lt=before)
        chunk = list(queryset.order_by("-id")[: limit + 1])
        events = chunk[:limit]
        page = EventPage(events)
        page.older = events[-1].pk if len(chunk) > limit else None
        page.newer = events[0].pk if before is not None and events else None
    page.rows = [EventRow.of(event) for event in page.events]
    return page


# --- presenting events --------------------------------------------------------------------


def url_or_blank(name: str, *args: Any) -> str:
    """The URL of a page, or "" while no such page exists (pages of other apps come and go;
    a missing one must not break the audit log)."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def target_label(event: Any) -> str:
    if not event.target_type:
        return ""
    if event.target_type == "action":
        tool = (event.data or {}).get("tool") if isinstance(event.data, dict) else None
        return f"action #{event.target_id}" + (f" ({tool})" if tool else "")
    return f"{event.target_type.replace('_', ' ')} {event.target_id}".strip()


def target_url(event: Any) -> str:
    """Where the event's target is shown, when there is such a page."""
    target_type, target_id = event.target_type, event.target_id
    numeric = target_id.isdigit()
    if target_type == "action" and numeric:
        return url_or_blank("action-detail", int(target_id))
    if target_type == "policy_version" and numeric:
        return url_or_blank("audit-policy-version", int(target_id))
    if target_type == "agent" and event.agent_slug:
        return url_or_blank("rollout:agent-detail", event.agent_slug)
    if target_type == "change_request" and numeric:
        return url_or_blank("rollout:change-detail", int(target_id))
    if target_type == "kill_switch":
        return url_or_blank("incidents") or url_or_blank("rollout:incidents")
    return ""


def describe(event: Any) -> str:
    """The verb's registered sentence, filled in."""
    verb = VERBS.get(event.verb)
    actor = event.actor
    target = target_label(event) or "it"
    if verb is None:
        return f"{actor} {event.verb} {target}"
    # A template may also name the event's plain data fields (``access.refused``: {code}).
    data = event.data if isinstance(event.data, dict) else {}
    fields = {k: v for k, v in data.items() if isinstance(v, str | int) and k.isidentifier()}
    try:
        return verb.template.format(**{**fields, "actor": actor, "target": target})
    except (KeyError, IndexError):
        return verb.template


@dataclass
class EventRow:
    """An event as one row of the audit table."""

    event: AuditEvent
    description: str
    target: str
    url: str

    @classmethod
    def of(cls, event: AuditEvent) -> EventRow:
        return cls(event, describe(event), target_label(event), target_url(event))
