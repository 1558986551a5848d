"""Masking of sensitive argument fields: what of an action's arguments each viewer sees.

``AUDIT_REDACTED_ARGUMENT_PATHS`` names argument fields per tool (``"*"``: every tool) that
are shown as ``[masked]`` to people without ``audit.view_sensitive``. Masking changes only
what is displayed; the stored arguments are what is executed and hashed.
``masked_arguments(action, viewer)`` is the one way an action's arguments reach anyone;
``keep_masked_values`` keeps an editor from changing what they were not shown.
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings

from core.people import is_active_person

SENSITIVE_PERM = "audit.view_sensitive"
MASKED = "[masked]"


def can_view_sensitive(user: Any) -> bool:
    return is_active_person(user) and user.has_perm(SENSITIVE_PERM)


def redacted_paths(tool: str) -> list[list[str]]:
    """The configured paths for ``tool`` (its own and the ``"*"`` ones), split into parts."""
    configured = settings.AUDIT_REDACTED_ARGUMENT_PATHS
    paths = [*configured.get("*", []), *configured.get(tool, [])]
    return [path.split(".") for path in paths if path]


def mask_paths(value: Any, paths: list[list[str]]) -> Any:
    """A copy of ``value`` with every field named by ``paths`` replaced by ``[masked]``.
    ``*`` matches any key or list item; a leading ``**`` matches at any depth."""
    if not paths:
        return value
    result = copy.deepcopy(value)
    for parts in paths:
        result = _mask(result, parts)
    return result


def _mask(node: Any, parts: list[str]) -> Any:
    if not parts:
        return MASKED
    head, rest = parts[0], parts[1:]
    if head == "**":
        node = _mask(node, rest)  # the rest, right here
        children = _children(node)
        for key in children:
            node[key] = _mask(node[key], parts)  # and, still with "**", further down
        return node
    if head == "*":
        for key in _children(node):
            node[key] = _mask(node[key], rest)
        return node
    if isinstance(node, dict) and head in node:
        node[head] = _mask(node[head], rest)
    elif isinstance(node, list) and head.isdigit() and int(head) < len(node):
        node[int(head)] = _mask(node[int(head)], rest)
    return node


def _children(node: Any) -> list:
    if isinstance(node, dict):
        return list(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


def masked_for(user: Any, tool: str, arguments: Any) -> Any:
    """``arguments`` of ``tool`` as ``user`` may see them."""
    if can_view_sensitive(user):
        return arguments
    return mask_paths(arguments, redacted_paths(tool))


def keep_masked_values(user: Any, tool: str, current: Any, edited: Any) -> Any:
    """``edited`` arguments with every field ``user`` cannot see (masked for them in
    ``current``) set back to its value in ``current``: an editor changes only what they
    were shown. Fields absent from ``current`` are left as edited."""
    if can_view_sensitive(user):
        return edited
    result = copy.deepcopy(edited)
    for location in _masked_locations(current, redacted_paths(tool)):
        result = _put(result, location, _get(current, location))
    return result


def _masked_locations(value: Any, paths: list[list[str]]) -> list[tuple]:
    """The concrete key/index paths in ``value`` that ``mask_paths`` would mask."""
    found: list[tuple] = []
    for parts in paths:
        _collect(value, parts, (), found)
    return found


def _collect(node: Any, parts: list[str], at: tuple, found: list[tuple]) -> None:
    if not parts:
        found.append(at)
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        _collect(node, rest, at, found)
        for key in _children(node):
            _collect(node[key], parts, (*at, key), found)
    elif head == "*":
        for key in _children(node):
            _collect(node[key], rest, (*at, key), found)
    elif isinstance(node, dict) and head in node:
        _collect(node[head], rest, (*at, head), found)
    elif isinstance(node, list) and head.isdigit() and int(head) < len(node):
        _collect(node[int(head)], rest, (*at, int(head)), found)


def _get(node: Any, location: tuple) -> Any:
    for key in location:
        node = node[key]
    return node


def _put(node: Any, location: tuple, value: Any) -> Any:
    """``node`` with ``value`` at ``location``, where the edited structure still has the
    parents (an editor who removed a whole branch removed what they could see)."""
    if not location:
        return copy.deepcopy(value)
    parent = node
    for key in location[:-1]:
        if not _has(parent, key):
            return node
        parent = parent[key]
    last = location[-1]
    if (isinstance(parent, dict) and isinstance(last, str)) or _has(parent, last):
        parent[last] = copy.deepcopy(value)
    return node


def _has(node: Any, key: Any) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)


def masked_arguments(action: Any, viewer: Any, *, original: bool = False) -> Any:
    """The action's arguments (``original``: as the agent sent them) as ``viewer`` may see
    them — the one way an action's arguments reach anyone (API, cards, pages, diffs, the
    argument editor). The action's own agent (its token) gets them whole: it executes them.
    A person gets the configured sensitive fields masked unless they hold
    ``audit.view_sensitive``; no viewer (``None``) gets them masked. For display only:
    execution and hashing always use the stored arguments."""
    arguments = action.original_arguments if original else action.arguments
    if is_own_agent(viewer, action):
        return arguments
    return masked_for(viewer, action.tool, arguments)


def is_own_agent(viewer: Any, action: Any) -> bool:
    """True when ``viewer`` is the agent principal of ``action``'s own agent."""
    agent = getattr(viewer, "agent", None) if getattr(viewer, "is_agent", False) else None
    return agent is not None and agent.pk == action.agent_id
