"""The OCPP 1.6J central system: real charge points connect here instead of to MQTT.

A charge point opens ``ws://host:port/<path>/<chargeBoxId>`` with the subprotocol
``ocpp1.6`` and HTTP Basic credentials (security profile 1: the user is its chargeBoxId, the
password is checked against the scrypt hash in the credentials file). The handshake of an
unknown charge point, a wrong password or another subprotocol is refused.

Each call is mapped by ``ingest.ocpp_records`` to the payloads the charger would have
published over MQTT, validated by the contract into the very records the bridge produces, and
produced to the chargers topic with the bridge's key and partition. The CALLRESULT goes back
only after Kafka acknowledged the records, so a charge point that retries an unanswered call
delivers it at least once. A frame that is not OCPP (not JSON, not a CALL, an unknown action,
a payload the OCPP 1.6 schema or the contract refuses) gets a CALLERROR and a dead-letter
record with the reason; the connection stays open, other charge points never notice.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from ocpp.exceptions import (
    InternalError,
    OCPPError,
    PropertyConstraintViolationError,
)
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from config.settings import OcppSettings
from ingest import contract, ocpp_credentials, ocpp_records, topics
from ingest.kafka import ensure_topics, partition_for, wait_for_kafka
from ingest.ocpp_records import Payload
from ingest.ocpp_session import V16_CODES, CentralSystemSide, Rejected

log = logging.getLogger(__name__)

SUBPROTOCOL: Final = "ocpp1.6"
STATS_EVERY_S: Final = 30.0


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs each connection at INFO and a failed opening handshake (a port probe,
    a scanner) at ERROR with a traceback: one INFO line is what those are worth."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR:
            level = logging.INFO
            kwargs.pop("exc_info", None)
        super().log(level, msg, *args, **kwargs)


class Gateway:
    """The WebSocket server, the Kafka producer and the counters of one gateway process."""

    def __init__(self, settings: OcppSettings, credentials: Mapping[str, str]) -> None:
        self.settings = settings
        self.credentials = dict(credentials)
        self.id_tags = settings.id_tag_allow_list
        self.stats: Counter[str] = Counter()
        self.dead_letter_reasons: Counter[str] = Counter()
        self.ignored_measurands: Counter[str] = Counter()
        self.port = 0
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._partitions = 1

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        s = self.settings
        await wait_for_kafka(s.kafka_bootstrap, s.broker_give_up_s)
        await ensure_topics(s.kafka_bootstrap, s.partitions)
        self._producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all",
                                          linger_ms=0, request_timeout_ms=15000)
        await self._producer.start()
        try:
            self._partitions = len(await self._producer.partitions_for(topics.CHARGERS))
            server: Server
            async with serve(self._connection, s.ocpp_host, s.ocpp_port,
                             subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                             process_request=self._authenticate,
                             max_size=s.ocpp_max_frame_bytes, compression=None,
                             logger=_ServerLog(logging.getLogger(f"{__name__}.server"), {}),
                             ) as server:
                self.port = next(iter(server.sockets)).getsockname()[1]
                log.info("ocpp_listening address=%s port=%s charge_points=%s path=%s",
                         s.ocpp_host, self.port, len(self.credentials), s.ocpp_path)
                self.ready.set()
                stats = asyncio.create_task(self._stats_loop())
                try:
                    await self._stopping.wait()
                finally:
                    stats.cancel()
        finally:
            await self._producer.stop()
            self._log_stats()

    def stop(self) -> None:
        self._stopping.set()

    # ---------------------------------------------------------------- handshake

    def charger_id_of(self, path: str) -> str | None:
        prefix = self.settings.ocpp_path.rstrip("/") + "/"
        path = path.split("?", 1)[0]
        if not path.startswith(prefix):
            return None
        charger_id = path[len(prefix):]
        return charger_id if contract.CHARGER_ID_RE.fullmatch(charger_id) else None

    async def _authenticate(self, connection: ServerConnection, request: Request
                            ) -> Response | None:
        charger_id = self.charger_id_of(request.path)
        if charger_id is None:
            return self._refuse(connection, HTTPStatus.NOT_FOUND, request.path,
                                f"no charge point at this path; use "
                                f"{self.settings.ocpp_path.rstrip('/')}/<chargeBoxId>")
        offered = {p.strip() for p in
                   ",".join(request.headers.get_all("Sec-WebSocket-Protocol")).split(",")}
        if SUBPROTOCOL not in offered:
            return self._refuse(connection, HTTPStatus.BAD_REQUEST, charger_id,
                                f"the WebSocket subprotocol {SUBPROTOCOL} is required")
        user, password = _basic_credentials(request.headers)
        stored = self.credentials.get(charger_id)
        ok = (stored is not None and user == charger_id and password is not None
              and await asyncio.to_thread(ocpp_credentials.verify, stored, password))
        if not ok:
            response = self._refuse(connection, HTTPStatus.UNAUTHORIZED, charger_id,
                                    "unknown charge point or wrong credentials")
            response.headers["WWW-Authenticate"] = 'Basic realm="ownercare OCPP"'
            return response
        return None

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, who: str,
                why: str) -> Response:
        self.stats["handshakes_refused"] += 1
        log.warning("ocpp_handshake_refused charge_point=%r status=%s reason=%s remote=%s",
                    who, status.value, why, connection.remote_address)
        return connection.respond(status, why + "\n")

    # ---------------------------------------------------------------- connection

    async def _connection(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        charger_id = self.charger_id_of(ws.request.path)
        assert charger_id is not None  # _authenticate refused every other path
        self.stats["connections"] += 1
        log.info("ocpp_connected charge_point=%s remote=%s", charger_id, ws.remote_address)
        point = CentralSystemSide(charger_id, ws, self)
        try:
            await point.start()
        except ConnectionClosed as exc:
            log.info("ocpp_disconnected charge_point=%s code=%s", charger_id,
                     exc.rcvd.code if exc.rcvd else None)

    # ---------------------------------------------------------------- records

    async def emit(self, charger_id: str, payloads: list[Payload], clock: ocpp_records.SeqClock,
                   received_ms: int) -> None:
        """Validate every payload into its record, then produce them all; raise Rejected
        (nothing produced) when one breaks the contract."""
        records = []
        try:
            for payload in payloads:
                record = ocpp_records.canonical(charger_id, payload, clock.seq(payload))
                contract.check_not_future(record, received_ms,
                                          self.settings.ocpp_max_future_skew_ms)
                records.append(record)
        except contract.ContractError as exc:
            raise Rejected(exc.reason.value, PropertyConstraintViolationError(
                description=str(exc), details={"reason": exc.reason.value})) from None
        await self._produce(records)

    async def _produce(self, records: list[dict[str, Any]]) -> None:
        assert self._producer is not None
        if not records:
            return
        try:
            futures = [await self._producer.send(
                topics.CHARGERS, contract.encode_batch([r]), key=r["id"].encode(),
                partition=partition_for(r["id"], self._partitions)) for r in records]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            self.stats["kafka_failures"] += 1
            log.warning("ocpp_kafka_produce_failed error=%s", exc)
            # The charge point gets an InternalError and sends the call again later.
            raise InternalError(description=f"records not stored, try again: {exc}") from None
        self.stats["records"] += len(records)

    async def dead_letter(self, charger_id: str, raw: str | bytes, action: str | None,
                          reason: str, error: OCPPError, received_ms: int) -> None:
        body = raw.encode() if isinstance(raw, str) else raw
        code = V16_CODES.get(error.code, error.code)
        letter = orjson.dumps({
            "source": "ocpp",
            "topic": f"ocpp/{charger_id}" + (f"/{action}" if action else ""),
            "charger_id": charger_id,
            "action": action,
            "reason": reason,
            "ocpp_error": code,
            "detail": error.description,
            "payload_b64": base64.b64encode(body).decode(),
            "payload_bytes": len(body),
            "received_ms": received_ms,  # transport metadata, not event time
        })
        self.stats["dead_letters"] += 1
        self.dead_letter_reasons[reason] += 1
        log.warning("ocpp_call_refused charge_point=%s action=%s reason=%s ocpp_error=%s "
                    "detail=%s", charger_id, action, reason, code, error.description)
        assert self._producer is not None
        try:
            await self._producer.send_and_wait(topics.DEAD_LETTER, letter,
                                              key=charger_id.encode())
        except KafkaError as exc:  # the CALLERROR still goes out; the letter is best effort
            log.warning("ocpp_dead_letter_lost error=%s", exc)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            self._log_stats()

    def _log_stats(self) -> None:
        log.info("ocpp_stats connections=%s records=%s dead_letters=%s refused=%s reasons=%s "
                 "ignored_measurands=%s", self.stats["connections"], self.stats["records"],
                 self.stats["dead_letters"], self.stats["handshakes_refused"],
                 dict(self.dead_letter_reasons), dict(self.ignored_measurands))


def _basic_credentials(headers: Headers) -> tuple[str | None, str | None]:
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(
            ":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return (user, password) if sep else (None, None)

def load_credentials(settings: OcppSettings) -> dict[str, str]:
    """The charge points' hashes; CredentialsError when the file is missing or bad."""
    if not settings.ocpp_credentials_file:
        raise ocpp_credentials.CredentialsError(
            "OWNERCARE_OCPP_CREDENTIALS_FILE is not set: without it no charge point could "
            "authenticate (create it with `ownercare ocpp add-charger`)")
    return ocpp_credentials.load(Path(settings.ocpp_credentials_file))


async def run_gateway(settings: OcppSettings, credentials: Mapping[str, str]) -> int:
    """Run the gateway until SIGINT/SIGTERM; return the process exit code."""
    import signal

    gateway = Gateway(settings, credentials)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, gateway.stop)
    try:
        await gateway.run()
    except (ConnectionError, OSError) as exc:
        log.error("ocpp_exit reason=%s", exc)
        return 1
    return 0
