"""Send one budget alert to one notify target: a signed webhook or a Slack-compatible one.

The webhook is signed exactly like the usage webhook destination (:mod:`kubetally.delivery.signing`,
Standard Webhooks) with the alert id as ``webhook-id``: the id is deterministic, so a receiver
that deduplicates by ``webhook-id`` sees one alert even when a send whose answer was lost is
repeated after a crash. Slack's incoming webhooks take ``{"text": ...}`` and nothing else we need.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from kubetally.config.budgets import AlertTarget
from kubetally.delivery import signing
from kubetally.delivery.destinations.base import body_text, resolve_secret
from kubetally.errors import ConfigError, KubetallyError


class AlertSendError(KubetallyError):
    """The target did not acknowledge the alert; it stays pending and is sent again later."""


def target_url(target: AlertTarget, environ: Mapping[str, str]) -> str:
    """The target's URL; a Slack URL (a secret) only from the environment or a file."""
    if target.url:
        return target.url
    if target.url_file:
        try:
            value = Path(target.url_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"budgets.notify {target.key}: url_file: cannot read ({exc.strerror or exc})"]) from None
        if value:
            return value
        raise ConfigError([f"budgets.notify {target.key}: url_file {target.url_file} is empty"])
    assert target.url_env is not None
    value = environ.get(target.url_env, "").strip()
    if not value:
        raise ConfigError([f"budgets.notify {target.key}: set the environment variable {target.url_env}"])
    return value


def request_for(
    target: AlertTarget, alert_id: str, payload: dict[str, Any], text: str, environ: Mapping[str, str]
) -> tuple[str, bytes, dict[str, str]]:
    """(url, body, headers) of the request that delivers an alert to ``target``."""
    url = target_url(target, environ)
    if target.type == "slack":
        body = json.dumps({"text": text}, ensure_ascii=False).encode()
        return url, body, {"Content-Type": "application/json"}
    secret = resolve_secret(f"budgets.notify {target.key}", target.secret_env, target.secret_file, dict(environ))
    assert secret is not None
    try:
        key = signing.decode_secret(secret)
    except ValueError as exc:
        raise ConfigError([f"budgets.notify {target.key}: {exc}"]) from None
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    headers.update(signing.signature_headers(key, alert_id, int(time.time()), body))
    return url, body, headers


def send_alert(
    target: AlertTarget,
    alert_id: str,
    payload: dict[str, Any],
    text: str,
    environ: Mapping[str, str],
    client: httpx.Client,
) -> None:
    """POST the alert; any non-2xx answer or network failure raises :class:`AlertSendError`."""
    url, body, headers = request_for(target, alert_id, payload, text, environ)
    try:
        answer = client.post(url, content=body, headers=headers, timeout=target.timeout.total_seconds())
    except httpx.HTTPError as exc:
        raise AlertSendError(f"{target.key}: {type(exc).__name__}: {exc}") from None
    if not 200 <= answer.status_code < 300:
        raise AlertSendError(f"{target.key}: HTTP {answer.status_code}: {body_text(answer, 200)}")
