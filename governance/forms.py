"""Forms of the governance pages (and the agent page's Access section). They validate input and turn it into the ``changes``
that ``governance.actions.propose_change`` takes; the write path validates again."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms

from governance.access import RIGHT_LABELS, RIGHTS
from governance.actions import AGENT_SLUG, MAX_LIMITS_PER_TOOL, TOOL_NAME
from governance.models import ShadowLabel
from rollout.environments import configured_environments, environment_choices
from rollout.models import Effect, Risk, RuleKind, Tier
from rollout.policy import (
    LIMIT_OPERATORS,
    RADIUS_DIMENSIONS,
    validate_limit,
    validate_radius_mapping,
)

# "amount <= 10000", "environment in [staging, dev]", "name matches ^[a-z]+$"
LIMIT_LINE = re.compile(
    r"^\s*(?P<field>[A-Za-z0-9_.\-]+)\s+(?P<op>"
    + "|".join(re.escape(op) for op in sorted(LIMIT_OPERATORS, key=len, reverse=True))
    + r")\s+(?P<value>.+?)\s*$"
)


def _scalar(text: str) -> Any:
    """A JSON scalar when ``text`` is one (number, quoted string, true/false/null), else
    the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _value(op: str, text: str) -> Any:
    if op == "matches":
        value = _scalar(text)
        return value if isinstance(value, str) else text
    if op in {"in", "not_in"}:
        value = _scalar(text)
        if isinstance(value, list):
            return value
        inner = text.strip()
        if inner.startswith("[") and inner.endswith("]"):
            inner = inner[1:-1]
        return [_scalar(item.strip()) for item in inner.split(",") if item.strip()]
    return _scalar(text)


def parse_limits(text: str) -> list[dict]:
    """Argument limits from one-per-line text (``amount <= 10000``) or a JSON list.
    Raises ``forms.ValidationError`` naming each line that does not parse."""
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            limits = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(limits, list):
            raise forms.ValidationError("A JSON list of {field, op, value} objects.")
        problems = [
            f"limit {index}: {problem}"
            for index, limit in enumerate(limits, start=1)
            if (problem := validate_limit(limit))
        ]
        if problems:
            raise forms.ValidationError(problems)
        return limits
    limits, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = LIMIT_LINE.match(line)
        if match is None:
            problems.append(
                f"line {number}: write it as 'field operator value' with an operator among "
                + ", ".join(LIMIT_OPERATORS)
            )
            continue
        limit = {
            "field": match["field"],
            "op": match["op"],
            "value": _value(match["op"], match["value"]),
        }
        problem = validate_limit(limit)
        if problem:
            problems.append(f"line {number}: {problem}")
        else:
            limits.append(limit)
    if problems:
        raise forms.ValidationError(problems)
    if len(limits) > MAX_LIMITS_PER_TOOL:
        raise forms.ValidationError(f"At most {MAX_LIMITS_PER_TOOL} limits.")
    return limits


def format_limits(limits: list[dict]) -> str:
    """The text ``parse_limits`` reads back to the same limits."""
    lines = []
    for limit in limits or []:
        value = limit.get("value")
        shown = value if limit.get("op") == "matches" and isinstance(value, str) else None
        if shown is None or _scalar(shown) != shown:
            shown = json.dumps(value, ensure_ascii=False)
        lines.append(f"{limit.get('field')} {limit.get('op')} {shown}")
    return "\n".join(lines)


# "amount ← arguments.amount", "records_affected <- rows", "users_affected = to.count"
RADIUS_LINE = re.compile(r"^\s*(?P<dimension>[A-Za-z_]+)\s*(?:←|<-|=|:)\s*(?P<path>\S.*?)\s*$")
ARGUMENTS_PREFIX = "arguments."


