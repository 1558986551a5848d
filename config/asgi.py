"""ASGI entry point: HTTP through Django, websockets through Channels behind the session
auth stack and a same-origin check (scheme, host and port: ``core.websocket_origin``)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

# Django's handler, with each request's worker thread reused rather than started anew
# (core/asgi.py).
from core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from approvals.routing import websocket_urlpatterns  # noqa: E402
from core.websocket_origin import SameOriginValidator  # noqa: E402
from governance.routing import websocket_urlpatterns as governance_websocket_urlpatterns  # noqa: E402
from incidents.routing import websocket_urlpatterns as incidents_websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(
            AuthMiddlewareStack(
                URLRouter(
                    websocket_urlpatterns
                    + governance_websocket_urlpatterns
                    + incidents_websocket_urlpatterns
                )
            )
        ),
    }
)
