"""Dashboard pages: thin views over ``approvals.selectors`` (reads) and ``approvals.actions``
(the one write path).

Every page answers a whole page to a normal request and a fragment to htmx or to
``static/live.js`` (``?partial=1``). Decision forms work both ways: with htmx the card is
swapped in place; without JavaScript the browser is redirected back (or, when the input
was wrong, shown the card again with the error)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.preferences import choose_desktop_notify_min_risk, desktop_notify_min_risk
from accounts.preferences import choose_home as store_home
from accounts.stepup import (
    approval_purpose,
    approval_step_up_check,
    verify_offered_code,
)
from approvals import actions, navigation, permissions, rules, selectors, standing
from approvals.forms import (
    ApproveForm,
    BulkDecisionForm,
    DecidedFilterForm,
    EditAndApproveForm,
    EmailDecisionForm,
    ExtendForm,
    QueueFilterForm,
    RejectForm,
    RollbackForm,
)
from approvals.models import Action, Channel, StandingApproval
from approvals.states import Status
from approvals.trace import action_trace, record_action_view, trace_total
from core.errors import answer_refusal, answering_refusals, refusal_body
from core.redirects import next_target
from rollout.models import RISK_ORDER

QUEUE_PAGE_SIZE = 25
# Desktop notifications announce every new card unless the person chose a higher bar.
DESKTOP_NOTIFY_DEFAULT_RISK = "low"
DECIDED_PAGE_SIZE = 50
# Tells live.js that a response is the fragment it asked for (and not, say, the login page
# it was redirected to after the session ended).
FRAGMENT_HEADER = "X-Airlock-Fragment"


def _wants_fragment(request: HttpRequest) -> bool:
    return bool(request.htmx) or request.GET.get("partial") == "1"


def _fragment(request: HttpRequest, template: str, context: dict, name: str) -> HttpResponse:
    response = render(request, template, context)
    response[FRAGMENT_HEADER] = name
    return response


def _list_url(request: HttpRequest, view_name: str) -> str:
    """The page's own URL with its filters, minus what only live refreshes add."""
    query = request.GET.copy()
    for transient in ("partial", "shown"):
        query.pop(transient, None)
    encoded = query.urlencode()
    return reverse(view_name) + (f"?{encoded}" if encoded else "")


def _shown_ids(request: HttpRequest) -> list[int]:
    raw = request.GET.get("shown", "")
    return [int(part) for part in raw.split(",") if part.isdigit()][: selectors.MAX_SHOWN_IDS]


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """``/``: the person's home (``approvals.navigation``) — the queue in place for those
    whose home it is, a redirect to it for everyone else."""
    home_link = navigation.access_of(request).home
    if home_link.key == navigation.QUEUE:
        return queue(request)
    return redirect(home_link.url)


@login_required
@require_POST
def choose_home(request: HttpRequest) -> HttpResponse:
    """The profile's "home" form: store one of the homes the person may open ("" returns
    to the default by role)."""
    access = navigation.access_of(request)
    with answering_refusals(request, show=lambda text: messages.error(request, text)) as refused:
        store_home(
            user=request.user,
            home=request.POST.get("home", ""),
            allowed=[link.key for link in access.homes],
        )
    if not refused:
        access = navigation.Access(request.user)
        request._airlock_access = access  # type: ignore[attr-defined]
        messages.success(request, f"Your home is now {access.home.label}.")
    return redirect(reverse("profile") + "#home")


@login_required
@require_POST
def choose_desktop_notifications(request: HttpRequest) -> HttpResponse:
    """The queue's desktop notification setting: the lowest risk of a new card that
    notifies this person (a display preference: not audited). ``static/notify.js`` posts it
    asking for JSON (``{"min_risk": ...}``, or the refusal's ``{code, detail, fields}``
    with its status); a plain form post is redirected back to ``next``."""
    risks = [str(risk) for risk in RISK_ORDER]
    wants_json = "application/json" in request.headers.get("Accept", "")
    flash = None if wants_json else (lambda text: messages.error(request, text))
    with answering_refusals(request, show=flash) as refused:
        chosen = choose_desktop_notify_min_risk(
            user=request.user, min_risk=request.POST.get("min_risk", ""), risks=risks
        )
    if refused:
        if wants_json:
            return JsonResponse(refusal_body(refused.refusal), status=refused.refusal.status)
    elif wants_json:
        return JsonResponse({"min_risk": chosen})
    else:
        messages.success(request, f"Desktop notifications: {chosen} risk and above.")
    return redirect(next_target(request, reverse("queue")))


