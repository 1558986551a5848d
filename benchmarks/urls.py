"""The application's URLs plus the two floor endpoints the benchmark compares the gate to.
Mounted only by ``benchmarks.settings``."""

from django.urls import include, path

from benchmarks import views

urlpatterns = [
    path("bench/floor/trivial", views.TrivialFloorView.as_view(), name="bench-floor-trivial"),
    path("bench/floor/durable", views.DurableFloorView.as_view(), name="bench-floor-durable"),
    path("", include("config.urls")),
]
