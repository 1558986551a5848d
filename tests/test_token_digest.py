"""One digest for stored tokens (core.digests.token_digest), byte-identical to the one
rows were stored with before: a token issued before keeps authenticating."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.utils import timezone

from accounts.models import PersonalToken
from accounts.personal_tokens import authenticate_personal_token
from core.digests import token_digest
from rollout.actions import authenticate_agent_token
from rollout.models import AgentToken

# SHA-256 of b"alk_example", lower-case hex: what every stored row was written with.
KNOWN = "75e272034dd58cc76d6d0cb9a7bcea34e7f1af129eb99db1a0b628a2d7376368"


def _stored_before(token: str) -> str:
    """The digest as rows were stored before the helper existed."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def test_token_digest__is_sha256_hex_of_utf8():
    assert token_digest("alk_example") == _stored_before("alk_example") == KNOWN
    assert token_digest("alp_é") == _stored_before("alp_é")


def test_agent_token__stored_before__still_authenticates(support_agent):
    # Given an agent token row stored with the old digest
    token = "alk_" + "x" * 43
    AgentToken.objects.create(
        agent=support_agent, name="old", prefix=token[:10], token_hash=_stored_before(token)
    )
    # When it is presented, Then it authenticates as that agent
    record = authenticate_agent_token(token)
    assert record is not None and record.agent == support_agent


def test_personal_token__stored_before__still_authenticates(reviewer):
    # Given a personal token row stored with the old digest
    token = "alp_" + "y" * 43
    PersonalToken.objects.create(
        user=reviewer,
        name="old",
        prefix=token[:10],
        token_hash=_stored_before(token),
        scopes=["decide"],
        expires_at=timezone.now() + timedelta(days=1),
    )
    # When it is presented, Then it authenticates as its owner
    record = authenticate_personal_token(token)
    assert record is not None and record.user == reviewer