@login_required
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    """The pending actions the user may decide on, as decision cards."""
    choices = selectors.queue_filter_choices(request.user)
    filter_form = QueueFilterForm(request.GET, choices)
    pending = selectors.pending_queue(request.user, filter_form.filters(), filter_form.ordering())
    page = Paginator(pending.values_list("pk", flat=True), QUEUE_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    cards = selectors.build_cards(selectors.cards_in_order(list(page.object_list)), request.user)
    context = {
        "page": page,
        "cards": cards,
        "bulk_groups": selectors.bulk_groups(cards),
        "filter_form": filter_form,
        "return_to": _list_url(request, "queue"),
        "reviews_any_agent": bool(choices.agents),
        "notify_min_risk": desktop_notify_min_risk(request.user, DESKTOP_NOTIFY_DEFAULT_RISK),
        "risk_levels": [str(risk) for risk in RISK_ORDER],
    }
    if _wants_fragment(request):
        on_page = {card.pk for card in cards}
        left = selectors.recently_left_queue(
            request.user, (pk for pk in _shown_ids(request) if pk not in on_page)
        )
        left, context["stopped_groups"] = selectors.collapse_stopped(left)
        context["left_cards"] = selectors.build_cards(left, request.user)
        return _fragment(request, "approvals/_queue_list.html", context, "queue")
    context["standing_approvals"] = list(standing.active_for_reviewer(request.user)[:100])
    return render(request, "approvals/queue.html", context)


def _viewable_action_or_404(request: HttpRequest, action_id: int) -> Action:
    action = selectors.action_for_viewer(request.user, action_id)
    if action is None:
        raise Http404("No such action.")
    return action


@login_required
@require_GET
def action_detail(request: HttpRequest, action_id: int) -> HttpResponse:
    """One action's full card and its trace."""
    action = _viewable_action_or_404(request, action_id)
    context = {
        "card": selectors.build_card(action, request.user),
        "return_to": reverse("action-detail", args=[action_id]),
        **_trace_context(action, request.user),
    }
    if _wants_fragment(request):
        return _fragment(request, "approvals/_action_detail_body.html", context, "action")
    record_action_view(action, request.user)  # a person opened it (live refreshes are not)
    return render(request, "approvals/action_detail.html", context)


def _trace_context(action: Action, user: Any) -> dict:
    """The action's story for ``templates/audit/_trace.html`` (the audit app's, shared with
    ``/audit/actions/<id>``)."""
    steps = action_trace(action, user)
    return {"trace_steps": steps, "trace_total": trace_total(steps)}


@login_required
@require_GET
def decided(request: HttpRequest) -> HttpResponse:
    """Recently decided actions the user may see, with filters."""
    choices = selectors.decided_filter_choices(request.user)
    filter_form = DecidedFilterForm(request.GET, choices)
    decided_actions = selectors.recent_decisions(request.user, filter_form.filters())
    page = Paginator(
        decided_actions.select_related("agent").prefetch_related("decisions__reviewer"),
        DECIDED_PAGE_SIZE,
    ).get_page(request.GET.get("page"))
    context = {"page": page, "filter_form": filter_form, "return_to": _list_url(request, "decided")}
    if _wants_fragment(request):
        return _fragment(request, "approvals/_decided_list.html", context, "decided")
    return render(request, "approvals/decided.html", context)


# --- decisions ----------------------------------------------------------------------------

# perform(request, action as the person may see it, cleaned_data) -> the notice shown once it
# worked; the write path locks and reads the action again.
Perform = Callable[[HttpRequest, Action, dict], str]


def _approve(request: HttpRequest, seen: Action, data: dict) -> str:
    """Approve from the card: the plain form (maybe with standing terms), or the editor's
    (``arguments`` edited)."""
    edited = data.get("arguments")
    terms = None
    if data.get("standing"):
        terms = standing.Terms(data["standing_minutes"], data["standing_uses"])
    action = actions.approve(
        standing_terms=terms,
        action_id=seen.pk,
        user=request.user,
        comment=data["comment"],
        arguments=edited,
        seen_hash=data["payload_hash"],
        channel=Channel.PAGE,
        step_up=_step_up_check(request, seen),
    )
    notice = _approval_notice(action)
    return notice if edited is None else "Edited arguments approved. " + notice


def _step_up_check(request: HttpRequest, seen: Action) -> actions.StepUpCheck:
    """The write path asks this with the risk of the payload that will run; a code typed
    into the form is verified first, outside the decision's transaction."""
    verify_offered_code(request, purpose=approval_purpose(seen))
    return approval_step_up_check(request)


def _approval_notice(action: Action) -> str:
    if action.status == Status.APPROVED:
        made = StandingApproval.objects.filter(source_action=action).first()
        if made is not None:
            return (
                f"Approved: the agent may now run #{action.pk}, and matching calls for "
                f"{made.minutes} minutes, up to {made.max_uses} uses (standing approval "
                f"#{made.pk})."
            )
        return f"Approved: the agent may now run #{action.pk}."
    return f"Your approval of #{action.pk} is recorded; it needs more approvals."


def _reject(request: HttpRequest, seen: Action, data: dict) -> str:
    action = actions.reject(
        action_id=seen.pk,
        user=request.user,
        comment=data["comment"],
        seen_hash=data["payload_hash"],
        channel=Channel.PAGE,
    )
    return f"Rejected #{action.pk}; your reason was sent to the agent."


def _extend(request: HttpRequest, seen: Action, data: dict) -> str:
    action = actions.extend_expiry(
        action_id=seen.pk, user=request.user, seconds=data["seconds"], channel=Channel.PAGE
    )
    return f"#{action.pk} now waits until {action.expires_at:%H:%M} UTC."


def _request_rollback(request: HttpRequest, seen: Action, data: dict) -> str:
    action = actions.request_rollback(action_id=seen.pk, user=request.user, comment=data["comment"])
    return f"Rollback of #{action.pk} requested from the agent."


def _decide(
    request: HttpRequest, action_id: int, form_class: type[Form], form_name: str, perform: Perform
) -> HttpResponse:
    """Validate the posted form, ask the write path, and answer with the updated card."""
    action = _viewable_action_or_404(request, action_id)
    form = form_class(request.POST)
    if not form.is_valid():
        return _card_response(request, action_id, form_name=form_name, form=form, status=422)
    with answering_refusals(request) as refused:  # audited when an access refusal
        notice = perform(request, action, form.cleaned_data)
    if refusal := refused.refusal:
        return _card_response(
            request,
            action_id,
            notice=refused.message,
            is_error=True,
            form_name=form_name,
            form=form,
            status=refusal.status,
            step_up_asked=refusal.code == "step_up_required",
        )
    if request.htmx:
        return _card_response(request, action_id, notice=notice)
    messages.success(request, notice)
    return redirect(_safe_next(request, action_id))


def _card_response(
    request: HttpRequest,
    action_id: int,
    *,
    notice: str = "",
    is_error: bool = False,
    form_name: str = "",
    form: Form | None = None,
    status: int = 200,
    step_up_asked: bool = False,
) -> HttpResponse:
    """The action's card, fresh from the database, carrying a notice and (after a failed
    attempt) the person's input with its errors. htmx swaps it in; a browser without
    JavaScript gets it inside the action's page."""
    action = _viewable_action_or_404(request, action_id)
    card = selectors.build_card(action, request.user)
    card.notice, card.notice_is_error = notice, is_error
    card.step_up_asked = step_up_asked
    if form is not None and (is_error or form.errors):
        card.open_form, card.form = form_name, form
    return_to = _safe_next(request, action_id)
    if request.htmx:
        context = {"card": card, "return_to": return_to}
        return render(request, "approvals/_card.html", context, status=status)
    context = {"card": card, "return_to": return_to, **_trace_context(action, request.user)}
    return render(request, "approvals/action_detail.html", context, status=status)


def _safe_next(request: HttpRequest, action_id: int) -> str:
    return next_target(request, reverse("action-detail", args=[action_id]))


@login_required
@require_POST
def approve(request: HttpRequest, action_id: int) -> HttpResponse:
    return _decide(request, action_id, ApproveForm, "approve", _approve)


@login_required
@require_POST
def edit_and_approve(request: HttpRequest, action_id: int) -> HttpResponse:
    return _decide(request, action_id, EditAndApproveForm, "edit", _approve)


@login_required
@require_POST
def reject(request: HttpRequest, action_id: int) -> HttpResponse:
    return _decide(request, action_id, RejectForm, "reject", _reject)


@login_required
@require_POST
def request_rollback(request: HttpRequest, action_id: int) -> HttpResponse:
    return _decide(request, action_id, RollbackForm, "rollback", _request_rollback)


@login_required
@require_POST
def extend(request: HttpRequest, action_id: int) -> HttpResponse:
    return _decide(request, action_id, ExtendForm, "extend", _extend)


@login_required
@require_POST
def bulk_decide(request: HttpRequest) -> HttpResponse:
    """Approve or reject the low-risk actions of one tool a queue page offered together;
    each goes through the write path on its own (``actions.bulk_decide``)."""
    back = next_target(request, reverse("queue"))
    form = BulkDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(m for ms in form.errors.values() for m in ms))
        return redirect(back)
    verdict = form.cleaned_data["verdict"]
    # Nothing a page offers is refused as a whole (it offers low-risk cards of one tool the
    # person may decide): a refusal here is a forged or stale request, answered 403/404.
    with answering_refusals(request, hide=True) as refused:
        result = actions.bulk_decide(
            action_ids=form.action_ids,
            user=request.user,
            verdict=verdict,
            seen_hashes=form.seen_hashes,
            comment=form.cleaned_data["comment"],
            step_up=approval_step_up_check(request),
        )
    if refused:  # a 400 (too many, mixed tools): say so and go back
        messages.error(request, refused.message)
        return redirect(back)
    done = ", ".join(f"#{action.pk}" for action in result.done)
    verb = "Approved" if verdict == "approve" else "Rejected"
    if result.done:
        messages.success(request, f"{verb} {len(result.done)}: {done}.")
    for pk, reason in result.refused:
        messages.error(request, f"#{pk} not {verb.lower()}: {reason}")
    return redirect(back)


