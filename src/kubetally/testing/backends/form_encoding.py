"""Decode deepObject form bodies and query strings (Stripe v1 style) for contract validation.

Stripe v1 takes ``payload[stripe_customer_id]=cus_1&expand[]=x&timestamp=1700000000``. The spec
describes the *decoded* object, so the fake rebuilds nested dicts/lists from the bracket keys and
then coerces scalars the schema types as integer/number/boolean (form values are always text),
exactly what Stripe's own parser does before validating.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A form body that cannot be mapped onto nested objects (conflicting or malformed keys)."""


def decode_form(body: bytes | str) -> dict[str, Any]:
    """``a[b][c]=1&l[]=x&l[]=y&m[0]=z`` → ``{"a": {"b": {"c": "1"}}, "l": ["x", "y"], "m": ["z"]}``."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, strict_parsing=False):
        match = _KEY.match(key)
        if match is None:
            raise FormError(f"malformed form key {key!r}")
        path: list[str] = [match.group(1), *_SEGMENT.findall(match.group(2))]
        _assign(root, path, value, key)
    form: dict[str, Any] = _listify(root)
    return form


def _assign(node: dict[str, Any], path: list[str], value: str, key: str) -> None:
    for depth, segment in enumerate(path[:-1]):
        nxt = path[depth + 1]
        if segment == "":
            raise FormError(f"'[]' only allowed last in {key!r}")
        child = node.get(segment)
        if child is None:
            child = {}
            node[segment] = child
        if not isinstance(child, dict):
            raise FormError(f"{key!r} conflicts with a scalar")
        node = child
        del nxt
    last = path[-1]
    if last == "":
        bucket = node.setdefault("\0list", [])
        if not isinstance(bucket, list):
            raise FormError(f"{key!r} conflicts with another key")
        bucket.append(value)
        return
    if last in node and isinstance(node[last], dict):
        raise FormError(f"{key!r} conflicts with a nested object")
    node[last] = value


def _listify(node: Any) -> Any:
    """Turn ``{"\\0list": [...]}`` and all-numeric-key dicts into lists."""
    if not isinstance(node, dict):
        return node
    if "\0list" in node:
        if len(node) != 1:
            raise FormError("mixing 'key[]' and 'key[name]'")
        return [_listify(v) for v in node["\0list"]]
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, list):
        return [str(t) for t in declared]
    return [str(declared)] if declared else []


def _scalar(value: str, schema: Mapping[str, Any]) -> Any:
    for kind in _types(schema):
        if kind == "integer" and re.fullmatch(r"-?\d+", value):
            return int(value)
        if kind == "number" and re.fullmatch(r"-?\d+(\.\d+)?", value):
            return float(value) if "." in value else int(value)
        if kind == "boolean" and value in ("true", "false"):
            return value == "true"
    return value


def coerce(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """Convert form strings to the JSON types ``schema`` (inlined, no ``$ref``) asks for."""
    if schema is None:
        return value
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if options:
            # Prefer the first option whose declared type fits the shape of the value.
            for option in options:
                if isinstance(value, dict) and "object" in _types(option):
                    return coerce(value, option)
                if isinstance(value, list) and "array" in _types(option):
                    return coerce(value, option)
            for option in options:
                if isinstance(value, str) and set(_types(option)) & {"integer", "number", "boolean"}:
                    converted = _scalar(value, option)
                    if converted is not value:
                        return converted
            return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        return {k: coerce(v, props.get(k) or (extra if isinstance(extra, dict) else None)) for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [coerce(v, items if isinstance(items, dict) else None) for v in value]
    if isinstance(value, str):
        return _scalar(value, schema)
    return value
