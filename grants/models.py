"""The keys that sign execution grants.

One key signs at a time (``signing``); a rotated-out key stays published until
every grant it signed has expired, so tool services that cache the key set keep
verifying. Private keys are stored encrypted (``grants.keys``), never in clear."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class GrantKey(models.Model):
    kid = models.CharField(max_length=64, unique=True)
    # The Ed25519 public key: 32 raw bytes, base64url without padding (the JWK ``x``).
    public_x = models.CharField(max_length=64)
    # The raw 32-byte private key, encrypted with a key derived from SECRET_KEY (Fernet).
    private_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    # True for the one key that signs now (a partial unique index keeps it to one).
    signing = models.BooleanField(default=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Two processes creating the first key (or rotating) at once: one wins.
            models.UniqueConstraint(
                fields=["signing"], condition=Q(signing=True), name="grants_one_signing_key"
            )
        ]

    def __str__(self) -> str:
        return self.kid


class ServiceToken(models.Model):
    """A bearer token of a tool service (``als_…``): it may check grants online
    (``POST /api/v1/grants/verify``) and read the revocation list, nothing else. Only its
    digest is stored; the token is shown once."""

    name = models.CharField(max_length=80, unique=True)
    prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
