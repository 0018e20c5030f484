"""``ownercare simulate``: argument parsing and the run loop.

``add_arguments(parser)`` adds the simulator's flags to any parser (``ownercare simulate`` and
``ownercare run`` share them; the values of ``--start``, ``--duration`` and ``--faults`` stay
text, validated at parse time, so ``ownercare run`` can forward them to its simulator child
unchanged). ``run(args)`` publishes the fleet and returns the process exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.contract import MAX_TS_MS, MIN_TS_MS
from simulators.faults import FAULTS, parse_fault_spec
from simulators.fleet import (
    DEFAULT_DRIVE_INTERVAL_S,
    DEFAULT_PARKED_INTERVAL_S,
    DEFAULT_START,
    Fleet,
)
from simulators.population import parse_powertrain_mix
from simulators.publisher import Publisher, PublishError, publish_paced
from vocab.eventtime import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

if TYPE_CHECKING:
    from simulators.ota_runtime import OtaSettings

log = logging.getLogger(__name__)

CONNECT_RETRY_S = 10.0  # keep trying to reach the broker this long before giving up
DRAIN_TIMEOUT_S = 120.0  # at the end, wait this long for the last QoS 1 acknowledgements
INTERRUPTED_DRAIN_S = 5.0  # after SIGINT / SIGTERM, a short grace for in-flight messages

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([dhms])$")
_UNIT_S = {"d": DAY_MS // SECOND_MS, "h": HOUR_MS // SECOND_MS, "m": MINUTE_MS // SECOND_MS,
           "s": 1}


def duration_s(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 20d, 36h, 90m or 600s")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def start_time(text: str) -> int:
    """ISO 8601 (``Z`` or an offset; naive means UTC) -> epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time like {DEFAULT_START}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = int(moment.timestamp() * SECOND_MS)
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise ValueError(f"{text!r} is outside 2000-2099 (the contract's time window)")
    return ms


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
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


