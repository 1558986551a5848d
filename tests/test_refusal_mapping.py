"""A write path's refusal becomes an answer in one place per interface: the API's exception
handler (``core.api_errors``) and ``core.errors.answer_refusal`` for pages."""

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import RequestFactory
from rest_framework.permissions import AllowAny
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from accounts.stepup import StepUpRequired
from core.errors import NOTED_REFUSAL, Refused, answer_refusal, answering_refusals
from incidents.drills import DrillTokenMisused


class _SomeRefusal(Refused):
    """A refusal no API view translates: the handler maps the base class."""


class _RefusingView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    refusal: Refused

    def post(self, request):
        raise self.refusal


def _answer(refusal: Refused):
    view = type("View", (_RefusingView,), {"refusal": refusal}).as_view()
    return view(APIRequestFactory().post("/api/v1/x", {}, format="json"))


def test_api__bare_refused_subclass_with_fields__answers_code_detail_fields_and_status():
    # Given a write path refusing with field-level problems
    refusal = _SomeRefusal("slug_taken", "An agent 'x' exists.", 409, {"slug": ["Already taken."]})
    # When an API view lets it propagate
    response = _answer(refusal)
    # Then the answer is the refusal, fields included, with its status
    assert response.status_code == 409
    assert response.data == {
        "code": "slug_taken",
        "detail": "An agent 'x' exists.",
        "fields": {"slug": ["Already taken."]},
    }


def test_api__refused_without_fields__answers_no_fields_key():
    response = _answer(_SomeRefusal("not_open", "This change request is applied."))
    assert response.status_code == 409
    assert response.data == {"code": "not_open", "detail": "This change request is applied."}


@pytest.mark.parametrize(
    ("refusal", "status", "code"),
    [
        (StepUpRequired("Enter a code."), 403, "step_up_required"),
        (DrillTokenMisused(), 403, "drill_token"),
    ],
)
def test_api__step_up_and_drill_token__are_refusals_mapped_alike(refusal, status, code):
    response = _answer(refusal)
    assert response.status_code == status
    assert set(response.data) == {"code", "detail"}
    assert response.data["code"] == code


def test_page__answer_refusal__notes_it_and_returns_the_message_with_fields():
    # Given a page request and a refusal with fields
    request = RequestFactory().post("/agents/x")
    refusal = _SomeRefusal("invalid", "The proposed change is not valid.", 400, {"tier": ["No."]})
    # When the page answers it itself
    message = answer_refusal(request, refusal)
    # Then the recorder is told which refusal, and the message names the fields
    assert getattr(request, NOTED_REFUSAL) is refusal
    assert message == "The proposed change is not valid. tier: No."


@pytest.mark.parametrize(("status", "raised"), [(403, PermissionDenied), (404, Http404)])
def test_page__answer_refusal_hiding__raises_for_403_and_404(status, raised):
    request = RequestFactory().post("/changes/1/approve")
    refusal = _SomeRefusal("not_author", "Only the author may edit it.", status)
    with pytest.raises(raised) as caught:
        answer_refusal(request, refusal, hide=True)
    # The 403 page is audited from the refusal it was raised from (config.refusal_audit).
    assert caught.value.__cause__ is refusal
    assert not hasattr(request, NOTED_REFUSAL)


def test_page__answer_refusal_hiding__other_statuses_are_answered_by_the_page():
    request = RequestFactory().post("/changes/1/approve")
    refusal = _SomeRefusal("stale", "The change request changed.", 409)
    assert answer_refusal(request, refusal, hide=True) == "The change request changed."
    assert getattr(request, NOTED_REFUSAL) is refusal


def test_page__answering_refusals__catches_notes_and_shows_the_refusal():
    # Given a page block the write path refuses
    request = RequestFactory().post("/people/1/disable")
    refusal = _SomeRefusal("own_account", "You cannot disable your own account.", 403)
    shown: list[str] = []
    # When the page answers it through the one shared path (showing 403s, hiding 404s)
    with answering_refusals(request, hide={404}, show=shown.append) as refused:
        raise refusal
    # Then it is caught, noted for the audit and shown once
    assert refused and refused.refusal is refusal
    assert getattr(request, NOTED_REFUSAL) is refusal
    assert shown == ["You cannot disable your own account."]


def test_page__answering_refusals__no_refusal_or_hidden_404_or_other_errors():
    request = RequestFactory().post("/people/1/disable")
    with answering_refusals(request) as refused:
        pass
    assert not refused and refused.message == ""
    with pytest.raises(Http404), answering_refusals(request, hide={404}):
        raise _SomeRefusal("not_found", "No such person.", 404)
    with pytest.raises(ValueError), answering_refusals(request):
        raise ValueError("not a refusal")
    assert not hasattr(request, NOTED_REFUSAL)
