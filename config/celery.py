"""The Celery app. Broker from settings (Redis in production, SQLite without a server in the
embedded default)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("airlock")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

if app.conf.broker_url.startswith("sqla+"):
    # kombu's SQL transport polls once a second by default; decisions should not wait
    # that long. (Passing it in broker_transport_options reaches create_engine and fails.)
    from kombu.transport import sqlalchemy as kombu_sqlalchemy

    kombu_sqlalchemy.Transport.polling_interval = 0.05