class _FleetCheck(argparse.Action):
    """Stores the value, then checks ``--faults`` against the fleet size known so far.

    argparse has no hook after parsing, but every namespace starts with the defaults, so
    re-checking after each of ``--vehicles``, ``--chargers`` and ``--faults`` catches a spec
    that does not fit the fleet whatever the order of the flags, as an argparse error.
    """

    faults_action: argparse.Action | None = None

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        try:
            parse_fault_spec(getattr(namespace, "faults", None),
                             getattr(namespace, "vehicles", None),
                             getattr(namespace, "chargers", None))
        except ValueError as exc:
            raise argparse.ArgumentError(self.faults_action or self, str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env_url = os.environ.get("OWNERCARE_MQTT_URL") or "mqtt://127.0.0.1:1883"
    parser.add_argument("--mqtt-url", default=env_url,
                        help="broker to publish to, mqtt[s]://[user:pass@]host:port "
                        "(default: OWNERCARE_MQTT_URL or mqtt://127.0.0.1:1883)")
    parser.add_argument("--mqtt-protocol", choices=["3.1.1", "5"], default="3.1.1",
                        help="MQTT protocol version (default 3.1.1)")
    vehicles = parser.add_argument("--vehicles", type=non_negative_int, default=20,
                                   action=_FleetCheck, help="vehicles (default 20)")
    chargers = parser.add_argument("--chargers", type=non_negative_int, default=4,
                                   action=_FleetCheck, help="public chargers (default 4)")
    parser.add_argument("--seed", type=int, default=1,
                        help="the same seed gives the same fleet and message stream (default 1)")
    parser.add_argument("--speed", type=positive_float, default=1.0,
                        help="simulated seconds per wall-clock second (3600: an hour a second)")
    parser.add_argument("--start", type=_checked(start_time), default=DEFAULT_START,
                        help=f"simulated start time, ISO 8601 (default {DEFAULT_START})")
    parser.add_argument("--duration", type=_checked(duration_s), default=None,
                        help="simulated duration (20d, 36h, 90m, 600s); default: until stopped")
    faults = parser.add_argument(
        "--faults", default="", type=_checked(parse_fault_spec), action=_FleetCheck,
        metavar="SPEC", help="labelled faults to inject, fault:count[,fault:count...], e.g. "
        "weak_12v:3 (known: " + ", ".join(sorted(FAULTS)) + ")")
    for action in (vehicles, chargers, faults):
        assert isinstance(action, _FleetCheck)
        action.faults_action = faults
    parser.add_argument(
        "--powertrains", type=_checked(parse_powertrain_mix), default=None, metavar="MIX",
        help="the fleet's powertrain mix as weights, powertrain:weight[,...] of bev, phev, hev, "
        "ice (default ice:45,hev:20,phev:10,bev:25; bev:1 is an all-electric fleet); a car "
        "carrying a fault its powertrain cannot have gets one that can")
    parser.add_argument("--drive-interval", type=positive_float,
                        default=DEFAULT_DRIVE_INTERVAL_S, metavar="S",
                        help="simulated seconds between telemetry messages while driving "
                        f"(default {DEFAULT_DRIVE_INTERVAL_S:g})")
    parser.add_argument("--parked-interval", type=positive_float,
                        default=DEFAULT_PARKED_INTERVAL_S, metavar="S",
                        help="simulated seconds between telemetry messages while parked "
                        f"(default {DEFAULT_PARKED_INTERVAL_S:g})")
    parser.add_argument("--truth", type=Path, default=None, metavar="FILE",
                        help="write the ground truth (faulty assets, onset, failure) as JSON")
    parser.add_argument("--print-truth", action="store_true",
                        help="print the ground truth JSON to stdout")
    parser.add_argument("--qos", type=int, choices=[0, 1], default=1,
                        help="MQTT QoS of the publishes (default 1)")
    ocpp = parser.add_argument_group("OCPP (the chargers as OCPP 1.6J charge points)")
    ocpp.add_argument("--chargers-ocpp", default=None, metavar="URL",
                      help="the chargers connect to this OCPP 1.6J central system "
                      "(ws://host:port/ocpp; each charger appends /<its id>) instead of "
                      "publishing over MQTT; needs --ocpp-passwords")
    ocpp.add_argument("--ocpp-passwords", type=Path, default=None, metavar="FILE",
                      help="the chargers' HTTP Basic passwords, charger_id:password lines "
                      "(*:password for every charger)")
    ota = parser.add_argument_group("OTA (the cars' update client)")
    ota.add_argument("--ota-public-key", type=Path, default=None, metavar="FILE",
                     help="PEM Ed25519 public key the cars pin to verify OTA commands (from "
                     "`ownercare ota keygen`); without it the simulator ignores OTA commands")
    ota.add_argument("--ota-bad-releases", type=_checked(parse_version_set), default="",
                     metavar="LIST", help="releases that, once installed, make a car's 12 V "
                     "battery drain fast while parked: 2.0.0 or component@2.0.0, comma-separated")
    ota.add_argument("--ota-failure-rate", type=_checked(rate), default="0",
                     metavar="P", help="share of installs that fail and roll back (default 0)")
    ota.add_argument("--ota-installed", type=_checked(parse_installed), default="",
                     metavar="LIST", help="versions installed on every car at the start, "
                     "component@version comma-separated (default: 0.0.0 everywhere)")


def parse_version_set(text: str) -> frozenset[str]:
    from ota.model import COMPONENT_RE, parse_version

    out = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        component, _, version = item.rpartition("@")
        if component and not COMPONENT_RE.fullmatch(component):
            raise ValueError(f"{component!r} is not a component name")
        parse_version(version)
        out.add(item)
    return frozenset(out)


def parse_installed(text: str) -> dict[str, str]:
    installed: dict[str, str] = {}
    for item in parse_version_set(text):
        component, _, version = item.rpartition("@")
        if not component:
            raise ValueError(f"{item!r} needs a component: component@version")
        installed[component] = version
    return installed


def rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be in [0, 1], got {text}")
    return value


def ota_settings(args: argparse.Namespace) -> OtaSettings | None:
    """The cars' OTA settings, or None when no public key is given (OTA off)."""
    from ota.manifest import load_public_key
    from simulators.ota_client import ClientConfig
    from simulators.ota_runtime import OtaSettings

    path = getattr(args, "ota_public_key", None)
    if path is None:
        return None
    try:
        key = load_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--ota-public-key {path}: {exc}") from None
    config = ClientConfig(failure_rate=rate(args.ota_failure_rate),
                          bad_releases=parse_version_set(args.ota_bad_releases))
    return OtaSettings(key, config, parse_installed(args.ota_installed))


def chargers_ocpp_passwords(args: argparse.Namespace) -> dict[str, str] | None:
    """The chargers' OCPP passwords when they speak OCPP (None: they publish MQTT)."""
    url = getattr(args, "chargers_ocpp", None)
    if not url:
        return None
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"--chargers-ocpp {url!r} is not a ws:// or wss:// URL")
    if args.ocpp_passwords is None:
        raise ValueError("--chargers-ocpp needs --ocpp-passwords FILE")
    from simulators.ocpp_charger import load_passwords

    return load_passwords(args.ocpp_passwords)


def build_fleet(args: argparse.Namespace) -> Fleet:
    faults = parse_fault_spec(args.faults, args.vehicles, args.chargers)
    return Fleet(args.vehicles, args.chargers, seed=args.seed, start_ms=start_time(args.start),
                 faults=faults, drive_interval_s=args.drive_interval,
                 parked_interval_s=args.parked_interval,
                 powertrain_mix=parse_powertrain_mix(args.powertrains)
                 if getattr(args, "powertrains", None) else None)


