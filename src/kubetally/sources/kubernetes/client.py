"""Talking to the Kubernetes API with the official client: setup, the resources we read, LIST.

Objects are read as raw JSON dicts (``_preload_content=False``) rather than client models: the
meter needs a handful of fields, must survive objects with garbage or missing fields (and name
them in a warning), and custom resources (``VirtualClusterInstance``) have no model anyway.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from kubetally.errors import SourceError

#: Page size of LIST requests (the apiserver keeps a consistent snapshot across pages).
PAGE_SIZE = 500
#: First wait before retrying a failed LIST; doubles per attempt.
RETRY_BACKOFF = 0.5


def make_api_client(kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """An ApiClient from ``kubeconfig`` (and ``context``); without one, in-cluster config
    (the agent's service account), then ``$KUBECONFIG`` / ``~/.kube/config``."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                k8s_config.load_kube_config(context=context, client_configuration=configuration)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config (and not in a cluster)"
        raise SourceError(f"kubernetes: cannot load configuration from {where}: {exc}") from exc
    return k8s.ApiClient(configuration)


@dataclass(frozen=True)
class Resource:
    """A resource we list and watch: plural name, object kind and how to call it."""

    name: str
    kind: str
    call: Callable[[k8s.ApiClient], Callable[..., Any]]
    label_selector: str | None = None
    #: A custom resource that may not be installed: 404 means "none", not an error.
    optional: bool = False


def _custom(group: str, version: str, plural: str) -> Callable[[k8s.ApiClient], Callable[..., Any]]:
    return lambda api: partial(k8s.CustomObjectsApi(api).list_cluster_custom_object, group, version, plural)


RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in (
        Resource("namespaces", "Namespace", lambda api: k8s.CoreV1Api(api).list_namespace),
        Resource(
            "statefulsets",
            "StatefulSet",
            lambda api: k8s.AppsV1Api(api).list_stateful_set_for_all_namespaces,
            "app=vcluster",
        ),
        Resource(
            "deployments",
            "Deployment",
            lambda api: k8s.AppsV1Api(api).list_deployment_for_all_namespaces,
            "app=vcluster",
        ),
        Resource(
            "virtualclusterinstances",
            "VirtualClusterInstance",
            _custom("management.loft.sh", "v1", "virtualclusterinstances"),
            optional=True,
        ),
        Resource("nodes", "Node", lambda api: k8s.CoreV1Api(api).list_node),
        Resource("pods", "Pod", lambda api: k8s.CoreV1Api(api).list_pod_for_all_namespaces),
        Resource(
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            lambda api: k8s.CoreV1Api(api).list_persistent_volume_claim_for_all_namespaces,
        ),
        Resource("services", "Service", lambda api: k8s.CoreV1Api(api).list_service_for_all_namespaces),
    )
}
#: Resources that are metered (watched by the agent), in the order they must be synced:
#: nodes first, because a pod's GPU model and billing mode come from its node.
METERED = ("nodes", "pods", "persistentvolumeclaims", "services")
#: Resources that tell who the tenants are (re-listed every reconcile interval).
TENANCY = ("namespaces", "statefulsets", "deployments", "virtualclusterinstances")


class ListFailed(SourceError):
    """A LIST request failed; ``status`` is the HTTP status (0 for a transport error)."""

    def __init__(self, resource: str, status: int, reason: str):
        super().__init__(f"kubernetes: LIST {resource} failed: {reason}")
        self.resource = resource
        self.status = status


@dataclass
class Listing:
    #: The objects as dicts, or as ``keep`` reduced them.
    items: list[Any]
    resource_version: str | None
    #: The apiserver's ``Date`` header: the cluster's notion of "now" (virtual in the simulator).
    server_time: datetime | None
    #: False for an optional resource that is not installed.
    present: bool = True


def parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def describe_api_error(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, ApiException):
        reason = exc.reason or ""
        try:
            body = json.loads(exc.body or "")
            reason = body.get("message") or reason
        except (TypeError, ValueError, AttributeError):
            pass
        return int(exc.status or 0), f"HTTP {exc.status}: {reason}".strip()
    return 0, f"{type(exc).__name__}: {exc}"


