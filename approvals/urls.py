from django.urls import path

from approvals import views

urlpatterns = [
    path("", views.queue, name="queue"),
    path("decided", views.decided, name="decided"),
    path("actions/<int:action_id>", views.action_detail, name="action-detail"),
    path("actions/<int:action_id>/approve", views.approve, name="action-approve"),
    path("actions/<int:action_id>/edit", views.edit_and_approve, name="action-edit-approve"),
    path("actions/<int:action_id>/reject", views.reject, name="action-reject"),
    path("actions/<int:action_id>/rollback", views.request_rollback, name="action-rollback"),
]
