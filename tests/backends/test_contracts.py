"""Locating and loading the vendor contracts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetally.testing import MissingPart, contracts

pytestmark = pytest.mark.usefixtures("contracts_available")


def test_contracts_dir_defaults_to_shared_beside_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(contracts.CONTRACTS_ENV, raising=False)
    found = contracts.contracts_dir()

    assert found == Path(__file__).resolve().parents[3] / "shared" / "contracts"
    assert (found / "SOURCES.md").is_file()


def test_contracts_dir_override_and_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(contracts.CONTRACTS_ENV, str(tmp_path))
    assert contracts.contracts_dir() == tmp_path

    monkeypatch.setenv(contracts.CONTRACTS_ENV, str(tmp_path / "absent"))
    with pytest.raises(MissingPart):
        contracts.contracts_dir()


def test_specs_load_once() -> None:
    # Parsing the specs is the slow part (about 0.5 s per MB of YAML); each is parsed once and
    # cached. How long that takes is a benchmark's business, not a unit test's.
    specs = [contracts.load_spec(name) for name in contracts.SPEC_FILES]

    assert contracts.load_spec("lago") is specs[0]
    assert contracts.load_spec("lago").match("POST", "/events/batch").operation.operation_id == "createBatchEvents"
    assert contracts.load_spec("lago").match("GET", "/billable_metrics/gpu").path_params == {"code": "gpu"}
    assert contracts.load_spec("stripe").match("POST", "/v1/billing/meters/mtr_1/deactivate") is not None
    assert contracts.load_spec("openmeter").match("PATCH", "/api/v1/events") is None


def test_shape_cache_only_for_type_only_schemas() -> None:
    lago = contracts.load_spec("lago")
    event = {"transaction_id": "t", "external_subscription_id": "s", "code": "c", "properties": {"gb": "1"}}
    schema = "#/components/schemas/EventInputObject"

    assert lago.errors(schema, event) == []
    assert lago.known_valid(schema, {**event, "transaction_id": "other"})
    assert not lago.known_valid(schema, {**event, "properties": {"gb": 1}})
    assert lago.errors(schema, {**event, "properties": {"gb": 1}}) != []

    metronome = contracts.load_spec("metronome")
    ingest = metronome.match("POST", "/v1/ingest").operation
    ingest_schema = metronome.request_schema(ingest, "application/json")
    ok = [{"transaction_id": "t", "customer_id": "c", "event_type": "e", "timestamp": "2026-11-27T10:00:00Z"}]
    assert metronome.errors(ingest_schema, ok) == []
    assert not metronome.known_valid(ingest_schema, ok)  # date-time format makes values matter


def test_cloudevents_schema() -> None:
    ok = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}

    assert contracts.cloudevent_errors([ok]) == []
    assert contracts.cloudevent_errors([{**ok, "id": ""}], "body") == ["body/0/id: '' should be non-empty"]