def parse_radius_mapping(text: str) -> dict:
    """``blast_radius_from_arguments`` from one-per-line text (``amount ← arguments.amount``;
    ``<-``, ``=`` or ``:`` work too, and the ``arguments.`` prefix may be left out) or a
    JSON object. Raises ``forms.ValidationError`` naming each line that does not parse."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            mapping = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
    else:
        mapping, problems = {}, []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            match = RADIUS_LINE.match(line)
            if match is None:
                problems.append(
                    f"line {number}: write it as 'dimension ← arguments.path' with a dimension "
                    f"among {', '.join(RADIUS_DIMENSIONS)}"
                )
                continue
            path = match["path"]
            if path.startswith(ARGUMENTS_PREFIX):
                path = path[len(ARGUMENTS_PREFIX) :]
            if match["dimension"] in mapping:
                problems.append(f"line {number}: {match['dimension']} is mapped twice")
            mapping[match["dimension"]] = path
        if problems:
            raise forms.ValidationError(problems)
    problems = validate_radius_mapping(mapping)
    if problems:
        raise forms.ValidationError(problems)
    return mapping


def format_radius_mapping(mapping: dict) -> str:
    """The text ``parse_radius_mapping`` reads back to the same mapping."""
    return "\n".join(
        f"{dimension} ← arguments.{mapping[dimension]}"
        for dimension in RADIUS_DIMENSIONS
        if isinstance(mapping, dict) and dimension in mapping
    )


def _reason_field() -> forms.CharField:
    return forms.CharField(
        max_length=300,
        label="Reason",
        help_text="Kept in the policy version and the audit log.",
        widget=forms.TextInput(attrs={"class": "reason"}),
    )


class RegisterAgentForm(forms.Form):
    slug = forms.CharField(max_length=80, help_text="Lower-case letters, digits and dashes.")
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"].strip()
        if not AGENT_SLUG.match(slug):
            raise forms.ValidationError("Lower-case letters, digits and dashes (at most 80).")
        return slug


class TierForm(forms.Form):
    tier = forms.ChoiceField()
    reason = _reason_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tier"].choices = [
            (tier.name, f"{tier.rank} · {tier.name}") for tier in Tier.objects.order_by("rank")
        ]

    def changes(self) -> dict:
        return {"tier": self.cleaned_data["tier"]}


class ToolRuleForm(forms.Form):
    """Add a tool rule, or change one (then ``tool`` is fixed by the page)."""

    tool = forms.CharField(max_length=120)
    effect = forms.ChoiceField(choices=Effect.choices)
    rule = forms.ChoiceField(choices=RuleKind.choices)
    base_risk = forms.ChoiceField(choices=Risk.choices, initial=Risk.LOW)
    argument_limits = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "class": "limits"}),
        help_text="One per line, e.g. 'amount <= 10000' or 'environment in [staging, dev]'.",
    )
    blast_radius_from_arguments = forms.CharField(
        required=False,
        label="Risk from arguments",
        widget=forms.Textarea(attrs={"rows": 2, "class": "limits"}),
        help_text="One per line, e.g. 'amount ← arguments.amount' or "
        "'records_affected ← arguments.batch.rows' (dimensions: "
        + ", ".join(RADIUS_DIMENSIONS)
        + "). Risk weighs the higher of these and what the agent declares.",
    )
    rate_limit_per_minute = forms.IntegerField(
        required=False, min_value=0, max_value=1_000_000, help_text="Empty: no limit."
    )
    min_confidence = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Minimum confidence",
        widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}),
        help_text="0 to 1, e.g. 0.8: a call this rule would let run waits for a person when "
        "the agent's stated confidence is lower (none stated counts as 0). Empty: no minimum.",
    )
    # Standing approvals ("approve, and allow the same for a while"): off unless ticked.
    standing_allowed = forms.BooleanField(
        required=False,
        label="Standing approvals allowed",
        help_text="Reviewers may approve matching calls ahead, within the bounds below.",
    )
    standing_max_minutes = forms.IntegerField(
        required=False, min_value=1, max_value=1440, initial=60, label="Standing: longest (minutes)"
    )
    standing_max_uses = forms.IntegerField(
        required=False, min_value=1, max_value=1000, initial=10, label="Standing: most uses"
    )
    standing_max_risk = forms.ChoiceField(
        required=False,
        choices=[("low", "low"), ("medium", "medium"), ("high", "high")],
        initial="medium",
        label="Standing: highest risk",
        help_text="Critical actions are never approved standing.",
    )
    standing_at_most = forms.CharField(
        required=False,
        max_length=2000,
        label="Standing: fields that may be lower",
        help_text="Comma-separated top-level argument fields (numbers) a matching call may "
        "lower, e.g. 'amount'; every other field must be equal.",
    )
    reason = _reason_field()

    def __init__(self, *args: Any, fixed_tool: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fixed_tool = fixed_tool
        if fixed_tool:
            self.fields["tool"].disabled = True
            self.fields["tool"].initial = fixed_tool

    def clean_tool(self) -> str:
        tool = self.fixed_tool or self.cleaned_data["tool"].strip()
        if not TOOL_NAME.match(tool):
            raise forms.ValidationError("Letters, digits and _.:/- only.")
        return tool

    def clean_argument_limits(self) -> list[dict]:
        return parse_limits(self.cleaned_data.get("argument_limits", ""))

    def clean_blast_radius_from_arguments(self) -> dict:
        return parse_radius_mapping(self.cleaned_data.get("blast_radius_from_arguments", ""))

    def changes(self) -> dict:
        data = self.cleaned_data
        return {
            "tools": {
                data["tool"]: {
                    "effect": data["effect"],
                    "rule": data["rule"],
                    "base_risk": data["base_risk"],
                    "argument_limits": data["argument_limits"],
                    "blast_radius_from_arguments": data["blast_radius_from_arguments"],
                    "rate_limit_per_minute": data["rate_limit_per_minute"],
                    "min_confidence": data["min_confidence"],
                    "standing": self._standing(),
                }
            }
        }

    def _standing(self) -> dict:
        """The rule's ``standing`` bounds (``{}``: off); governance validates them."""
        data = self.cleaned_data
        if not data.get("standing_allowed"):
            return {}
        bounds: dict[str, Any] = {
            "allowed": True,
            "at_most": [
                name.strip()
                for name in (data.get("standing_at_most") or "").split(",")
                if name.strip()
            ],
        }
        for name in ("max_minutes", "max_uses", "max_risk"):
            value = data.get(f"standing_{name}")
            if value not in (None, ""):
                bounds[name] = value
        return bounds

    @classmethod
    def initial_for(cls, tool: str, rule: dict) -> dict:
        return {
            "tool": tool,
            "effect": rule.get("effect"),
            "rule": rule.get("rule"),
            "base_risk": rule.get("base_risk"),
            "argument_limits": format_limits(rule.get("argument_limits") or []),
            "blast_radius_from_arguments": format_radius_mapping(
                rule.get("blast_radius_from_arguments") or {}
            ),
            "rate_limit_per_minute": rule.get("rate_limit_per_minute"),
            "min_confidence": rule.get("min_confidence"),
            **cls._standing_initial(rule.get("standing") or {}),
        }

    @staticmethod
    def _standing_initial(bounds: dict) -> dict:
        if not bounds.get("allowed"):
            return {"standing_allowed": False}
        return {
            "standing_allowed": True,
            "standing_max_minutes": bounds.get("max_minutes"),
            "standing_max_uses": bounds.get("max_uses"),
            "standing_max_risk": bounds.get("max_risk"),
            "standing_at_most": ", ".join(bounds.get("at_most") or []),
        }


