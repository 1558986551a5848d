from django.urls import path

from governance import consumers

websocket_urlpatterns = [
    path("ws/governance/", consumers.GovernanceConsumer.as_asgi()),
]
