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
  messages now join the back of its queue until it is empty.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import OUTGOING, Session

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
        if app_message.direction != OUTGOING or session is None:
            await super()._handle_qos1_message_flow(app_message)
            return
        try:
            await super()._handle_qos1_message_flow(app_message)
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
                return
        await super().handle_puback(puback)


# Queued messages go out to a returning session this many at a time: amqtt sends them all at
# once, and past 65 535 in flight it has no packet id left and drops the rest.
REDELIVERY_WINDOW = 1000


class SessionKeepingBroker(Broker):  # type: ignore[misc]
    """An amqtt broker whose client handlers are :class:`RedeliveringHandler`."""

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
        return handler, session


def amqtt_config(port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {f"{__name__}.UsernameAuthPlugin": {}},
    }
