"""How fast the web console is with a real fleet: ``python -m ownercare.console_bench``.

Seeds a fresh SQLite database with ``--vehicles`` cars (latest signals, 30 days of daily
indicators) and ``--alerts`` alerts filed into cases (five per car by default: four in a
closed case, the newest in an open case for a third of the fleet), starts the API on a free
port, signs in to the console over real HTTP and times its pages. Prints one line per page:
median, 95th percentile and slowest render, and the bytes the page and its assets transfer.

The rows go in with bulk inserts, not one ``upsert_alert`` per alert as the worker would
write them, so seeding takes seconds; the tables, indexes and queries are the production
ones.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import insert

from api.app import create_app
from config.settings import ApiSettings
from diagnostics.daily import RESTING_12V, SOH, utc_day
from ownercare import embedded
from storage import views
from storage.keys import KeyStore
from storage.models import alert_events, alerts, case_alerts, case_events, cases
from storage.store import Store

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
NOW = T0 + 60 * DAY
TYPES = ("weak_12v_battery", "slow_tyre_leak", "cell_imbalance", "thermal", "dtc")
SEVERITIES = ("info", "warning", "critical")
SLA_H = {"info": 72, "warning": 24, "critical": 4}
CHUNK = 5000
ASSETS = ("/console/static/console.css", "/console/static/console.js",
          "/console/static/vendor/htmx-2.0.11.min.js")


def vin_of(i: int) -> str:
    return f"WCRBENCH{i:09d}"


def seed(store: Store, vehicles: int, alerts_total: int) -> dict[str, Any]:
    """Fill ``store``; return what the timed pages need (a busy car, an open case)."""
    per_car = max(1, alerts_total // vehicles)
    signals = [("vehicle", vin_of(i), path, value, NOW - (i % 600) * 1000)
               for i in range(vehicles)
               for path, value in (("Vehicle.VehicleIdentification.Model", "Volt"),
                                   ("Vehicle.Speed", 0.0),
                                   ("Vehicle.LowVoltageBattery.CurrentVoltage", 12.5),
                                   ("Vehicle.Powertrain.TractionBattery.StateOfCharge"
                                    ".Current", 70.0),
                                   ("Vehicle.Powertrain.TractionBattery.StateOfHealth", 96.0),
                                   ("Vehicle.OBD.DistanceWithMIL", 0.0),
                                   ("Vehicle.Cabin.Infotainment.SoftwareVersion", "4.2.1"))]
    store.upsert_signals(signals)
    daily = [("vehicle", vin_of(i), utc_day(NOW - d * DAY), name, 6, v - 0.02, v + 0.02, 6 * v,
              v, NOW - d * DAY)
             for i in range(vehicles) for d in range(30)
             for name, v in ((RESTING_12V, 12.6 - 0.004 * (30 - d)), (SOH, 96.0))]
    views.upsert_daily_indicators(store, daily)
    alert_rows: list[dict[str, Any]] = []
    case_rows: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    audit: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    case_id = 0
    made = 0
    for i in range(vehicles):
        vin = vin_of(i)
        group: list[dict[str, Any]] = []
        for k in range(per_car):
            if made >= alerts_total:
                break
            made += 1
            severity = SEVERITIES[(i // 3 + k) % 3]
            first = NOW - (per_car - k) * 5 * DAY + (i % 1000) * 60_000
            newest = k == per_car - 1
            status = "open" if newest and i % 3 == 0 else "resolved"
            alert = {"id": f"{i:08d}-0000-4000-8000-{k:012d}", "asset_kind": "vehicle",
                     "asset_id": vin, "type": TYPES[(k + 1) % len(TYPES)], "severity": severity,
                     "status": status, "first_seen_event_ms": first,
                     "last_seen_event_ms": first + DAY,
                     "title": f"{TYPES[(k + 1) % len(TYPES)].replace('_', ' ')} on {vin}",
                     "evidence": {"latest_v25": 12.3, "failure_v25": 11.9, "warn_v25": 12.2,
                                  "slope_v_per_day": -0.02, "samples": 40},
                     "predicted_failure_event_ms": first + 20 * DAY,
                     "recommended_action": "Call the owner and offer a check.",
                     "detector": "bench", "detector_version": "1.0.0", "root_cause_id": None}
            alert_rows.append(alert)
            events.append({"alert_id": alert["id"], "change": "created",
                           "at_event_ms": first + DAY, "snapshot": alert})
            group.append(alert)
        # The older alerts share a closed case; the newest has its own, open for a third.
        for members, open_case in ((group[:-1], False), (group[-1:], group[-1]["status"]
                                                          == "open")):
            if not members:
                continue
            case_id += 1
            worst = max((m["severity"] for m in members), key=SEVERITIES.index)
            opened = members[0]["first_seen_event_ms"]
            case_rows.append({
                "id": case_id, "asset_kind": "vehicle", "asset_id": vin,
                "state": "new" if open_case else "resolved", "severity": worst,
                "assignee": None if case_id % 4 else f"agent-{case_id % 7}",
                "opened_event_ms": opened, "due_event_ms": opened + SLA_H[worst] * 3_600_000,
                "closed_wall_ms": None if open_case else T0, "updated_wall_ms": T0,
                "version": 1})
            links += [{"alert_id": m["id"], "case_id": case_id} for m in members]
            audit.append({"case_id": case_id, "at_event_ms": opened, "at_wall_ms": T0,
                          "actor": "system", "action": "opened", "from_state": None,
                          "to_state": "new", "detail": {"alert_id": members[0]["id"],
                                                         "severity": worst,
                                                         "due_event_ms": case_rows[-1][
                                                             "due_event_ms"]}})
    for table, rows in ((alerts, alert_rows), (alert_events, events), (cases, case_rows),
                        (case_alerts, links), (case_events, audit)):
        for start in range(0, len(rows), CHUNK):
            with store.write() as conn:
                conn.execute(insert(table), rows[start:start + CHUNK])
    busy = next(r for r in case_rows if r["state"] == "new")
    return {"alerts": len(alert_rows), "cases": len(case_rows),
            "open_cases": sum(r["state"] == "new" for r in case_rows),
            "vin": busy["asset_id"], "case_id": busy["id"]}


@contextlib.contextmanager
def serving(store: Store, state_dir: Path) -> Iterator[str]:
    port = embedded.free_port()
    # No Kafka here: the API's service-report follower just keeps retrying quietly.
    settings = ApiSettings(state_dir=state_dir, kafka_url=f"kafka://127.0.0.1:{port}",
                           api_rate_limit_per_s=0)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store), host="127.0.0.1",
                                           port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def measure(client: httpx.Client, path: str, rounds: int) -> dict[str, float]:
    client.get(path).raise_for_status()  # warm-up: templates compiled, pages cached
    times, size = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        answer = client.get(path)
        times.append(time.perf_counter() - start)
        answer.raise_for_status()
        size = len(answer.content)
    times.sort()
    return {"median_ms": statistics.median(times) * 1000,
            "p95_ms": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))] * 1000,
            "max_ms": times[-1] * 1000, "bytes": size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ownercare.console_bench",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=20, help="timed requests per page")
    args = parser.parse_args(argv)
    if args.vehicles < 1 or args.alerts < 1 or args.rounds < 1:
        print("console_bench: --vehicles, --alerts and --rounds must be at least 1",
              file=sys.stderr)
        return 2
    for noisy in ("api.metrics", "aiokafka", "api.app"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
        started = time.perf_counter()
        seeded = seed(store, args.vehicles, args.alerts)
        print(f"seeded {args.vehicles} vehicles, {seeded['alerts']} alerts, "
              f"{seeded['cases']} cases ({seeded['open_cases']} open) in "
              f"{time.perf_counter() - started:.1f} s")
        _row, key = KeyStore(store).create("bench", "admin")
        with serving(store, Path(tmp)) as url, httpx.Client(base_url=url) as client:
            if client.post("/console/login", data={"key": key}).status_code != 303:
                raise RuntimeError("could not sign in to the console")
            assets = sum(len(client.get(a).content) for a in ASSETS)
            first = client.get("/console/queue").text
            cursor = first.split("cursor=")[1].split('"')[0] if "cursor=" in first else ""
            cursor = html.unescape(cursor)
            pages = {"queue": "/console/queue",
                     "queue, critical only": "/console/queue?severity=critical",
                     "queue, page 2": f"/console/queue?cursor={cursor}",
                     "vehicle card": f"/console/vehicles/{seeded['vin']}",
                     "case detail": f"/console/cases/{seeded['case_id']}",
                     "fleet overview": "/console/fleet",
                     "vehicles list": "/console/vehicles"}
            print(f"{'page':<22} {'median':>8} {'p95':>8} {'max':>8} {'html':>9} "
                  f"{'+assets':>9}")
            for name, path in pages.items():
                m = measure(client, path, args.rounds)
                print(f"{name:<22} {m['median_ms']:>6.0f}ms {m['p95_ms']:>6.0f}ms "
                      f"{m['max_ms']:>6.0f}ms {m['bytes'] / 1024:>7.1f}KB "
                      f"{(m['bytes'] + assets) / 1024:>7.1f}KB")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
