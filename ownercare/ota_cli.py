"""``ownercare ota release``: register an OTA release from the command line.

Like ``ownercare keys``, it writes to the database of ``OWNERCARE_DATABASE_URL`` (by default
the SQLite database in ``OWNERCARE_STATE_DIR``, the one ``make run`` uses), with the checks
``POST /ota/releases`` makes. The artifact is described in one of three ways:

* ``--url URL --file PATH``: the file the cars will download from URL; its size and SHA-256
  are computed here, so what the manifest promises is what was built;
* ``--url URL --sha256 HEX --size BYTES``: an artifact published elsewhere;
* ``--simulated [--url URL] [--size BYTES]``: an artifact of the bundled simulator's CDN,
  which serves deterministic bytes for every URL (``simulators.ota_client``); the SHA-256 is
  that of those bytes, so the simulated cars' download check passes and they install it.

It prints the new release's id on stdout (``RELEASE=$(ownercare ota release ...)``) and what
was registered on stderr. A mistake in the arguments is one line on stderr and exit status 2;
a release of that component and version that exists already, exit status 1.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

SIMULATED_SIZE = 4096  # bytes: downloads in a couple of simulated milliseconds
SIMULATED_MAX_SIZE = 16 << 20
SIMULATED_URL = "https://cdn.example/{component}-{version}.bin"  # .example: never resolves
DESCRIPTION = (
    "Register an OTA release in the database of OWNERCARE_DATABASE_URL (default: the SQLite "
    "database in OWNERCARE_STATE_DIR, which `make run` uses) and print its id. Describe the "
    "artifact with --url and --file (size and SHA-256 computed from the file), with --url, "
    "--sha256 and --size, or with --simulated: an artifact the bundled simulator's cars "
    "download and install.")


class OneLineParser(argparse.ArgumentParser):
    """An argument mistake is one line on stderr (exit 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def add_release_parser(ota_sub: Any) -> None:
    """``release`` on the ``ownercare ota`` sub-commands (``ota_sub``: their sub-parsers)."""
    release = ota_sub.add_parser(
        "release", help="register a release (OWNERCARE_DATABASE_URL); prints its id",
        description=DESCRIPTION)
    release.add_argument("--version", required=True, help="semantic version, e.g. 2.4.1")
    release.add_argument("--component", required=True,
                         help="the ECU / software component it updates, e.g. bms")
    release.add_argument("--url", help="where the cars download the artifact (http or https); "
                         f"with --simulated, default {SIMULATED_URL}")
    release.add_argument("--file", type=Path, help="the artifact: its size and SHA-256 are "
                         "computed from it")
    release.add_argument("--sha256", help="the artifact's SHA-256, 64 hex digits (without "
                         "--file)")
    release.add_argument("--size", help="the artifact's size in bytes (without --file; with "
                         f"--simulated, default {SIMULATED_SIZE})")
    release.add_argument("--simulated", action="store_true",
                         help="an artifact of the bundled simulator's CDN: the simulated cars "
                         "download and install it")
    release.add_argument("--notes", default="", help="release notes (default: none)")
    release.add_argument("--rollback", action="store_true",
                         help="a deliberate downgrade: cars accept a lower version only from "
                         "such a release; an admin key must approve it before a campaign "
                         "may use it")
    release.set_defaults(func=cmd_release)


class _Refused(Exception):
    """An argument mistake: the message is the line printed."""


def cmd_release(args: argparse.Namespace) -> int:
    try:
        body = release_body(args)
    except _Refused as exc:
        print(f"ownercare ota release: {exc}", file=sys.stderr)
        return 2
    return _store_release(body)


def release_body(args: argparse.Namespace) -> dict[str, Any]:
    """What ``POST /ota/releases`` would be sent, checked as it checks it."""
    from pydantic import ValidationError

    from api.ota_schemas import ReleaseCreate
    from ota.model import Release

    url, sha256, size = _artifact(args)
    body = {"version": args.version, "component": args.component, "artifact_url": url,
            "size": size, "sha256": sha256, "notes": args.notes, "rollback": args.rollback}
    try:
        checked = ReleaseCreate(**body).model_dump()
        Release(**checked)  # the semantic version, the component's spelling
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _FLAGS.get(str(err["loc"][0]), str(err["loc"][0])) if err["loc"] else "release"
        raise _Refused(f"{field}: {err['msg']} (got {err.get('input')!r})") from None
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    return checked


_FLAGS = {"version": "--version", "component": "--component", "artifact_url": "--url",
          "size": "--size", "sha256": "--sha256", "notes": "--notes"}


def _artifact(args: argparse.Namespace) -> tuple[str, str, int]:
    """(url, sha256, size) from the flags that describe the artifact."""
    size = _size(args.size) if args.size is not None else None
    if args.simulated:
        if args.file is not None or args.sha256 is not None:
            raise _Refused("--simulated computes the SHA-256 of the simulator's artifact: "
                           "leave out --file and --sha256")
        from simulators.ota_client import simulated_artifact

        url = args.url or SIMULATED_URL.format(component=args.component, version=args.version)
        size = SIMULATED_SIZE if size is None else size
        if not 0 < size <= SIMULATED_MAX_SIZE:
            raise _Refused(f"--size: a simulated artifact has 1 to {SIMULATED_MAX_SIZE} bytes "
                           f"(every simulated car makes its bytes), got {size}")
        return url, hashlib.sha256(simulated_artifact(url, size)).hexdigest(), size
    if not args.url:
        raise _Refused("--url is required: where the cars download the artifact "
                       "(or --simulated for the bundled simulator's)")
    if args.file is not None:
        if args.sha256 is not None or size is not None:
            raise _Refused("--file gives the size and SHA-256: leave out --sha256 and --size")
        sha256, size = _digest(args.file)
        return args.url, sha256, size
    if args.sha256 is None or size is None:
        raise _Refused("describe the artifact: --file PATH, or --sha256 and --size")
    return args.url, args.sha256, size


def _size(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _Refused(f"--size: {text!r} is not a whole number of bytes") from None


def _digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise _Refused(f"--file {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise _Refused(f"--file {path}: the file is empty")
    return digest.hexdigest(), size


def _store_release(body: dict[str, Any]) -> int:
    from config.settings import DatabaseSettings
    from ota.model import Release
    from storage import ota as ota_store
    from storage.store import Store

    settings = DatabaseSettings()
    if not settings.database_url:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.effective_database_url)
    try:
        row = ota_store.create_release(store, Release(**body), created_by=_who(),
                                       now_ms=int(time.time() * 1000))
    except ota_store.Conflict as exc:
        print(f"ownercare ota release: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(row["id"])
    print(f"created release {row['id']}: {row['component']} {row['version']}, "
          f"{row['artifact_url']} ({row['size']} bytes, sha256 {row['sha256'][:12]}...)",
          file=sys.stderr)
    if ota_store.rollback_pending(row):
        print(f"a rollback release: an admin key must approve it (POST /ota/releases/"
              f"{row['id']}/approve) before a campaign may use it", file=sys.stderr)
    return 0


def _who() -> str:
    """Who registered it (``created_by``), as the API records a key's name."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"
