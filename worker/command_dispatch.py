"""Remote support commands on the leader worker: sign what staff requested, expire what the
fleet's clock has passed.

The API only records a request (``storage.commands``); the signing key stays with the worker,
as for OTA manifests. Every ``OWNERCARE_OTA_POLL_S`` the leader expires in-flight commands
whose expiry the fleet's event time has passed (after having the view writer write what this
worker has read, so an answer the car sent in time is folded in first, not overtaken by the
expiry), signs each requested one
(``care.commands.command_body``, ``care.signing``), hands it to
``ownercare.remote.commands`` and marks it sent once Kafka has it; the bridge publishes it to
``vehicles/{vin}/commands``. A send Kafka does not confirm leaves the command requested, to
be sent again at the next tick with the same nonce: a car that got the first copy refuses
the second as ``replayed``, which changes nothing (``care.commands.on_report``).
"""

from __future__ import annotations

import asyncio
import logging

import faust
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from care.commands import ENVELOPE_FIELD, command_body
from care.signing import sign
from config.settings import WorkerSettings
from ingest import service_metrics, topics
from storage import commands as command_store
from storage.store import Store
from worker.view_writer import ViewWriter

log = logging.getLogger(__name__)


class CommandDispatcher:
    def __init__(self, store: Store, signing_key: Ed25519PrivateKey) -> None:
        self.store = store
        self.key = signing_key

    def step(self, expire: bool = True) -> list[tuple[str, str, bytes]]:
        """Expire, then sign what is requested: (command id, VIN, envelope) to send."""
        if expire:
            command_store.expire_due(self.store)
        return [(row["id"], row["vin"], orjson.dumps(self.signed(row)))
                for row in command_store.to_dispatch(self.store)]

    def signed(self, row: dict[str, object]) -> dict[str, object]:
        body = command_body(command_id=str(row["id"]), vin=str(row["vin"]),
                            kind=str(row["kind"]), nonce=str(row["nonce"]),
                            issued_at=int(row["issued_event_ms"]),  # type: ignore[call-overload]
                            expires_at=int(row["expires_event_ms"]),  # type: ignore[call-overload]
                            params=dict(row["params"] or {}))  # type: ignore[call-overload]
        return sign(self.key, body, ENVELOPE_FIELD)


def install(app: faust.App, settings: WorkerSettings, store: Store,
            signing_key: Ed25519PrivateKey, writer: ViewWriter) -> None:
    """The dispatcher on a leader timer (one worker sends each command once)."""
    dispatcher = CommandDispatcher(store, signing_key)
    outbound = app.topic(topics.REMOTE_COMMANDS, partitions=settings.partitions)
    worker_id = service_metrics.instance_id()  # which of the group's workers sent them

    @app.timer(settings.ota_poll_s, on_leader=True)  # type: ignore[untyped-decorator]
    async def dispatch_commands() -> None:
        try:
            expire = await asyncio.to_thread(command_store.expiry_due, store)
            if expire:
                await writer.flush()
            out = await asyncio.to_thread(dispatcher.step, expire)
        except Exception as exc:  # the database away: try again next tick
            log.warning("command_dispatch_failed error=%r", exc)
            return
        sent = []
        for command_id, vin, value in out:
            try:
                await (await outbound.send(key=vin.encode(), value=value))
            except Exception as exc:  # Kafka did not take it: it stays requested, next tick
                log.warning("remote_command_send_failed id=%s error=%r", command_id, exc)
                continue
            sent.append(command_id)
        if sent:
            await asyncio.to_thread(command_store.mark_sent, store, sent)
            log.info("remote_commands_sent worker=%s count=%s", worker_id, len(sent))
