"""The service-metrics report codec and the /metrics rendering (no brokers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import STALE_AFTER_S, ServiceReports, Snapshot
from ingest import service_metrics
from ingest.service_metrics import Report, Sample

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=20)
samples = st.builds(
    Sample, name=names,
    value=st.floats(allow_nan=False, allow_infinity=False, width=32).map(float),
    kind=st.sampled_from(["counter", "gauge"]), help=st.text(max_size=30),
    labels=st.dictionaries(names, st.text(max_size=10), max_size=3).map(
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
            Sample("bridge_dead_letters_total", 3, labels=(("reason", "bad_json"),)),
            Sample("bridge_dead_letters_total", 1, labels=(("reason", "unknown_topic"),)),
            Sample("bridge_in_flight", 7, "gauge")]),
        Report("bridge", "h:2", 11_000, [Sample("bridge_messages_total", 8)]),
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(reports, {("ownercare.vehicles", 0): 12}, "ownercare",
                               [("dtc", "critical", "open", 2)], now_s=20.0))
    text = generate_latest(registry).decode()
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    assert values[("ownercare_bridge_messages_total",
                   (("instance", "h:1"), ("service", "bridge")))] == 42
    assert values[("ownercare_bridge_messages_total",
                   (("instance", "h:2"), ("service", "bridge")))] == 8
    assert values[("ownercare_bridge_dead_letters_total",
                   (("instance", "h:1"), ("reason", "bad_json"), ("service", "bridge")))] == 3
    assert values[("ownercare_bridge_in_flight",
                   (("instance", "h:1"), ("service", "bridge")))] == 7
    assert values[("ownercare_service_report_age_seconds",
                   (("instance", "h:1"), ("service", "bridge")))] == 10
    assert values[("ownercare_consumer_lag_records", (
        ("group", "ownercare"), ("partition", "0"), ("topic", "ownercare.vehicles")))] == 12
    assert values[("ownercare_alerts", (("severity", "critical"), ("status", "open"),
                                        ("type", "dtc")))] == 2
    assert values[("ownercare_kafka_lag_available", ())] == 1
