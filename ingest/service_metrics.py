"""Service counters over Kafka: how the bridge and the worker report to ``GET /metrics``.

Each process sends a snapshot of its counters to ``topics.SERVICE_METRICS`` every
``REPORT_EVERY_S`` seconds, keyed by its instance id. The API keeps the newest snapshot per
(service, instance) and renders them in the Prometheus format, labelled ``service`` and
``replica`` (never ``instance``: Prometheus gives that label to the scrape target, the API
replica, and would rename ours). That works for any number of replicas with no extra ports or
scrape configuration, over the broker every service already talks to. Snapshots carry
cumulative counters (since the process started), so a restarted process shows up as a
counter reset, which Prometheus' ``rate()`` handles.

``CATALOGUE`` is the one list of what bridges and workers report, named after the Prometheus
conventions: ``_total`` on counters, the base unit last (``_bytes``, ``_seconds``).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

REPORT_EVERY_S: Final = 10.0
NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
# Labels the API adds (service, replica) or Prometheus attaches to every target (instance, job).
RESERVED_LABELS: Final = frozenset({"service", "replica", "instance", "job"})
Kind = Literal["counter", "gauge"]


@dataclass(frozen=True, slots=True)
class Sample:
    name: str  # without the ownercare_ prefix, e.g. "bridge_messages_total"
    value: float
    kind: Kind = "counter"
    help: str = ""
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Definition:
    """One metric a service reports; ``sample`` gives its value with label values in the
    order of ``labels``."""

    name: str  # without the ownercare_ prefix
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()

    def sample(self, value: float, *label_values: str) -> Sample:
        if len(label_values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {label_values}")
        return Sample(self.name, float(value), self.kind, self.help,
                      tuple(sorted(zip(self.labels, label_values, strict=True))))


def _counter(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Definition:
    return Definition(name, "counter", help_text, labels)


def _gauge(name: str, help_text: str) -> Definition:
    return Definition(name, "gauge", help_text)


BRIDGE_MESSAGES: Final = _counter("bridge_messages_total",
                                  "valid MQTT messages forwarded to Kafka")
BRIDGE_KAFKA_RECORDS: Final = _counter("bridge_kafka_records_total",
                                       "Kafka records produced (each a micro-batch of messages)")
BRIDGE_MESSAGES_ACKED: Final = _counter(
    "bridge_messages_acked_total", "MQTT messages acknowledged after Kafka acknowledged them")
# Every reason of ingest.contract.Reason is reported, 0 until it happens, so that rate() and
# alerts on a reason work before its first dead letter.
BRIDGE_DEAD_LETTERS: Final = _counter("bridge_dead_letters_total",
                                      "invalid MQTT messages dead-lettered, by reason",
                                      ("reason",))
# One series per (reason, path) that happened: every path of the catalogue may get its own
# (they are finite), unknown paths only the first UNKNOWN_PATH_LABELS distinct ones; the rest
# count under path="_other", so a device inventing paths cannot grow the series without bound.
BRIDGE_DEAD_LETTER_SIGNALS: Final = _counter(
    "bridge_dead_letter_signals_total",
    "signals left out of otherwise valid MQTT messages and dead-lettered, by reason and VSS "
    "path", ("reason", "path"))
UNKNOWN_PATH_LABELS: Final = 50
OTHER_PATH: Final = "_other"
BRIDGE_OTA_COMMANDS: Final = _counter("bridge_ota_commands_total",
                                      "OTA commands published to vehicles")
BRIDGE_OTA_COMMANDS_DROPPED: Final = _counter(
    "bridge_ota_commands_dropped_total", "OTA commands dropped: no VIN as key, or no value")
BRIDGE_MESSAGES_IN_FLIGHT: Final = _gauge("bridge_messages_in_flight",
                                          "MQTT messages received and not yet acknowledged")
BRIDGE_MQTT_CONNECTED: Final = _gauge("bridge_mqtt_connected",
                                      "1 while connected to the MQTT broker")

WORKER_RECORDS: Final = _counter("worker_records_total",
                                 "telemetry records processed by the detectors")
WORKER_KAFKA_RECORDS: Final = _counter("worker_kafka_records_total",
                                       "Kafka records (micro-batches) processed")
WORKER_ALERT_CHANGES: Final = _counter("worker_alert_changes_total",
                                       "alert upserts emitted by the detectors")
WORKER_STATE_WRITES: Final = _counter(
    "worker_state_writes_total",
    "vehicle detector states written to the table changelog (checkpoints)")
WORKER_DUPLICATE_RECORDS: Final = _counter("worker_duplicate_records_total",
                                           "redelivered records dropped by seq/ts")
WORKER_VEHICLES: Final = _gauge("worker_vehicles",
                                "vehicles with detector state in this worker's partitions")
WORKER_VEHICLE_STATE_MEAN_BYTES: Final = _gauge(
    "worker_vehicle_state_mean_bytes", "mean serialised detector state per vehicle (sampled)")
WORKER_VEHICLE_STATE_MAX_BYTES: Final = _gauge(
    "worker_vehicle_state_max_bytes", "largest serialised detector state per vehicle (sampled)")
WORKER_LAST_EVENT_TIMESTAMP: Final = _gauge(
    "worker_last_event_timestamp_seconds",
    "newest event time processed (time() minus this = event lag)")

CATALOGUE: Final[tuple[Definition, ...]] = (
    BRIDGE_MESSAGES, BRIDGE_KAFKA_RECORDS, BRIDGE_MESSAGES_ACKED, BRIDGE_DEAD_LETTERS,
    BRIDGE_DEAD_LETTER_SIGNALS,
    BRIDGE_OTA_COMMANDS, BRIDGE_OTA_COMMANDS_DROPPED, BRIDGE_MESSAGES_IN_FLIGHT,
    BRIDGE_MQTT_CONNECTED, WORKER_RECORDS, WORKER_KAFKA_RECORDS, WORKER_ALERT_CHANGES,
    WORKER_STATE_WRITES, WORKER_DUPLICATE_RECORDS, WORKER_VEHICLES,
    WORKER_VEHICLE_STATE_MEAN_BYTES, WORKER_VEHICLE_STATE_MAX_BYTES, WORKER_LAST_EVENT_TIMESTAMP,
)


@dataclass(slots=True)
class Report:
    service: str
    instance: str
    sent_at_ms: int  # wall clock of the sender: how fresh the snapshot is
    samples: list[Sample] = field(default_factory=list)


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def encode(report: Report) -> bytes:
    return orjson.dumps({
        "service": report.service, "instance": report.instance, "sent_at_ms": report.sent_at_ms,
        "samples": [{"name": s.name, "value": s.value, "kind": s.kind, "help": s.help,
                     "labels": dict(s.labels)} for s in report.samples]})


def decode(raw: bytes) -> Report:
    """A report, or ValueError naming what is wrong (a foreign producer must not break
    the API's /metrics)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("a report must be a JSON object")
    for key, kind in (("service", str), ("instance", str), ("sent_at_ms", int),
                      ("samples", list)):
        if not isinstance(doc.get(key), kind) or isinstance(doc.get(key), bool):
            raise ValueError(f"report field {key!r} must be a {kind.__name__}")
    samples = [_sample(item, i) for i, item in enumerate(doc["samples"])]
    return Report(doc["service"], doc["instance"], doc["sent_at_ms"], samples)


def _sample(item: Any, i: int) -> Sample:
    if not isinstance(item, dict):
        raise ValueError(f"samples[{i}] must be an object")
    name, value, kind = item.get("name"), item.get("value"), item.get("kind", "counter")
    if not isinstance(name, str) or not name or not set(name) <= NAME_CHARS:
        raise ValueError(f"samples[{i}].name {name!r} must be lower-case letters, digits, _")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"samples[{i}].value must be a number")
    if kind not in ("counter", "gauge"):
        raise ValueError(f"samples[{i}].kind must be counter or gauge")
    labels = item.get("labels", {})
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and k and set(k) <= NAME_CHARS and isinstance(v, str)
            for k, v in labels.items()):
        raise ValueError(f"samples[{i}].labels must map label names to strings")
    if reserved := sorted(RESERVED_LABELS & labels.keys()):
        raise ValueError(f"samples[{i}].labels: {', '.join(reserved)} is reserved for the API "
                         "and Prometheus")
    return Sample(name, float(value), kind, str(item.get("help", "")),
                  tuple(sorted(labels.items())))
