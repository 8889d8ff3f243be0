"""RBAC for the simulated API: bearer tokens as ServiceAccounts, Roles and bindings as the
apiserver evaluates them.

Optional (a :class:`~kubetally.sim.SimServer` built with ``rbac=``). It exists so a test can run
kubetally with a token bound to the rendered ``deploy/`` Roles and ClusterRoles and prove those
rules are enough, and that anything else is refused the way a real cluster refuses it: ``401``
without a known token, ``403 Forbidden`` as a ``v1 Status`` for a verb, resource, namespace or
name no rule grants.

It follows the apiserver's own code (``k8s.io/apiserver`` ``RequestInfoFactory`` for what a
request asks, ``k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go`` for whether a rule
covers it): a request's verb comes from its method (GET with a name is ``get``, without one
``list`` or ``watch``, DELETE without a name ``deletecollection``); a ``metadata.name`` field
selector names the object of a list or watch; a RoleBinding grants only in its own namespace
and never cluster-scoped resources; rules are only additive. Beyond the bindings given, every
authenticated caller may read the discovery paths (the default ``system:discovery`` and
``system:public-info-viewer`` ClusterRoles). Aggregated ClusterRoles are refused, not guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import yaml

from kubetally.errors import KubetallyError

#: What the default ClusterRoles system:discovery and system:public-info-viewer let every
#: authenticated caller GET (a trailing ``*`` is a prefix).
DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/version", "/version/")
_METHOD_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_TRUE = ("1", "true", "True", "yes")


class RBACError(KubetallyError):
    """The RBAC objects given to the simulator cannot be evaluated."""


@dataclass(frozen=True)
class Request:
    """What a request asks, as the apiserver's authorizer sees it."""

    verb: str
    path: str
    resource_request: bool = False
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    def describe(self) -> str:
        """The apiserver's wording after 'cannot '."""
        if not self.resource_request:
            return f'{self.verb} path "{self.path}"'
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        return f'{self.verb} resource "{resource}" in API group "{self.api_group}" {where}'


