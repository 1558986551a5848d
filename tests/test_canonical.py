"""The payload hash that binds an approval to exact arguments."""

import hashlib
import json

from audit.canonical import payload_hash
from audit.redaction import REDACTED, redact


def test_payload_hash__key_order_and_whitespace__do_not_change_it():
    a = json.loads('{"amount": 42.18, "order_id": "ORD-7711", "meta": {"b": 1, "a": [1, 2]}}')
    b = json.loads('{ "order_id" : "ORD-7711",\n "meta": {"a": [1,2], "b":1}, "amount":42.18 }')
    assert payload_hash(a) == payload_hash(b)


def test_payload_hash__any_value_change__changes_it():
    base = {"order_id": "ORD-7711", "amount": 42.18, "tags": ["a", "b"]}
    variants = [
        {**base, "amount": 42.19},
        {**base, "order_id": "ORD-7712"},
        {**base, "tags": ["b", "a"]},
        {**base, "extra": None},
        {k: v for k, v in base.items() if k != "tags"},
        {**base, "amount": "42.18"},
    ]
    hashes = {payload_hash(v) for v in variants}
    assert payload_hash(base) not in hashes
    assert len(hashes) == len(variants)


def test_payload_hash__is_sha256_of_documented_canonical_json():
    # What an agent computes on its side: sorted keys, no spaces, UTF-8.
    args = {"b": "é", "a": 1}
    expected = hashlib.sha256('{"a":1,"b":"é"}'.encode()).hexdigest()
    assert payload_hash(args) == expected


def test_redact__secret_looking_keys__are_masked_recursively():
    data = {
        "password": "x",
        "nested": {"api_key": "k", "ok": 1},
        "items": [{"Token": "t"}],
        "amount": 5,
    }
    assert redact(data) == {
        "password": REDACTED,
        "nested": {"api_key": REDACTED, "ok": 1},
        "items": [{"Token": REDACTED}],
        "amount": 5,
    }
