"""Vendor API contracts (``../shared/contracts``) loaded once and turned into request validators.

The fake billing backends answer only what the vendor's own OpenAPI document allows, so an
adapter that drifts from the real API fails in the tests instead of in production. Specs are
large (Lago and OpenMeter ~1 MB YAML): they are parsed with libyaml when present and cached per
process, and each schema's compiled validator is cached, so validating thousands of events per
second is affordable.

``$ref``s are inlined once per schema when the schema is not recursive (much faster to validate);
recursive schemas fall back to a ``referencing`` registry holding the whole document.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from jsonschema.protocols import Validator
from openapi_schema_validator import (
    OAS30ReadValidator,
    OAS30WriteValidator,
    OAS31Validator,
    oas30_format_checker,
    oas31_format_checker,
)
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

from kubetally.testing import MissingPart

CONTRACTS_ENV = "KUBETALLY_CONTRACTS"
_SPEC_URI = "urn:kubetally:contract"

#: vendor name -> (file under contracts/, OpenAPI major.minor used to pick the validator)
SPEC_FILES: dict[str, tuple[str, str]] = {
    "lago": ("lago/openapi.yaml", "3.1"),
    "stripe": ("stripe/openapi.spec3.billing-meters.extract.json", "3.0"),
    "metronome": ("metronome/metronome.derived.openapi.json", "3.1"),
    "openmeter": ("openmeter/openapi.cloud.yaml", "3.0"),
    "openmeter-selfhosted": ("openmeter/openapi.yaml", "3.0"),
}
CLOUDEVENTS_SCHEMA = "cloudevents/cloudevents.json"


def _repo_root() -> Path | None:
    """The checkout holding ``pyproject.toml`` above this package (None for a wheel install)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return None


def contracts_dir() -> Path:
    """Where the vendor specs live: ``$KUBETALLY_CONTRACTS`` or ``<repo>/../shared/contracts``.

    CI places ``shared/`` beside the clone, so the relative default works there and on a
    developer machine alike.
    """
    override = os.environ.get(CONTRACTS_ENV)
    if override:
        path = Path(override)
    else:
        root = _repo_root()
        path = (root.parent / "shared" / "contracts") if root else Path("shared/contracts")
    if not path.is_dir():
        raise MissingPart(
            "vendor contracts", f"no directory {path}; set {CONTRACTS_ENV} or put shared/ beside the repository"
        )
    return path


