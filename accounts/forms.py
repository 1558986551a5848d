"""Forms of the account pages (second factor, personal tokens, people). They validate what
a person typed; the write paths decide."""

from __future__ import annotations

from django import forms
from django.conf import settings

from accounts.permissions import SCOPE_LABELS, TOKEN_SCOPES

EXPIRY_CHOICES = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "1 year")]


class SecondFactorForm(forms.Form):
    """A code from the authenticator app (or, at login, a recovery code)."""

    code = forms.CharField(
        label="Code",
        max_length=24,
        strip=True,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
    )


class TotpCodeForm(forms.Form):
    """A six-digit code from the authenticator app."""

    code = forms.RegexField(
        label="Code from your app",
        regex=r"^\s*\d{3}\s?\d{3}\s*$",
        max_length=8,
        error_messages={"invalid": "Six digits."},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9 ]*"}
        ),
    )


class PersonalTokenForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="Where it is used, e.g. “oncall CLI”.")
    scopes = forms.MultipleChoiceField(
        choices=[(scope, SCOPE_LABELS[scope]) for scope in TOKEN_SCOPES],
        widget=forms.CheckboxSelectMultiple,
        help_text="It can do only this much of what you may do.",
    )
    expires_in_days = forms.TypedChoiceField(
        label="Expires in", coerce=int, choices=EXPIRY_CHOICES, initial=90
    )

    def clean_expires_in_days(self) -> int:
        days = self.cleaned_data["expires_in_days"]
        if days > settings.PERSONAL_TOKEN_MAX_DAYS:
            raise forms.ValidationError(f"At most {settings.PERSONAL_TOKEN_MAX_DAYS} days here.")
        return days


class PersonReasonForm(forms.Form):
    reason = forms.CharField(max_length=300, required=False, strip=True)
