"""Label and field selectors with the grammar and error messages of the real apiserver.

Clients (the metering source, kubectl) filter server-side with these; a simulator that accepted
a selector the real server rejects, or matched differently, would let bugs through to production.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[A-Za-z0-9][-A-Za-z0-9_./]*|)")
_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

FIELD_LABELS = ("metadata.name", "metadata.namespace", "spec.nodeName", "status.phase")


class SelectorError(ValueError):
    """A selector the real apiserver would answer with 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects without the key, as in Kubernetes.
        return not present or labels[self.key] not in self.values


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            rest = text[pos:].strip()
            if not rest:
                break
            raise SelectorError(f"unable to parse requirement: unexpected character at {rest[:20]!r}")
        if match.group(1):
            tokens.append(match.group(1))
        pos = match.end()
    return tokens


def _check_key(key: str) -> str:
    if not _KEY.match(key) or len(key.rpartition("/")[2]) > 63:
        raise SelectorError(
            f"unable to parse requirement: invalid label key {key!r}: name part must consist of "
            "alphanumeric characters, '-', '_' or '.'"
        )
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(
            f"unable to parse requirement: invalid label value {value!r}: must be 63 characters "
            "or less and consist of alphanumeric characters, '-', '_' or '.'"
        )
    return value


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse ``a=b,c!=d,e in (x,y),f notin (z),g,!h`` (all requirements AND-ed)."""
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def peek(offset: int = 0) -> str | None:
        return tokens[i + offset] if i + offset < len(tokens) else None

    while i < len(tokens):
        if tokens[i] == "!":
            key = peek(1)
            if key is None or key in ("=", "==", "!=", "(", ")", ",", "!"):
                raise SelectorError(f"unable to parse requirement: expected a label key after '!' in {text!r}")
            reqs.append(Requirement(_check_key(key), "!exists"))
            i += 2
        else:
            key = _check_key(tokens[i])
            op = peek(1)
            if op is None or op == ",":
                reqs.append(Requirement(key, "exists"))
                i += 1
            elif op in ("=", "==", "!="):
                value = peek(2)
                if value is None or value == ",":
                    value_text = ""
                    i += 2
                elif value in ("(", ")", "=", "==", "!=", "!"):
                    raise SelectorError(f"unable to parse requirement: found {value!r}, expected a value")
                else:
                    value_text = value
                    i += 3
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (_check_value(value_text),)))
            elif op in ("in", "notin"):
                if peek(2) != "(":
                    raise SelectorError(f"unable to parse requirement: found {peek(2)!r}, expected: '('")
                i += 3
                values: list[str] = []
                while True:
                    tok = peek()
                    if tok is None:
                        raise SelectorError(f"unable to parse requirement: missing ')' in {text!r}")
                    if tok == ")":
                        i += 1
                        break
                    if tok == ",":
                        i += 1
                        continue
                    if tok in ("(", "=", "==", "!=", "!"):
                        raise SelectorError(f"unable to parse requirement: found {tok!r} in a value list")
                    values.append(_check_value(tok))
                    i += 1
                if not values:
                    raise SelectorError(f"unable to parse requirement: for '{op}' operator, values set can't be empty")
                reqs.append(Requirement(key, op, tuple(values)))
            else:
                raise SelectorError(
                    f"unable to parse requirement: found {op!r}, expected: in, notin, =, ==, !=, gt, lt"
                )
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"unable to parse requirement: found {tokens[i]!r}, expected: ','")
            i += 1
    return reqs


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    negate: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        actual = field_value(obj, self.field)
        return (actual != self.value) if self.negate else (actual == self.value)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string the apiserver's field-label conversion produces (missing → ``""``)."""
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    if isinstance(current, bool):  # Go formats booleans in lower case (spec.unschedulable=true)
        return "true" if current else "false"
    return "" if current is None else str(current)


def parse_field_selector(text: str | None, supported: tuple[str, ...] = FIELD_LABELS) -> list[FieldRequirement]:
    """Parse ``spec.nodeName=n1,status.phase!=Succeeded``; only ``supported`` fields are allowed."""
    if not text or not text.strip():
        return []
    reqs = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        match = re.match(r"^([^=!]+?)\s*(!=|==|=)\s*(.*)$", part)
        if match is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        name, op, value = match.group(1).strip(), match.group(2), match.group(3).strip()
        if name not in supported:
            raise SelectorError(f"field label not supported: {name}")
        reqs.append(FieldRequirement(name, op == "!=", value))
    return reqs


def matcher(labels: list[Requirement], fields: list[FieldRequirement]) -> Callable[[Mapping[str, Any]], bool]:
    """One predicate for both selectors, applied to a whole object."""

    def matches(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        obj_labels = meta.get("labels") or {}
        return all(r.matches(obj_labels) for r in labels) and all(f.matches(obj) for f in fields)

    return matches
