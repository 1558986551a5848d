"""The one shape of a refusal raised by the write paths (``approvals.actions``,
``rollout.actions``, ``rollout.governance`` …) and turned into an HTTP answer in one place
per interface: the API's exception handler (``config.api_errors``) for every API view, and
``answer_refusal`` for the pages that show a refusal themselves (a card notice, a form
error, a message and a redirect)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404


class Refused(Exception):
    """A request the rules refuse: a stable ``code``, a human ``detail``, the HTTP ``status``
    the API answers with, and field-level problems in ``fields`` (empty when none)."""

    def __init__(
        self, code: str, detail: str, status: int = 409, fields: dict | None = None
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.fields = fields or {}


def refusal_body(refusal: Refused) -> dict:
    """The API's answer to ``refusal``: ``{code, detail, fields?}``, ``fields`` exactly when
    the refusal has some."""
    body: dict[str, Any] = {"code": refusal.code, "detail": str(refusal.detail)}
    if refusal.fields:
        body["fields"] = refusal.fields
    return body


# The request attribute naming the refusal a view answered itself (``note_refusal``).
NOTED_REFUSAL = "airlock_refusal"


def note_refusal(request: Any, refusal: Any) -> None:
    """Tell the interface's recorder (``config.refusal_audit``) that ``request`` is
    answered with ``refusal`` (anything with ``code`` and ``status``, e.g. a ``Refused``),
    for a view that answers a refusal itself — a card, a redirect with a message — rather
    than raising it. Recorded or not by the usual rule (``audit.refusals.is_recorded``)."""
    setattr(request, NOTED_REFUSAL, refusal)


def refusal_message(refusal: Refused) -> str:
    """``refusal`` in one line for a person: its detail, then each field's problems."""
    message = refusal.detail
    if refusal.fields:
        message += " " + "; ".join(
            f"{name}: {' '.join(problems)}" for name, problems in refusal.fields.items()
        )
    return message


def answer_refusal(request: Any, refusal: Refused, *, hide: bool = False) -> str:
    """The common part of a page answering ``refusal`` itself: note it for the refusal audit
    (``note_refusal``) and return the message to show — the page then shows it its own way
    (a card notice, a form error, a flash message) with ``refusal.status`` where it answers
    with a status.

    ``hide``: the page shows nothing the caller may not see, so a ``403`` refusal raises
    ``PermissionDenied`` (the 403 page; audited from the refusal it is raised from) and a
    ``404`` raises ``Http404`` instead of returning."""
    if hide and refusal.status == 403:
        raise PermissionDenied(refusal.detail) from refusal
    if hide and refusal.status == 404:
        raise Http404(refusal.detail) from refusal
    note_refusal(request, refusal)
    return refusal_message(refusal)
