"""Helpers of the access tests: RFC 6238 codes computed here (not by django-otp), second
factors and logins."""

from __future__ import annotations

import hashlib
import hmac
import struct
import time

from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice


def totp(key_hex: str, counter: int, digits: int = 6) -> str:
    """RFC 6238 (TOTP = RFC 4226 HOTP over the time-step counter), HMAC-SHA1."""
    mac = hmac.new(bytes.fromhex(key_hex), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


def current_counter(step: int = 30) -> int:
    return int(time.time()) // step


def next_code(user) -> str:
    """A code the person's (latest) device accepts now: the current time step, or the next
    one when the current step's code was already used (django-otp accepts one step ahead)."""
    device = TOTPDevice.objects.filter(user=user).order_by("-pk").first()
    counter = max(current_counter(device.step), device.last_t + 1)
    return totp(device.key, counter, device.digits)


def give_second_factor(user) -> TOTPDevice:
    """A confirmed authenticator for ``user`` (as if enrolled earlier)."""
    return TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)


def password_step(client: Client, username: str, password: str = "pw-for-tests", **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


def log_in_with_second_factor(client: Client, user) -> None:
    response = password_step(client, user.username)
    assert response.status_code == 302 and response["Location"] == "/accounts/login/verify/"
    response = client.post("/accounts/login/verify/", {"code": next_code(user)})
    assert response.status_code == 302, response.content[:500]
