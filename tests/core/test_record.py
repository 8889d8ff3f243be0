from decimal import Decimal

from kubetally.periods import Period, PeriodKind, parse_time
from kubetally.record import UsageRecord, record_id, seconds_to_hours

HOUR = Period(parse_time("2024-04-29T00:00:00Z"), parse_time("2024-04-29T01:00:00Z"))


def make(usage: object = 200, **kw: object) -> UsageRecord:
    args: dict = dict(
        cluster="default-cluster",
        kind="Vgpu",
        category="VgpuCore",
        item="VgpuCoreUsed",
        name="GPU-2eec4202-80dc-870f-3ca5-25879d96eca7",
        namespace="cpaas-system",
        project="cpaas-system",
        period_kind=PeriodKind.hourly,
        period=HOUR,
        usage=usage,
    )
    args.update(kw)
    return UsageRecord.measure(**args)


def test_id_is_deterministic_32_hex_and_ignores_quantity_and_enrichment() -> None:
    a = make(200)
    b = make(Decimal("201.5"), labels={"modelName": "Tesla T4"})
    assert a.id == b.id
    assert len(a.id) == 32 and int(a.id, 16) >= 0
    # Pinned: the hash of the canonical fields must never change between releases, or every
    # ledger would see "new" records after an upgrade.
    assert a.id == record_id(
        cluster="default-cluster",
        kind="Vgpu",
        category="VgpuCore",
        item="VgpuCoreUsed",
        name="GPU-2eec4202-80dc-870f-3ca5-25879d96eca7",
        namespace="cpaas-system",
        project="cpaas-system",
        tenant="",
        period="Hourly",
        start=HOUR.start,
    )


def test_dimensions_split_records() -> None:
    h100 = make(dimensions={"gpu_sku": "nvidia-h100-sxm-80gb"})
    t4 = make(dimensions={"gpu_sku": "nvidia-t4-16gb"})
    assert h100.id != t4.id
    assert h100.labels == {"gpu_sku": "nvidia-h100-sxm-80gb"}


def test_record_shape_matches_design() -> None:
    r = make(200, labels={"key1": "val1"})
    d = r.to_dict()
    assert d["date"] == "2024-04-29T00:00:00Z"
    assert d["start"] == "2024-04-29T00:00:00Z"
    assert d["end"] == "2024-04-29T00:59:59Z"
    assert d["period"] == "hourly"
    assert d["revision"] == 0
    assert list(d) == [
        "id",
        "kind",
        "category",
        "item",
        "name",
        "namespace",
        "cluster",
        "project",
        "tenant",
        "labels",
        "date",
        "period",
        "start",
        "end",
        "usage",
        "unit",
        "revision",
    ]


def test_json_keeps_decimals_exact() -> None:
    r = make(Decimal("0.1234567890123456789"))
    line = r.to_json()
    assert '"usage":0.1234567890123456789' in line
    assert UsageRecord.from_json(line) == r
    # A float goes through repr, never through binary noise.
    assert make(0.1).usage == Decimal("0.1")


def test_seconds_to_hours_nine_places() -> None:
    assert seconds_to_hours(1) == Decimal("0.000277778")
    assert seconds_to_hours(3600) == Decimal("1.000000000")
    assert seconds_to_hours(1200) == Decimal("0.333333333")


def test_fast_record_id_is_the_canonical_json_hash() -> None:
    """The per-record id is written field by field for speed; it must hash the very bytes of
    ``json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, including
    quotes, backslashes, control characters and non-ASCII text, and dimensions in key order."""
    import json
    import random

    from kubetally.ledger.store import _labels_json
    from kubetally.record import record_id_reference

    rng = random.Random(7)
    alphabet = 'ab"\\\n\t\x01/é中🙂 -_.:{}[],'
    for _ in range(2000):
        word = lambda: "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))  # noqa: E731
        fields = dict(
            cluster=word(),
            kind=word(),
            category=word(),
            item=word(),
            name=word(),
            namespace=word(),
            project=word(),
            tenant=word(),
            period=rng.choice(["hourly", "Daily", "5m"]),
            start=HOUR.start,
            dimensions={word(): word() for _ in range(rng.randrange(0, 4))} or rng.choice([None, {}]),
        )
        assert record_id(**fields) == record_id_reference(**fields)  # type: ignore[arg-type]
        labels = {word(): word() for _ in range(rng.randrange(0, 5))}
        assert _labels_json(labels) == json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # The pinned id of the test above, through the reference too.
    assert (
        record_id_reference(
            cluster="default-cluster",
            kind="Vgpu",
            category="VgpuCore",
            item="VgpuCoreUsed",
            name="GPU-2eec4202-80dc-870f-3ca5-25879d96eca7",
            namespace="cpaas-system",
            project="cpaas-system",
            tenant="",
            period="Hourly",
            start=HOUR.start,
        )
        == make().id
    )


def test_measure_builds_the_same_record_as_validation() -> None:
    """``measure`` skips re-validation; the record must equal the validated one field by field."""
    r = make(Decimal("1.2500"), labels={"a": "1"}, dimensions={"gpu_sku": "x"}, tenant="t", unit="hours")
    assert r == UsageRecord.model_validate(r.model_dump())
    assert (r.usage, str(r.usage)) == (Decimal("1.25"), "1.25")
    assert r.end == parse_time("2024-04-29T00:59:59Z") and r.date.tzinfo is not None
    assert r.model_copy(update={"usage": Decimal(2)}).usage == Decimal(2) and r.usage == Decimal("1.25")


def test_record_builder_makes_what_measure_makes() -> None:
    """The meter's RecordBuilder skips measure's per-record work; each record must equal
    measure's field by field (id included) for any text, consecutive records about the same or
    another subject, and a name the ledger cannot hold must be refused by field as measure does."""
    import random

    import pytest
    from pydantic import ValidationError

    from kubetally.record import RecordBuilder, normalize

    rng = random.Random(5)
    alphabet = 'ab"\\\n\t\x01/é中🙂 -_.:{}[],'

    def word() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 6)))

    build = RecordBuilder(cluster="gpu-east", period_kind=PeriodKind.hourly, period=HOUR, unit="h")
    subject = (word(), word(), word(), word(), word())
    for _ in range(2000):
        if rng.random() < 0.4:
            subject = (word(), word(), word(), word(), word())
        kind, name, namespace, project, tenant = subject
        category, item = rng.choice([("compute", "gpu_hours"), ("compute", "cpu_core_hours"), (word(), word())])
        dims = tuple(sorted({word(): word() for _ in range(rng.randrange(0, 3))}.items()))
        labels = {word(): word() for _ in range(rng.randrange(0, 4))}
        usage = normalize(Decimal(rng.randrange(0, 10**12)).scaleb(-9))
        expected = UsageRecord.measure(
            cluster="gpu-east",
            kind=kind,
            category=category,
            item=item,
            name=name,
            namespace=namespace,
            project=project,
            tenant=tenant,
            period_kind=PeriodKind.hourly,
            period=HOUR,
            usage=usage,
            unit="h",
            dimensions=dict(dims),
            labels=labels,
        )
        got = build(kind, category, item, name, namespace, project, tenant, usage, dims, dict(labels))
        assert got == expected and got.to_json() == expected.to_json()
    with pytest.raises(ValidationError, match="name"):
        build("Pod", "compute", "gpu_hours", "x" * 513, "ns", "", "t", Decimal(1), (), {})
    with pytest.raises(ValidationError, match="tenant"):
        build("Pod", "compute", "gpu_hours", "p", "ns", "", "t\x00", Decimal(1), (), {})
