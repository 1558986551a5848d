from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from approvals.metrics import metrics_view
from core import health

handler403 = "core.error_pages.permission_denied"
handler404 = "core.error_pages.not_found"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    # Login (password, then a second factor when due), two-factor, tokens, People.
    path("", include("accounts.urls")),
    path("", include("grants.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up code as a script of its own (?script), and
    # the template takes its styles from /static/: the docs work under the
    # Content-Security-Policy (no inline script or style). Swagger UI's stylesheet draws its
    # icons as data: SVG images; images cannot run script, so this page alone allows them.
    path(
        "api/docs/",
        csp_update({"img-src": ["'self'", "data:"]})(
            SpectacularSwaggerSplitView.as_view(
                url_name="api-schema", template_name="api_docs.html"
            )
        ),
        name="api-docs",
    ),
    path("api/v1/", include("approvals.api_urls")),
    path("api/v1/", include("incidents.api_urls")),
    path("", include("governance.urls")),
    path("", include("audit.console.urls")),
    path("", include("incidents.urls")),
    path("", include("slack_approvals.urls")),
    path("", include("approvals.urls")),
]