# --- decisions from an email's links ------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def email_decision(request: HttpRequest, action_id: int, token: str) -> HttpResponse:
    """The page an email's Approve or Reject link opens. GET only shows — the card, and a
    Confirm button when the link may be used — so a mail scanner that fetches the link
    decides nothing. POST (the Confirm button, with CSRF) decides through the write path
    (``actions.decide_by_email_link``: channel ``email``, the link marked used in the
    decision's transaction). A link that cannot be used (unknown, someone else's, used,
    expired, or refused by the write path's rules) gets a page that says what happened and
    decides nothing; refusals of access are audited (``access.refused``)."""
    link = selectors.email_link(action_id, token)
    if link is None:
        return _email_link_refused(
            request, None, actions.ActionRefused(**_as_kwargs(rules.LINK_INVALID))
        )
    verdict = link.verdict
    if request.method == "GET":
        refusal = actions.email_link_refusal(link, request.user)
        if refusal is not None:
            return _email_link_refused(request, link, actions.ActionRefused(**_as_kwargs(refusal)))
        return _email_confirmation(request, link, EmailDecisionForm(verdict=verdict))
    form = EmailDecisionForm(request.POST, verdict=verdict)
    if not form.is_valid():
        return _email_confirmation(request, link, form, status=422)
    with answering_refusals(request) as refused:
        step_up = _step_up_check(request, link.action) if verdict == "approve" else None
        action = actions.decide_by_email_link(
            action_id=action_id,
            token=token,
            user=request.user,
            comment=form.cleaned_data["comment"],
            step_up=step_up,
        )
    if refusal := refused.refusal:
        if refusal.code == "step_up_required":
            return _email_confirmation(
                request, link, form, error=refused.message, status=403, step_up_asked=True
            )
        return _email_link_refused(request, link, refusal, noted=True)
    if verdict == "approve":
        notice = _approval_notice(action)
    else:
        notice = f"Rejected #{action.pk}; your reason was sent to the agent."
    messages.success(request, notice)
    return redirect("action-detail", action_id=action.pk)


