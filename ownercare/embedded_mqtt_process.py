"""The embedded MQTT broker of ``ownercare run``: amqtt in a process of its own, kept running.

It runs as ``python -m ownercare.embedded amqtt PORT <state dir>/mqtt``: what it owes the
bridge's persistent session is journalled there (``ownercare.mqtt_journal``) before the
devices get their PUBACK, so a crash, even ``kill -9``, is only an outage. It is restarted on
the same port after the supervisor's backoff (``ownercare.supervisor``); the devices and the
bridge reconnect (paho resends what was not acknowledged) and the bridge's session finds its
in-flight messages and its queue where they were.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from ownercare import embedded
from ownercare.mqtt_journal import SESSIONS
from ownercare.supervisor import Crashes, GiveUp

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


class EmbeddedMqtt:
    def __init__(self, port: int, state_dir: Path, log_dir: Path) -> None:
        self.port = port
        self.journal_dir = state_dir / "mqtt"
        self.log_path = log_dir / "mqtt.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0
        self.restart_at_s: float | None = None
        self.crashes = Crashes()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        embedded.ensure_port_free(self.port, "the embedded MQTT broker (amqtt)")
        out = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ownercare.embedded", "amqtt", str(self.port),
             str(self.journal_dir)],
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=embedded.die_with_parent,
            # Like Kafka: Ctrl-C must not stop the broker before the bridge has acknowledged.
            process_group=0)
        out.close()
        self.started_s = time.monotonic()
        deadline = self.started_s + START_TIMEOUT_S
        while not embedded.wait_for_port(self.port, 0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                embedded.stop_process(self.proc, 5)
                raise RuntimeError(f"the embedded MQTT broker did not listen on port "
                                   f"{self.port} within {START_TIMEOUT_S:.0f} s; see "
                                   f"{self.log_path}")
        log.info("mqtt_broker_started port=%s pid=%s journal=%s", self.port, self.proc.pid,
                 self.journal_dir)

    def subscribed(self, topic_filter: str) -> bool:
        """A persistent session holds ``topic_filter`` (the broker journals it before the
        SUBACK, so from then on its messages are owed to that session)."""
        try:
            sessions = json.loads((self.journal_dir / SESSIONS).read_text())
        except (OSError, ValueError):
            return False
        return any(t == topic_filter for subs in sessions.values() for t, _q in subs)

    def tend(self) -> bool:
        """Restart the broker once its backoff passed; True when it was restarted.
        RuntimeError (one line) when it crashes too often."""
        if self.proc is None:
            return False
        now = time.monotonic()
        if self.restart_at_s is not None:
            if now < self.restart_at_s:
                return False
            self.restart_at_s = None
            self.start()
            log.warning("mqtt_broker_restarted restarts=%s pid=%s", self.crashes.restarts,
                        self.pid)
            return True
        code = self.proc.poll()
        if code is None:
            return False
        decision = self.crashes.crashed(now, now - self.started_s, code)
        if isinstance(decision, GiveUp):
            raise RuntimeError(f"the embedded MQTT broker {decision.reason}; stopped "
                               f"everything (see {self.log_path})")
        self.restart_at_s = now + decision.backoff_s
        log.warning("mqtt_broker_crashed status=%s backoff_s=%s", code, decision.backoff_s)
        return False

    def stop(self) -> None:
        if self.proc is not None:
            embedded.stop_process(self.proc, 15)
