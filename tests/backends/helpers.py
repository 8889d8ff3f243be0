"""Assertions shared by the fake-backend tests."""

from __future__ import annotations

import httpx

from kubetally.testing.contracts import Spec


def assert_documented(spec: Spec, method: str, path: str, response: httpx.Response) -> None:
    """The fake's own answer must match the response schema the vendor documents."""
    match = spec.match(method, path)
    assert match is not None, f"{method} {path} not in {spec.name}"
    content_type = response.headers.get("content-type", "").split(";")[0]
    schema = spec.response_schema(match.operation, response.status_code, content_type)
    assert schema is not None, f"{response.status_code} {content_type} not documented for {method} {path}"
    problems = spec.response_errors(schema, response.json())
    assert problems == [], problems
