"""``ownercare simulate``: argument parsing and the run loop."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from simulators.faults import FAULTS, parse_fault_spec
from simulators.fleet import Fleet
from simulators.publisher import Publisher, PublishError, publish_paced

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([dhms])$")
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def duration_s(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 20d, 36h, 90m or 600s")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _checked(parse: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type that validates with ``parse`` but keeps the text, so ``ownercare run``
    can forward the flag to its simulator child unchanged."""

    def check(text: str) -> str:
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def start_time(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time like 2026-01-05T00:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt-url", default=os.environ.get("OWNERCARE_MQTT_URL",
                                                             "mqtt://127.0.0.1:1883"),
                        help="broker to publish to (default: OWNERCARE_MQTT_URL)")
    parser.add_argument("--mqtt-protocol", choices=["3.1.1", "5"], default="3.1.1")
    parser.add_argument("--vehicles", type=non_negative_int, default=20)
    parser.add_argument("--chargers", type=non_negative_int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=positive_float, default=1.0,
                        help="simulated seconds per wall-clock second (3600: an hour a second)")
    parser.add_argument("--start", type=_checked(start_time), default="2026-01-05T00:00:00Z",
                        help="simulated start time, ISO 8601 (default 2026-01-05T00:00:00Z)")
    parser.add_argument("--duration", type=_checked(duration_s), default=None,
                        help="simulated duration (20d, 36h, 90m, 600s); default: until stopped")
    parser.add_argument("--faults", default="",
                        help="labelled faults to inject, e.g. weak_12v:3 (known: "
                        + ", ".join(sorted(FAULTS)) + ")")
    parser.add_argument("--drive-interval", type=positive_float, default=60.0,
                        help="simulated seconds between telemetry messages while driving")
    parser.add_argument("--parked-interval", type=positive_float, default=1800.0,
                        help="simulated seconds between telemetry messages while parked")
    parser.add_argument("--truth", type=Path, default=None,
                        help="write the ground truth (faulty assets, onset, failure) as JSON")
    parser.add_argument("--print-truth", action="store_true", help="print the ground truth")
    parser.add_argument("--qos", type=int, choices=[0, 1], default=1)


def build_fleet(args: argparse.Namespace) -> Fleet:
    faults = parse_fault_spec(args.faults, args.vehicles, args.chargers)
    return Fleet(args.vehicles, args.chargers, seed=args.seed, start_ms=start_time(args.start),
                 faults=faults, drive_interval_s=args.drive_interval,
                 parked_interval_s=args.parked_interval)


def run(args: argparse.Namespace) -> int:
    try:
        fleet = build_fleet(args)
    except ValueError as exc:
        print(f"ownercare simulate: --faults: {exc}", file=sys.stderr)
        return 2
    truth = fleet.truth()
    if args.truth:
        args.truth.write_text(json.dumps(truth, indent=2) + "\n")
    if args.print_truth:
        print(json.dumps(truth, indent=2))
    start_ms = start_time(args.start)
    until = None if args.duration is None else start_ms + int(duration_s(args.duration) * 1000)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        publisher = Publisher(args.mqtt_url, f"ownercare-sim-{args.seed}-{os.getpid()}",
                              args.mqtt_protocol, args.qos)
    except PublishError as exc:
        print(f"ownercare simulate: {exc}", file=sys.stderr)
        return 1
    try:
        log.info("simulator_started vehicles=%s chargers=%s faulty=%s speed=%s",
                 args.vehicles, args.chargers, len(truth), args.speed)
        count = publish_paced(publisher, fleet.messages(until), start_ms, args.speed, stop)
    finally:
        publisher.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("simulator_done messages=%s", count)
    return 0