@dataclass(frozen=True)
class User:
    """An authenticated caller: a ServiceAccount's user name and groups."""

    name: str
    groups: tuple[str, ...]

    @classmethod
    def service_account(cls, namespace: str, name: str) -> User:
        return cls(
            f"system:serviceaccount:{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        )


def request_of(method: str, path: str, query: str = "") -> Request:
    """The authorizer's view of an HTTP request (``RequestInfoFactory.NewRequestInfo``)."""
    parts = [p for p in path.split("/") if p]
    verb = _METHOD_VERBS.get(method.upper(), method.lower())
    minimum = {"api": 3, "apis": 4}.get(parts[0] if parts else "", 0)
    if not minimum or len(parts) < minimum:
        return Request(verb=method.lower(), path=path)
    group = parts[1] if parts[0] == "apis" else ""
    rest = parts[minimum - 1 :]
    if rest[0] == "watch":  # the legacy /watch/ prefix
        verb, rest = "watch", rest[1:]
        if not rest:
            return Request(verb=method.lower(), path=path)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not name and verb == "get":
        params = dict(parse_qsl(query, keep_blank_values=True))
        verb = "watch" if params.get("watch") in _TRUE else "list"
        name = _selected_name(params.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return Request(verb, path, True, group, resource, subresource, namespace, name)


def _selected_name(selector: str) -> str:
    """The name a field selector requires exactly (``metadata.name=x``), else ``""``."""
    for term in selector.split(","):
        for operator in ("==", "="):
            field, sep, value = term.partition(operator)
            if sep and field.strip() == "metadata.name" and not value.startswith("="):
                value = value.strip()
                return value if value and "/" not in value and value not in (".", "..") else ""
    return ""


def _listed(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RBACError(f"{what}: must be a list of strings")
    return list(value)


@dataclass(frozen=True)
class Rule:
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    resource_names: tuple[str, ...]
    non_resource_urls: tuple[str, ...]

    @classmethod
    def parse(cls, raw: Any, where: str) -> Rule:
        if not isinstance(raw, Mapping):
            raise RBACError(f"{where}: a rule must be a mapping")
        return cls(
            tuple(_listed(raw.get("verbs"), f"{where}.verbs")),
            tuple(_listed(raw.get("apiGroups"), f"{where}.apiGroups")),
            tuple(_listed(raw.get("resources"), f"{where}.resources")),
            tuple(_listed(raw.get("resourceNames"), f"{where}.resourceNames")),
            tuple(_listed(raw.get("nonResourceURLs"), f"{where}.nonResourceURLs")),
        )

    def allows(self, request: Request) -> bool:
        if "*" not in self.verbs and request.verb not in self.verbs:
            return False
        if not request.resource_request:
            return any(
                url == "*" or url == request.path or (url.endswith("*") and request.path.startswith(url[:-1]))
                for url in self.non_resource_urls
            )
        if "*" not in self.api_groups and request.api_group not in self.api_groups:
            return False
        combined = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
        if not any(
            resource in ("*", combined) or (request.subresource and resource == f"*/{request.subresource}")
            for resource in self.resources
        ):
            return False
        return not self.resource_names or (bool(request.name) and request.name in self.resource_names)


@dataclass(frozen=True)
class Binding:
    """A RoleBinding (``namespace`` set) or ClusterRoleBinding (``namespace`` empty)."""

    namespace: str
    role: tuple[Rule, ...]
    subjects: tuple[tuple[str, str, str], ...]  # (kind, name, namespace)

    def binds(self, user: User) -> bool:
        for kind, name, namespace in self.subjects:
            if kind == "ServiceAccount" and namespace and user.name == f"system:serviceaccount:{namespace}:{name}":
                return True
            if (kind == "User" and name == user.name) or (kind == "Group" and name in user.groups):
                return True
        return False

    def covers(self, request: Request) -> bool:
        # A RoleBinding grants inside its namespace only: never a cluster-scoped resource, never
        # a list across all namespaces; non-resource URLs only through a ClusterRoleBinding.
        if self.namespace and (not request.resource_request or request.namespace != self.namespace):
            return False
        return any(rule.allows(request) for rule in self.role)


class RBAC:
    """Tokens → ServiceAccounts, and the rules their bindings grant."""

    def __init__(self, objects: Iterable[Mapping[str, Any]], tokens: Mapping[str, str]):
        """``objects``: any Kubernetes objects (everything but RBAC is ignored); ``tokens``:
        bearer token → ``namespace/name`` of the ServiceAccount it authenticates as."""
        self.users: dict[str, User] = {}
        for token, account in tokens.items():
            namespace, sep, name = account.partition("/")
            if not sep or not namespace or not name:
                raise RBACError(f"token for {account!r}: expected namespace/name of a ServiceAccount")
            self.users[token] = User.service_account(namespace, name)
        roles: dict[tuple[str, str, str], tuple[Rule, ...]] = {}
        bindings: list[Mapping[str, Any]] = []
        for obj in objects:
            kind = obj.get("kind")
            meta = obj.get("metadata") or {}
            where = f"{kind} {meta.get('namespace', '')}/{meta.get('name')}".replace(" /", " ")
            if kind in ("Role", "ClusterRole"):
                if obj.get("aggregationRule"):
                    raise RBACError(f"{where}: aggregated ClusterRoles are not supported by the simulator")
                namespace = meta.get("namespace", "") if kind == "Role" else ""
                rules = obj.get("rules") or []
                if not isinstance(rules, list):
                    raise RBACError(f"{where}: rules must be a list")
                parsed = tuple(Rule.parse(rule, f"{where} rules[{i}]") for i, rule in enumerate(rules))
                roles[(kind, namespace, str(meta.get("name")))] = parsed
            elif kind in ("RoleBinding", "ClusterRoleBinding"):
                bindings.append(obj)
        self.bindings: list[Binding] = []
        for obj in bindings:
            meta = obj.get("metadata") or {}
            namespace = meta.get("namespace", "") if obj["kind"] == "RoleBinding" else ""
            ref = obj.get("roleRef") or {}
            ref_kind = ref.get("kind")
            where = f"{obj['kind']} {namespace}/{meta.get('name')}".replace(" /", " ")
            if ref_kind not in ("Role", "ClusterRole") or (ref_kind == "Role" and not namespace):
                raise RBACError(f"{where}: roleRef.kind {ref_kind!r} cannot be bound here")
            key = (ref_kind, namespace if ref_kind == "Role" else "", str(ref.get("name")))
            if key not in roles:
                raise RBACError(f"{where}: roleRef {ref_kind} {ref.get('name')!r} not found")
            subjects = tuple(
                (str(s.get("kind")), str(s.get("name")), str(s.get("namespace") or ""))
                for s in obj.get("subjects") or []
            )
            self.bindings.append(Binding(namespace, roles[key], subjects))

    @classmethod
    def from_yaml(cls, text: str, tokens: Mapping[str, str]) -> RBAC:
        """From a multi-document YAML stream (``kubectl kustomize`` output)."""
        return cls([doc for doc in yaml.safe_load_all(text) if isinstance(doc, Mapping)], tokens)

    def authenticate(self, authorization: str | None) -> User | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.users.get(token.strip())

    def allows(self, user: User, request: Request) -> bool:
        if (
            not request.resource_request
            and request.verb == "get"
            and any(
                url == request.path or (url.endswith("*") and request.path.startswith(url[:-1]))
                for url in DISCOVERY_URLS
            )
        ):
            return True
        return any(binding.binds(user) and binding.covers(request) for binding in self.bindings)

    @staticmethod
    def forbidden_message(user: User, request: Request) -> str:
        if not request.resource_request:
            return f'forbidden: User "{user.name}" cannot {request.describe()}'
        target = request.resource + (f".{request.api_group}" if request.api_group else "")
        named = f' "{request.name}"' if request.name else ""
        return f'{target}{named} is forbidden: User "{user.name}" cannot {request.describe()}'
