"""Issue 16 class 7: webhooks reach only public addresses — every IPv4 embedded in IPv6
unwrapped, every non-global address refused — checked again at delivery and connected to
the address that was checked (DNS rebinding). No test here connects beyond loopback: the
resolver is patched, and ``no_outside_connections`` fails any attempt to leave it."""

import ipaddress
import json
import socket

import pytest

from approvals import actions, tasks, validators
from approvals.models import NotificationRoute, Outbox
from approvals.validators import address_problem, callback_url_problem
from approvals.webhooks import WebhookRefused, post_webhook
from tests import factories
from tests.webhook_receiver import Receiver

REFUSED = [
    # IPv4: private, loopback, link-local, CGNAT, this-network, IETF, documentation,
    # benchmarking, 6to4 relay, multicast, reserved, broadcast
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "192.0.0.1",
    "192.0.0.170",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",
    "192.88.99.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    # IPv6 native
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "feff::1",
    "ff02::1",
    "2001:db8::1",
    "100::1",
    # IPv4 wrapped in IPv6
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:0:127.0.0.1",  # IPv4-translated
    "::127.0.0.1",  # IPv4-compatible
    "::10.0.0.1",
    "::8.8.8.8",  # IPv4-compatible is deprecated: refused whatever it wraps
    "64:ff9b::127.0.0.1",  # NAT64
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::192.168.0.1",
    "64:ff9b:1::8.8.8.8",  # local-use NAT64
    "64:ff9b:1:2::a00:1",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001::1",
    "fe80::1%eth0",
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001:81b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of a public address reaches that address
    "2002:808:808::1",  # 6to4 of a public address
]


@pytest.fixture
def no_outside_connections(monkeypatch):
    """Fail the test on any look-up or connection that is not loopback."""
    real_getaddrinfo, real_create = socket.getaddrinfo, socket.create_connection

    def loopback_only(host) -> None:
        try:
            ok = ipaddress.ip_address(str(host).strip("[]").split("%")[0]).is_loopback
        except ValueError:
            ok = host == "localhost"
        if not ok:
            raise AssertionError(f"the test tried to reach {host!r}")

    def getaddrinfo(host, *args, **kwargs):
        # An IP literal (in any form libc reads, like 2130706433) is parsed, not looked up.
        try:
            ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            try:
                socket.inet_aton(str(host))
            except OSError:
                loopback_only(host)
        return real_getaddrinfo(host, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        loopback_only(address[0])
        return real_create(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.mark.parametrize("address", REFUSED)
def test_address_problem__non_public__refused(address):
    assert address_problem(address) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_address_problem__public__none(address):
    assert address_problem(address) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://[::ffff:127.0.0.1]:8000/hook",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "http://[2002:7f00:1::]/",
        "https://[fec0::1]/",
        "http://100.64.0.1/",
        "http://192.0.0.8/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0x7f.1/",
    ],
)
def test_callback_url__ip_literals_wrapping_private__refused(
    db, settings, no_outside_connections, url
):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    assert callback_url_problem(url) is not None


def test_callback_url__allowed_host__kept(db, settings, no_outside_connections):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    assert callback_url_problem("http://127.0.0.1:9/hook") is None


def test_delivery__dns_rebinding__refused_and_nothing_arrives(
    db, support_agent, reviewer, settings, monkeypatch, no_outside_connections
):
    # Given a name that resolves to a public address when the agent registers it ...
    settings.WEBHOOK_ALLOWED_HOSTS = []
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    looked_up = []

    def rebinding_resolver(host, port):
        looked_up.append((host, port))
        return next(answers)

    monkeypatch.setattr(validators, "resolve", rebinding_resolver)
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        url = f"http://rebind.test:{port}/hook"
        assert callback_url_problem(url) is None
        action = factories.submit(support_agent, "send_email", callback_url=url)
        actions.approve(action_id=action.pk, user=reviewer)
        row = Outbox.objects.get(kind="webhook")
        # ... and to loopback (not allowed) when the webhook is delivered
        assert tasks.deliver_outbox(row.pk) == "failed"
    # Then the delivery is refused before connecting: the loopback server saw nothing
    assert receiver.attempts == 0
    assert looked_up == [("rebind.test", port), ("rebind.test", port)]
    row.refresh_from_db()
    assert row.failed_at and row.last_error.startswith("refused:")


def test_delivery__connects_to_the_checked_address_with_the_original_host(
    db, settings, monkeypatch, no_outside_connections
):
    # The check passes once (a public answer); the connection must go to that very answer,
    # not to a second look-up. Here the "public" answer is the loopback receiver itself, so
    # address_problem is patched to accept it — and the receiver sees the original Host.
    settings.WEBHOOK_ALLOWED_HOSTS = []
    calls = []
    monkeypatch.setattr(
        validators, "resolve", lambda host, port: calls.append(host) or ["127.0.0.1"]
    )
    monkeypatch.setattr(validators, "address_problem", lambda ip: None)
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        response = post_webhook(f"http://hooks.test:{port}/hook", json={"a": 1})
    assert response.status_code == 200 and calls == ["hooks.test"]
    headers, body = receiver.received[0]
    assert headers["host"] == f"hooks.test:{port}" and json.loads(body) == {"a": 1}


def test_chat_delivery__private_destination__refused_without_connecting(
    db, settings, no_outside_connections
):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    with Receiver() as receiver, pytest.raises(WebhookRefused):
        post_webhook(receiver.url, json={"text": "x"})
    assert receiver.attempts == 0


def test_chat_delivery__rebinding_route__counted_as_failure(
    db, support_agent, settings, monkeypatch, no_outside_connections
):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    settings.NOTIFY_MIN_RISK = "low"
    monkeypatch.setattr(validators, "resolve", lambda host, port: ["127.0.0.1"])
    with Receiver() as chat:
        port = chat.server.server_address[1]
        NotificationRoute.objects.create(
            agent=support_agent, chat_webhook_url=f"http://chat.test:{port}/hook"
        )
        factories.submit(support_agent, "send_email")
        assert tasks.send_notification_batches() == 0
    assert chat.attempts == 0
    assert "refused" in Outbox.objects.filter(kind="chat").first().last_error


def test_allowed_loopback_receiver__still_gets_deliveries(
    db, support_agent, reviewer, settings, no_outside_connections
):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    with Receiver() as receiver:
        action = factories.submit(support_agent, "send_email", callback_url=receiver.url)
        actions.approve(action_id=action.pk, user=reviewer)
        assert tasks.deliver_outbox(Outbox.objects.get(kind="webhook").pk) == "delivered"
    assert receiver.attempts == 1
