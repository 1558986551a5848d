"""This installation's id: generated once, kept in the database (``audit.Installation``,
one row), read once per process.

Several databases may be used from one checkout (development, tests, a restored copy), and
files written outside the database — signed checkpoint lines, export chain heads — carry
the id, so verification tells "written by another installation" from "forged", and the
default checkpoint directory is one per installation (``var/checkpoints/<id>/``).

The row is made by a migration; after a flush (tests) the first call makes it again.
Two processes making it at once both insert primary key 1: one wins, the other reads the
winner's id.
"""

from __future__ import annotations

import uuid

from django.db import IntegrityError, connection, transaction

_cached: str | None = None


def installation_id() -> str:
    """The id of the installation whose database this process uses (cached per process)."""
    global _cached
    if _cached is None:
        found = _read()
        if found is None:
            found = _create()
            if connection.in_atomic_block:
                # Remembered only once the row is committed: a rollback would forget it.
                transaction.on_commit(lambda: _remember(found))
                return found
        _cached = found
    return _cached


def _remember(value: str) -> None:
    global _cached
    _cached = value


def forget_installation_id(**_kwargs: object) -> None:
    """Drop the cached id (after migrate or flush, which may have made or removed the row)."""
    global _cached
    _cached = None


def _read() -> str | None:
    from audit.models import Installation

    return Installation.objects.filter(pk=1).values_list("installation_id", flat=True).first()


def _create() -> str:
    from audit.models import Installation

    try:
        with transaction.atomic():
            Installation.objects.create(pk=1, installation_id=str(uuid.uuid4()))
    except IntegrityError:
        pass  # another process made it first
    found = _read()
    assert found is not None
    return found
