"""One connected charge point, as the OCPP gateway's central system sees it.

``CentralSystemSide`` is the ocpp library's ``ChargePoint`` with the gateway's framing (every
frame answered, bad ones refused with a CALLERROR and dead-lettered, the connection kept) and
its handlers: each call is mapped by ``ingest.ocpp_records`` and handed to the gateway
(``Edge``), which validates and produces the records. See ``ingest.ocpp_gateway``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import orjson
from ocpp.exceptions import (
    FormationViolationError,
    NotSupportedError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
)
from ocpp.exceptions import (
    NotImplementedError as OcppNotImplemented,
)
from ocpp.messages import Call, MessageType
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result, datatypes
from ocpp.v16.enums import Action, AuthorizationStatus, DataTransferStatus, RegistrationStatus
from websockets.asyncio.server import ServerConnection

from config.settings import OcppSettings
from ingest import contract, ocpp_records
from ingest.ocpp_records import Mapped, Payload

log = logging.getLogger(__name__)

# OCPP 2.x spellings the library's schema check raises, and their OCPP 1.6 names.
V16_CODES: Final = {"FormatViolation": "FormationViolation",
                    "OccurrenceConstraintViolation": "OccurenceConstraintViolation"}
MAX_UNIQUE_ID: Final = 36  # OCPP-J: the message id is at most 36 characters


def now_ms() -> int:
    """The gateway's receive time: transport metadata, and the event time of a Heartbeat or
    BootNotification, which carry none."""
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class Rejected(Exception):
    """A frame that gets a CALLERROR and a dead letter: ``reason`` is the dead letter's."""

    def __init__(self, reason: str, error: OCPPError) -> None:
        super().__init__(str(error))
        self.reason = reason
        self.error = error


