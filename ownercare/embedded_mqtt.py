"""amqtt made to keep a persistent session's QoS 1 messages, as Mosquitto does.

What amqtt 0.12 gets wrong for a bridge that restarts:

* its broker queues messages for a disconnected persistent session only when the session is
  not anonymous, and ``AnonymousAuthPlugin`` marks every session anonymous, so nothing is
  queued. :class:`UsernameAuthPlugin` accepts every client as before but treats a client that
  presents a username as a named one, whose session keeps its messages;
* its protocol handler forgets a QoS 1 message sent to a subscriber when the PUBACK does not
  come (connection lost, or 5 s without an ack), although MQTT 3.1.1 §4.4 says it must be
  sent again when the session reconnects. :class:`RedeliveringHandler` keeps such a message
  in the session's in-flight set, from which amqtt resends it (DUP=1) on reconnect;
* it sends a returning session's whole queue at once and drops what exceeds the 65 535
  packet ids; :class:`SessionKeepingBroker` sends it in windows;
* it sends the messages that arrive while that queue drains straight away, ahead of the older
  ones still queued, although MQTT 3.1.1 §4.6 keeps a publisher's order per topic. A bridge
  restarted after 17 s at 15 000x got records up to 28 h behind their partition's newest,
  and the worker's silence detectors, whose clock is that newest record, alerted on healthy
  cars whose queued reports came later (``ownercare faults``). A returning session's new
  messages now join the back of its queue until it is empty;
* it keeps all of that in memory only: a ``kill -9`` of the broker lost what it had
  acknowledged to the devices and not yet delivered to the bridge. Given a directory, the
  broker writes what it owes each persistent session to a journal (``ownercare.mqtt_journal``)
  before it acknowledges a message to its publisher, and a restarted broker starts with those
  sessions, their subscriptions, their in-flight messages (same packet ids) and their queues;
* it queues without limit: offered more than the bridge takes, it held 9 GiB after 25 minutes
  at 2 000 msg/s. Once it owes its persistent sessions ``owed_limit_bytes``, a publisher's
  PUBACK waits until the bridge has taken some: the publisher's in-flight window fills and the
  devices keep their messages in their own QoS 1 queues, as MQTT intends.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import INCOMING, OUTGOING, OutgoingApplicationMessage, Session

from ownercare.mqtt_journal import Journal, Journalled, journalled

log = logging.getLogger(__name__)

# amqtt ships no type information: its classes are Any to mypy, hence the ignores below.

class UsernameAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accept every client; only one without a username is anonymous (no queued messages)."""

    @dataclass
    class Config:
        """No options: loopback-only broker, every client is accepted."""

    async def authenticate(self, *, session: Session) -> bool:
        session.is_anonymous = not session.username
        return True


class RedeliveringHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """Keep an outgoing QoS 1 message in flight until its PUBACK arrives, whatever happens,
    and queue new messages behind a returning session's backlog while it is sent."""

    # From the connection's start until the session's queue is empty (SessionKeepingBroker).
    catching_up = True
    broker: SessionKeepingBroker | None = None

    async def mqtt_publish(self, topic: str, data: bytes | bytearray, qos: int | None,
                           retain: bool, ack_timeout: int | None = None) -> Any:
        if self.catching_up and not retain and self.session is not None:
            await self.session.retained_messages.put(
                RetainedApplicationMessage(None, topic, data, qos))
            return None
        return await super().mqtt_publish(topic, data, qos, retain, ack_timeout)

    async def send_queued(self, message: Any) -> Any:
        return await super().mqtt_publish(message.topic, message.data, message.qos,
                                          retain=False)

    async def _handle_qos1_message_flow(self, app_message: Any) -> None:
        session = self.session
        journal = self.broker.journal if self.broker is not None else None
        if app_message.direction == INCOMING and journal is not None and self.broker is not None:
            # On disk before the PUBACK below tells the publisher it may forget the message.
            owed_to = self.broker.persistent_subscribers(app_message.topic)
            if owed_to:
                await self.broker.room()
                app_message.data = journal.owe(app_message.topic, app_message.data, owed_to)
        if app_message.direction != OUTGOING or session is None:
            await super()._handle_qos1_message_flow(app_message)
            return
        data = app_message.data
        owed = journal is not None and isinstance(data, Journalled)
        if owed and app_message.packet_id is not None:
            journal.went_out(data.journal_id, session.client_id,  # type: ignore[union-attr]
                             app_message.packet_id)
        try:
            await super()._handle_qos1_message_flow(app_message)
            if owed and app_message.puback_packet is not None:
                journal.acknowledged(data.journal_id, session.client_id)  # type: ignore[union-attr]
                self.broker.settled()  # type: ignore[union-attr]
        except (asyncio.CancelledError, TimeoutError, OSError, ConnectionError) as exc:
            # amqtt dropped it from the in-flight set on the way out; without a PUBACK the
            # subscriber may not have it, so it must go out again when the session returns.
            if app_message.puback_packet is None and app_message.packet_id is not None:
                session.inflight_out[app_message.packet_id] = app_message
            # A slow PUBACK (the bridge acknowledges after Kafka, seconds under load) is not
            # an error: the message stays in flight and a late PUBACK settles it. Raised, each
            # one was logged with a traceback, 170 000 lines in a loaded run.
            if not isinstance(exc, TimeoutError):
                raise

    async def handle_puback(self, puback: Any) -> None:
        # A PUBACK after amqtt stopped waiting still settles the message: no redelivery.
        packet_id = puback.variable_header.packet_id if puback.variable_header else None
        if (self.session is not None and packet_id is not None
                and packet_id not in self._puback_waiters):
            message = self.session.inflight_out.get(packet_id)
            if message is not None and message.qos == QOS_1:
                del self.session.inflight_out[packet_id]
                message.puback_packet = puback
                journal = self.broker.journal if self.broker is not None else None
                if journal is not None and isinstance(message.data, Journalled):
                    journal.acknowledged(message.data.journal_id, self.session.client_id)
                    self.broker.settled()  # type: ignore[union-attr]
                return
        await super().handle_puback(puback)


# What the broker may owe its persistent sessions (payloads and topics, in memory and in the
# journal) before publishers wait: about a minute of 1 000 msg/s of telemetry.
OWED_LIMIT_BYTES = 64 * 2**20

# Queued messages go out to a returning session this many at a time: amqtt sends them all at
# once, and past 65 535 in flight it has no packet id left and drops the rest.
REDELIVERY_WINDOW = 1000


