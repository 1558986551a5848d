"""The one shape of a refusal raised by the write paths (``approvals.actions``,
``rollout.actions``, ``governance.actions`` …) and turned into an HTTP answer in one place
per interface: the API's exception handler (``core.api_errors``) for every API view, and
``answering_refusals`` (around ``answer_refusal``) for the pages that show a refusal
themselves (a card notice, a form error, a message and a redirect): no view writes its own
``except …Refused``."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def answer_refusal(request: Any, refusal: Refused, *, hide: bool | Collection[int] = False) -> str:
    """The common part of a page answering ``refusal`` itself: note it for the refusal audit
    (``note_refusal``) and return the message to show — the page then shows it its own way
    (a card notice, a form error, a flash message) with ``refusal.status`` where it answers
    with a status.

    ``hide``: the page shows nothing the caller may not see, so a ``403`` refusal raises
    ``PermissionDenied`` (the 403 page; audited from the refusal it is raised from) and a
    ``404`` raises ``Http404`` instead of returning; a collection of statuses hides only
    those (``{404}``: a missing thing is the 404 page, a refusal is shown)."""
    hidden = (403, 404) if hide is True else hide or ()
    if refusal.status == 403 and 403 in hidden:
        raise PermissionDenied(refusal.detail) from refusal
    if refusal.status == 404 and 404 in hidden:
        raise Http404(refusal.detail) from refusal
    note_refusal(request, refusal)
    return refusal_message(refusal)


@dataclass
class Answered:
    """What ``answering_refusals`` caught: the ``refusal`` (None when the block was not
    refused) and the ``message`` ``answer_refusal`` made of it. True when refused."""

    refusal: Refused | None = None
    message: str = ""

    def __bool__(self) -> bool:
        return self.refusal is not None


@contextmanager
def answering_refusals(
    request: Any,
    *,
    hide: bool | Collection[int] = False,
    show: Callable[[str], Any] | None = None,
) -> Iterator[Answered]:
    """The one way a page answers a write path's refusal itself, instead of an ``except``
    per view: a ``Refused`` raised in the block is answered by ``answer_refusal`` (noted
    for the refusal audit; ``hide`` as there), its message is shown with ``show`` when
    given (``messages.error``, say), and the yielded ``Answered`` tells the page after the
    block that it was refused, so it answers its own way (a redirect, a form error, the
    refusal's status)::

        with answering_refusals(request, hide=True, show=flash) as refused:
            token = governance.issue_token(...)
        if refused:
            return redirect(...)

    Anything but a ``Refused`` passes through."""
    answered = Answered()
    try:
        yield answered
    except Refused as refusal:
        answered.refusal = refusal
        answered.message = answer_refusal(request, refusal, hide=hide)
        if show is not None:
            show(answered.message)
