"""Figures of ``ownercare bench`` from its raw samples (pure: no processes, no clock).

Kept apart from the orchestration so the arithmetic (rates over the measurement window,
percentiles, CPU per 1 000 messages, the kept-up verdict) is unit-tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """One reading per second during the paced phase."""

    t: float  # wall time of the reading
    sent: int  # messages the load generator handed to its MQTT client
    acked: int  # ... of which the broker acknowledged
    processed: int  # records the worker's diagnose agent has run through the detectors
    lag_s: float | None  # wall time minus the newest event time the worker processed
    cpu_s: dict[str, float] = field(default_factory=dict)  # cumulative CPU per process
    rss_bytes: dict[str, int] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def window(samples: Sequence[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.t <= end]


def summarise(
    *,
    config: Mapping[str, Any],
    samples: Sequence[Sample],
    window_start: float,
    window_end: float,
    latencies: Mapping[str, float],
    injected: int,
    raw: Mapping[str, Any],
    worker_stats: Mapping[str, Any],
    drained: bool,
    max_lag_s: float,
    drained_at: float | None = None,
) -> dict[str, Any]:
    """Turn the readings into the report (every figure named with its unit).

    Rates and CPU come from the publishing window. Memory peaks also count the samples after
    it, while the pipeline works off what it fell behind by (``drained_at``: when it had
    processed every acknowledged message): an overloaded run's backlog peaks there.
    """
    measured = window(samples, window_start, window_end)
    if len(measured) < 2:
        raise ValueError("fewer than two samples in the measurement window; run longer")
    first, last = measured[0], measured[-1]
    seconds = last.t - first.t
    processed = last.processed - first.processed
    sent = last.sent - first.sent
    lags = [s.lag_s for s in measured if s.lag_s is not None]
    offered = config["vehicles"] * config["rate"]
    processed_rate = processed / seconds
    cpu = {
        name: round((last.cpu_s[name] - first.cpu_s.get(name, 0.0)) / (processed / 1000), 4)
        for name in last.cpu_s
        if processed > 0
    }
    with_catch_up = [s for s in samples if s.t >= window_start]
    peak_rss = {name: max(s.rss_bytes.get(name, 0) for s in with_catch_up)
                for name in last.rss_bytes}
    lat = sorted(latencies.values())
    raw_rate = float(raw.get("rate") or 0.0)
    kept_up = bool(lags) and max(lags) <= max_lag_s and drained
    return {
        "config": dict(config),
        "window_s": round(seconds, 1),
        "offered_msgs_per_s": offered,
        "published_msgs_per_s": round(sent / seconds, 1),
        "processed_msgs_per_s": round(processed_rate, 1),
        "kept_up": kept_up,
        "lag_s": {
            "p50": _round(percentile(lags, 50)),
            "max": _round(max(lags) if lags else None),
            "last": _round(lags[-1] if lags else None),
            "bound": max_lag_s,
        },
        "drained": drained,
        "catch_up": catch_up(samples, window_end, drained_at),
        "latency_s": {
            "n": len(lat),
            "injected": injected,
            "missing": injected - len(lat),
            "p50": _round(percentile(lat, 50)),
            "p95": _round(percentile(lat, 95)),
            "p99": _round(percentile(lat, 99)),
            "max": _round(lat[-1] if lat else None),
        },
        "cpu_s_per_1000_msgs": cpu,
        "cpu_cores_used": {
            name: round((last.cpu_s[name] - first.cpu_s.get(name, 0.0)) / seconds, 3)
            for name in last.cpu_s
        },
        "peak_rss_mib": {name: round(v / 2**20, 1) for name, v in peak_rss.items()},
        # The workers' processes: the detectors and their view writers (``views``).
        "worker_peak_rss_mib": round(max(
            sum(v for name, v in s.rss_bytes.items() if _of_workers(name))
            for s in with_catch_up)
            / 2**20, 1),
        "workers_cpu_s_per_1000_msgs": round(sum(
            v for name, v in cpu.items() if _of_workers(name)), 4) if cpu else None,
        "state_bytes_per_vehicle": {
            "mean": worker_stats.get("state_bytes_mean"),
            "max": worker_stats.get("state_bytes_max"),
            "vehicles": worker_stats.get("vehicles"),
        },
        # Times an agent waited for its view writer to take what it had gathered: the views'
        # pace holding the detectors back (``OWNERCARE_VIEW_BACKLOG_MIB``).
        "view_writer_waits": worker_stats.get("view_writer_waits"),
        "raw_broker": dict(raw),
        "ownercare_over_raw": float(f"{processed_rate / raw_rate:.4g}") if raw_rate else None,
    }


def catch_up(samples: Sequence[Sample], window_end: float,
             drained_at: float | None) -> dict[str, Any]:
    """How the pipeline worked off its backlog once the fleet stopped publishing: the backlog
    (acknowledged but not yet processed), the seconds until it was gone and the rate it was
    processed at meanwhile (an overloaded run should keep its peak rate here)."""
    at_end = [s for s in samples if s.t <= window_end]
    if not at_end:
        return {"backlog_msgs": None, "seconds": None, "msgs_per_s": None}
    end = at_end[-1]
    backlog = max(0, end.acked - end.processed)
    if drained_at is None:
        return {"backlog_msgs": backlog, "seconds": None, "msgs_per_s": None}
    seconds = max(0.0, drained_at - end.t)
    done = [s for s in samples if end.t <= s.t <= drained_at]
    rate = ((done[-1].processed - end.processed) / (done[-1].t - end.t)
            if len(done) > 1 and done[-1].t - end.t >= 2.0 else None)
    return {"backlog_msgs": backlog, "seconds": round(seconds, 1),
            "msgs_per_s": None if rate is None else round(rate, 1)}


def _of_workers(process: str) -> bool:
    """``worker``, ``worker-2``, ... and their view writers ``views``, ``views-2``, ..."""
    return process.split("-")[0] in ("worker", "views")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _catch_up_text(up: Mapping[str, Any]) -> str:
    if up["backlog_msgs"] is None:
        return "not measured (no sample by the end of publishing)"
    if up["backlog_msgs"] == 0:
        return "no backlog at the end of publishing"
    said = f"backlog {up['backlog_msgs']} msgs at the end of publishing, "
    if up["seconds"] is None:
        return said + "NOT worked off"
    rate = "" if up["msgs_per_s"] is None else f" at {up['msgs_per_s']} msg/s"
    return said + f"worked off in {up['seconds']} s{rate}"


def render_text(report: Mapping[str, Any]) -> str:
    c, lat, lag = report["config"], report["latency_s"], report["lag_s"]
    raw = report["raw_broker"]
    up = report["catch_up"]
    lines = [
        f"ownercare bench: {c['vehicles']} vehicles x {c['rate']} Hz for {c['duration']} s, "
        f"broker {c['broker']}, QoS {c['qos']}",
        f"  offered            {report['offered_msgs_per_s']:>10.1f} msg/s",
        f"  published          {report['published_msgs_per_s']:>10.1f} msg/s",
        f"  processed          {report['processed_msgs_per_s']:>10.1f} msg/s  "
        f"(kept up: {'yes' if report['kept_up'] else 'NO'}; lag p50 {lag['p50']} s, "
        f"max {lag['max']} s, bound {lag['bound']} s; drained: {report['drained']})",
        f"  catch-up           {_catch_up_text(up)}",
        f"  publish->alert     p50 {lat['p50']} s  p95 {lat['p95']} s  p99 {lat['p99']} s  "
        f"max {lat['max']} s  ({lat['n']}/{lat['injected']} alerts)",
        f"  raw broker         {raw.get('rate', 0):>10.1f} msg/s  (plain publisher -> plain "
        f"subscriber, {raw.get('received', 0)} of {raw.get('messages', 0)} msgs arrived)   "
        f"ownercare/raw = {report['ownercare_over_raw']}",
        "  CPU s / 1000 msgs  " + "  ".join(
            f"{k} {v}" for k, v in report["cpu_s_per_1000_msgs"].items()),
        "  CPU cores used     " + "  ".join(
            f"{k} {v}" for k, v in report["cpu_cores_used"].items()),
        "  peak RSS MiB       " + "  ".join(
            f"{k} {v}" for k, v in report["peak_rss_mib"].items()),
        f"  workers ({c.get('workers', 1)})        CPU s / 1000 msgs "
        f"{report['workers_cpu_s_per_1000_msgs']}  peak RSS {report['worker_peak_rss_mib']} MiB "
        f"(detectors and view writers; the detectors waited for the views "
        f"{report.get('view_writer_waits')} times)",
        f"  detector state     mean {report['state_bytes_per_vehicle']['mean']} B/vehicle, "
        f"max {report['state_bytes_per_vehicle']['max']} B",
    ]
    return "\n".join(lines)


def plot(report: Mapping[str, Any], samples: Sequence[Sample],
         latency_points: Sequence[tuple[float, float]], path: str) -> None:
    """Throughput and latency over time, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = samples[0].t if samples else 0.0
    times = [s.t - t0 for s in samples[1:]]
    sent = [(b.sent - a.sent) / (b.t - a.t) for a, b in zip(samples, samples[1:], strict=False)]
    done = [(b.processed - a.processed) / (b.t - a.t)
            for a, b in zip(samples, samples[1:], strict=False)]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    top.plot(times, sent, label="published msg/s")
    top.plot(times, done, label="processed by the detectors msg/s")
    top.axhline(report["offered_msgs_per_s"], color="grey", linestyle=":", label="offered")
    top.set_ylabel("messages / s")
    top.legend(loc="lower right")
    c = report["config"]
    top.set_title(f"ownercare bench: {c['vehicles']} vehicles x {c['rate']} Hz, {c['broker']}")
    if latency_points:
        bottom.scatter([t - t0 for t, _ in latency_points], [v for _, v in latency_points],
                       s=8, label="publish -> alert at API (s)")
    lag_points = [(s.t - t0, s.lag_s) for s in samples if s.lag_s is not None]
    if lag_points:
        bottom.plot(*zip(*lag_points, strict=True), color="tab:red", label="worker lag (s)")
    bottom.set_xlabel("seconds since the fleet started")
    bottom.set_ylabel("seconds")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
