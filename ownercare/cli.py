"""``ownercare`` command line: run | bridge | worker | api | archive | simulate | backtest |
eval | replay | realdata | score | nab | bench | faults | soak | keys | ota | ocpp | config.

Each service reads its settings from ``OWNERCARE_*`` variables (see README). A user's mistake
(invalid settings or arguments, a path that cannot be written, a database that cannot be
opened) exits with status 2 and one line on stderr naming the variable, flag or path: never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from importlib import metadata

from pydantic import ValidationError

from config import settings as cfg

log = logging.getLogger(__name__)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # alembic logs its migration context at INFO each time a database is opened.
    for noisy in ("aiokafka", "amqtt", "transitions", "faust", "mode", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _settings_error(exc: ValidationError) -> int:
    print("ownercare: invalid configuration:", file=sys.stderr)
    for err in exc.errors():
        name = "OWNERCARE_" + "_".join(str(p) for p in err["loc"]).upper()
        print(f"  {name}: {err['msg']} (got {err.get('input')!r})", file=sys.stderr)
    return 2


def cmd_bridge(_args: argparse.Namespace) -> int:
    from ingest.bridge import run_bridge
    from ingest.catalogue import OverlayError, load_catalogue

    settings = cfg.BridgeSettings()
    try:
        catalogue = load_catalogue(settings.vss_overlay_paths)
    except OverlayError as exc:
        raise UserError(f"OWNERCARE_VSS_OVERLAYS: {exc}") from None
    setup_logging(settings.log_level)
    return asyncio.run(run_bridge(settings, catalogue))


def cmd_archive(_args: argparse.Namespace) -> int:
    settings = cfg.ArchiveSettings()
    if not settings.influx_url:
        print("ownercare archive: the telemetry archive is off; set OWNERCARE_INFLUX_URL "
              "(and OWNERCARE_INFLUX_TOKEN, OWNERCARE_INFLUX_ORG, OWNERCARE_INFLUX_BUCKET)",
              file=sys.stderr)
        return 2
    from ingest.archive import run_archive

    setup_logging(settings.log_level)
    return asyncio.run(run_archive(settings))


def cmd_worker(_args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from worker.agents import create_app

    settings = cfg.WorkerSettings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    worker.execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits


def cmd_api(_args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from ingest.catalogue import OverlayError

    settings = cfg.ApiSettings()
    setup_logging(settings.log_level)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        app = create_app(settings)
    except OverlayError as exc:
        raise UserError(f"OWNERCARE_VSS_OVERLAYS: {exc}") from None
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=3,
    )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.cli import run

    setup_logging(cfg.CommonSettings().log_level)
    return run(args)


def cmd_run(args: argparse.Namespace) -> int:
    from ownercare.stack import run_stack
    from simulators.faults import parse_fault_spec

    try:  # fail here, not later in the simulator child
        parse_fault_spec(args.faults, args.vehicles, args.chargers)
    except ValueError as exc:
        print(f"ownercare run: --faults: {exc}", file=sys.stderr)
        return 2
    for flag, default, instead in RUN_REFUSED:
        if getattr(args, flag.lstrip("-").replace("-", "_")) != default:
            print(f"ownercare run: {flag} does not apply: {instead}", file=sys.stderr)
            return 2

    overrides = {k: v for k, v in {
        "state_dir": args.state_dir,
        "api_port": args.api_port,
        "mqtt_port": args.mqtt_port,
        "kafka_port": args.kafka_port,
    }.items() if v is not None}
    settings = cfg.RunSettings(**overrides)
    setup_logging(settings.log_level)
    return run_stack(settings, args)


def cmd_keys(args: argparse.Namespace) -> int:
    """API keys in the database of OWNERCARE_DATABASE_URL: create (shown once), list, revoke."""
    from sqlalchemy.exc import SQLAlchemyError

    from storage.keys import KeyStore, check_name
    from storage.store import Store

    settings = cfg.DatabaseSettings()
    if args.action == "create":
        try:
            check_name(args.name)
        except ValueError as exc:
            print(f"ownercare keys create: --name: {exc}", file=sys.stderr)
            return 2
    if not settings.database_url:
        try:
            settings.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"OWNERCARE_STATE_DIR={settings.state_dir}: {exc.strerror or exc}"
                            ) from None
    try:
        store = Store(settings.effective_database_url)
    except SQLAlchemyError as exc:
        raise UserError(database_error(settings, exc)) from None
    try:
        keys = KeyStore(store)
        if args.action == "create":
            row, key = keys.create(args.name, args.role)
            print(key)
            print(f"created key {row['id']} ({row['role']}) named {row['name']!r}; the key above "
                  "is shown only now: store it safely", file=sys.stderr)
        elif args.action == "list":
            for row in keys.list():
                state = "revoked" if row["revoked_wall_ms"] is not None else "active"
                print(f"{row['id']}  {row['role']:<11}  {state:<7}  {row['name']}")
        else:
            if keys.revoke(args.key_id) is None:
                print(f"ownercare keys revoke: no API key with id {args.key_id!r}",
                      file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}", file=sys.stderr)
    finally:
        store.close()
    return 0


def cmd_ota_keygen(args: argparse.Namespace) -> int:
    """Write a new ed25519 signing key pair for OTA manifests (private key mode 0600)."""
    import os
    from pathlib import Path

    from ota.manifest import generate_keypair

    out = Path(args.out)
    private_path, public_path = out / "ota-signing.pem", out / "ota-signing.pub.pem"
    if private_path.exists() and not args.force:
        print(f"ownercare ota keygen: {private_path} exists; a new key would orphan every "
              "vehicle pinned to the old public key (use --force to replace it)",
              file=sys.stderr)
        return 2
    if out.exists() and not out.is_dir():
        raise UserError(f"ownercare ota keygen: --out {out} exists and is not a directory")
    private_pem, public_pem = generate_keypair()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as exc:
        raise UserError(f"ownercare ota keygen: --out {out}: cannot write the key pair there "
                        f"({exc.strerror or exc})") from None
    print(f"private key: {private_path} (mode 0600; keep it off the API hosts' logs and "
          f"backups)\npublic key:  {public_path} (pin this in the vehicles)")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the effective settings of a service, secrets masked."""
    kinds = {"bridge": cfg.BridgeSettings, "worker": cfg.WorkerSettings, "api": cfg.ApiSettings,
             "archive": cfg.ArchiveSettings, "ocpp": cfg.OcppSettings, "run": cfg.RunSettings}
    settings = kinds[args.service]()
    for name, value in sorted(settings.model_dump().items()):
        text = str(value)
        if name.endswith("_url"):
            text = cfg.mask_url(text)
        elif name.endswith(("_token", "_password")):
            text = "***" if text else ""
        print(f"OWNERCARE_{name.upper()}={text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from simulators.cli import add_arguments as add_simulator_arguments

    parser = argparse.ArgumentParser(
        prog="ownercare",
        description="Connected-vehicle ownership monitoring: ingest, diagnostics, OTA, care API.",
    )
    parser.add_argument("--version", action="version", version=f"ownercare {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="start everything on the embedded stack with a simulated fleet",
        description=RUN_DESCRIPTION)
    add_simulator_arguments(run)
    run.add_argument("--state-dir", help="where logs, the SQLite database, the demo OTA keys "
                     "and run.json go (default: OWNERCARE_STATE_DIR or .ownercare)")
    run.add_argument("--resume", action="store_true",
                     help="continue on the state an earlier run left in the state dir (default: "
                     "move it aside to <state dir>.old-<time> and start fresh). What resumes: the "
                     "database (alerts, cases, API keys, OTA campaigns) and, with the embedded "
                     "Kafka on disk (OWNERCARE_EMBEDDED_KAFKA_STORAGE=disk, the default), its "
                     "unprocessed records, offsets and detector states; the fleet starts at the "
                     "midnight after the database's latest event")
    run.add_argument("--api-port", type=_port,
                     help="API port (default: OWNERCARE_API_PORT or 8000)")
    run.add_argument("--mqtt-port", type=_port,
                     help="embedded MQTT port (default: OWNERCARE_MQTT_PORT or 1883)")
    run.add_argument("--kafka-port", type=_port,
                     help="embedded Kafka port (default: OWNERCARE_KAFKA_PORT or 9092)")
    run.add_argument("--no-simulator", action="store_true",
                     help="start the stack without the simulated fleet (default: with it)")
    run.add_argument("--ocpp", action="store_true",
                     help="also start the OCPP 1.6J gateway (OWNERCARE_OCPP_PORT, default 9000) "
                     "and connect the simulated chargers through it instead of MQTT (default: "
                     "OWNERCARE_OCPP_ENABLED, off); see docs/ocpp.md")
    _state_run_defaults(run)
    run.set_defaults(func=cmd_run)

    sub.add_parser("bridge", help="MQTT -> Kafka bridge (OWNERCARE_MQTT_URL, OWNERCARE_KAFKA_URL)"
                   ).set_defaults(func=cmd_bridge)
    sub.add_parser("worker", help="Faust diagnostics worker and alert sink"
                   ).set_defaults(func=cmd_worker)
    sub.add_parser("api", help="FastAPI service for care staff").set_defaults(func=cmd_api)
    sub.add_parser("archive", help="Kafka -> InfluxDB telemetry archive (OWNERCARE_INFLUX_URL)"
                   ).set_defaults(func=cmd_archive)

    sim = sub.add_parser("simulate", help="publish a simulated fleet over MQTT")
    add_simulator_arguments(sim)
    sim.set_defaults(func=cmd_simulate)

    back = sub.add_parser(
        "backtest", help="alias of `eval --seeds` (to be removed): score the detectors on "
        "simulated fleets over a range of seeds (no brokers)")
    from ownercare import backtest

    backtest.add_arguments(back)
    back.set_defaults(func=backtest.run)

    evaluation = sub.add_parser(
        "eval", help="detection quality per fault type on a labelled simulated fleet "
        "(no brokers)")
    from ownercare.evaluation import cli as evaluation_cli

    evaluation_cli.add_arguments(evaluation)
    evaluation.set_defaults(func=evaluation_cli.run)

    replay = sub.add_parser(
        "replay", help="recorded telemetry (JSON lines or CSV) through the detectors; alerts "
        "as JSON lines on stdout",
        description="Feed recorded telemetry through the detectors offline and print the alert "
        "upserts as JSON lines on stdout. Bad lines are reported on stderr with their line "
        "number and reason; the exit status is 1 if any line was bad (2 for bad arguments), "
        "0 otherwise.")
    from ownercare import replay as replay_module

    replay_module.add_arguments(replay)
    replay.set_defaults(func=replay_module.run)

    realdata = sub.add_parser(
        "realdata", help="real vehicle recordings (LeafSpy, carOBD) converted for replay, and "
        "what every detector said about them")
    from ownercare.realdata import cli as realdata_cli

    realdata_cli.add_arguments(realdata)
    realdata.set_defaults(func=realdata_cli.run)

    score = sub.add_parser(
        "score", help="the generic detector's anomaly score for every row of a CSV",
        description="Score every row of a CSV with the generic detector, streaming in time "
        "order as the worker does, and print the input with an anomaly_score column in [0, 1] "
        "(one joint score per row with several value columns). Bad input: one line on stderr "
        "with the line number, exit status 2.")
    from ownercare import score as score_module

    score_module.add_arguments(score)
    score.set_defaults(func=score_module.run)

    nab = sub.add_parser(
        "nab", help="the generic detector on the Numenta Anomaly Benchmark (a local checkout), "
        "scored with NAB's rules")
    from ownercare.evaluation import nab as nab_module

    nab_module.add_arguments(nab)
    nab.set_defaults(func=nab_module.run)

    bench = sub.add_parser(
        "bench", help="measure throughput, latency and cost of the whole pipeline here")
    from ownercare import bench as bench_module

    bench_module.add_arguments(bench)
    bench.set_defaults(func=bench_module.run)

    fault_runs = sub.add_parser(
        "faults", help="kill -9 each service of a real run in turn and count what it cost "
        "(records lost, alerts lost, duplicated or false against an uninterrupted run)")
    from ownercare import faults as faults_module

    faults_module.add_arguments(fault_runs)
    fault_runs.set_defaults(func=faults_module.run)

    soak = sub.add_parser(
        "soak", help="run the whole stack for a long while and sample every process's memory "
        "(soak.csv, soak.json, soak.png)")
    from ownercare import soak as soak_module

    soak_module.add_arguments(soak)
    soak.set_defaults(func=soak_module.run)

    keys = sub.add_parser("keys", help="API keys for the staff API (OWNERCARE_DATABASE_URL)")
    keys_sub = keys.add_subparsers(dest="action", required=True, metavar="create|list|revoke")
    create = keys_sub.add_parser("create", help="create a key; prints it once, on stdout")
    create.add_argument("--role", required=True, choices=["viewer", "agent", "ota_manager",
                                                          "admin"])
    create.add_argument("--name", required=True, help="who uses it (shown in audit trails)")
    keys_sub.add_parser("list", help="list keys (never their secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    from ownercare import ota_cli

    ota = sub.add_parser("ota", help="over-the-air updates")
    ota_sub = ota.add_subparsers(dest="action", required=True, metavar="keygen|release",
                                 parser_class=ota_cli.OneLineParser)
    keygen = ota_sub.add_parser("keygen", help="new ed25519 key pair for signed manifests")
    keygen.add_argument("--out", default=".ownercare/keys", help="directory for the key pair")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    keygen.set_defaults(func=cmd_ota_keygen)
    ota_cli.add_release_parser(ota_sub)

    from ownercare import ocpp_cli

    ocpp_cli.add_parser(sub, setup_logging)

    conf = sub.add_parser("config", help="print the effective settings (secrets masked)")
    conf.add_argument("service", choices=["bridge", "worker", "api", "archive", "ocpp", "run"])
    conf.set_defaults(func=cmd_config)
    return parser


RUN_DESCRIPTION = (
    "Start every service (MQTT and Kafka brokers, bridge, worker, API) on this machine, and a "
    "simulated fleet publishing to it. With no flags: 20 vehicles, 4 chargers, no faults, in "
    "real time (--speed 1: a simulated day takes a day); `make run` uses --speed 3600 (an hour "
    "a second) and --faults weak_12v:3,dtc:2. An earlier run's state dir is moved aside "
    "unless --resume is given. Every default is given below.")

# Simulator flags that `ownercare run` takes no value for: (flag, its run default, why).
RUN_REFUSED = (
    ("--mqtt-url", None, "the fleet publishes to the embedded broker (its port: --mqtt-port); "
     "`ownercare simulate --mqtt-url` publishes to another broker"),
    ("--mqtt-protocol", None, "the fleet speaks MQTT 3.1.1 to the embedded broker; "
     "`ownercare simulate --mqtt-protocol 5` speaks 5 to another broker"),
    ("--print-truth", False, "the simulator's output goes to its log; write the ground truth "
     "to a file with --truth FILE"),
    ("--chargers-ocpp", None, "with --ocpp the simulated chargers connect to the run's own "
     "OCPP gateway; `ownercare simulate --chargers-ocpp` connects them to another one"),
    ("--ocpp-passwords", None, "with --ocpp the run makes the chargers' credentials itself"),
)

# Help of the simulator's flags as `ownercare run` uses them: every default stated.
RUN_HELP = {
    "speed": "simulated seconds per wall-clock second (default 1: real time, a simulated day "
             "takes a day; 3600: an hour a second, what `make run` uses)",
    "start": "simulated start time, ISO 8601 (default {start}; with --resume, the midnight "
             "after the database's latest event)",
    "faults": "labelled faults to inject, fault:count[,fault:count...], e.g. weak_12v:3 "
              "(default: none; known: {known})",
    "truth": "write the ground truth (faulty assets, onset, failure) as JSON (default: not "
             "written)",
    "ota_public_key": "PEM Ed25519 public key the cars pin to verify OTA commands; it must "
                      "be the public half of the key the worker signs with (default: that "
                      "half, of OWNERCARE_OTA_SIGNING_KEY if set, else of the demo key pair "
                      "in the state dir, keys/ota-signing.pub.pem)",
    "ota_bad_releases": "releases that, once installed, make a car's 12 V battery drain fast "
                        "while parked: 2.0.0 or component@2.0.0, comma-separated (default: "
                        "none)",
}


def _state_run_defaults(run: argparse.ArgumentParser) -> None:
    """Give the simulator's flags the help and defaults `ownercare run` has for them."""
    from simulators.faults import FAULTS
    from simulators.fleet import DEFAULT_START

    refused = {flag.lstrip("-").replace("-", "_"): default for flag, default, _ in RUN_REFUSED}
    for action in run._actions:
        if action.dest in RUN_HELP:
            action.help = RUN_HELP[action.dest].format(
                known=", ".join(sorted(FAULTS)), start=DEFAULT_START).replace("%", "%%")
        elif action.dest in refused:
            action.help = argparse.SUPPRESS
    # None: the simulator's own default, or (resuming) where the database left off.
    run.set_defaults(start=None, **refused)


def _version() -> str:
    try:
        return metadata.version("ownercare")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "(not installed)"


class UserError(Exception):
    """A mistake of the user's: its message is the whole line ``main`` prints (exit 2)."""


def database_error(settings: cfg.DatabaseSettings, exc: Exception) -> str:
    """One line for a database that cannot be opened: where its URL came from, the URL (its
    password masked) and the driver's reason."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    source = "OWNERCARE_DATABASE_URL" if settings.database_url else "in OWNERCARE_STATE_DIR"
    return (f"cannot open the database {cfg.mask_url(settings.effective_database_url)} "
            f"({source}): {reason[0] if reason else type(exc).__name__}")


def _command(args: argparse.Namespace) -> str:
    """``ownercare keys list``: the words of the command that failed, for its error line."""
    words = ["ownercare", args.command]
    if isinstance(getattr(args, "action", None), str):
        words.append(args.action)
    return " ".join(words)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1..65535")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        return _settings_error(exc)
    except UserError as exc:
        print(exc if str(exc).startswith("ownercare") else f"{_command(args)}: {exc}",
              file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not a path of the user's: a fault worth its traceback
            raise
        print(f"{_command(args)}: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # A service that cannot open its database at start-up: the URL is the user's.
        if not type(exc).__module__.startswith("sqlalchemy"):
            raise
        print(f"{_command(args)}: {database_error(cfg.DatabaseSettings(), exc)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
