"""The audit pages: search (``/audit``), export, an action's trace and replay, and the
policy version a decision was made under. Thin views over ``audit.search``,
``audit.export``, ``approvals.trace`` and ``rollout.replay``; ``audit.console.access``
decides who sees what (no audit right → 403; an action or version one may not see → 404,
as if missing)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from approvals.kept_cases import may_keep_case
from approvals.models import Action
from approvals.trace import action_trace, record_action_view, trace_total
from audit.console.access import AuditScope, audit_scope, can_view_trace
from audit.console.actions import start_verification
from audit.export import CONTENT_TYPES, FORMATS, AsyncChunks, stream_export
from audit.search import AuditFilterForm, AuditFilters, search_events
from audit.verification import verification_status
from core.errors import answering_refusals
from governance.models import RegressionCase
from rollout import permissions as agent_perms
from rollout.models import PolicyVersion
from rollout.replay import replay_action


def _scope_or_403(request: HttpRequest) -> AuditScope:
    scope = audit_scope(request.user)
    if scope is None:
        raise PermissionDenied("You may not read the audit log.")
    return scope


def _cursor(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name, "")
    return int(raw) if raw.isdigit() else None


@login_required
@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """Search and filter the log, newest first, a keyset page at a time."""
    scope = _scope_or_403(request)
    form = AuditFilterForm(request.GET or None)
    filters = form.filters() if request.GET else AuditFilters()
    page = search_events(
        scope, filters, before=_cursor(request, "before"), after=_cursor(request, "after")
    )
    context = {
        "form": form,
        "filters": filters,
        "page": page,
        "scope": scope,
        "scope_agents": sorted(scope.agent_slugs),
        "status": verification_status() if scope.everything else None,
        "older_qs": filters.querystring(before=page.older) if page.older else "",
        "newer_qs": filters.querystring(after=page.newer) if page.newer else "",
        "export_jsonl_qs": filters.querystring(format="jsonl"),
        "export_csv_qs": filters.querystring(format="csv"),
    }
    return render(request, "audit/search.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def verification(request: HttpRequest) -> HttpResponse:
    """The chain's verification status as a fragment (``/audit`` polls it with htmx while a
    run is going; opened directly, it is ``/audit``), and "Verify now" (POST): queue a verification in the background. For auditors
    of every agent; a second start while one runs is refused with a message."""
    scope = _scope_or_403(request)
    if not scope.everything:
        raise PermissionDenied("The chain's verification is for auditors of every agent.")
    message, status = "", 200
    if request.method == "POST":
        with answering_refusals(request, hide={403}) as refused:
            start_verification(request.user)
        if not request.htmx:
            if refused:
                messages.error(request, refused.message)
            else:
                messages.success(request, "Verification started; its result shows here.")
            return redirect("audit-search")
        if refused and refused.refusal is not None:
            message, status = refused.message, refused.refusal.status
    if request.method == "GET" and not request.htmx:
        return redirect("audit-search")  # the fragment is polled by the page; people open it
    status_now = verification_status()
    if request.method == "GET" and request.GET.get("seen") == status_now.fingerprint:
        return HttpResponse(status=204)  # nothing changed since the page's last poll
    context = {"status": status_now, "message": message}
    return render(request, "audit/_status_body.html", context, status=status)


def export_response(request: HttpRequest, scope: AuditScope, filters: AuditFilters, fmt: str):
    """A streaming download of the selection, ending with the chain head it covers."""
    writer, chunks = stream_export(scope, filters, fmt)
    # Under ASGI a synchronous iterator would be read to the end before the first byte.
    content: Any = AsyncChunks(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type=CONTENT_TYPES[fmt])
    name = f"airlock-audit-through-{writer.cut.through_id}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # let proxies pass chunks on as they come
    return response


@login_required
@require_GET
def export(request: HttpRequest) -> HttpResponse:
    """``/audit/export?format=jsonl|csv&…filters``."""
    scope = _scope_or_403(request)
    fmt = request.GET.get("format", "jsonl")
    form = AuditFilterForm(request.GET)
    if fmt not in FORMATS or not form.is_valid():
        return HttpResponse(
            "Unknown format or invalid filters.", status=400, content_type="text/plain"
        )
    return export_response(request, scope, form.filters(), fmt)


def _action_for_trace(request: HttpRequest, action_id: int) -> Action:
    action = (
        Action.objects.select_related("agent", "agent__current_policy", "policy_version", "release")
        .filter(pk=action_id)
        .first()
    )
    if action is None or not can_view_trace(request.user, action):
        raise Http404("No such action.")
    return action


@login_required
@require_GET
def action_story(request: HttpRequest, action_id: int) -> HttpResponse:
    """One action's trace and replay, for auditors (the dashboard's ``/actions/<id>``
    includes the same trace partial)."""
    action = _action_for_trace(request, action_id)
    record_action_view(action, request.user)
    steps = action_trace(action, request.user)
    context = {
        "action": action,
        "trace_steps": steps,
        "trace_total": trace_total(steps),
        "replay": replay_action(action),
        # "Keep as a case" posts to governance, whose rule decides who may (a hook).
        "can_keep_case": may_keep_case(request.user, action.agent),
        # Once kept, the page says so instead of offering to keep it again.
        "kept_case_id": RegressionCase.objects.filter(source_action=action)
        .values_list("pk", flat=True)
        .first(),
        "keep_default": "",
        "keep_prefix": f"keep-{action.pk}",
    }
    return render(request, "audit/action.html", context)


@login_required
@require_GET
def policy_version(request: HttpRequest, version_id: int) -> HttpResponse:
    """The exact policy a decision was made under, and what changed from the one before."""
    version = PolicyVersion.objects.select_related("agent").filter(pk=version_id).first()
    if version is None or not agent_perms.can_see_agent(request.user, version.agent):
        raise Http404("No such policy version.")
    from rollout.policy_diff import changes_between

    previous = (
        PolicyVersion.objects.filter(agent=version.agent, number__lt=version.number)
        .order_by("-number")
        .first()
    )
    current = version.agent.current_policy_id == version.pk
    context = {
        "version": version,
        "previous": previous,
        "is_current": current,
        # Reverting is governance's: its version page offers it to those who may govern.
        "can_govern": agent_perms.can_govern(request.user, version.agent),
        "changes": changes_between(previous.snapshot, version.snapshot) if previous else [],
    }
    return render(request, "audit/policy_version.html", context)
