"""A superuser adds an account in the admin and makes it a governance owner; a governance
owner sees both on their governance home (/agents), on a laptop and on a phone."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from playwright.sync_api import expect

from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _superuser_makes_a_governance_owner_in_the_admin() -> None:
    ada = factories.make_user("ada", superuser=True)
    admin = Client()
    admin.force_login(ada)
    response = admin.post(
        "/admin/auth/user/add/",
        {
            "username": "mallory",
            "password1": "a-long-password-9",
            "password2": "a-long-password-9",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302
    mallory = get_user_model().objects.get(username="mallory")
    mallory.groups.add(Group.objects.get(name="governance_owner"))  # the shell, this time


@pytest.mark.parametrize("width", [1280, 390])
def test_browser__role_granted_in_admin_and_shell__governance_home_lists_it(
    browser, dashboard_server, reference_data, artifacts, width
):
    # Given a governance owner, and a superuser who made another one behind their back
    factories.make_user("olga", groups=("governance_owner",))
    _superuser_makes_a_governance_owner_in_the_admin()

    # When the governance owner signs in and opens the governance home
    context = browser.new_context(
        base_url=dashboard_server.url, viewport={"width": width, "height": 900}
    )
    try:
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", "olga")
        page.fill("#id_password", "pw-for-tests")
        page.click("button[type=submit]")
        page.wait_for_url(dashboard_server.url + "/changes")  # a governance owner's home
        page.goto("/agents")

        # Then the recent changes name who did what, readable at this width
        section = page.get_by_role("region", name="Recent role and access changes")
        expect(section).to_be_visible()
        items = section.locator("li")
        expect(items.filter(has_text="ada created account mallory")).to_have_count(1)
        expect(items.filter(has_text="shell gave mallory the role governance_owner")).to_have_count(
            1
        )
        expect(section).to_contain_text("Auditors read the full record in the audit log")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
        page.screenshot(path=str(artifacts / f"role-changes-{width}.png"), full_page=True)
    finally:
        context.close()
