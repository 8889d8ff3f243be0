"""A small PromQL HTTP client: range and instant queries, exact values, clear errors.

Values are kept as the strings Prometheus sends and turned straight into :class:`Decimal`, so
no float ever touches a quantity on our side. Every failure — unreachable server, timeout,
HTTP error, ``status: error`` answer, an answer that is not Prometheus JSON — becomes a
:class:`~kubetally.errors.SourceError` that names the server (a URL password shown as ``***``),
what was being asked (``what``, e.g. ``item 'GpuAllocation' usage.query``) and the query, so an
operator can run it by hand.

The bearer token file is re-read on every request because projected service-account tokens
rotate; the token itself never appears in a message.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx

from kubetally.errors import KubetallyError, SourceError
from kubetally.periods import utc
from kubetally.redact import redact_text, redact_url

_QUERY_SHOWN = 300
#: Prometheus answers at most 11,000 points per series; stay a little below.
MAX_POINTS = 10_000


class PrometheusUnreachable(SourceError):
    """No usable answer at all: connection refused, DNS, TLS, timeout."""


class QueryFailed(SourceError):
    """Prometheus answered, but with an error (bad PromQL, overload, a proxy's error page)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        #: The server's own words, e.g. ``HTTP 400 bad_data: 1:5: parse error: …``.
        self.reason = reason


@dataclass(frozen=True)
class Series:
    """One result series: its labels (``__name__`` included when Prometheus kept it) and points."""

    labels: dict[str, str]
    points: tuple[tuple[datetime, Decimal], ...]


@dataclass(frozen=True)
class QueryResult:
    series: list[Series]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RawSeries:
    """One range-query series as Prometheus sent it: its labels and ``values``, the answer's own
    ``[timestamp, "value"]`` pairs, untouched.

    A collector reads only the points on its grid and parses each distinct value once; turning
    every point of a 10,000-series answer into objects first (:class:`Series`) cost more than
    everything else the collector does with it."""

    labels: dict[str, str]
    values: list[Any]


@dataclass(frozen=True)
class RawResult:
    series: list[RawSeries]
    warnings: list[str] = field(default_factory=list)


def _shorten(text: str, limit: int = _QUERY_SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _timestamp(value: datetime) -> str:
    seconds = (utc(value) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(raw: Any) -> datetime:
    """A timestamp of an answer: Prometheus sends unix seconds as a JSON number with at most
    millisecond precision (whole seconds, the usual case, arrive as integers)."""
    if type(raw) is int:
        return _EPOCH + timedelta(seconds=raw)
    millis = int((Decimal(str(raw)) * 1000).to_integral_value())
    return _EPOCH + timedelta(milliseconds=millis)


def parse_value(raw: Any) -> Decimal:
    # "NaN", "+Inf" and "-Inf" parse to non-finite Decimals; callers decide what they mean.
    return Decimal(str(raw))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def check_url(url: str) -> None:
    """Refuse a Prometheus URL that cannot work, before anything is opened or written."""
    shown = redact_url(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise KubetallyError(f"Prometheus URL {shown}: not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise KubetallyError(
            f"Prometheus URL {shown}: expected http(s)://HOST[:PORT][/PATH], e.g. http://prometheus:9090"
        )


class PrometheusClient:
    """Queries one Prometheus (or a compatible server such as VictoriaMetrics or Thanos)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: timedelta | float = 60.0,
        bearer_token_file: str | Path | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        self.url = url.rstrip("/")
        #: The URL as messages show it: a userinfo password is never printed.
        self.shown_url = redact_url(self.url)
        check_url(self.url)
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        self.timeout = seconds
        self.bearer_token_file = Path(bearer_token_file) if bearer_token_file else None
        self.extra_headers = dict(headers or {})
        self._http = httpx.Client(timeout=seconds, transport=transport, follow_redirects=True, verify=verify, auth=auth)

    @classmethod
    def from_settings(
        cls, url: str, settings: Any, *, transport: httpx.BaseTransport | None = None
    ) -> PrometheusClient:
        """A client for the ``prometheus:`` section: bearer token, basic auth (password from a
        file or the environment), a private CA bundle, a client certificate and extra headers
        (``X-Scope-OrgID`` for Mimir, Cortex and Thanos tenants). A setting that cannot work is
        one line naming it, before any query."""
        verify: ssl.SSLContext | bool = True
        ca_file = getattr(settings, "ca_file", None)
        cert_file = getattr(settings, "cert_file", None)
        key_file = getattr(settings, "key_file", None)
        if key_file and not cert_file:
            raise KubetallyError("prometheus.key_file needs prometheus.cert_file")
        if ca_file or cert_file:
            try:
                context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise KubetallyError(f"prometheus.ca_file {ca_file}: {_reason(exc)}") from None
            if cert_file:
                try:
                    context.load_cert_chain(cert_file, key_file)
                except (OSError, ssl.SSLError) as exc:
                    raise KubetallyError(
                        f"prometheus.cert_file {cert_file} / key_file {key_file}: {_reason(exc)}"
                    ) from None
            verify = context
        auth = None
        username = getattr(settings, "username", None)
        if username:
            password_file = getattr(settings, "password_file", None)
            variable = getattr(settings, "password_env", None) or "PROMETHEUS_PASSWORD"
            if password_file:
                try:
                    password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    raise KubetallyError(f"prometheus.password_file {password_file}: {_reason(exc)}") from None
            elif os.environ.get(variable) is not None:
                password = os.environ[variable]
            else:
                raise KubetallyError(
                    f"prometheus.username is set but there is no password: set prometheus.password_file or ${variable}"
                )
            auth = (username, password)
        return cls(
            url,
            timeout=settings.timeout,
            bearer_token_file=getattr(settings, "bearer_token_file", None),
            transport=transport,
            verify=verify,
            auth=auth,
            headers=getattr(settings, "headers", None) or {},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public queries ----------------------------------------------------------------------

    def query_range(self, query: str, start: datetime, end: datetime, step: timedelta, *, what: str) -> QueryResult:
        """Evaluate ``query`` at ``start``, ``start+step`` … ``end`` (both inclusive), every point
        as a ``(datetime, Decimal)``."""
        raw = self.query_range_raw(query, start, end, step, what=what)
        return self._series(raw, query=query, what=what)

    def query_range_raw(self, query: str, start: datetime, end: datetime, step: timedelta, *, what: str) -> RawResult:
        """:meth:`query_range` with each series' points as Prometheus sent them (see
        :class:`RawSeries`); :meth:`malformed` is the error for a point that is not
        ``[number, "value"]``.

        Prometheus refuses more than 11,000 points per series in one answer (a daily period at a
        5 s step has 17,280), so long grids are asked for in consecutive chunks and merged.
        """
        if step < timedelta(seconds=1) or step.total_seconds() % 1:
            raise ValueError(f"step must be a whole number of seconds, not {step}")
        points = int((end - start) / step) + 1
        if points <= MAX_POINTS:
            return self._query_range_once(query, start, end, step, what=what)
        merged: dict[tuple[tuple[str, str], ...], list[Any]] = {}
        warnings: list[str] = []
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + step * (MAX_POINTS - 1))
            part = self._query_range_once(query, chunk_start, chunk_end, step, what=what)
            warnings.extend(w for w in part.warnings if w not in warnings)
            for series in part.series:
                merged.setdefault(tuple(sorted(series.labels.items())), []).extend(series.values)
            chunk_start = chunk_end + step
        return RawResult(
            series=[RawSeries(labels=dict(key), values=values) for key, values in merged.items()], warnings=warnings
        )

    def _query_range_once(self, query: str, start: datetime, end: datetime, step: timedelta, *, what: str) -> RawResult:
        form = {
            "query": query,
            "start": _timestamp(start),
            "end": _timestamp(end),
            "step": f"{int(step.total_seconds())}s",
            "timeout": self._timeout_param(),
        }
        body = self._post("/api/v1/query_range", form, query=query, what=what)
        data = body["data"]
        kind = data.get("resultType")
        if kind != "matrix":
            raise self._fail(what, f"the query returns a {kind}, not an instant vector of series", query)
        series: list[RawSeries] = []
        try:
            for entry in data.get("result") or []:
                labels = {str(k): str(v) for k, v in (entry.get("metric") or {}).items()}
                values = entry.get("values") or []
                if type(values) is not list:
                    raise TypeError(f"values is a {type(values).__name__}, not a list")
                series.append(RawSeries(labels, values))
        except (AttributeError, TypeError, ValueError) as exc:
            raise self.malformed(what, exc, query) from None
        return RawResult(series=series, warnings=[str(w) for w in body.get("warnings") or []])

    def malformed(self, what: str, exc: BaseException, query: str) -> QueryFailed:
        """The error for an answer whose result does not have Prometheus' shape."""
        return self._fail(what, f"malformed result ({type(exc).__name__}: {exc})", query)

    def _timeout_param(self) -> str:
        return f"{max(1, int(self.timeout))}s"

    def query(self, query: str, at: datetime, *, what: str) -> QueryResult:
        """Evaluate ``query`` at one instant; the answer must be an instant vector."""
        form = {"query": query, "time": _timestamp(at), "timeout": self._timeout_param()}
        body = self._post("/api/v1/query", form, query=query, what=what)
        data = body["data"]
        kind = data.get("resultType")
        if kind != "vector":
            raise self._fail(what, f"the query returns a {kind}, not an instant vector of series", query)
        try:
            series = [
                RawSeries({str(k): str(v) for k, v in (entry.get("metric") or {}).items()}, [entry["value"]])
                for entry in data.get("result") or []
            ]
        except (AttributeError, KeyError, TypeError) as exc:
            raise self.malformed(what, exc, query) from None
        return self._series(RawResult(series, [str(w) for w in body.get("warnings") or []]), query=query, what=what)

    # -- plumbing ----------------------------------------------------------------------------

    def _message(self, what: str, reason: str, query: str | None) -> str:
        shown = f" (query: {_shorten(query)})" if query else ""
        return f"Prometheus {self.shown_url}: {what}: {redact_text(reason, self.url)}{shown}"

    def _fail(self, what: str, reason: str, query: str | None) -> QueryFailed:
        return QueryFailed(self._message(what, reason, query), reason)

    def _unreachable(self, what: str, reason: str, query: str | None) -> PrometheusUnreachable:
        return PrometheusUnreachable(self._message(what, reason, query))

    def _headers(self, what: str) -> dict[str, str]:
        if self.bearer_token_file is None:
            return dict(self.extra_headers)
        try:
            token = self.bearer_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise self._unreachable(
                what, f"cannot read bearer_token_file {self.bearer_token_file}: {exc.strerror or exc}", None
            ) from None
        return {**self.extra_headers, "Authorization": f"Bearer {token}"}

    def _post(self, path: str, form: dict[str, str], *, query: str, what: str) -> dict[str, Any]:
        headers = self._headers(what)
        try:
            response = self._http.post(self.url + path, data=form, headers=headers)
        except httpx.TimeoutException:
            raise self._unreachable(what, f"no answer within {self.timeout:g}s (prometheus.timeout)", query) from None
        except httpx.HTTPError as exc:
            raise self._unreachable(what, f"unreachable ({type(exc).__name__}: {exc})", query) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status") == "error":
            kind = body.get("errorType") or "error"
            raise self._fail(what, f"HTTP {response.status_code} {kind}: {body.get('error', '')}", query)
        if response.status_code != 200:
            snippet = _shorten(response.text or "", 200) or response.reason_phrase
            raise self._fail(what, f"HTTP {response.status_code}: {snippet}", query)
        if not isinstance(body, dict) or body.get("status") != "success" or not isinstance(body.get("data"), dict):
            raise self._fail(what, "the answer is not a Prometheus API response", query)
        return body

    def _series(self, raw: RawResult, *, query: str, what: str) -> QueryResult:
        series: list[Series] = []
        # Every series of a range query shares the step grid, and values repeat (0, 1, a device's
        # memory size): each distinct timestamp and value is parsed once per response and the
        # (immutable) result shared, instead of two new objects per point.
        times: dict[Any, datetime] = {}
        values: dict[Any, Decimal] = {}
        try:
            for entry in raw.series:
                points = []
                for ts, value in entry.values:
                    at = times.get(ts)
                    if at is None:
                        at = times[ts] = parse_time(ts)
                    number = values.get(value)
                    if number is None:
                        number = values[value] = parse_value(value)
                    points.append((at, number))
                series.append(Series(labels=entry.labels, points=tuple(points)))
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise self.malformed(what, exc, query) from None
        return QueryResult(series=series, warnings=raw.warnings)
