"""Two-factor authentication: TOTP devices (django-otp) and single-use recovery codes.

A person has at most one confirmed TOTP device. Enrolment creates an unconfirmed device,
shows its QR code (``segno``, inline SVG) and confirms it with a first code; confirming
issues recovery codes, shown once and stored as keyed digests. Whether a person *must* use
a second factor is decided per role by ``TWO_FACTOR_REQUIRED_ROLES``; once enrolled, they
are always asked for it at login (``accounts.views``).

TOTP verification is django-otp's: a code is accepted once (``last_t``), within one step of
clock drift, and failures slow further attempts down (its throttling)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

import segno
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import RecoveryCode
from accounts.notices import owe_account_notice
from audit import verbs
from audit.chain import Actor, append_event
from core.errors import Refused

DEVICE_NAME = "authenticator"
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)
RECOVERY_GROUPS, RECOVERY_GROUP_LENGTH = 4, 4  # 16 characters, ~79 bits


class TwoFactorRefused(Refused):
    """A second-factor step the rules refuse."""


# --- who needs what -----------------------------------------------------------------------


def confirmed_device(user: Any) -> TOTPDevice | None:
    if not getattr(user, "pk", None):
        return None
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def has_second_factor(user: Any) -> bool:
    return confirmed_device(user) is not None


def second_factor_required(user: Any) -> bool:
    """Whether ``user``'s roles make a second factor mandatory (``TWO_FACTOR_REQUIRED_ROLES``:
    group names, ``superuser``, or ``*`` for everyone)."""
    roles = set(settings.TWO_FACTOR_REQUIRED_ROLES)
    if not roles or not getattr(user, "pk", None):
        return False
    if "*" in roles or ("superuser" in roles and user.is_superuser):
        return True
    return user.groups.filter(name__in=roles).exists()


# --- enrolment ----------------------------------------------------------------------------


def start_enrolment(user: Any) -> TOTPDevice:
    """The unconfirmed device ``user`` is enrolling (a new secret unless one is waiting)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    return device


def secret_text(device: TOTPDevice) -> str:
    """The device's secret in base32, for typing it into an app by hand."""
    text = base64.b32encode(device.bin_key).decode("ascii").rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def qr_svg(device: TOTPDevice) -> str:
    """The device's ``otpauth://`` URI as an inline SVG QR code (no script, no style)."""
    return segno.make(device.config_url, error="m").svg_inline(
        scale=5, dark="#000", light="#fff", border=4
    )


