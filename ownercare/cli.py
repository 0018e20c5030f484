"""``ownercare`` command line: run | bridge | worker | api | archive | simulate | backtest |
eval | replay | bench | keys | ota | config.

Each service reads its settings from ``OWNERCARE_*`` variables (see README); invalid settings
or arguments exit with status 2 and a message naming the variable or flag.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from config import settings as cfg

log = logging.getLogger(__name__)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiokafka", "amqtt", "transitions", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _settings_error(exc: ValidationError) -> int:
    print("ownercare: invalid configuration:", file=sys.stderr)
    for err in exc.errors():
        name = "OWNERCARE_" + "_".join(str(p) for p in err["loc"]).upper()
        print(f"  {name}: {err['msg']} (got {err.get('input')!r})", file=sys.stderr)
    return 2


def cmd_bridge(_args: argparse.Namespace) -> int:
    from ingest.bridge import run_bridge

    settings = cfg.BridgeSettings()
    setup_logging(settings.log_level)
    return asyncio.run(run_bridge(settings))


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

    settings = cfg.ApiSettings()
    setup_logging(settings.log_level)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(
        create_app(settings),
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
    from storage.keys import KeyStore, check_name
    from storage.store import Store

    settings = cfg.DatabaseSettings()
    if args.action == "create":
        try:
            check_name(args.name)
        except ValueError as exc:
            print(f"ownercare keys create: --name: {exc}", file=sys.stderr)
            return 2
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.effective_database_url)
    try:
        keys = KeyStore(store)
        if args.action == "create":
            row, key = keys.create(args.name, args.role)
            print(key)
            print(f"created key {row['id']} ({row['role']}) named {row['name']!r}; the key above "
                  "is shown only now: store it safely", file=sys.stderr)
        elif args.action == "list":
            for row in keys.list():
                state = "revoked" if row["revoked_at"] is not None else "active"
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
    out.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    print(f"private key: {private_path} (mode 0600; keep it off the API hosts' logs and "
          f"backups)\npublic key:  {public_path} (pin this in the vehicles)")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the effective settings of a service, secrets masked."""
    kinds = {"bridge": cfg.BridgeSettings, "worker": cfg.WorkerSettings, "api": cfg.ApiSettings,
             "archive": cfg.ArchiveSettings, "run": cfg.RunSettings}
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="start everything on the embedded stack with a simulated fleet")
    add_simulator_arguments(run)
    run.add_argument("--state-dir", help="where logs, the SQLite database and run.json go "
                     "(default: OWNERCARE_STATE_DIR or .ownercare)")
    run.add_argument("--api-port", type=_port,
                     help="API port (default: OWNERCARE_API_PORT or 8000)")
    run.add_argument("--mqtt-port", type=_port, help="embedded MQTT port (default 1883)")
    run.add_argument("--kafka-port", type=_port, help="embedded Kafka port (default 9092)")
    run.add_argument("--no-simulator", action="store_true",
                     help="start the stack without the simulated fleet")
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

    bench = sub.add_parser(
        "bench", help="measure throughput, latency and cost of the whole pipeline here")
    from ownercare import bench as bench_module

    bench_module.add_arguments(bench)
    bench.set_defaults(func=bench_module.run)

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

    ota = sub.add_parser("ota", help="over-the-air updates")
    ota_sub = ota.add_subparsers(dest="action", required=True, metavar="keygen")
    keygen = ota_sub.add_parser("keygen", help="new ed25519 key pair for signed manifests")
    keygen.add_argument("--out", default=".ownercare/keys", help="directory for the key pair")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    keygen.set_defaults(func=cmd_ota_keygen)

    conf = sub.add_parser("config", help="print the effective settings (secrets masked)")
    conf.add_argument("service", choices=["bridge", "worker", "api", "archive", "run"])
    conf.set_defaults(func=cmd_config)
    return parser


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
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
