from django.urls import path

from rollout import consumers

websocket_urlpatterns = [
    path("ws/governance/", consumers.GovernanceConsumer.as_asgi()),
]
