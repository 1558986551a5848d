from django.urls import path

from approvals import views

urlpatterns = [
    # "/" sends each person to their home (a reviewer's is the queue, served in place).
    path("", views.home, name="home"),
    path("queue", views.queue, name="queue"),
    path("home", views.choose_home, name="home-choose"),
    path(
        "notifications/desktop",
        views.choose_desktop_notifications,
        name="desktop-notifications-choose",
    ),
    path("decided", views.decided, name="decided"),
    path("actions/bulk", views.bulk_decide, name="actions-bulk"),
    path("actions/<int:action_id>", views.action_detail, name="action-detail"),
    path("actions/<int:action_id>/approve", views.approve, name="action-approve"),
    path("actions/<int:action_id>/edit", views.edit_and_approve, name="action-edit-approve"),
    path("actions/<int:action_id>/reject", views.reject, name="action-reject"),
    path("actions/<int:action_id>/extend", views.extend, name="action-extend"),
    path("actions/<int:action_id>/rollback", views.request_rollback, name="action-rollback"),
    # An email's Approve / Reject link: a confirmation page (GET shows, POST decides).
    path("actions/<int:action_id>/email/<str:token>", views.email_decision, name="email-decision"),
    path("standing/<int:standing_id>/revoke", views.revoke_standing, name="standing-revoke"),
]
