"""The queue's desktop notification threshold: kept per person on the server, offered on
the queue page, and a bad value refused with a stable code and nothing stored."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import DesktopNotificationChoice
from tests import factories

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture
def rita(client: Client, reviewer) -> Client:
    client.force_login(reviewer)
    return client


def test_queue__offers_notifications_with_the_persons_threshold(rita, reviewer):
    page = rita.get("/queue").content.decode()
    assert "data-desktop-notify" in page and "notify.js" in page
    assert '<option value="low" selected>' in page  # the default: every new card
    DesktopNotificationChoice.objects.create(user=reviewer, min_risk="high")
    page = rita.get("/queue").content.decode()
    assert '<option value="high" selected>' in page


def test_choose__json__stored_for_this_person_only(rita, reviewer, reviewer2):
    response = rita.post("/notifications/desktop", {"min_risk": "critical"}, **JSON)
    assert response.status_code == 200 and response.json() == {"min_risk": "critical"}
    response = rita.post("/notifications/desktop", {"min_risk": "medium"}, **JSON)
    assert response.json() == {"min_risk": "medium"}
    assert list(DesktopNotificationChoice.objects.values_list("user_id", "min_risk")) == [
        (reviewer.pk, "medium")
    ]


@pytest.mark.parametrize("value", ["", "severe", "HIGH", "high "])
def test_choose__unknown_risk__400_with_field_detail_and_nothing_stored(rita, reviewer, value):
    DesktopNotificationChoice.objects.create(user=reviewer, min_risk="high")
    response = rita.post("/notifications/desktop", {"min_risk": value}, **JSON)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_risk"
    assert body["fields"] == {"min_risk": ["Choose one of: low, medium, high, critical."]}
    assert DesktopNotificationChoice.objects.get(user=reviewer).min_risk == "high"


def test_choose__form_post_without_javascript__back_to_the_queue_with_a_message(rita):
    response = rita.post(
        "/notifications/desktop", {"min_risk": "high", "next": "/queue?risk=high"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/queue?risk=high"
    assert "Desktop notifications: high risk and above." in response.content.decode()
    refused = rita.post("/notifications/desktop", {"min_risk": "nope"}, follow=True)
    assert "Choose a risk level for desktop notifications." in refused.content.decode()


def test_choose__agents_cannot(client: Client, support_agent):
    token = factories.make_token(support_agent)
    response = client.post(
        "/notifications/desktop", {"min_risk": "high"}, HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not DesktopNotificationChoice.objects.exists()
