from django.urls import path

from incidents import api

urlpatterns = [
    path("kill-switches", api.KillSwitchListView.as_view(), name="api-kill-switches"),
    path(
        "kill-switches/<int:switch_id>/release",
        api.KillSwitchReleaseView.as_view(),
        name="api-kill-switch-release",
    ),
]
