"""The application's URLs plus the two floor endpoints the benchmark compares the gate to.
Mounted only by ``benchmarks.settings``."""

from django.urls import include, path

from benchmarks import views

urlpatterns = [
    path("bench/floor/trivial", views.TrivialFloorView.as_view(), name="bench-floor-trivial"),
    # Under the agent API's prefix: an agent's bearer call there takes the same short way
    # through the middleware as the gate's (config/agent_calls.py), so the floor stays the
    # floor of anything durable an agent asks for.
    path(
        "api/v1/bench/floor/durable",
        views.DurableFloorView.as_view(),
        name="bench-floor-durable",
    ),
    path("", include("config.urls")),
]
