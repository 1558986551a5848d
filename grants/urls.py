from django.urls import path

from grants import views

app_name = "grants"

urlpatterns = [
    path(".well-known/airlock-grant-keys.json", views.grant_key_set, name="key-set"),
]
