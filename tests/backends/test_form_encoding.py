"""Stripe-style deepObject form decoding and schema-guided coercion."""

from __future__ import annotations

import pytest

from kubetally.testing.backends.form_encoding import FormError, coerce, decode_form


def test_decodes_nested_objects_and_arrays() -> None:
    body = (
        b"event_name=gpu&payload%5Bstripe_customer_id%5D=cus_1&payload%5Bvalue%5D=25"
        b"&expand[]=a&expand[]=b&m[1]=y&m[0]=x"
    )

    assert decode_form(body) == {
        "event_name": "gpu",
        "payload": {"stripe_customer_id": "cus_1", "value": "25"},
        "expand": ["a", "b"],
        "m": ["x", "y"],
    }


def test_conflicting_keys_are_errors() -> None:
    with pytest.raises(FormError):
        decode_form(b"a=1&a[b]=2")
    with pytest.raises(FormError):
        decode_form(b"a[b]=1&a=2")


def test_coerce_follows_schema_types_only() -> None:
    schema = {
        "type": "object",
        "properties": {
            "timestamp": {"type": "integer"},
            "flag": {"type": "boolean"},
            "payload": {"type": "object", "additionalProperties": {"type": "string"}},
            "balance": {"anyOf": [{"type": "integer"}, {"type": "string", "enum": [""]}]},
        },
    }
    decoded = {"timestamp": "1700000000", "flag": "true", "payload": {"value": "25"}, "balance": "", "x": "7"}

    assert coerce(decoded, schema) == {
        "timestamp": 1700000000,
        "flag": True,
        "payload": {"value": "25"},
        "balance": "",
        "x": "7",
    }
    assert coerce({"timestamp": "soon"}, schema) == {"timestamp": "soon"}
