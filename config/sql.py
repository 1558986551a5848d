"""Small helpers for statements Django's ORM cannot express as one round trip."""

from __future__ import annotations

from django.db import connection
from django.db.models import Model
from django.db.models.sql import InsertQuery


def insert_statement(obj: Model) -> tuple[str, list]:
    """The ``INSERT`` Django would run for ``obj.save()`` (field conversion, JSON adaptation
    and ``auto_now`` values included), as SQL and parameters, so it can be combined with
    other statements (e.g. as a data-modifying ``WITH`` clause on PostgreSQL). An unset
    auto primary key is left to the database, as ``save()`` does."""
    meta = obj._meta
    fields = [f for f in meta.local_concrete_fields if not f.generated]
    if obj.pk is None:
        fields = [f for f in fields if f is not meta.auto_field]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    ((sql, params),) = query.get_compiler(connection=connection).as_sql()
    return sql, list(params)


def mark_saved(obj: Model) -> Model:
    """Tell Django that ``obj`` (written by a raw statement) is now a stored row."""
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj
