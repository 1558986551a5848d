"""Notices owed by layers below approvals (accounts' credential changes, the audit chain's
failed verification), delivered by approvals' outbox.

``owe_notice`` is connected by ``approvals`` in ``AppConfig.ready``; called inside the
change's transaction it writes the outbox rows there, so a notice is owed exactly when the
change commits."""

from __future__ import annotations

from core.hooks import Hook

owe_notice = Hook(
    "owe_notice",
    """owe_notice(*, people, subject, line, link, chat) -> int: one outbox email row per
    person with an address and, when ``chat`` is true, one row per installation-wide chat
    webhook; a batch send queued on commit. Returns the number of rows written.""",
)
