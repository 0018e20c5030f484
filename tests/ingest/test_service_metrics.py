"""The service-metrics report codec, the catalogue of what the services report, and the
/metrics rendering, held to the Prometheus naming conventions (no brokers)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from api.http_metrics import HttpMetrics
from api.metrics import STALE_AFTER_S, ServiceReports, Snapshot
from config.settings import BridgeSettings
from ingest import contract, service_metrics
from ingest.bridge import Bridge
from ingest.service_metrics import CATALOGUE, Report, Sample
from worker.agents import metrics_samples as worker_samples

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=20)
label_names = names.filter(lambda n: n not in service_metrics.RESERVED_LABELS)
samples = st.builds(
    Sample, name=names,
    value=st.floats(allow_nan=False, allow_infinity=False, width=32).map(float),
    kind=st.sampled_from(["counter", "gauge"]), help=st.text(max_size=30),
    labels=st.dictionaries(label_names, st.text(max_size=10), max_size=3).map(
        lambda d: tuple(sorted(d.items()))))
reports = st.builds(Report, service=st.text(min_size=1, max_size=10),
                    instance=st.text(min_size=1, max_size=20),
                    sent_at_ms=st.integers(0, 2**53), samples=st.lists(samples, max_size=5))


@given(reports)
def test_reports_round_trip(report: Report) -> None:
    assert service_metrics.decode(service_metrics.encode(report)) == report


@pytest.mark.parametrize(("raw", "message"), [
    (b"nope", "not JSON"), (b"[]", "JSON object"),
    (b'{"service": "b", "instance": "i", "sent_at_ms": true, "samples": []}', "sent_at_ms"),
    (b'{"service": "b", "instance": "i", "sent_at_ms": 1, "samples": [{"name": "A-b", '
     b'"value": 1}]}', "samples[0].name"),
    (b'{"service": "b", "instance": "i", "sent_at_ms": 1, "samples": [{"name": "a", '
     b'"value": "1"}]}', "samples[0].value"),
    (b'{"service": "b", "instance": "i", "sent_at_ms": 1, "samples": [{"name": "a", '
     b'"value": 1, "labels": {"x": 2}}]}', "labels"),
    (b'{"service": "b", "instance": "i", "sent_at_ms": 1, "samples": [{"name": "a", '
     b'"value": 1, "labels": {"instance": "h"}}]}', "instance is reserved"),
])
def test_bad_reports_are_refused_precisely(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        service_metrics.decode(raw)


def test_newest_report_per_instance_wins_and_silent_processes_drop_out() -> None:
    now = [1000.0]
    held = ServiceReports("unused:9092", clock=lambda: now[0])
    sample = [Sample("bridge_messages_total", 5)]
    held.add(service_metrics.encode(Report("bridge", "a", 999_000, sample)))
    held.add(service_metrics.encode(Report("bridge", "a", 990_000, [])))  # older: ignored
    held.add(service_metrics.encode(Report("worker", "b", 900_000, [])))
    held.add(b"garbage")
    assert held.rejected == 1
    assert {(r.service, r.instance, len(r.samples)) for r in held.current()} == {
        ("bridge", "a", 1), ("worker", "b", 0)}
    now[0] = 900 + STALE_AFTER_S + 1  # b has been silent too long
    assert [r.instance for r in held.current()] == ["a"]


def test_snapshot_renders_valid_prometheus_text() -> None:
    reports = [
        Report("bridge", "h:1", 10_000, [
            Sample("bridge_messages_total", 42),
            Sample("bridge_dead_letters_total", 3, labels=(("reason", "not_json"),)),
            Sample("bridge_dead_letters_total", 1, labels=(("reason", "unknown_topic"),)),
            Sample("bridge_messages_in_flight", 7, "gauge")]),
        Report("bridge", "h:2", 11_000, [Sample("bridge_messages_total", 8)]),
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(reports, {("ownercare.vehicles", 0): 12}, "ownercare",
                               [("dtc", "critical", "open", 2)], now_s=20.0))
    text = generate_latest(registry).decode()
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    assert values[("ownercare_bridge_messages_total",
                   (("replica", "h:1"), ("service", "bridge")))] == 42
    assert values[("ownercare_bridge_messages_total",
                   (("replica", "h:2"), ("service", "bridge")))] == 8
    assert values[("ownercare_bridge_dead_letters_total",
                   (("reason", "not_json"), ("replica", "h:1"), ("service", "bridge")))] == 3
    assert values[("ownercare_bridge_messages_in_flight",
                   (("replica", "h:1"), ("service", "bridge")))] == 7
    assert values[("ownercare_service_report_age_seconds",
                   (("replica", "h:1"), ("service", "bridge")))] == 10
    assert values[("ownercare_consumer_lag_records", (
        ("group", "ownercare"), ("partition", "0"), ("topic", "ownercare.vehicles")))] == 12
    assert values[("ownercare_alerts", (("severity", "critical"), ("status", "open"),
                                        ("type", "dtc")))] == 2
    assert values[("ownercare_kafka_lag_available", ())] == 1


# ---------------------------------------------------------------------------- naming conventions

# https://prometheus.io/docs/practices/naming/: base units, written last.
BASE_UNITS = {"seconds", "bytes", "volts", "amperes", "joules", "grams", "meters", "celsius",
              "ratio", "records"}
NOT_BASE_UNITS = {"ms", "milliseconds", "microseconds", "minutes", "hours", "days", "kb",
                  "kib", "mb", "mib", "kilobytes", "megabytes", "percent", "millivolts"}


def convention_problems(name: str, kind: str, labels: set[str]) -> list[str]:
    """What breaks the Prometheus naming conventions in one exposed family."""
    problems = []
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        problems.append(f"{name}: not snake_case")
    words = name.removesuffix("_total").split("_")
    if kind == "counter" and not name.endswith("_total"):
        problems.append(f"{name}: a counter must end in _total")
    if kind != "counter" and name.endswith("_total"):
        problems.append(f"{name}: only counters end in _total")
    if wrong := NOT_BASE_UNITS & set(words):
        problems.append(f"{name}: {wrong} is not a base unit")
    if kind == "histogram" or kind == "summary":
        words = name.split("_")
    units = [i for i, word in enumerate(words) if word in BASE_UNITS]
    if units and units[-1] != len(words) - 1:
        problems.append(f"{name}: the unit goes last")
    if reserved := labels & {"instance", "job"}:
        problems.append(f"{name}: label {reserved} belongs to Prometheus' scrape target")
    return problems


def exposed(collector: Collector) -> list[tuple[str, str, set[str]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    out = []
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        out.append((name, family.type, {k for s in family.samples for k in s.labels}))
    return out


def test_the_catalogue_follows_the_prometheus_conventions() -> None:
    problems = [p for d in CATALOGUE
                for p in convention_problems(d.name, d.kind, set(d.labels))]
    assert not problems
    assert len({d.name for d in CATALOGUE}) == len(CATALOGUE)


def test_everything_get_metrics_renders_follows_the_prometheus_conventions() -> None:
    reports = [Report(service, "h:1", 10_000, [
        d.sample(1, *("x" for _ in d.labels)) for d in CATALOGUE
        if d.name.startswith(service + "_")]) for service in ("bridge", "worker")]
    http = HttpMetrics()
    http.observe("GET", "/alerts", 200, 0.01)
    snapshot = Snapshot(reports, {("ownercare.vehicles", 0): 1}, "ownercare",
                        [("dtc", "warning", "open", 1)], now_s=20.0, extra=http.collect())
    families = exposed(snapshot)
    assert {name for name, _, _ in families} >= {
        "ownercare_bridge_dead_letters_total", "ownercare_worker_vehicle_state_mean_bytes",
        "http_requests_total", "http_request_duration_seconds"}
    problems = [p for name, kind, labels in families
                for p in convention_problems(name, kind, labels)]
    assert not problems


@pytest.mark.parametrize(("name", "kind", "problem"), [
    ("worker_state_bytes_mean", "gauge", "the unit goes last"),
    ("bridge_messages", "counter", "must end in _total"),
    ("bridge_in_flight_total", "gauge", "only counters"),
    ("api_latency_ms", "gauge", "not a base unit"),
])
def test_the_convention_check_catches_what_it_is_for(name: str, kind: str,
                                                       problem: str) -> None:
    assert any(problem in p for p in convention_problems(name, kind, set()))
    assert convention_problems("x_total", "counter", {"instance"})


# ---------------------------------------------------------------------------- who reports what


def test_a_fresh_bridge_reports_every_dead_letter_reason_at_zero() -> None:
    bridge = Bridge(BridgeSettings())
    bridge.dead_letter_reasons[contract.Reason.NOT_JSON.value] += 2
    reasons = {dict(s.labels)["reason"]: s.value for s in bridge.metrics_samples()
               if s.name == "bridge_dead_letters_total"}
    assert set(reasons) == {r.value for r in contract.Reason}
    assert reasons["not_json"] == 2
    assert sum(reasons.values()) == 2


def test_the_bridge_and_the_worker_report_exactly_the_catalogue() -> None:
    snapshot = {"records": 5, "batches": 2, "alerts": 1, "state_writes": 3, "duplicates": 0,
                "vehicles": 4, "state_bytes_mean": 812.5, "state_bytes_max": 1200,
                "last_event_ts": 1_767_571_200_000}
    reported = {(s.name, s.kind) for s in
                [*Bridge(BridgeSettings()).metrics_samples(), *worker_samples(snapshot)]}
    assert reported == {(d.name, d.kind) for d in CATALOGUE}
    worker = {s.name: s.value for s in worker_samples(snapshot)}
    assert worker["worker_vehicle_state_mean_bytes"] == 812.5
    assert worker["worker_last_event_timestamp_seconds"] == 1_767_571_200


def test_a_definition_refuses_the_wrong_labels() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        service_metrics.BRIDGE_DEAD_LETTERS.sample(1)