class SessionKeepingBroker(Broker):  # type: ignore[misc]
    """An amqtt broker whose client handlers are :class:`RedeliveringHandler`; with
    ``journal_dir``, what it owes persistent sessions outlives the process."""

    def __init__(self, config: dict[str, Any], journal_dir: Path | None = None,
                 owed_limit_bytes: int = OWED_LIMIT_BYTES) -> None:
        super().__init__(config)
        self.journal = Journal.open(journal_dir) if journal_dir is not None else None
        self.owed_limit_bytes = owed_limit_bytes
        self._room = asyncio.Event()
        self._room.set()
        self.waits = 0  # publishes that waited for room

    async def room(self) -> None:
        """Return once the journal owes less than the limit (see the module doc)."""
        assert self.journal is not None
        while self.journal.owed_bytes >= self.owed_limit_bytes:
            if self._room.is_set():
                self._room.clear()
                log.warning("mqtt_backpressure owed_bytes=%s limit=%s sessions=%s",
                            self.journal.owed_bytes, self.owed_limit_bytes,
                            ",".join(sorted(self.journal.sessions)))
            self.waits += 1
            await self._room.wait()

    def settled(self) -> None:
        """A message was taken: wake the waiting publishers once a tenth of the room is free
        (each acknowledgement would wake them all for one message)."""
        assert self.journal is not None
        if not self._room.is_set() and self.journal.owed_bytes < 0.9 * self.owed_limit_bytes:
            self._room.set()

    def persistent_subscribers(self, topic: str) -> set[str]:
        """The journalled sessions a QoS 1 message on ``topic`` goes to."""
        assert self.journal is not None
        return {session.client_id for a_filter, subs in self._subscriptions.items()
                if self._matches(topic, a_filter)
                for session, qos in subs if qos and self.journal.owes(session.client_id)}

    def _subscriptions_of(self, client_id: str) -> list[tuple[str, int]]:
        return [(a_filter, qos) for a_filter, subs in self._subscriptions.items()
                for session, qos in subs if session.client_id == client_id]

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        code = await super().add_subscription(subscription, session)
        if (self.journal is not None and code != 0x80 and not session.clean_session
                and not session.is_anonymous):
            # Written before the SUBACK: from now on its messages are owed to it on disk.
            self.journal.subscribed(session.client_id, self._subscriptions_of(session.client_id))
        return int(code)

    def _del_subscription(self, a_filter: str, session: Session) -> int:
        deleted = int(super()._del_subscription(a_filter, session))
        if deleted and self.journal is not None and self.journal.owes(session.client_id):
            self.journal.subscribed(session.client_id, self._subscriptions_of(session.client_id))
        return deleted

    async def _delete_session(self, client_id: str) -> None:
        await super()._delete_session(client_id)
        if self.journal is not None:
            self.journal.dropped(client_id)

    async def _start_listeners(self) -> None:
        # amqtt's start() has just cleared its sessions; restore ours before anyone connects.
        if self.journal is not None:
            await self._restore_sessions(self.journal)
        await super()._start_listeners()

    async def _restore_sessions(self, journal: Journal) -> None:
        in_flight = queued = 0
        for client_id, restored in journal.restored().items():
            handler, session = self.create_offline_session(client_id)
            session.clean_session = False
            session.is_anonymous = False
            self._sessions[client_id] = (session, handler)
            for subscription in restored.subscriptions:
                await super().add_subscription(subscription, session)
            for packet_id, jid, topic, data in restored.in_flight:
                message = OutgoingApplicationMessage(packet_id, topic, QOS_1,
                                                     journalled(data, jid), False)
                message.publish_packet = message.build_publish_packet()  # resent with DUP=1
                session.inflight_out[packet_id] = message
            if restored.in_flight:
                # New packet ids start after the restored ones: a late PUBACK for one of them
                # must not find a new message that reused its id.
                session._packet_id = max(p for p, *_ in restored.in_flight)  # noqa: SLF001
            for jid, topic, data in restored.queued:
                session.retained_messages.put_nowait(
                    RetainedApplicationMessage(None, topic, journalled(data, jid), QOS_1))
            in_flight += len(restored.in_flight)
            queued += len(restored.queued)
        log.info("mqtt_journal_restored sessions=%s in_flight=%s queued=%s",
                 len(journal.sessions), in_flight, queued)

    async def shutdown(self) -> None:
        await super().shutdown()
        if self.journal is not None:
            self.journal.close()

    async def _publish_session_retained_messages(self, session: Session) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        queue = session.retained_messages
        # What is left when the session drops again stays queued for its next return.
        while session.transitions.state == "connected":
            if queue.empty():
                # No await since the check: nothing can slip in between.
                handler.catching_up = False
                return
            window: list[asyncio.Future[Any]] = []
            while len(window) < REDELIVERY_WINDOW and not queue.empty():
                # RETAIN=0: it is delivered for a subscription, not as a retained message
                # (MQTT 3.1.1 §3.3.1.3); amqtt sets it.
                window.append(asyncio.ensure_future(handler.send_queued(queue.get_nowait())))
            await asyncio.wait(window)

    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> Any:
        handler, session = await super()._initialize_client_session(*args, **kwargs)
        # amqtt builds the handler inside a long classmethod; changing the fresh instance's
        # class swaps only the two methods above (same attributes, no copy of amqtt's code).
        handler.__class__ = RedeliveringHandler
        handler.broker = self
        return handler, session


def amqtt_config(port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {f"{__name__}.UsernameAuthPlugin": {}},
    }
