"""Forms of the dashboard: list filters and the decisions a reviewer posts. Validation of
what the person typed lives here; whether they may decide is the write path's answer."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from django import forms

from approvals.selectors import DECIDED_STATUSES, EXTENSIONS, ActionFilters, FilterChoices
from approvals.standing import Terms
from rollout.environments import environment_choices
from rollout.models import Risk

# The API's bounds (approvals.serializers), so the dashboard accepts nothing it would refuse.
MAX_COMMENT_LENGTH = 4000
MAX_ARGUMENT_KEYS = 200


class _FilterForm(forms.Form):
    agent = forms.ChoiceField(required=False)
    risk = forms.ChoiceField(required=False, choices=[("", "Any risk"), *Risk.choices])
    tool = forms.ChoiceField(required=False)
    environment = forms.ChoiceField(required=False)

    def __init__(self, data: Any, choices: FilterChoices) -> None:
        super().__init__(data)
        self.fields["agent"].choices = [("", "Any agent"), *choices.agents]
        self.fields["tool"].choices = [("", "Any tool"), *((t, t) for t in choices.tools)]
        self.fields["environment"].choices = environment_choices("Any environment")

    def filters(self) -> ActionFilters:
        """The valid filters; an unknown value (a stale link) is ignored, not an error."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return ActionFilters(
            agent=cleaned.get("agent", ""),
            risk=cleaned.get("risk", ""),
            tool=cleaned.get("tool", ""),
            status=cleaned.get("status", ""),
            environment=cleaned.get("environment", ""),
        )


class QueueFilterForm(_FilterForm):
    """Narrows the queue by words, agent, risk and tool, and orders it."""

    q = forms.CharField(required=False, max_length=200, label="Search tool, summary or agent")
    sort = forms.ChoiceField(
        required=False,
        label="Order",
        choices=[
            ("risk", "Highest risk first"),
            ("expiry", "Least time left first"),
            ("age", "Oldest first"),
        ],
    )
    field_order = ["q", "agent", "risk", "tool", "environment", "sort"]

    def __init__(self, data: Any, choices: FilterChoices) -> None:
        super().__init__(data, choices)
        self.fields["q"].widget.attrs.update({"type": "search", "placeholder": "Search"})

    def filters(self) -> ActionFilters:
        filters = super().filters()
        text = getattr(self, "cleaned_data", {}).get("q", "")
        return dataclasses.replace(filters, text=text)

    def ordering(self) -> str:
        self.is_valid()
        return getattr(self, "cleaned_data", {}).get("sort") or "risk"


class DecidedFilterForm(_FilterForm):
    """Narrows recent decisions by agent, risk, tool and final status."""

    status = forms.ChoiceField(
        required=False,
        choices=[("", "Any outcome"), *((s.value, s.label) for s in DECIDED_STATUSES)],
    )


def _comment_field(*, required: bool, label: str) -> forms.CharField:
    return forms.CharField(
        required=required,
        max_length=MAX_COMMENT_LENGTH,
        strip=True,
        label=label,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class _DecisionForm(forms.Form):
    """A decision on the payload the card showed: its hash travels with the form, and the
    write path refuses it (``payload_changed``) when the arguments changed since."""

    payload_hash = forms.CharField(
        max_length=64,
        widget=forms.HiddenInput,
        error_messages={
            "required": "This form is from an older page: reload the card and decide again."
        },
    )


class ApproveForm(_DecisionForm):
    comment = _comment_field(required=False, label="Comment (optional)")
    # "Also approve matching calls for N minutes / up to K uses": offered on a card whose
    # tool's policy allows standing approvals; the write path checks the bounds.
    standing = forms.BooleanField(required=False)
    standing_minutes = forms.IntegerField(required=False, min_value=1, label="Minutes")
    standing_uses = forms.IntegerField(required=False, min_value=1, label="Uses")

    def clean(self) -> dict:
        data = super().clean()
        if data.get("standing"):
            for name, what in (("standing_minutes", "minutes"), ("standing_uses", "uses")):
                if data.get(name) is None and name not in self.errors:
                    self.add_error(name, f"Say for how many {what} matching calls are approved.")
        return data

    def standing_terms(self) -> Terms | None:
        """The terms asked for, or None when the box is not ticked."""
        data = self.cleaned_data
        if not data.get("standing"):
            return None
        return Terms(data["standing_minutes"], data["standing_uses"])


class RejectForm(_DecisionForm):
    comment = _comment_field(required=True, label="Reason for the agent")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["comment"].error_messages["required"] = (
            "Say why you reject it: the reason is returned to the agent."
        )


class RollbackForm(forms.Form):
    comment = _comment_field(required=True, label="Why roll it back?")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["comment"].error_messages["required"] = "Say why it must be rolled back."


class EditAndApproveForm(_DecisionForm):
    """Edited arguments as JSON text, approved in the same step."""

    arguments = forms.CharField(strip=False, widget=forms.Textarea)
    comment = _comment_field(required=False, label="Comment (optional)")

    def clean_arguments(self) -> dict:
        text = self.cleaned_data["arguments"]
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                "The arguments are not valid JSON: %(problem)s (line %(line)s, column %(col)s).",
                code="invalid_json",
                params={"problem": exc.msg, "line": exc.lineno, "col": exc.colno},
            ) from exc
        if not isinstance(value, dict):
            raise forms.ValidationError(
                "The arguments must be a JSON object ({…}), as the agent sent them.",
                code="not_an_object",
            )
        if len(value) > MAX_ARGUMENT_KEYS:
            raise forms.ValidationError(
                "At most %(max)s keys.", code="too_many_keys", params={"max": MAX_ARGUMENT_KEYS}
            )
        return value


class ExtendForm(forms.Form):
    """Push a pending action's expiry later (up to its tier's maximum: the write path's
    answer)."""

    seconds = forms.TypedChoiceField(coerce=int, choices=EXTENSIONS)


class BulkDecisionForm(forms.Form):
    """One confirmation for several low-risk actions of one tool: the verdict, a comment
    (a rejection's reason for the agent), and per action its id and the payload hash shown
    (``action`` repeated, ``hash-<id>``)."""

    verdict = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    comment = _comment_field(required=False, label="Comment (a reason is required to reject)")

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.action_ids = [int(v) for v in data.getlist("action") if v.isdigit()][:200]
        self.seen_hashes = {pk: data.get(f"hash-{pk}", "") for pk in self.action_ids}

    def clean(self) -> dict:
        cleaned = super().clean()
        if not self.action_ids:
            raise forms.ValidationError("Choose at least one action.")
        return cleaned


class EmailDecisionForm(forms.Form):
    """The confirmation of an email's Approve or Reject link: a comment, required (the
    agent's reason) when rejecting. The payload hash is the link's own, not the form's."""

    comment = _comment_field(required=False, label="Comment (optional)")

    def __init__(self, *args: Any, verdict: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if verdict == "reject":
            field = self.fields["comment"]
            field.required = True
            field.label = "Reason for the agent (required)"
            field.error_messages["required"] = (
                "Say why you reject it: the reason is returned to the agent."
            )
