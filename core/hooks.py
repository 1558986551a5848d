"""Explicit hooks: how a lower layer calls code that lives above it.

The dependency order runs one way (``pyproject.toml``'s import-linter contract), yet a few
moments in a lower layer owe work to a higher one: approvals' gate feeds the incident
workflow's circuit breaker; accounts and the audit chain owe notices that approvals' outbox
delivers. Each such moment is one named ``Hook`` defined in the lower module; the higher app
connects its handler in ``AppConfig.ready``. Unlike a Django signal, a hook has exactly one
handler, says so in its name and docstring, and fails loudly when nothing is connected — an
owed notice or breaker check must not be dropped silently because an app was left out of
``INSTALLED_APPS``.

Handlers run synchronously in the caller's transaction, so what they write (outbox rows,
audit events) commits or rolls back with the change that owed it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured


class Hook:
    """One call site in a lower layer, answered by one handler connected from above."""

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc
        self._handler: Callable[..., Any] | None = None

    def connect(self, handler: Callable[..., Any]) -> None:
        """Connects ``handler`` (once per process; connecting the same handler again is a
        no-op, as ``AppConfig.ready`` may run twice in tests)."""
        if self._handler is not None and self._handler is not handler:
            raise ImproperlyConfigured(
                f"hook {self.name!r} already has a handler: {self._handler!r}"
            )
        self._handler = handler

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._handler is None:
            raise ImproperlyConfigured(
                f"hook {self.name!r} has no handler: is the app that answers it installed?"
            )
        return self._handler(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Hook {self.name}>"
