"""The verb each Kubernetes API request counts under in ``kubetally_kubernetes_api_requests_total``
(the names RBAC and the apiserver's own metrics use)."""

from __future__ import annotations

import pytest

from kubetally.sources.kubernetes.client import request_verb


@pytest.mark.parametrize(
    ("method", "url", "verb"),
    [
        ("GET", "https://k/api/v1/pods?limit=500", "list"),
        ("GET", "https://k/api/v1/nodes?watch=true&resourceVersion=7", "watch"),
        ("GET", "https://k/api/v1/watch/nodes", "watch"),  # the legacy watch path
        ("GET", "https://k/apis/apps/v1/watch/deployments", "watch"),
        ("GET", "https://k/api/v1/namespaces", "list"),
        ("GET", "https://k/api/v1/namespaces/team-a", "get"),
        ("GET", "https://k/api/v1/namespaces/cpaas-system/configmaps?labelSelector=a%3Dtrue", "list"),
        ("GET", "https://k/apis/coordination.k8s.io/v1/namespaces/kt/leases/kubetally-agent", "get"),
        ("PUT", "https://k/apis/coordination.k8s.io/v1/namespaces/kt/leases/kubetally-agent", "update"),
        ("POST", "https://k/apis/coordination.k8s.io/v1/namespaces/kt/leases", "create"),
        ("POST", "https://k/api/v1/namespaces/kube-public/events", "create"),
        ("DELETE", "https://k/api/v1/namespaces/kt/configmaps/x", "delete"),
        ("PATCH", "https://k/api/v1/namespaces/kt/configmaps/x", "patch"),
        ("GET", "https://k/api", "get"),  # discovery (the apiserver clock's Date header)
    ],
)
def test_request_verb(method: str, url: str, verb: str) -> None:
    assert request_verb(method, url) == verb
