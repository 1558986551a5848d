"""Account pages: login with its second-factor step, two-factor, step-up, profile and
personal tokens, People. Mounted at the site root by ``config.urls``."""

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

urlpatterns = [
    path("accounts/login/", views.AirlockLoginView.as_view(), name="login"),
    # The admin's own login form would skip the second factor and the throttling.
    path("admin/login/", views.admin_login, name="admin-login-redirect"),
    path("accounts/login/verify/", views.login_verify, name="login-verify"),
    path("accounts/login/enrol/", views.login_enrol, name="login-enrol"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/two-factor/", views.two_factor, name="two-factor"),
    path("accounts/step-up/", views.step_up, name="step-up"),
    path("accounts/profile/", views.profile, name="profile"),
    path("accounts/tokens/", views.create_personal_token, name="personal-token-create"),
    path(
        "accounts/tokens/<int:token_id>/revoke",
        views.revoke_personal_token,
        name="personal-token-revoke",
    ),
    path("people", views.people_list, name="people"),
    path("people/<int:user_id>/disable", views.disable_person, name="person-disable"),
    path("people/<int:user_id>/enable", views.enable_person, name="person-enable"),
]
