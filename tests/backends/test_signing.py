"""Standard-Webhooks signatures: the one definition shared by the sender and the fake receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac

from kubetally.delivery import signing

SECRET = b"kubetally-webhook-secret"
BODY = b'[{"specversion":"1.0","id":"e1","source":"kubetally/cluster-a","type":"gpu_usage"}]'


def test_sign_matches_the_standard_webhooks_definition() -> None:
    expected = base64.b64encode(hmac.new(SECRET, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()).decode()

    assert signing.sign(SECRET, "msg_1", 1700000000, BODY) == f"v1,{expected}"


def test_verify_accepts_own_signature_and_rotation_lists() -> None:
    header = signing.sign(SECRET, "msg_1", 1700000000, BODY)

    assert signing.verify(SECRET, "msg_1", 1700000000, BODY, header, now=1700000100)
    assert signing.verify(SECRET, "msg_1", "1700000000", BODY, f"v1,bm90LWl0 {header}", now=1700000000)


def test_verify_rejects_tampering_wrong_secret_and_stale_timestamps() -> None:
    header = signing.sign(SECRET, "msg_1", 1700000000, BODY)

    assert not signing.verify(SECRET, "msg_1", 1700000000, BODY + b" ", header, now=1700000000)
    assert not signing.verify(SECRET, "msg_2", 1700000000, BODY, header, now=1700000000)
    assert not signing.verify(b"other", "msg_1", 1700000000, BODY, header, now=1700000000)
    assert not signing.verify(SECRET, "msg_1", 1700000000, BODY, header, now=1700000000 + 301)
    assert not signing.verify(SECRET, "msg_1", "soon", BODY, header, now=1700000000)
    assert not signing.verify(SECRET, "msg_1", 1700000000, BODY, header.replace("v1,", "v2,"), now=1700000000)
    assert not signing.verify(SECRET, "msg_1", 1700000000, BODY, "v1,***", now=1700000000)


def test_secret_decoding() -> None:
    raw = b"\x00\x01binary"
    assert signing.decode_secret("whsec_" + base64.b64encode(raw).decode()) == raw
    assert signing.decode_secret("plain passphrase") == b"plain passphrase"


def test_signature_headers() -> None:
    headers = signing.signature_headers(SECRET, "msg_1", 1700000000, BODY)

    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": signing.sign(SECRET, "msg_1", 1700000000, BODY),
    }
