"""``ownercare ocpp``: the OCPP 1.6J gateway, and ``ownercare ocpp add-charger``.

``ownercare ocpp`` serves until SIGINT/SIGTERM (settings ``OWNERCARE_OCPP_*``, Kafka from
``OWNERCARE_KAFKA_URL``). ``ownercare ocpp add-charger ID`` adds a charge point to the
credentials file and prints its password once, on stdout: configure it in the charge point
(its AuthorizationKey), it is not stored anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from config import settings as cfg
from ownercare.ota_cli import OneLineParser

DESCRIPTION = (
    "Run the OCPP 1.6J central system real charge points connect to: "
    "ws://<host>:<port>/ocpp/<chargeBoxId> (OWNERCARE_OCPP_HOST, OWNERCARE_OCPP_PORT, "
    "OWNERCARE_OCPP_PATH), subprotocol ocpp1.6, HTTP Basic credentials from "
    "OWNERCARE_OCPP_CREDENTIALS_FILE. Their calls become the same charger records the MQTT "
    "bridge produces (docs/ocpp.md).")


def add_parser(sub: Any, setup_logging: Callable[[str], None]) -> None:
    """``setup_logging``: the CLI's, passed in (this module is imported by ``ownercare.cli``)."""
    ocpp = sub.add_parser("ocpp", help="OCPP 1.6J gateway for real charge points",
                          description=DESCRIPTION)
    actions = ocpp.add_subparsers(dest="action", required=False, metavar="[add-charger]",
                                  parser_class=OneLineParser)
    add = actions.add_parser(
        "add-charger", help="add (or re-key) a charge point; prints its new password once")
    add.add_argument("charger_id", help="the charge point's chargeBoxId")
    add.add_argument("--credentials", type=Path, default=None, metavar="FILE",
                     help="credentials file (default: OWNERCARE_OCPP_CREDENTIALS_FILE)")
    ocpp.set_defaults(func=partial(run, setup_logging=setup_logging))


def run(args: argparse.Namespace, setup_logging: Callable[[str], None]) -> int:
    from ingest import ocpp_credentials

    settings = cfg.OcppSettings()
    if args.action == "add-charger":
        path = args.credentials or (Path(settings.ocpp_credentials_file)
                                    if settings.ocpp_credentials_file else None)
        if path is None:
            print("ownercare ocpp add-charger: give --credentials FILE or set "
                  "OWNERCARE_OCPP_CREDENTIALS_FILE", file=sys.stderr)
            return 2
        try:
            password = ocpp_credentials.add(path, args.charger_id)
        except (ocpp_credentials.CredentialsError, OSError) as exc:
            print(f"ownercare ocpp add-charger: {exc}", file=sys.stderr)
            return 2
        print(password)
        return 0
    from ingest.ocpp_gateway import load_credentials, run_gateway

    try:
        credentials = load_credentials(settings)
    except ocpp_credentials.CredentialsError as exc:
        print(f"ownercare ocpp: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    return asyncio.run(run_gateway(settings, credentials))