def until_ms(args: argparse.Namespace) -> int | None:
    """End of the simulated run (exclusive), or None to run until stopped."""
    if args.duration is None:
        return None
    return start_time(args.start) + int(duration_s(args.duration) * SECOND_MS)


def run(args: argparse.Namespace) -> int:
    try:
        fleet = build_fleet(args)
    except ValueError as exc:
        print(f"ownercare simulate: --faults: {exc}", file=sys.stderr)
        return 2
    truth = fleet.truth()
    if args.truth:
        try:
            args.truth.write_text(json.dumps(truth, indent=2) + "\n")
        except OSError as exc:
            print(f"ownercare simulate: cannot write --truth {args.truth}: {exc}",
                  file=sys.stderr)
            return 1
    if args.print_truth:
        print(json.dumps(truth, indent=2), flush=True)
    try:
        ota = ota_settings(args)
    except ValueError as exc:
        print(f"ownercare simulate: {exc}", file=sys.stderr)
        return 2
    try:
        ocpp_passwords = chargers_ocpp_passwords(args)
    except ValueError as exc:
        print(f"ownercare simulate: {exc}", file=sys.stderr)
        return 2
    if ota is None:
        log.info("ota_disabled reason=no_public_key: OTA commands are ignored "
                 "(give --ota-public-key to enable the cars' update client)")
    start_ms = start_time(args.start)
    end_ms = until_ms(args)

    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, _frame: object) -> None:
            log.info("simulator_stopping signal=%s", signal.Signals(signum).name)
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _publish(args, fleet, start_ms, end_ms, len(truth), stop, ota, ocpp_passwords)
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def _publish(args: argparse.Namespace, fleet: Fleet, start_ms: int, end_ms: int | None,
             faulty: int, stop: threading.Event, ota: OtaSettings | None = None,
             ocpp_passwords: dict[str, str] | None = None) -> int:
    try:
        publisher = Publisher(args.mqtt_url, f"ownercare-sim-{args.seed}-{os.getpid()}",
                              args.mqtt_protocol, args.qos, connect_timeout_s=CONNECT_RETRY_S)
    except (PublishError, ValueError) as exc:
        print(f"ownercare simulate: {exc}", file=sys.stderr)
        return 1
    if ocpp_passwords is not None:
        from simulators.ocpp_charger import OcppSimError, route_chargers

        try:
            publisher = route_chargers(publisher, args.chargers_ocpp, ocpp_passwords,
                                       fleet.chargers, CONNECT_RETRY_S)
        except OcppSimError as exc:
            print(f"ownercare simulate: {exc}", file=sys.stderr)
            publisher.close()
            return 1
    log.info("simulator_started vehicles=%s chargers=%s faulty=%s speed=%s start=%s "
             "duration=%s qos=%s", args.vehicles, args.chargers, faulty, args.speed,
             args.start, args.duration or "unbounded", args.qos)
    listener = None
    try:
        if ota is None:
            count = publish_paced(publisher, fleet.messages(end_ms), start_ms, args.speed, stop)
        else:
            from simulators.ota_runtime import (
                COMMAND_SUBSCRIPTION,
                REMOTE_COMMAND_SUBSCRIPTION,
                CommandListener,
                OtaFleet,
                publish_paced_ota,
            )
            from simulators.remote_commands import cars_of

            # The same pinned key verifies OTA manifests and remote support commands.
            listener = CommandListener(args.mqtt_url, f"ownercare-sim-ota-{args.seed}-"
                                       f"{os.getpid()}", args.mqtt_protocol,
                                       (COMMAND_SUBSCRIPTION, REMOTE_COMMAND_SUBSCRIPTION))
            cars = cars_of(fleet, OtaFleet(fleet, ota), ota.public_key)
            count = publish_paced_ota(publisher, fleet.messages(end_ms), start_ms, args.speed,
                                      stop, cars, listener.inbox)
        if stop.is_set():  # interrupted: a short grace for what is in flight
            grace = INTERRUPTED_DRAIN_S
            drained = publisher.drain(grace)
        else:  # done: wait for every acknowledgement (a signal cuts the wait short)
            grace = DRAIN_TIMEOUT_S
            drained = publisher.drain(grace, stop)
        interrupted = stop.is_set()
    except PublishError as exc:
        print(f"ownercare simulate: {exc}", file=sys.stderr)
        publisher.close()
        return 1
    finally:
        if listener is not None:
            listener.close()
    publisher.close()
    if interrupted:
        log.info("simulator_interrupted messages=%s unacknowledged=%s", count,
                 publisher.pending)
        return 0
    if not drained:
        print(f"ownercare simulate: {publisher.pending} of {count} messages were not "
              f"acknowledged by the broker within {grace:.0f} s", file=sys.stderr)
        return 1
    log.info("simulator_done messages=%s lost_qos0=%s", count, publisher.lost)
    return 0