class _LibraryLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The ocpp library logs every frame at INFO and every refused call with a traceback;
    the gateway logs what it refuses itself, one line each."""

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)


class Edge(Protocol):
    """What a connection needs of the gateway (``ingest.ocpp_gateway.Gateway``)."""

    settings: OcppSettings
    id_tags: frozenset[str]
    stats: Counter[str]
    ignored_measurands: Counter[str]

    async def emit(self, charger_id: str, payloads: list[Payload],
                   clock: ocpp_records.SeqClock, received_ms: int) -> None: ...

    async def dead_letter(self, charger_id: str, raw: str | bytes, action: str | None,
                          reason: str, error: OCPPError, received_ms: int) -> None: ...


class CentralSystemSide(ChargePoint):
    """One connected charge point, as the central system sees it."""

    def __init__(self, charger_id: str, ws: ServerConnection, gateway: Edge) -> None:
        super().__init__(charger_id, ws, logger=_LibraryLog(log, {}))
        self.gateway = gateway
        self.clock = ocpp_records.SeqClock()
        self.status0: dict[str, Any] | None = None  # connector 0's last StatusNotification
        self.vins: dict[int, str | None] = {}  # open transaction -> the car's VIN, if known
        self.connectors: dict[int, int] = {}  # open transaction -> connector
        self._payload: dict[str, Any] = {}  # the call being handled, as it came (camelCase)
        self._received_ms = 0
        self._action: str | None = None

    # ---------------------------------------------------------------- framing

    async def route_message(self, raw: str | bytes) -> None:
        """Every frame of the charge point: a CALL is answered (CALLRESULT or CALLERROR),
        anything else is refused with a CALLERROR too; nothing here ends the connection."""
        received = self._received_ms = now_ms()
        unique_id, action = "-1", None
        try:
            if isinstance(raw, bytes):
                raise Rejected("not_text", FormationViolationError(
                    description="OCPP-J frames are text frames"))
            try:
                frame = json.loads(raw)
            except ValueError as exc:
                raise Rejected("not_json", FormationViolationError(
                    description=f"frame is not JSON: {exc}")) from None
            if not isinstance(frame, list) or not frame:
                raise Rejected("not_ocpp_frame", FormationViolationError(
                    description="frame must be a JSON array [type, id, ...]"))
            if len(frame) > 1 and isinstance(frame[1], str) and len(frame[1]) <= MAX_UNIQUE_ID:
                unique_id = frame[1]
            if frame[0] in (MessageType.CallResult, MessageType.CallError):
                # The gateway sends no calls, so no answer is awaited: note it, reply nothing
                # (a CALLERROR answering a CALLRESULT is not OCPP).
                self.gateway.stats["unexpected_results"] += 1
                log.info("ocpp_unexpected_result charge_point=%s frame_type=%s", self.id,
                         frame[0])
                return
            if frame[0] != MessageType.Call:
                raise Rejected("bad_message_type", ProtocolError(
                    description=f"message type id {frame[0]!r} is not 2 (CALL), 3 or 4"))
            if (len(frame) != 4 or not isinstance(frame[1], str) or not frame[1]
                    or len(frame[1]) > MAX_UNIQUE_ID or not isinstance(frame[2], str)
                    or not isinstance(frame[3], dict)):
                raise Rejected("not_ocpp_frame", FormationViolationError(
                    description="a CALL is [2, \"<id, at most 36 characters>\", \"<Action>\", "
                                "{payload}]"))
            action = frame[2]
            if action not in self.route_map:
                known = action in {a.value for a in Action}
                raise Rejected("unsupported_action" if known else "unknown_action",
                               (NotSupportedError if known else OcppNotImplemented)(
                                   description=f"action {action!r} is "
                                   + ("not supported by this central system" if known
                                      else "not an OCPP 1.6 action")))
            self._payload, self._action = frame[3], action
            try:
                await self._handle_call(Call(unique_id, action, frame[3]))
            except OCPPError as exc:  # the library's schema check of the payload
                raise Rejected("schema_invalid", exc) from None
        except Rejected as rejected:
            await self.gateway.dead_letter(self.id, raw, action, rejected.reason,
                                           rejected.error, received)
            await self._send_error(unique_id, rejected.error)

    async def _send_error(self, unique_id: str, error: OCPPError) -> None:
        code = V16_CODES.get(error.code, error.code)
        details = error.details if isinstance(error.details, dict) else {}
        await self._send(json.dumps([MessageType.CallError, unique_id, code,
                                     error.description, {k: str(v) for k, v in details.items()
                                                         if k != "ocpp_message"}]))

    async def _emit(self, mapped: Mapped | list[Payload]) -> None:
        if isinstance(mapped, Mapped):
            for name in mapped.ignored:
                self.gateway.ignored_measurands[name] += 1
            payloads = mapped.payloads
        else:
            payloads = mapped
        try:
            await self.gateway.emit(self.id, payloads, self.clock, self._received_ms)
        except Rejected as rejected:
            await self._refuse(rejected)

    async def _refuse(self, rejected: Rejected) -> None:
        """A call the contract refuses: dead letter, then the handler raises so the library
        answers with the CALLERROR."""
        raw = orjson.dumps(self._payload).decode()
        await self.gateway.dead_letter(self.id, raw, self._action, rejected.reason,
                                       rejected.error, self._received_ms)
        raise rejected.error

    async def _mapped(self, build: Any, *args: Any) -> Any:
        try:
            return build(*args)
        except contract.ContractError as exc:
            await self._refuse(Rejected(exc.reason.value, PropertyConstraintViolationError(
                description=str(exc), details={"reason": exc.reason.value})))

    def _id_tag_info(self, id_tag: str | None) -> datatypes.IdTagInfo:
        allowed = not self.gateway.id_tags or (
            id_tag is not None and id_tag.upper() in self.gateway.id_tags)
        return datatypes.IdTagInfo(status=AuthorizationStatus.accepted if allowed
                                   else AuthorizationStatus.invalid)

    # ---------------------------------------------------------------- actions

    @on(Action.boot_notification)
    async def on_boot(self, **_: Any) -> call_result.BootNotification:
        if self.gateway.settings.ocpp_clockless_records:
            await self._emit([ocpp_records.charge_point_status(
                self._received_ms, self.status0, boot=self._payload)])
        return call_result.BootNotification(
            current_time=iso(now_ms()), interval=self.gateway.settings.ocpp_heartbeat_s,
            status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        if self.gateway.settings.ocpp_clockless_records:
            await self._emit([ocpp_records.charge_point_status(self._received_ms,
                                                               self.status0)])
        return call_result.Heartbeat(current_time=iso(now_ms()))

    @on(Action.status_notification)
    async def on_status(self, **_: Any) -> call_result.StatusNotification:
        payload = await self._mapped(ocpp_records.status_notification, self._payload,
                                     self._received_ms)
        await self._emit([payload])
        if payload.body["connectorId"] == 0:
            self.status0 = payload.body
        return call_result.StatusNotification()

    @on(Action.meter_values)
    async def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        tx = self._payload.get("transactionId")
        mapped = await self._mapped(ocpp_records.meter_values, self._payload,
                                    self.vins.get(tx) if tx is not None else None)
        await self._emit(mapped)
        return call_result.MeterValues()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=self._id_tag_info(id_tag))

    @on(Action.start_transaction)
    async def on_start(self, id_tag: str, **_: Any) -> call_result.StartTransaction:
        start_ms = await self._mapped(ocpp_records.parse_timestamp, "timestamp",
                                      self._payload["timestamp"])
        connector = int(self._payload["connectorId"])
        if not 1 <= connector <= ocpp_records.MAX_CONNECTOR:
            await self._refuse(Rejected("out_of_range", PropertyConstraintViolationError(
                description=f"connectorId {connector} of a transaction is not in "
                            f"[1, {ocpp_records.MAX_CONNECTOR}]")))
        tx = ocpp_records.transaction_id(connector, start_ms)
        payload = await self._mapped(ocpp_records.start_transaction, self._payload, tx)
        await self._emit([payload])
        self.vins[tx] = ocpp_records.vin_of(id_tag)
        self.connectors[tx] = connector
        return call_result.StartTransaction(transaction_id=tx,
                                            id_tag_info=self._id_tag_info(id_tag))

    @on(Action.stop_transaction)
    async def on_stop(self, transaction_id: int, id_tag: str | None = None, **_: Any
                      ) -> call_result.StopTransaction:
        connector = self.connectors.get(transaction_id,
                                        ocpp_records.connector_of(transaction_id))
        mapped = await self._mapped(ocpp_records.stop_transaction, self._payload,
                                    connector, self.vins.get(transaction_id))
        await self._emit(mapped)
        self.vins.pop(transaction_id, None)
        self.connectors.pop(transaction_id, None)
        return call_result.StopTransaction(
            id_tag_info=self._id_tag_info(id_tag) if id_tag is not None else None)

    @on(Action.data_transfer)
    async def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, **_: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status(self, **_: Any
                                    ) -> call_result.DiagnosticsStatusNotification:
        return call_result.DiagnosticsStatusNotification()