def confirm_enrolment(*, user: Any, code: str) -> list[str]:
    """Confirm ``user``'s waiting device with its first ``code`` and return new recovery
    codes (shown once). Audits ``two_factor.enrolled`` and
    ``two_factor.recovery_codes_issued``; owes the person an email."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        raise TwoFactorRefused("no_enrolment", "Start the enrolment again.")
    if has_second_factor(user):
        raise TwoFactorRefused("already_enrolled", "You already have a second factor.")
    _refuse_while_throttled(device)
    # Verified outside the transaction below, so that a failure's throttling is kept.
    if not device.verify_token(_digits(code)):
        raise TwoFactorRefused(
            "invalid_code", "That code is not right. Check the time on your phone."
        )
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        append_event(
            verb=verbs.TWO_FACTOR_ENROLLED,
            actor=Actor.user(user),
            target_type="user",
            target_id=user.pk,
            data={"method": "totp"},
        )
        owe_account_notice(user=user, change="a second factor (authenticator app) was enrolled")
        return _issue_recovery_codes(user)


def remove_second_factor(*, user: Any, code: str) -> None:
    """Remove ``user``'s device and recovery codes, proven with a current TOTP code; refused
    while their role requires a second factor. Audits ``two_factor.removed``; owes the person
    an email."""
    if second_factor_required(user):
        raise TwoFactorRefused(
            "required", "Your role requires a second factor; it cannot be removed."
        )
    if not verify_totp(user, code):  # outside the transaction: failures stay counted
        raise TwoFactorRefused("invalid_code", "That code is not right.")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        append_event(
            verb=verbs.TWO_FACTOR_REMOVED,
            actor=Actor.user(user),
            target_type="user",
            target_id=user.pk,
            data={"method": "totp"},
        )
        owe_account_notice(user=user, change="two-factor authentication was turned off")


def regenerate_recovery_codes(*, user: Any, code: str) -> list[str]:
    """Replace ``user``'s recovery codes (proven with a current TOTP code). Audits
    ``two_factor.recovery_codes_issued``; owes the person an email."""
    if not verify_totp(user, code):  # outside the transaction: failures stay counted
        raise TwoFactorRefused("invalid_code", "That code is not right.")
    with transaction.atomic():
        owe_account_notice(user=user, change="new recovery codes were generated")
        return _issue_recovery_codes(user)


def _issue_recovery_codes(user: Any) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = [_new_recovery_code() for _ in range(settings.RECOVERY_CODE_COUNT)]
    RecoveryCode.objects.bulk_create(
        [RecoveryCode(user=user, code_hash=_recovery_digest(user, code)) for code in codes]
    )
    append_event(
        verb=verbs.TWO_FACTOR_RECOVERY_CODES_ISSUED,
        actor=Actor.user(user),
        target_type="user",
        target_id=user.pk,
        data={"count": len(codes)},
    )
    return codes


def recovery_codes_left(user: Any) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


# --- verification -------------------------------------------------------------------------


def wait_message(user: Any) -> str:
    """Why codes of ``user`` are not being checked right now (after wrong codes django-otp
    waits 1, 2, 4 … seconds before it checks another), or ""."""
    device = confirmed_device(user) or TOTPDevice.objects.filter(user=user).first()
    if device is None:
        return ""
    allowed, info = device.verify_is_allowed()
    if allowed:
        return ""
    seconds = max(1, int((info["locked_until"] - timezone.now()).total_seconds()) + 1)
    return (
        f"Too many wrong codes: wait {seconds} second{'s' if seconds != 1 else ''}, then try again."
    )


def _refuse_while_throttled(device: TOTPDevice) -> None:
    allowed, info = device.verify_is_allowed()
    if not allowed:
        seconds = max(1, int((info["locked_until"] - timezone.now()).total_seconds()) + 1)
        raise TwoFactorRefused(
            "throttled", f"Too many wrong codes: wait {seconds} seconds, then try again."
        )


def _digits(code: Any) -> str:
    return "".join(str(code or "").split())


def verify_totp(user: Any, code: Any) -> bool:
    """True when ``code`` is the current code of ``user``'s confirmed device (each code is
    accepted once)."""
    code = _digits(code)
    if not code.isdigit() or len(code) not in (6, 8):
        return False
    device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
    return bool(device and device.verify_token(code))


def use_recovery_code(user: Any, code: Any) -> bool:
    """Spend one of ``user``'s recovery codes. Audits ``two_factor.recovery_code_used``."""
    normalized = _normalize_recovery(code)
    if len(normalized) != RECOVERY_GROUPS * RECOVERY_GROUP_LENGTH:
        return False
    with transaction.atomic():
        record = (
            RecoveryCode.objects.select_for_update()
            .filter(user=user, code_hash=_recovery_digest(user, normalized), used_at__isnull=True)
            .first()
        )
        if record is None:
            return False
        record.used_at = timezone.now()
        record.save(update_fields=["used_at"])
        append_event(
            verb=verbs.TWO_FACTOR_RECOVERY_CODE_USED,
            actor=Actor.user(user),
            target_type="user",
            target_id=user.pk,
            data={"left": recovery_codes_left(user)},
        )
    return True


def verify_second_factor(user: Any, code: Any) -> str | None:
    """``"totp"`` or ``"recovery_code"`` when ``code`` proves the second factor, else None."""
    if verify_totp(user, code):
        return "totp"
    if use_recovery_code(user, code):
        return "recovery_code"
    return None


def _new_recovery_code() -> str:
    groups = [
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_GROUP_LENGTH))
        for _ in range(RECOVERY_GROUPS)
    ]
    return "-".join(groups)


def _normalize_recovery(code: Any) -> str:
    return "".join(ch for ch in str(code or "").lower() if ch.isalnum())


def _recovery_digest(user: Any, code: str) -> str:
    # Keyed with SECRET_KEY and the person: a copy of the database alone cannot be used to
    # search for the codes, and equal codes of two people never collide.
    normalized = _normalize_recovery(code)
    key = hashlib.sha256(f"airlock-recovery:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, f"{user.pk}:{normalized}".encode(), hashlib.sha256).hexdigest()
