"""Which actions are in an environment as reviewers filter the queue: bound to it, or
declared in it by an unbound token. (Not a security boundary: the kill switch's sweep takes
an environment's actions and every unbound token's, whatever they declare —
``approvals.actions.stop_actions_in_scope``.)"""

from __future__ import annotations

from django.db.models import Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Lower, Trim
from django.db.models.lookups import Exact


def in_environment(environment: str) -> Q:
    """Actions in ``environment``: submitted with a token bound to it, or with an unbound
    token and declaring it (``blast_radius.environment``, trimmed, in any case, as the gate
    compares)."""
    declared = Trim(Lower(KeyTextTransform("environment", "blast_radius")))
    return Q(environment=environment) | (Q(environment="") & Q(Exact(declared, environment)))
