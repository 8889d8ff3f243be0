"""Check built-in objects against the official client's models before serving them.

The real apiserver never serves a Pod without containers, but a hand-written scenario easily
omits them; the ``kubernetes`` client then fails deep inside deserialisation with no hint of which
scenario object was wrong. Validating at load time turns that into an error naming the object.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from kubetally.sim.resources import STANDARD, split_api_version

_BUILTIN = {(r.api_version, r.kind) for r in STANDARD}


@cache
def _model(api_version: str, kind: str) -> Any:
    if (api_version, kind) not in _BUILTIN:
        return None
    try:
        from kubernetes.client import models
    except ImportError:  # pragma: no cover - kubernetes is a dependency
        return None
    _, version = split_api_version(api_version)
    return getattr(models, f"{version.capitalize()}{kind}", None)


def model_problems(obj: dict[str, Any]) -> list[str]:
    """Why the client library would reject this built-in object (empty: it parses)."""
    model = _model(obj.get("apiVersion", ""), obj.get("kind", ""))
    if model is None:
        return []
    try:
        model.from_dict(obj)
    except Exception as exc:  # pydantic ValidationError, or TypeError/ValueError from generated code
        errors = getattr(exc, "errors", None)
        title = getattr(exc, "title", model.__name__)
        if callable(errors):
            details = [f"{title}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in errors()]
        else:
            details = [str(exc)]
        return [f"the kubernetes client cannot read it as {model.__name__}: {d}" for d in details]
    return []
