"""Cost-model items collected from Prometheus, one closed period at a time.

* :mod:`.client` — PromQL over HTTP, exact Decimal values, clear errors;
* :mod:`.evaluate` — the evaluation grid and ``sum``/``integral`` (and how ``increase`` fits it);
* :mod:`.join` — label series joined onto usage series, dimensions;
* :mod:`.project` — a namespace's project from kube-state-metrics namespace labels;
* :mod:`.collector` — item × period → usage records;
* :mod:`.run` — ``kubetally collect --prometheus``: watermarks, backfill, ``--follow``;
* :mod:`.check` — ``kubetally validate --prometheus``: the server parses every query.

Built-in items live as YAML presets in ``kubetally/config/presets``.
"""
