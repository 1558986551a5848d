"""Who is acting right now, for audit events written where no caller passes an actor (the
role and account receivers of ``accounts.audit_receivers``).

A context variable, so that it follows a request across ``sync_to_async`` / ``async_to_sync``
hops and never leaks between concurrent requests:

- ``ActorContextMiddleware`` sets it for every request to the signed-in person (read lazily,
  when an event needs it: the login view changes who that is mid-request);
- every management command sets it to ``system:<command name>`` (``install_command_hook``,
  from ``AuditConfig.ready``: a hook on ``BaseCommand.execute`` because Django's own
  commands — ``createsuperuser``, ``changepassword``, ``loaddata`` — must be covered too);
- Celery tasks run as ``system:celery:<task name>`` unless an actor is set already (an
  eager task inside a request stays that person's);
- anything else — ``manage.py shell``, a script that calls ``django.setup()`` — is
  ``system:shell``.

``recorded_by_caller()`` marks a change whose caller writes its own event.
``seeding_reference_data()`` marks work that is not anybody's change (migrations, the
reference roles and permissions, guardian's anonymous user): receivers record nothing while
it is set. ``migrate`` and ``flush`` run inside it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from audit.chain import Actor

SHELL = Actor.system("shell")
ANONYMOUS = Actor.system("anonymous")
# Commands whose writes are the schema and its reference rows, not anybody's change.
SEEDING_COMMANDS = frozenset({"migrate", "flush"})

_actor: ContextVar[Actor | Callable[[], Actor] | None] = ContextVar(
    "airlock_audit_actor", default=None
)
_seeding: ContextVar[bool] = ContextVar("airlock_seeding_reference_data", default=False)
_by_caller: ContextVar[bool] = ContextVar("airlock_recorded_by_caller", default=False)


def current_actor() -> Actor:
    """The actor of the code running now (``system:shell`` when nothing set one)."""
    value = _actor.get()
    if callable(value):
        value = value()
    return value or SHELL


def has_actor() -> bool:
    return _actor.get() is not None


@contextmanager
def acting_as(actor: Actor | Callable[[], Actor]) -> Iterator[None]:
    """Everything inside is done by ``actor`` (or by what the callable answers when an event
    asks)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def is_seeding_reference_data() -> bool:
    return _seeding.get()


@contextmanager
def seeding_reference_data() -> Iterator[None]:
    """Writes inside are migrations or reference data: no role or account events."""
    token = _seeding.set(True)
    try:
        yield
    finally:
        _seeding.reset(token)


def is_recorded_by_caller() -> bool:
    return _by_caller.get()


@contextmanager
def recorded_by_caller() -> Iterator[None]:
    """The caller writes its own, richer event for the rows changed inside (a write path
    such as ``governance.access.apply_access``: ``access.granted`` names the right and the
    change request): the row-level receivers stay quiet, one fact, one event. Keep it
    around the single change the caller records, nothing more."""
    token = _by_caller.set(True)
    try:
        yield
    finally:
        _by_caller.reset(token)


def actor_of_user(user: Any) -> Actor:
    """The audit actor of a request's user: a person, an agent token, or anonymous."""
    if user is None or not getattr(user, "is_authenticated", False):
        return ANONYMOUS
    if getattr(user, "is_agent", False) and getattr(user, "agent", None) is not None:
        return Actor.agent(user.agent)
    return Actor.user(user)


class ActorContextMiddleware:
    """Sets the acting person for the request (after ``AuthenticationMiddleware``).
    Sync- and async-capable: an ASGI request stays on its event loop, and the variable set
    here reaches sync views through ``sync_to_async``'s copied context."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    @staticmethod
    def _resolver(request: HttpRequest) -> Callable[[], Actor]:
        # Read when an event is written: the user may log in (or out) during the request.
        return lambda: actor_of_user(getattr(request, "user", None))

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        with acting_as(self._resolver(request)):
            return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        with acting_as(self._resolver(request)):
            return await self.get_response(request)


def command_name(command: Any) -> str:
    """``createsuperuser`` for ``django.contrib.auth.management.commands.createsuperuser``."""
    return type(command).__module__.rsplit(".", 1)[-1]


def install_command_hook() -> None:
    """Run every management command as ``system:<its name>`` (once, from
    ``AuditConfig.ready``); ``migrate`` and ``flush`` also as reference-data seeding."""
    from django.core.management.base import BaseCommand

    if getattr(BaseCommand.execute, "_airlock_actor_hook", False):
        return
    original = BaseCommand.execute

    def execute(self: BaseCommand, *args: Any, **options: Any) -> Any:
        name = command_name(self)
        with acting_as(Actor.system(name)):
            if name in SEEDING_COMMANDS:
                with seeding_reference_data():
                    return original(self, *args, **options)
            return original(self, *args, **options)

    execute._airlock_actor_hook = True  # type: ignore[attr-defined]
    BaseCommand.execute = execute  # type: ignore[method-assign]


def install_celery_hook() -> None:
    """Celery tasks act as ``system:celery:<task name>`` unless an actor is set already."""
    from celery.signals import task_postrun, task_prerun

    tokens: dict[str, Any] = {}

    def started(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
        if not has_actor():
            name = getattr(task, "name", "") or "task"
            tokens[task_id] = _actor.set(Actor.system(f"celery:{name}"))

    def finished(task_id: str = "", **kwargs: Any) -> None:
        token = tokens.pop(task_id, None)
        if token is not None:
            try:
                _actor.reset(token)
            except ValueError:  # set in another context (should not happen): clear it
                _actor.set(None)

    task_prerun.connect(started, weak=False, dispatch_uid="airlock-audit-actor-start")
    task_postrun.connect(finished, weak=False, dispatch_uid="airlock-audit-actor-end")
