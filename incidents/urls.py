from django.urls import path

from incidents import switch_page
from incidents import views as incidents

urlpatterns = [
    path("incidents", incidents.incidents, name="incidents"),
    path("incidents/engage", incidents.engage, name="incident-engage"),
    path("incidents/<int:switch_id>", switch_page.switch_detail, name="incident-detail"),
    path("incidents/<int:switch_id>/release", incidents.release, name="incident-release"),
    path("incidents/drills/<slug:slug>", incidents.run_drill, name="incident-drill"),
]
