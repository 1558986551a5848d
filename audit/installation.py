"""This installation's id: generated once, kept in the database (``audit.Installation``,
one row), read once per process.

Several databases may be used from one checkout (development, tests, a restored copy), and
files written outside the database — signed checkpoint lines, export chain heads — carry
the id, so verification tells "written by another installation" from "forged", and the
default checkpoint directory is one per installation (``var/checkpoints/<id>/``).

The row is made by a migration; after a flush (tests) the first call makes it again —
but not while the audit log holds events (a deleted row is an error to repair, not a new
installation). Two processes making it at once both insert primary key 1: one wins, the
other reads the winner's id. The row carries a seal (HMAC of the id with the checkpoint
key); verification refuses an id whose seal does not hold.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import uuid

from django.db import IntegrityError, connection, connections, transaction

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


def after_migrate(using: str = "default", **_kwargs: object) -> None:
    """After migrate or a flush (tests): forget the cached id, and make the row when the
    audit log is empty (a flush removed it; a log with events needs it restored instead)."""
    from audit.models import AuditEvent, Installation

    forget_installation_id()
    tables = connections[using].introspection.table_names()
    if Installation._meta.db_table not in tables:
        return
    if Installation.objects.using(using).filter(pk=1).exists():
        return
    if AuditEvent.objects.using(using).exists():
        return
    made = str(uuid.uuid4())
    with contextlib.suppress(IntegrityError), transaction.atomic(using=using):
        Installation.objects.using(using).create(pk=1, installation_id=made, seal=seal(made))


def _read() -> str | None:
    from audit.models import Installation

    return Installation.objects.filter(pk=1).values_list("installation_id", flat=True).first()


class InstallationMissing(RuntimeError):
    pass


def seal(value: str, key: bytes | None = None) -> str:
    from audit.checkpoints import signing_key

    message = b"airlock-installation:" + value.encode()
    return hmac.new(key or signing_key(), message, hashlib.sha256).hexdigest()


def installation_problem() -> str:
    """Why the stored id cannot be trusted (its seal holds under no key of this server),
    or ``""``."""
    from audit.checkpoints import verification_keys
    from audit.models import Installation

    row = Installation.objects.filter(pk=1).values_list("installation_id", "seal").first()
    if row is None:
        return ""
    value, given = row
    for index, key in enumerate(verification_keys()):
        if hmac.compare_digest(given, seal(value, key)):
            if index:  # sealed with a previous key: sealed again with the current one
                Installation.objects.filter(pk=1, seal=given).update(seal=seal(value))
            return ""
    return (
        f"the stored installation id {value} is not sealed by a key of this server: it was "
        "changed in the database (or the keys were replaced)"
    )


def _create() -> str:
    from audit.models import AuditEvent, Installation

    if AuditEvent.objects.exists():
        raise InstallationMissing(
            "the installation id row (audit_installation) is missing while the audit log "
            "holds events: restore it from a backup; a new id would hide this log's "
            "checkpoints"
        )
    made = str(uuid.uuid4())
    try:
        with transaction.atomic():
            Installation.objects.create(pk=1, installation_id=made, seal=seal(made))
    except IntegrityError:
        pass  # another process made it first
    found = _read()
    assert found is not None
    return found
