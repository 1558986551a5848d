from django.urls import path

from approvals import views

urlpatterns = [
    path("", views.queue, name="queue"),
    path("actions/<int:action_id>", views.action_detail, name="action-detail"),
]