class RemoveToolForm(forms.Form):
    reason = _reason_field()


def _environment_field() -> forms.ChoiceField:
    return forms.ChoiceField(
        label="Environment",
        choices=lambda: [(name, name) for name in configured_environments()],
    )


class EnvironmentTierForm(forms.Form):
    """Set the tier an agent has in one environment, or clear it (the agent's own applies)."""

    environment = _environment_field()
    tier = forms.ChoiceField(required=False, label="Tier there")
    reason = _reason_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tier"].choices = [
            ("", "the agent's own tier (clear the override)"),
            *((tier.name, f"{tier.rank} · {tier.name}") for tier in Tier.objects.order_by("rank")),
        ]

    def changes(self) -> dict:
        data = self.cleaned_data
        return {"environments": {data["environment"]: {"tier": data["tier"] or None}}}


class EnvironmentRuleForm(ToolRuleForm):
    """A tool's rule in one environment: it replaces the agent's own rule there (or rules a
    tool the agent has none for, e.g. one allowed only in sandbox)."""

    environment = _environment_field()
    field_order = ["environment", "tool"]

    def changes(self) -> dict:
        tools = super().changes()["tools"]
        return {"environments": {self.cleaned_data["environment"]: {"tools": tools}}}


class ClearEnvironmentRuleForm(forms.Form):
    """Clear a tool's override in one environment: the agent's own rule applies there."""

    environment = _environment_field()
    tool = forms.CharField(max_length=120)
    reason = _reason_field()

    def clean_tool(self) -> str:
        tool = self.cleaned_data["tool"].strip()
        if not TOOL_NAME.match(tool):
            raise forms.ValidationError("Letters, digits and _.:/- only.")
        return tool

    def changes(self) -> dict:
        data = self.cleaned_data
        return {"environments": {data["environment"]: {"tools": {data["tool"]: None}}}}


