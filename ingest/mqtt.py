"""paho-mqtt client construction from an ``mqtt[s]://[user:pass@]host[:port]`` URL."""

from __future__ import annotations

import ssl
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# Persistent sessions keep unacknowledged QoS 1 messages (and messages published while the
# bridge is away) at the broker; a week covers a long outage without growing forever.
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> MqttTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"not an MQTT URL (mqtt[s]://host:port): {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


def protocol_of(version: str) -> MQTTProtocolVersion:
    return mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311


def make_client(
    url: str,
    client_id: str,
    protocol: str = "3.1.1",
    *,
    persistent: bool = False,
    manual_ack: bool = False,
    receive_maximum: int | None = None,
    batched_io: bool = False,
) -> tuple[mqtt.Client, dict[str, Any]]:
    """A configured (not yet connected) client and the kwargs for ``connect``/``connect_async``.

    ``batched_io`` returns a :class:`BatchedIoClient` (for high-rate subscribers).
    ``persistent`` asks the broker to keep the session (and its queued QoS 1 messages) across
    disconnects: clean_session=False on 3.1.1, clean_start=False plus a session expiry on 5.
    """
    target = MqttTarget.from_url(url)
    version = protocol_of(protocol)
    kwargs: dict[str, Any] = {"client_id": client_id, "protocol": version, "manual_ack": manual_ack}
    if version == mqtt.MQTTv311:
        kwargs["clean_session"] = not persistent
    client_class = BatchedIoClient if batched_io else mqtt.Client
    client = client_class(CallbackAPIVersion.VERSION2, **kwargs)
    if target.username is not None:
        client.username_pw_set(target.username, target.password)
    if target.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    connect: dict[str, Any] = {"host": target.host, "port": target.port, "keepalive": 30}
    if version == mqtt.MQTTv5:
        props = Properties(PacketTypes.CONNECT)
        if persistent:
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        if receive_maximum:
            props.ReceiveMaximum = min(receive_maximum, 65535)
        connect["clean_start"] = not persistent
        connect["properties"] = props
    return client, connect


# Large enough for a burst of ~60 telemetry messages per system call; paho asks for 1-2 KiB.
RECV_CHUNK = 128 * 1024


class BatchedIoClient(mqtt.Client):
    """A paho client that reads the socket in large chunks and acknowledges in batches.

    Stock paho 2.2 reads a PUBLISH with four or more ``recv`` calls (one byte of fixed header,
    one per remaining-length byte, then the body) and runs ``select`` before every packet; a
    manual ``ack`` queues one 4-byte PUBACK, wakes the network thread through its socket pair
    and is written with its own ``send``. At fleet rates those ~9 system calls a message were
    a third of the bridge's CPU (py-spy, 10 000 vehicles). Here one ``recv`` feeds every
    packet it holds, and ``ack_many`` queues a flush's PUBACKs as one write, in order.

    It also skips paho's per-topic callback matching while no per-topic callback exists.
    Only paho's socket read, ``loop_read``, packet queue and message dispatch are involved;
    the packet parser, the session and reconnection are paho's own (pinned in
    constraints.txt).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = memoryview(b"")
        self._has_topic_callbacks = False

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._has_topic_callbacks = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # paho matches every message against the per-topic callbacks, even when there are
        # none: a tenth of the bridge's CPU. Without any, on_message is paho's only choice.
        if self._has_topic_callbacks:
            super()._handle_on_message(message)
            return
        with self._callback_mutex:
            on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._rbuf:
            # Raises BlockingIOError when the socket is drained, as paho expects.
            self._rbuf = memoryview(super()._sock_recv(RECV_CHUNK))
            if not self._rbuf:
                return b""  # the broker closed the connection
        chunk, self._rbuf = self._rbuf[:bufsize], self._rbuf[bufsize:]
        return chunk.tobytes()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # paho reads one packet per select(); drain what one recv brought before returning,
        # or select() would not know that buffered packets are waiting.
        rc = super().loop_read(max_packets)
        while rc == mqtt.MQTT_ERR_SUCCESS and self._rbuf and self._sock is not None:
            rc = super().loop_read(max_packets)
        return rc

    def _sock_close(self) -> None:
        self._rbuf = memoryview(b"")  # bytes of a dead connection never reach the next one
        super()._sock_close()

    def ack_many(self, acks: Iterable[tuple[int, int]]) -> None:
        """Acknowledge (mid, qos) pairs in the given order, the QoS 1 ones in one write."""
        pubacks = bytearray()
        for mid, qos in acks:
            if qos == 1 and self._manual_ack:
                pubacks += _PUBACK.pack(0x40, 2, mid)
            elif qos:
                if pubacks:  # keep the order MQTT 3.1.1 §4.6 asks for
                    self._packet_queue(0x40, bytes(pubacks), 0, 1)
                    pubacks = bytearray()
                self.ack(mid, qos)
        if pubacks:
            self._packet_queue(0x40, bytes(pubacks), 0, 1)


_PUBACK = struct.Struct("!BBH")
