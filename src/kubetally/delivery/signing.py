"""Standard-Webhooks HMAC signatures for the generic webhook destination.

There is no vendor contract for webhooks, so we follow the Standard Webhooks scheme
(https://www.standardwebhooks.com): a receiver can verify with any off-the-shelf library.
The sender and the test fake both import this module so the two sides can never drift apart.

Signed content is ``"{msg_id}.{timestamp}.{body}"``; the header value is ``v1,<base64 HMAC-SHA256>``.
Several space-separated signatures may appear in one header during a secret rotation; any match
verifies. Timestamps outside a tolerance window are refused to stop replay of captured requests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

SIGNATURE_VERSION = "v1"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 5 * 60

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


def decode_secret(value: str) -> bytes:
    """Turn a configured secret into key bytes.

    Standard Webhooks secrets are written ``whsec_<base64>``; anything else is taken as raw UTF-8
    so a plain passphrase also works.
    """
    if value.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise ValueError("webhook secret has the whsec_ prefix but is not valid base64") from exc
    return value.encode("utf-8")


def _digest(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = msg_id.encode("utf-8") + b"." + str(int(timestamp)).encode("ascii") + b"." + body
    return hmac.new(secret, signed, hashlib.sha256).digest()


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value for one message."""
    return f"{SIGNATURE_VERSION},{base64.b64encode(_digest(secret, msg_id, timestamp, body)).decode('ascii')}"


def signature_headers(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """All three Standard-Webhooks headers, ready to merge into a request."""
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(int(timestamp)),
        HEADER_SIGNATURE: sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: bytes,
    msg_id: str,
    timestamp: int | str,
    body: bytes,
    signature_header: str,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when ``signature_header`` holds a valid ``v1`` signature of this message.

    ``timestamp`` may be the raw header string; a non-integer, or one further than
    ``tolerance_seconds`` from ``now``, fails verification (replay protection).
    """
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_seconds:
        return False
    expected = _digest(secret, msg_id, ts, body)
    for candidate in signature_header.split():
        version, _, encoded = candidate.partition(",")
        if version != SIGNATURE_VERSION or not encoded:
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if hmac.compare_digest(given, expected):
            return True
    return False