class RevertForm(forms.Form):
    """Revert to a policy version: only the reason is asked (the change comes from the
    version); it starts as "Revert to version N"."""

    reason = _reason_field()


class AgentSettingsForm(forms.Form):
    active = forms.BooleanField(required=False)
    rate_limit_per_minute = forms.IntegerField(min_value=0, max_value=1_000_000)
    reason = _reason_field()

    def changes(self) -> dict:
        return {
            "active": self.cleaned_data["active"],
            "rate_limit_per_minute": self.cleaned_data["rate_limit_per_minute"],
        }


class TokenForm(forms.Form):
    name = forms.CharField(max_length=80, initial="default")
    environment = forms.ChoiceField(
        required=False,
        help_text="Calls with this token act only in this environment.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["environment"].choices = environment_choices("any (unbound)")


class ApproveChangeForm(forms.Form):
    revision = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    comment = forms.CharField(
        max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class RejectChangeForm(forms.Form):
    comment = forms.CharField(
        max_length=4000, widget=forms.Textarea(attrs={"rows": 2}), label="Why reject it?"
    )


class WithdrawChangeForm(forms.Form):
    comment = forms.CharField(
        max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class EditChangeForm(forms.Form):
    changes = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "class": "json"}),
        help_text='JSON: {"tier": …, "active": …, "rate_limit_per_minute": …, '
        '"tools": {tool: rule or null}, "environments": {environment: {"tier": … or null, '
        '"tools": {tool: rule or null}}}}',
    )
    reason = _reason_field()
    required_approvals = forms.IntegerField(min_value=1, max_value=3)

    def clean_changes(self) -> dict:
        try:
            value = json.loads(self.cleaned_data["changes"])
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("A JSON object.")
        return value


class BacktestForm(forms.Form):
    backtest_tier = forms.ChoiceField(label="If the agent had been at tier")
    days = forms.IntegerField(min_value=1, max_value=90, initial=14, label="over the last days")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["backtest_tier"].choices = [
            (tier.name, tier.name) for tier in Tier.objects.order_by("rank")
        ]


class ShadowLabelForm(forms.Form):
    label = forms.ChoiceField(choices=ShadowLabel.Label.choices)


class AccessChangeForm(forms.Form):
    """Grant or remove one right of one user or group on one agent."""

    operation = forms.ChoiceField(choices=[("grant", "Grant"), ("remove", "Remove")])
    right = forms.ChoiceField(
        choices=[(right, f"{right}: {RIGHT_LABELS[right]}") for right in RIGHTS]
    )
    kind = forms.ChoiceField(label="To", choices=[("user", "user"), ("group", "group")])
    name = forms.CharField(label="Username or group name", max_length=150, strip=True)
    reason = forms.CharField(max_length=300, strip=True, required=False)

    def holder(self) -> str:
        return f"{self.cleaned_data['kind']}:{self.cleaned_data['name']}"

    def changes(self) -> dict:
        granted = True if self.cleaned_data["operation"] == "grant" else None
        return {"access": {self.cleaned_data["right"]: {self.holder(): granted}}}
