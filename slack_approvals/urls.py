"""Slack's request URLs (signed by Slack, no session) and the profile's Slack forms."""

from django.urls import path

from slack_approvals import views

urlpatterns = [
    path("slack/interactivity", views.interactivity, name="slack-interactivity"),
    path("slack/commands", views.command, name="slack-command"),
    path("accounts/slack/link", views.link, name="slack-link"),
    path("accounts/slack/unlink", views.unlink, name="slack-unlink"),
    path("accounts/slack/threshold", views.threshold, name="slack-threshold"),
]