def _as_kwargs(refusal: Any) -> dict:
    return {"code": refusal.code, "detail": refusal.detail, "status": refusal.status}


def _email_confirmation(
    request: HttpRequest,
    link: Any,
    form: Form,
    *,
    error: str = "",
    status: int = 200,
    step_up_asked: bool = False,
) -> HttpResponse:
    card = selectors.build_card(link.action, request.user)
    # The card's own forms are the dashboard's; here the one thing to do is to confirm.
    card = dataclasses.replace(card, offers=selectors.DecisionOffers())
    context = {
        "card": card,
        "link": link,
        "form": form,
        "error": error,
        "step_up_risk": None if step_up_asked else link.action.risk,
        "return_to": reverse("action-detail", args=[link.action.pk]),
        "post_to": request.path,
    }
    return render(request, "approvals/email_decision.html", context, status=status)


def _email_link_refused(
    request: HttpRequest, link: Any, refusal: actions.ActionRefused, *, noted: bool = False
) -> HttpResponse:
    """The page of a link that decided nothing: what happened, the action's state (to
    those who may see it) and the way to its card."""
    message = refusal.detail if noted else answer_refusal(request, refusal)
    action = None
    if link is not None and permissions.can_view_action(request.user, link.action):
        action = Action.objects.select_related("agent").get(pk=link.action.pk)
    context = {"refusal": refusal, "message": message, "link": link, "action": action}
    return render(request, "approvals/email_link_refused.html", context, status=refusal.status)


@login_required
@require_POST
def revoke_standing(request: HttpRequest, standing_id: int) -> HttpResponse:
    """End a standing approval at once (any reviewer of its agent), then go back to the
    page the button was on."""
    back = next_target(request, reverse("queue"))
    with answering_refusals(request, hide=True) as refused:
        ended = standing.revoke(standing_id=standing_id, user=request.user, channel=Channel.PAGE)
    if refused:
        messages.error(request, refused.message)
    else:
        messages.success(
            request,
            f"Standing approval #{ended.pk} of {ended.tool} revoked: matching calls wait for "
            "people again.",
        )
    return redirect(back)