def list_objects(
    api: k8s.ApiClient,
    resource: Resource,
    *,
    timeout: float = 60.0,
    keep: Callable[[dict[str, Any]], Any] | None = None,
) -> Listing:
    """LIST all objects of ``resource`` (paged), as dicts. Raises :class:`ListFailed`.

    ``keep`` reduces each object as its page arrives (the tracker's ``freeze``), so whole API
    objects are never all held at once: at 100k pods they are most of a collector's memory."""
    function = resource.call(api)
    items: list[Any] = []
    token: str | None = None
    rv: str | None = None
    server_time: datetime | None = None
    while True:
        kwargs: dict[str, Any] = {"limit": PAGE_SIZE, "_preload_content": False, "_request_timeout": timeout}
        if resource.label_selector:
            kwargs["label_selector"] = resource.label_selector
        if token:
            kwargs["_continue"] = token
        try:
            response = function(**kwargs)
            body = json.loads(response.data or b"{}")
        except ApiException as exc:
            if resource.optional and exc.status == 404:
                return Listing([], None, None, present=False)
            status, reason = describe_api_error(exc)
            raise ListFailed(resource.name, status, reason) from exc
        except Exception as exc:
            status, reason = describe_api_error(exc)
            raise ListFailed(resource.name, status, reason) from exc
        server_time = server_time or parse_http_date(response.headers.get("Date"))
        if not isinstance(body, Mapping) or not isinstance(body.get("items", []), list):
            raise ListFailed(resource.name, 0, "response is not a list object")
        raw_metadata = body.get("metadata")
        metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}
        page = [item for item in body.get("items") or [] if isinstance(item, dict)]
        del body
        items.extend(page if keep is None else map(keep, page))
        del page
        rv = rv or metadata.get("resourceVersion")
        token = metadata.get("continue") or None
        if not token:
            break
    return Listing(items, rv, server_time)


def list_with_retry(
    api: k8s.ApiClient,
    resource: Resource,
    *,
    attempts: int = 3,
    backoff: float | None = None,
    log: Callable[[str], None] = lambda message: None,
    keep: Callable[[dict[str, Any]], Any] | None = None,
) -> Listing:
    """:func:`list_objects` retried with exponential backoff on 5xx, 429 and transport errors."""
    delay = RETRY_BACKOFF if backoff is None else backoff
    for attempt in range(1, attempts + 1):
        try:
            return list_objects(api, resource, keep=keep)
        except ListFailed as exc:
            retryable = exc.status in (0, 429) or exc.status >= 500
            if attempt == attempts or not retryable:
                raise
            log(f"{exc}; retrying in {delay:.1f}s ({attempt}/{attempts})")
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def api_server_time(api: k8s.ApiClient) -> datetime | None:
    """The apiserver's current time from the ``Date`` header of a cheap discovery request."""
    try:
        response = k8s.CoreApi(api).get_api_versions_with_http_info()
    except Exception:
        return None
    # (data, status, headers) in the legacy calling convention, an ApiResponse otherwise.
    headers = response[2] if isinstance(response, tuple) else getattr(response, "headers", None)
    headers = headers or {}
    return parse_http_date(headers.get("Date") or headers.get("date"))


def request_verb(method: str, url: str) -> str:
    """The Kubernetes verb of one REST call (what RBAC and the apiserver's metrics name it)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    method = method.upper()
    if method == "POST":
        return "create"
    if method in ("PUT", "PATCH", "DELETE"):
        return {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    segments = [s for s in parts.path.split("/") if s]
    if segments[:1] == ["api"]:
        rest = segments[2:]
    elif segments[:1] == ["apis"]:
        rest = segments[3:]
    else:
        return "get"  # /version and the like
    if parse_qs(parts.query).get("watch", [""])[0] in ("true", "1") or rest[:1] == ["watch"]:
        return "watch"
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    return "list" if len(rest) == 1 else "get"


def count_requests(api: k8s.ApiClient, count: Callable[[str], None]) -> None:
    """Call ``count(verb)`` for every request ``api`` sends (the agent's /metrics)."""
    rest: Any = api.rest_client
    send: Callable[..., Any] = rest.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        count(request_verb(method, url))
        return send(method, url, *args, **kwargs)

    rest.request = request