def _load_document(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        with path.open("rb") as fh:
            document: dict[str, Any] = json.load(fh)
            return document
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as fh:
        document = yaml.load(fh, Loader=loader)
        return document


def _pointer(document: Any, ref: str) -> Any:
    node = document
    for token in ref.lstrip("#/").split("/"):
        if not token:
            continue
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


class _Recursive(Exception):
    """Raised while inlining when a ``$ref`` cycle makes inlining impossible."""


def _inline(node: Any, document: Any, stack: tuple[str, ...] = ()) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            if ref in stack:
                raise _Recursive(ref)
            target = _inline(_pointer(document, ref), document, (*stack, ref))
            siblings = {k: _inline(v, document, stack) for k, v in node.items() if k != "$ref"}
            if not siblings:
                return target
            # OAS 3.1 allows siblings beside $ref (e.g. extra "required"): both must hold.
            return {"allOf": [target, siblings]}
        return {k: _inline(v, document, stack) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(item, document, stack) for item in node]
    return node


def _rebase_refs(node: Any) -> Any:
    """Point local ``#/...`` refs at the registry copy of the whole document."""
    if isinstance(node, dict):
        return {
            k: (_SPEC_URI + v if k == "$ref" and isinstance(v, str) and v.startswith("#/") else _rebase_refs(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rebase_refs(item) for item in node]
    return node


def format_errors(validator: Validator, instance: Any, where: str = "") -> list[str]:
    """Readable one-line messages: ``<where>/<json path>: <reason>``."""
    messages = []
    for error in validator.iter_errors(instance):
        path = "/".join(str(p) for p in error.absolute_path)
        location = f"{where}/{path}" if path else (where or "/")
        messages.append(f"{location}: {error.message[:300]}")
    return messages


#: keywords whose verdict depends on a value, not only on its JSON type (disable shape caching)
_VALUE_KEYWORDS = frozenset(
    {
        "enum",
        "const",
        "pattern",
        "format",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "uniqueItems",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
        "$dynamicRef",
        "$recursiveRef",
        "readOnly",
        "writeOnly",
        "discriminator",
    }
)
_ANNOTATIONS = frozenset(
    {"description", "example", "examples", "title", "default", "deprecated", "externalDocs", "xml"}
)


def _type_only(schema: Any) -> bool:
    """True when validity depends only on the instance's shape (keys, JSON types, lengths)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in _VALUE_KEYWORDS:
                return False
            if key in _ANNOTATIONS or key.startswith("x-"):
                continue
            if key in ("properties", "patternProperties", "$defs", "definitions"):
                if not all(_type_only(v) for v in value.values()):
                    return False
            elif not _type_only(value):
                return False
        return True
    if isinstance(schema, list):
        return all(_type_only(item) for item in schema)
    return True


def _skeleton(value: Any) -> Any:
    """A hashable stand-in keeping keys, JSON types and array lengths, dropping values."""
    if isinstance(value, dict):
        return ("o", tuple(sorted((k, _skeleton(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("a", tuple(_skeleton(v) for v in value))
    if isinstance(value, str):
        return "s"
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int):
        return "i"
    if isinstance(value, float):
        return "i" if value.is_integer() else "f"
    return "n" if value is None else repr(type(value))


@dataclass(frozen=True)
class Operation:
    """One ``method path`` of a spec, with what a request to it must carry."""

    method: str
    template: str
    operation: Mapping[str, Any]
    parameters: tuple[Mapping[str, Any], ...]
    regex: re.Pattern[str]
    literal_segments: int

    @property
    def operation_id(self) -> str:
        return str(self.operation.get("operationId") or f"{self.method} {self.template}")

    @property
    def request_content(self) -> Mapping[str, Any]:
        body = self.operation.get("requestBody") or {}
        return body.get("content") or {}

    @property
    def body_required(self) -> bool:
        return bool((self.operation.get("requestBody") or {}).get("required"))


@dataclass
class Match:
    operation: Operation
    path_params: dict[str, str]


@dataclass
class Spec:
    """A parsed vendor OpenAPI document plus cached validators for its schemas."""

    name: str
    document: dict[str, Any]
    oas: str
    operations: list[Operation] = field(default_factory=list)
    _validators: dict[str, Validator] = field(default_factory=dict)
    #: per validator key: skeletons (see :func:`_skeleton`) known to be valid, for type-only schemas
    _valid_shapes: dict[str, set[Any] | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        ops: list[Operation] = []
        for template, item in (self.document.get("paths") or {}).items():
            item = self.resolve(item)
            shared_params = tuple(self.resolve(p) for p in item.get("parameters", []))
            for method, op in item.items():
                if method not in {"get", "post", "put", "patch", "delete"}:
                    continue
                params = shared_params + tuple(self.resolve(p) for p in op.get("parameters", []))
                pattern = "^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
                pattern = re.sub(r"\(\?P<([^>]+)>", lambda m: "(?P<" + re.sub(r"\W", "_", m.group(1)) + ">", pattern)
                literal = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
                ops.append(Operation(method.upper(), template, op, params, re.compile(pattern), literal))
        # Literal segments win over parameters: /events/batch before /events/{transaction_id}.
        ops.sort(key=lambda o: (-o.literal_segments, o.template))
        self.operations = ops

    # -- lookup -----------------------------------------------------------------------------
    def resolve(self, node: Any) -> Any:
        """Follow a top-level ``$ref`` (parameters, responses, path items)."""
        seen = 0
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 20:
            node = _pointer(self.document, node["$ref"])
            seen += 1
        return node

    def match(self, method: str, path: str) -> Match | None:
        for op in self.operations:
            if op.method != method.upper():
                continue
            found = op.regex.match(path)
            if found:
                return Match(op, {k: v for k, v in found.groupdict().items()})
        return None

    def path_exists(self, path: str) -> bool:
        return any(op.regex.match(path) for op in self.operations)

    def operation(self, operation_id: str) -> Operation:
        for op in self.operations:
            if op.operation_id == operation_id:
                return op
        raise KeyError(operation_id)

    # -- validation -------------------------------------------------------------------------
    @staticmethod
    def _key(schema: Mapping[str, Any] | str, response: bool = False) -> str:
        key = schema if isinstance(schema, str) else json.dumps(schema, sort_keys=True, default=str)
        return f"response:{key}" if response else key

    def validator(self, schema: Mapping[str, Any] | str, *, response: bool = False) -> Validator:
        """A compiled validator for a schema object or a ``#/components/...`` pointer (cached).

        Requests are checked in OAS 3.0 "write" mode (``readOnly`` properties must not be sent),
        responses in "read" mode.
        """
        key = self._key(schema, response)
        with self._lock:
            cached = self._validators.get(key)
        if cached is not None:
            return cached
        raw = _pointer(self.document, schema) if isinstance(schema, str) else schema
        built, type_only = self._build(raw, response)
        with self._lock:
            self._validators[key] = built
            self._valid_shapes[key] = set() if type_only else None
        return built

    def _build(self, raw: Any, response: bool = False) -> tuple[Validator, bool]:
        if self.oas == "3.1":
            cls, checker, spec_kind = OAS31Validator, oas31_format_checker, DRAFT202012
        else:
            cls = OAS30ReadValidator if response else OAS30WriteValidator
            checker, spec_kind = oas30_format_checker, DRAFT4
        try:
            inlined = _inline(raw, self.document)
            return cls(inlined, format_checker=checker), _type_only(inlined)
        except _Recursive:
            registry: Registry = Registry().with_resource(
                _SPEC_URI, Resource.from_contents(self.document, default_specification=spec_kind)
            )
            return cls(_rebase_refs(raw), format_checker=checker, registry=registry), False

    def inlined(self, schema: Mapping[str, Any] | str) -> Any:
        """The schema with local ``$ref``s replaced by their targets (recursive ones left as is)."""
        raw = _pointer(self.document, schema) if isinstance(schema, str) else schema
        try:
            return _inline(raw, self.document)
        except _Recursive:
            return raw

    def errors(self, schema: Mapping[str, Any] | str, instance: Any, where: str = "") -> list[str]:
        validator = self.validator(schema)
        if self.known_valid(schema, instance):
            return []
        problems = format_errors(validator, instance, where)
        if not problems:
            self._remember_valid(schema, instance)
        return problems

    def known_valid(self, schema: Mapping[str, Any] | str, instance: Any) -> bool:
        """True when an instance of the same shape already validated (type-only schemas only).

        Validation dominates the fake's cost (≈150 µs per Lago event); for schemas whose
        verdict depends only on keys, types and array lengths this makes repeats O(size).
        """
        shapes = self._valid_shapes.get(self._key(schema))
        return bool(shapes) and _skeleton(instance) in shapes  # type: ignore[operator]

    def _remember_valid(self, schema: Mapping[str, Any] | str, instance: Any) -> None:
        shapes = self._valid_shapes.get(self._key(schema))
        if shapes is not None:
            with self._lock:
                if len(shapes) > 10_000:
                    shapes.clear()
                shapes.add(_skeleton(instance))

    def response_errors(self, schema: Mapping[str, Any] | str, instance: Any, where: str = "response") -> list[str]:
        """Problems of a response body (read mode: ``readOnly`` properties allowed)."""
        return format_errors(self.validator(schema, response=True), instance, where)

    def request_schema(self, op: Operation, content_type: str) -> Mapping[str, Any] | None:
        media = op.request_content.get(content_type)
        return None if media is None else media.get("schema")

    def response_schema(
        self, op: Operation, status: int, content_type: str = "application/json"
    ) -> Mapping[str, Any] | None:
        """The documented schema of one response (``default`` when the status is not listed)."""
        responses = op.operation.get("responses") or {}
        entry = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
        if entry is None:
            return None
        media = (self.resolve(entry).get("content") or {}).get(content_type)
        return None if media is None else media.get("schema")

    def security_schemes(self, op: Operation) -> list[dict[str, Any]]:
        """The auth schemes this operation accepts (any one suffices); empty list = no auth."""
        requirements = op.operation.get("security", self.document.get("security", []))
        schemes = (self.document.get("components") or {}).get("securitySchemes") or {}
        found = []
        for requirement in requirements or []:
            for scheme_name in requirement:
                if scheme_name in schemes:
                    found.append(schemes[scheme_name])
        return found


#: Operations a vendor publishes that the stored extract leaves out, transcribed here from the
#: vendor's public API reference in the extract's own conventions. Only added when the extract
#: does not have the path (a later extract that has it wins).
SUPPLEMENTS: dict[str, dict[str, Any]] = {
    "stripe": {
        # https://docs.stripe.com/api/customers/search (GET, Search Query Language; eventually
        # consistent: "data is searchable in less than a minute").
        "/v1/customers/search": {
            "get": {
                "summary": "Search customers",
                "operationId": "GetCustomersSearch",
                "parameters": [
                    {
                        "name": "query",
                        "in": "query",
                        "required": True,
                        "style": "form",
                        "explode": True,
                        "schema": {"maxLength": 5000, "type": "string"},
                    },
                    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
                    {"name": "page", "in": "query", "required": False, "schema": {"maxLength": 5000, "type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "Successful response.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "title": "SearchResult",
                                    "required": ["data", "has_more", "object", "url"],
                                    "type": "object",
                                    "properties": {
                                        "data": {"type": "array", "items": {"$ref": "#/components/schemas/customer"}},
                                        "has_more": {"type": "boolean"},
                                        "next_page": {"maxLength": 5000, "nullable": True, "type": "string"},
                                        "object": {"type": "string", "enum": ["search_result"]},
                                        "total_count": {"type": "integer"},
                                        "url": {"maxLength": 5000, "type": "string"},
                                    },
                                }
                            }
                        },
                    }
                },
            }
        }
    }
}


@cache
def load_spec(name: str) -> Spec:
    """Parse one vendor spec (once per process), with its :data:`SUPPLEMENTS`."""
    relative, oas = SPEC_FILES[name]
    path = contracts_dir() / relative
    if not path.is_file():
        raise MissingPart(f"{name} contract", f"{path} is missing")
    document = _load_document(path)
    paths = document.setdefault("paths", {})
    for template, item in SUPPLEMENTS.get(name, {}).items():
        paths.setdefault(template, item)
    return Spec(name=name, document=document, oas=oas)


@cache
def cloudevents_validator() -> Draft7Validator:
    """The CloudEvents 1.0 JSON schema (draft-07) every webhook/OpenMeter event must satisfy."""
    path = contracts_dir() / CLOUDEVENTS_SCHEMA
    if not path.is_file():
        raise MissingPart("cloudevents schema", f"{path} is missing")
    schema = _load_document(path)
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def cloudevent_errors(events: Iterable[Any], where: str = "") -> list[str]:
    """CloudEvents-schema problems of each event, located as ``<where>/<index>/<field>``."""
    validator = cloudevents_validator()
    problems: list[str] = []
    for index, event in enumerate(events):
        problems.extend(format_errors(validator, event, f"{where}/{index}"))
    return problems
