"""Service counters over Kafka: how the bridge and the worker report to ``GET /metrics``.

Each process sends a snapshot of its counters to ``topics.SERVICE_METRICS`` every
``REPORT_EVERY_S`` seconds, keyed by its instance id. The API keeps the newest snapshot per
(service, instance) and renders them in the Prometheus format. That works for any number of
replicas with no extra ports or scrape configuration, over the broker every service already
talks to. Snapshots carry cumulative counters (since the process started), so a restarted
process shows up as a counter reset, which Prometheus' ``rate()`` handles.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

REPORT_EVERY_S: Final = 10.0
NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
Kind = Literal["counter", "gauge"]


@dataclass(frozen=True, slots=True)
class Sample:
    name: str  # without the ownercare_ prefix, e.g. "bridge_messages_total"
    value: float
    kind: Kind = "counter"
    help: str = ""
    labels: tuple[tuple[str, str], ...] = ()


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
    return Sample(name, float(value), kind, str(item.get("help", "")),
                  tuple(sorted(labels.items())))
