"""``ownercare run --ocpp``: the OCPP gateway as one more supervised service.

The run makes the credentials itself, in ``<state dir>/ocpp/``: every simulated charger gets
one random password for this run (hashed in ``credentials``, in clear in ``sim-passwords``
for the simulator, both 0600), and the charge points of ``OWNERCARE_OCPP_CREDENTIALS_FILE``,
when set, are copied in, so real chargers can connect to the same run.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from config.settings import OcppSettings
from ingest import ocpp_credentials


@dataclass(frozen=True)
class OcppRun:
    env: dict[str, str]  # for every child (the gateway reads it)
    simulator_flags: list[str]  # for the simulator child
    url: str


def prepare(settings: OcppSettings, state_dir: Path, charger_ids: list[str],
            future_skew_s: float | None) -> OcppRun:
    """Write the run's credentials; ``future_skew_s`` is None without a simulator (real
    chargers only: their clocks are the wall clock) or the bridge's limit for the simulated
    fleet, whose event time is not the wall clock."""
    directory = state_dir / "ocpp"
    directory.mkdir(mode=0o700, exist_ok=True)
    credentials = directory / "credentials"
    lines = (ocpp_credentials.load(Path(settings.ocpp_credentials_file))
             if settings.ocpp_credentials_file else {})
    password = secrets.token_urlsafe(24)
    for charger_id in charger_ids:
        lines[charger_id] = ocpp_credentials.hash_password(password)
    _private_write(credentials, "".join(f"{cid}:{stored}\n"
                                        for cid, stored in sorted(lines.items())))
    url = f"ws://127.0.0.1:{settings.ocpp_port}{settings.ocpp_path.rstrip('/')}"
    env = {"OWNERCARE_OCPP_CREDENTIALS_FILE": str(credentials),
           "OWNERCARE_OCPP_HOST": settings.ocpp_host,
           "OWNERCARE_OCPP_PORT": str(settings.ocpp_port)}
    flags: list[str] = []
    if future_skew_s is not None:
        passwords = directory / "sim-passwords"
        _private_write(passwords, f"*:{password}\n")
        flags = ["--chargers-ocpp", url, "--ocpp-passwords", str(passwords)]
        # Heartbeat and boot records carry the wall clock, not the fleet's event time.
        env["OWNERCARE_OCPP_CLOCKLESS_RECORDS"] = "false"
        env["OWNERCARE_OCPP_MAX_FUTURE_SKEW_S"] = f"{future_skew_s:g}"
    return OcppRun(env, flags, url)


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
