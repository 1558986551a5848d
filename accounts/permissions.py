"""What a personal API token may do, and who may manage people's accounts.

A request made with a personal token acts as the token's owner *narrowed by the token's
scopes*: ``bind_token_scopes`` (called by ``accounts.authentication``) makes every
permission check on that user object — ``rollout.permissions`` and any direct
``user.has_perm`` — answer False for a permission outside the scopes. Views ask
``token_scope_allows`` first only to answer with a clear ``token_scope`` error.

Scopes name the permissions they unlock by their full names (``app_label.codename``, as
Django's ``has_perm`` takes them): the agent rights are defined by ``rollout.permissions``
and the audit log's by ``audit``; this module imports neither."""

from __future__ import annotations

from typing import Any

from core.people import is_active_person

# What a personal token may be allowed to do; each scope unlocks these permissions of its
# owner (and nothing the owner does not hold).
TOKEN_SCOPES = ("decide", "govern", "kill", "read_audit")
SCOPE_PERMISSIONS = {
    "decide": frozenset({"rollout.review_agent", "rollout.critical_approve_agent"}),
    "govern": frozenset({"rollout.govern_agent"}),
    "kill": frozenset({"rollout.kill_agent"}),
    "read_audit": frozenset(
        {"rollout.audit_agent", "audit.view_auditevent", "audit.view_sensitive"}
    ),
}
SCOPE_LABELS = {
    "decide": "decide on actions",
    "govern": "governance",
    "kill": "kill switches",
    "read_audit": "read the audit log",
}
_SCOPES_ATTRIBUTE = "airlock_token_scopes"


def token_scopes(subject: Any) -> frozenset[str] | None:
    """The scopes a personal token narrows ``subject`` (a request, a DRF request's ``auth``
    or a user) to; None when it is not a personal-token request (no narrowing)."""
    for candidate in (subject, getattr(subject, "auth", None), getattr(subject, "user", None)):
        scopes = getattr(candidate, _SCOPES_ATTRIBUTE, None)
        if scopes is not None:
            return scopes
    return None


def token_scope_allows(subject: Any, scope: str) -> bool:
    """False only for a personal-token request (or its user) whose token lacks ``scope``;
    sessions are not narrowed."""
    if scope not in SCOPE_PERMISSIONS:
        raise ValueError(f"unknown token scope {scope!r}")
    scopes = token_scopes(subject)
    return scopes is None or scope in scopes


def perm_in_scopes(perm: str, scopes: frozenset[str] | None) -> bool:
    """Whether a token with ``scopes`` may use its owner's ``perm`` (default deny)."""
    if scopes is None:
        return True
    return any(perm in SCOPE_PERMISSIONS[scope] for scope in scopes if scope in SCOPE_PERMISSIONS)


def bind_token_scopes(user: Any, scopes: Any) -> Any:
    """Narrow this ``user`` object (loaded for one request) to a personal token's scopes:
    its ``has_perm`` answers False outside them, superuser or not. Returns the user."""
    bound = frozenset(scope for scope in scopes if scope in SCOPE_PERMISSIONS)
    owner_has_perm = user.has_perm

    def has_perm(perm: str, obj: Any = None) -> bool:
        return perm_in_scopes(perm, bound) and owner_has_perm(perm, obj)

    def has_perms(perm_list: Any, obj: Any = None) -> bool:
        return all(has_perm(perm, obj) for perm in perm_list)

    def has_module_perms(app_label: str) -> bool:
        return False  # no admin or model-level browsing with a token

    setattr(user, _SCOPES_ATTRIBUTE, bound)
    user.has_perm = has_perm
    user.has_perms = has_perms
    user.has_module_perms = has_module_perms
    return user


def can_manage_people(user: Any) -> bool:
    """Who may see the People page and disable or re-enable accounts: superusers and holders
    of Django's ``auth.change_user``. Never through a personal token."""
    if not is_active_person(user) or token_scopes(user) is not None:
        return False
    return bool(user.is_superuser or user.has_perm("auth.change_user"))
